//! The service as systemd runs it: notify socket, watchdog, SIGHUP reload, metrics and health.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_run(config: &str, envs: &[(&str, String)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["--log-level", "trace", "run", "--config", config])
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn duo-collector run")
}

async fn stop(child: tokio::process::Child) -> (std::process::ExitStatus, String) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops")
        .unwrap();
    (
        out.status,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_socket_sees_ready_status_watchdog_and_stopping() {
    let now = now_ms();
    let sim = start_sim(sim_config(3_000, now - 3_600_000, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "schedule = \"*/2 * * * * *\"");
    let socket_path = setup.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let child = spawn_run(
        setup.config.to_str().unwrap(),
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
    );
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let joined = messages.join("\n");
        if joined.contains("READY=1")
            && joined.matches("WATCHDOG=1").count() >= 3
            && joined.contains("STATUS=collecting")
        {
            break;
        }
    }
    let (status, output) = stop(child).await;
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let joined = messages.join("\n");
    assert!(status.success(), "{output}");
    assert!(joined.contains("READY=1"), "{joined}");
    assert!(
        joined.contains("STATUS=collecting corp/authentication"),
        "{joined}"
    );
    assert!(joined.matches("WATCHDOG=1").count() >= 3, "{joined}");
    assert!(joined.contains("STOPPING=1"), "{joined}");
    let ready_at = joined.find("READY=1").unwrap();
    assert!(joined.find("STOPPING=1").unwrap() > ready_at);
    assert!(!output.contains(SKEY), "secret in the trace log");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_invalid_configs_out_and_adds_integrations_without_loss() {
    let now = now_ms();
    // Events keep arriving for the whole test.
    let sim = start_sim(sim_config(40_000, now - 3_600_000, now + 20 * 60_000)).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "schedule = \"* * * * * *\"");
    let config = setup.config.to_str().unwrap().to_string();
    let original = std::fs::read_to_string(&setup.config).unwrap();
    let child = spawn_run(&config, &[]);
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    wait_until("first events", || count_lines(&setup.events) > 1_000).await;

    // An invalid config is refused; collection goes on.
    std::fs::write(&setup.config, format!("{original}\nbogus_key = 1\n")).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let before = count_lines(&setup.events);
    wait_until("collection to go on after an invalid reload", || {
        count_lines(&setup.events) > before
    })
    .await;

    // A new integration (same account, its own sink) starts; the old one keeps its checkpoint.
    let second_events = setup.dir.path().join("out/second.jsonl");
    let added = original.replace("[[sink]]", &format!(
        "[[integration]]\nname = \"second\"\napi_hostname = \"{HOST}\"\nikey = \"{IKEY}\"\nskey_file = {:?}\nconnect_to = \"{}\"\ndelay = \"5s\"\nrequests_per_minute = 600\nschedule = \"* * * * * *\"\nlogs = [\"authentication\"]\ninitial_lookback = \"10m\"\nsinks = [\"second\"]\n\n[[sink]]\nname = \"second\"\ntype = \"file\"\npath = {:?}\nformat = \"raw\"\n\n[[sink]]",
        setup.dir.path().join("corp.skey").display().to_string(),
        sim.base_url(),
        second_events.display().to_string()
    ));
    let mut f = std::fs::File::create(&setup.config).unwrap();
    f.write_all(added.as_bytes()).unwrap();
    drop(f);
    kill(pid, Signal::SIGHUP).unwrap();
    wait_until("the new integration to deliver", || {
        count_lines(&second_events) > 0
    })
    .await;

    // A changed integration restarts from its checkpoint.
    std::fs::write(
        &setup.config,
        added.replacen(
            "schedule = \"* * * * * *\"",
            "schedule = \"* * * * * *\"\npage_size = 700",
            1,
        ),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let before = count_lines(&setup.events);
    wait_until("the restarted integration to go on", || {
        count_lines(&setup.events) > before + 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, output) = stop(child).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("invalid") && output.contains("bogus_key"),
        "the refused reload is explained"
    );
    assert!(output.contains("reload: config applied"), "{output}");
    assert!(!output.contains(SKEY), "secret in the trace log");

    // Finish the backlog, then: every event exactly once across all the reloads.
    let out = run_cli(&["collect-now", "--config", &config, "--integration", "corp"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let counts = id_counts(&read_events(&setup.events));
    assert!(
        counts.values().all(|c| *c == 1),
        "no event repeated across reloads"
    );
    // corp is the integration with page_size 700 now.
    let last_max = handle
        .requests()
        .iter()
        .filter(|r| r.status == 200 && r.params.iter().any(|(k, v)| k == "limit" && v == "700"))
        .filter_map(|r| {
            r.params
                .iter()
                .find(|(k, _)| k == "maxtime")
                .map(|(_, v)| v.parse::<i64>().unwrap())
        })
        .max()
        .unwrap();
    let expected: HashSet<String> = handle
        .expected_events(None, "authentication", now_ms(), last_max)
        .into_iter()
        .map(|e| e.id)
        .collect();
    let got: HashSet<String> = counts.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    assert!(
        missing.is_empty(),
        "events lost across reloads, e.g. {missing:?}"
    );
    assert_eq!(got, expected);
    sim.shutdown().await;
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_readyz_follows_failing_streams() {
    let now = now_ms();
    let mut cfg = sim_config(3_000, now - 3_600_000, now - 60_000);
    cfg.forbidden_kinds = vec!["trust_monitor".into()];
    let sim = start_sim(cfg).await;
    let port = free_port();
    let setup = Setup::new(&sim.base_url(), "schedule = \"0 0 * * * *\"");
    let text = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "[collector]\n",
        &format!("[collector]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
        1,
    );
    std::fs::write(&setup.config, &text).unwrap();
    let child = spawn_run(setup.config.to_str().unwrap(), &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_until("events", || count_lines(&setup.events) == 3_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    let (code, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    for needle in [
        "duo_collector_events_collected_total{integration=\"corp\",account=\"\",log=\"authentication\"} 3000",
        "duo_collector_events_delivered_total{integration=\"corp\",log=\"authentication\",sink=\"local\"} 3000",
        "duo_collector_api_requests_total{integration=\"corp\",status=\"200\"}",
        "duo_collector_checkpoint_lag_seconds{",
        "duo_collector_last_success_timestamp_seconds{",
        "duo_collector_collection_duration_seconds_bucket{",
        "duo_collector_build_info{version=",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in:\n{metrics}");
    }
    let lag_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("duo_collector_checkpoint_lag_seconds{")
                && l.contains("log=\"authentication\"")
        })
        .unwrap();
    let lag: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (0.0..10.0).contains(&lag),
        "checkpoint lag (now - delay - position) is about 0 after a drained run: {lag_line}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed; .ci/run installs it");
    let mut promtool = promtool;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, output) = stop(child).await;
    assert!(status.success(), "{output}");

    // A stream that fails makes the service unready, and /readyz says which.
    let failing = Setup::new(
        &sim.base_url(),
        "schedule = \"0 0 * * * *\"\nlogs = [\"authentication\", \"trust_monitor\"]",
    );
    let port = free_port();
    let text = std::fs::read_to_string(&failing.config).unwrap().replacen(
        "[collector]\n",
        &format!("[collector]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
        1,
    );
    std::fs::write(&failing.config, &text).unwrap();
    let child = spawn_run(failing.config.to_str().unwrap(), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let mut last = (0, String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            last = (r.status().as_u16(), r.text().await.unwrap_or_default());
            if last.0 == 503 && last.1.contains("trust_monitor") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 503, "{last:?}");
    assert!(last.1.contains("corp/trust_monitor"), "{last:?}");
    let metrics = get(&format!("{base}/metrics")).await.1;
    assert!(metrics.contains("duo_collector_stream_failing{integration=\"corp\",account=\"\",log=\"trust_monitor\"} 1"), "{metrics}");
    let (status, _) = stop(child).await;
    assert!(status.success());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_sink_is_backpressure_not_a_wedge_for_the_watchdog() {
    let now = now_ms();
    let sim = start_sim(sim_config(500, now - 3_600_000, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "schedule = \"0 0 * * * *\"");
    let closed = free_port();
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("sinks = [\"local\"]", "sinks = [\"web\"]")
        + &format!("\n[[sink]]\nname = \"web\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{closed}/ingest\"\n");
    std::fs::write(&setup.config, text).unwrap();
    let socket_path = setup.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let child = spawn_run(
        setup.config.to_str().unwrap(),
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
    );
    // Collect notifications for 7 s while every delivery to the sink fails.
    let mut messages = String::new();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push_str(&String::from_utf8_lossy(&buf[..n]));
            messages.push('\n');
        }
    }
    let after_ready = &messages[messages.find("READY=1").expect("READY=1")..];
    let pings = after_ready.matches("WATCHDOG=1").count();
    assert!(
        pings >= 10,
        "the watchdog kept being pinged during backpressure ({pings} pings)"
    );
    let (status, output) = stop(child).await;
    assert!(
        status.success(),
        "a shutdown during the sink's backoff exits cleanly: {output}"
    );
    assert!(
        output.contains("sink delivery failed; retrying"),
        "{output}"
    );
    assert!(!output.contains("not pinging the watchdog"), "{output}");
    sim.shutdown().await;
}
