//! A real child process: killed with SIGKILL mid-backlog, or stopped with SIGTERM.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DAY_MS: i64 = 86_400_000;

async fn wait_for_lines(
    path: &std::path::Path,
    at_least: usize,
    child: &mut tokio::process::Child,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_lines(path) < at_least {
        assert!(
            child.try_wait().unwrap().is_none(),
            "collector exited before it was stopped"
        );
        assert!(Instant::now() < deadline, "collector made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backlog_loses_nothing() {
    let now = now_ms();
    let mut cfg = sim_config(40_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 60;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"3d\"");
    let config = setup.config.to_str().unwrap();

    let mut child = spawn_collector(&["collect-now", "--config", config]);
    wait_for_lines(&setup.events, 8_000, &mut child).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    let before_restart = count_lines(&setup.events);
    assert!(before_restart < 40_000, "killed mid-backlog");

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));

    let events = read_events(&setup.events); // every line parses: no torn line survives
    let counts = id_counts(&events);
    let expected: HashSet<String> = handle
        .expected_events(None, "authentication", now_ms(), last_maxtime(&handle))
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(expected.len(), 40_000);
    assert_eq!(
        counts.keys().cloned().collect::<HashSet<_>>(),
        expected,
        "no event lost"
    );
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(counts.values().all(|c| *c <= 2));
    assert!(
        duplicates <= 1000,
        "duplicates only from the page in flight, got {duplicates}"
    );

    // The killed run is reported as interrupted.
    let out = run_cli(&["status", "--config", config, "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = &status["streams"];
    assert_eq!(rows[0]["last_run_outcome"], "ok");
    let db = rusqlite_outcomes(&setup.state_db());
    assert!(db.contains(&"interrupted".to_string()), "{db:?}");
    sim.shutdown().await;
}

fn rusqlite_outcomes(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT outcome FROM runs ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_page_and_exits_cleanly() {
    let now = now_ms();
    let mut cfg = sim_config(30_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 60;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        "initial_lookback = \"3d\"\nschedule = \"0 0 * * * *\"",
    );
    let config = setup.config.to_str().unwrap();

    let mut child = spawn_collector(&["run", "--config", config]);
    wait_for_lines(&setup.events, 5_000, &mut child).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stops within 20 s")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let stopped_at = count_lines(&setup.events);
    assert!(stopped_at < 30_000, "stopped mid-backlog");

    // A graceful stop committed the page it delivered: resuming repeats nothing.
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let counts = id_counts(&read_events(&setup.events));
    assert_eq!(counts.len(), 30_000);
    assert!(
        counts.values().all(|c| *c == 1),
        "no duplicates after a graceful stop"
    );
    let expected: HashSet<String> = handle
        .expected_events(None, "authentication", now_ms(), last_maxtime(&handle))
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_collector_on_the_same_state_is_refused() {
    let now = now_ms();
    let mut cfg = sim_config(20_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 100;
    let sim = start_sim(cfg).await;
    let setup = Setup::new(
        &sim.base_url(),
        "initial_lookback = \"3d\"\nschedule = \"0 0 * * * *\"",
    );
    let config = setup.config.to_str().unwrap();
    let mut child = spawn_collector(&["run", "--config", config]);
    wait_for_lines(&setup.events, 1_000, &mut child).await;
    let second = run_cli(&["collect-now", "--config", config]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already collecting"),
        "{}",
        text(&second)
    );
    // status still works while the service runs.
    let status = run_cli(&["status", "--config", config]).await;
    assert!(status.status.success(), "{}", text(&status));
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().await.unwrap().success());
    sim.shutdown().await;
}
