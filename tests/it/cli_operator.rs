//! The commands an operator types in a shell, with the packaged config: secrets only where Duo
//! is called, credentials found outside systemd, and `validate` / `simulate` messages that say
//! what to do.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{bin, now_ms, set_mode, sim_config, start_sim, text, Setup, SKEY};

fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("DUO_COLLECTOR_CREDENTIALS_DIRECTORY")
        .output()
        .expect("binary runs")
}

/// A config that reads its secret as the shipped one does: `skey_credential = "corp.skey"`.
fn credential_setup(base_url: &str) -> (Setup, std::path::PathBuf) {
    let setup = Setup::new(base_url, "");
    let creds = setup.dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("corp.skey"), format!("{SKEY}\n")).unwrap();
    set_mode(&creds.join("corp.skey"), 0o600);
    let skey_file = setup.dir.path().join("corp.skey").display().to_string();
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        &format!("skey_file = {skey_file:?}"),
        "skey_credential = \"corp.skey\"",
    );
    assert!(text.contains("skey_credential"));
    std::fs::write(&setup.config, text).unwrap();
    (setup, creds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_commands_work_with_a_credential_config() {
    let now = now_ms();
    let sim = start_sim(sim_config(500, now - 3_600_000, now - 60_000)).await;
    let (setup, creds) = credential_setup(&sim.base_url());
    let dir = setup.dir.path();
    let config = setup.config.to_str().unwrap();
    let creds_arg = creds.to_str().unwrap();

    // Without a credentials directory, the commands that call Duo say where to put one.
    let out = cli(&["validate", "--config", config], dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--credentials-directory"),
        "{}",
        text(&out)
    );

    // With --credentials-directory they work.
    let out = cli(
        &[
            "collect-now",
            "--config",
            config,
            "--credentials-directory",
            creds_arg,
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cli(
        &[
            "validate",
            "--config",
            config,
            "--credentials-directory",
            creds_arg,
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // status needs no secret at all.
    let out = cli(&["status", "--config", config], dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("corp/authentication"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SKEY));
    sim.shutdown().await;
}

#[test]
fn the_example_config_validates_with_placeholder_warnings_and_nothing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");
    let text_ = std::fs::read_to_string(example)
        .unwrap()
        .replace(
            "/var/lib/duo-collector",
            dir.path().join("state").to_str().unwrap(),
        )
        .replace(
            "/var/log/duo-collector",
            dir.path().join("log").to_str().unwrap(),
        );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text_).unwrap();
    let out = cli(
        &["validate", "--config", config.to_str().unwrap()],
        dir.path(),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("`api_hostname`") && all.contains("placeholder"),
        "{all}"
    );
    assert!(
        all.contains("`ikey`") && all.contains("placeholder"),
        "{all}"
    );
    assert!(all.contains("/etc/duo-collector/credentials"), "{all}");
}

#[test]
fn validate_names_the_problem_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let base = "[[integration]]\nname=\"a\"\napi_hostname=\"api-1234abcd.duosecurity.com\"\nikey=\"DI1234567890ABCDEFGH\"\nsinks=[\"s\"]\n[[sink]]\nname=\"s\"\ntype=\"stdout\"\n";

    // A type error names its field.
    let p = write(
        "type.toml",
        &base.replace(
            "sinks=[\"s\"]",
            "sinks=[\"s\"]\nskey=\"0123456789012345678901234567890123456789\"\npage_size=\"12\"",
        ),
    );
    let out = cli(&["validate", "--config", &p], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("field `page_size`"), "{}", text(&out));

    // A 3-character secret key is named for what it is.
    let p = write(
        "short.toml",
        &base.replace("sinks=[\"s\"]", "sinks=[\"s\"]\nskey=\"abc\""),
    );
    let out = cli(&["validate", "--config", &p], dir.path());
    assert!(
        text(&out).contains("Duo secret keys are 40"),
        "{}",
        text(&out)
    );

    // A state_dir the user cannot write is refused.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    set_mode(&ro, 0o500);
    let p = write(
        "state.toml",
        &format!(
            "[collector]\nstate_dir = {:?}\n{}",
            ro.join("state").to_str().unwrap(),
            base.replace(
                "sinks=[\"s\"]",
                "sinks=[\"s\"]\nskey=\"0123456789012345678901234567890123456789\""
            )
        ),
    );
    let out = cli(&["validate", "--config", &p], dir.path());
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root {
        // root writes anywhere; the check is for the service user.
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("`state_dir`"), "{}", text(&out));
    }

    // An unreadable --config is not told to "pass --config".
    let out = cli(
        &["validate", "--config", "/nonexistent/duo.toml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains("pass --config"), "{}", text(&out));
}

#[test]
fn simulate_writes_a_usable_config_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--auth-events",
            "100",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut snippet = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        snippet.push_str(&line);
        if line.starts_with("type = \"stdout\"") {
            break;
        }
    }
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, &snippet).unwrap();
    assert!(snippet.contains("state_dir"), "{snippet}");
    let out = cli(
        &["collect-now", "--config", path.to_str().unwrap()],
        dir.path(),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(0), "{snippet}\n{}", text(&out));
    assert!(dir.path().join("duo-collector-sim-state/state.db").exists());
}
