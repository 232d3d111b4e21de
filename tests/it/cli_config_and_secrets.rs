//! The binary's handling of bad configs and secrets, as an operator sees it.

use crate::common::*;

fn write(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    set_mode(&path, 0o600);
    path.display().to_string()
}

#[tokio::test]
async fn every_config_error_exits_non_zero_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = write(dir.path(), "skey", "");
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\ncolour=1\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["unknown key `colour`"]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"https://api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`api_hostname`", "scheme"]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"t\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`sinks`", "\"t\""]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\nlogs=[\"authn\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`logs`", "\"authn\""]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\ninitial_lookback=\"200d\"\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`initial_lookback`", "180"]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\nschedule=\"* * *\"\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`schedule`", "\"* * *\""]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\ndelay=\"soon\"\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`delay`", "\"soon\""]),
        (format!("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey_file={:?}\nsinks=[\"s\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n", secret_file), vec!["`skey_file`", "empty"]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey_file=\"/nonexistent/skey\"\nsinks=[\"s\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`skey_file`", "/nonexistent/skey"]),
        ("[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\n[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n".into(), vec!["`name`", "duplicate"]),
    ];
    for (i, (body, needles)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("c{i}.toml"), body);
        for command in ["validate", "collect-now", "run"] {
            let out = run_cli(&[command, "--config", &path]).await;
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} case {i}: {}",
                text(&out)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            for n in needles {
                assert!(
                    stderr.contains(n),
                    "{command} case {i}: {n:?} not in {stderr}"
                );
            }
        }
    }
    let missing = run_cli(&["validate", "--config", "/nonexistent/config.toml"]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--config"));
}

#[tokio::test]
async fn warnings_do_not_fail_validation() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "[[integration]]\nname=\"a\"\napi_hostname=\"duo.example.org\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"x\"\nsinks=[\"s\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n");
    set_mode(std::path::Path::new(&path), 0o644);
    let out = run_cli(&["validate", "--config", &path]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`api_hostname`") && stderr.contains("literal `skey`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_any_output() {
    let now = now_ms();
    let sim = start_sim(sim_config(500, now - 3_600_000, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "");
    let config = setup.config.to_str().unwrap();

    // Trace-level logging of a successful run.
    let ok = run_cli(&["--log-level", "trace", "collect-now", "--config", config]).await;
    assert!(ok.status.success(), "{}", text(&ok));
    // A wrong secret: the failure is explained, and neither secret is printed.
    let wrong = "wrongsecretwrongsecretwrongsecretwrong00";
    let skey_path = setup.dir.path().join("corp.skey");
    std::fs::write(&skey_path, wrong).unwrap();
    // Leave time for a new window: Duo's clock is read to the second (the `Date` header), so
    // a run less than a second after a drain may rightly find nothing to ask for.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let bad = run_cli(&["--log-level", "trace", "collect-now", "--config", config]).await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("40103") && stderr.contains("secret key"),
        "{stderr}"
    );
    // The literal-secret form, with an unrelated config error.
    let literal = setup.dir.path().join("literal.toml");
    std::fs::write(
        &literal,
        std::fs::read_to_string(&setup.config).unwrap().replace(
            &format!("skey_file = {:?}", skey_path.display().to_string()),
            &format!("skey = \"{SKEY}\"\nbogus = 1"),
        ),
    )
    .unwrap();
    let invalid = run_cli(&["validate", "--config", literal.to_str().unwrap()]).await;
    assert_eq!(invalid.status.code(), Some(2));
    let status = run_cli(&["status", "--config", config, "--json"]).await;

    for out in [&ok, &bad, &invalid, &status] {
        let all = text(out);
        assert!(!all.contains(SKEY), "secret leaked:\n{all}");
        assert!(!all.contains(wrong), "secret leaked:\n{all}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_stream_fields() {
    let now = now_ms();
    let sim = start_sim(sim_config(200, now - 3_600_000, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "");
    let out = run_cli(&[
        "--log-format",
        "json",
        "collect-now",
        "--config",
        setup.config.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished = lines
        .iter()
        .find(|l| l["message"] == "collection finished")
        .unwrap_or_else(|| panic!("no JSON 'collection finished' line in {stderr}"));
    assert_eq!(finished["integration"], "corp");
    assert_eq!(finished["log"], "authentication");
    assert_eq!(finished["events"], 200);
    assert_eq!(finished["level"], "INFO");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("corp-skey"),
        "examplesecretexamplesecretexamplesecret0",
    )
    .unwrap();
    let out = tokio::process::Command::new(bin())
        .args([
            "validate",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example"),
        ])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
