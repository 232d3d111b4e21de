//! SIGKILL aimed between a page's delivery and its checkpoint commit, with a real child.
//!
//! The test holds a write transaction on the child's state database, so the child's next
//! commit waits (SQLite's busy timeout); it then watches the destination receive a page that
//! cannot be committed, and kills the child right there. After a restart:
//! - file sink: no event is lost and none is written twice (the committed length is cut back);
//! - NATS: the stream holds every event once (JetStream drops the re-sent `Nats-Msg-Id`s);
//! - HTTP: the re-sent pieces carry the same idempotency key as before the crash.

mod common;
mod sink_support;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sink_support::*;

const DAY_MS: i64 = 86_400_000;

fn spawn(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn duo-collector")
}

/// Waits until `measure` passes `at_least`, while the child runs.
async fn wait_until(
    what: &str,
    child: &mut tokio::process::Child,
    mut reached: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached().await {
        assert!(
            child.try_wait().unwrap().is_none(),
            "collector exited early ({what})"
        );
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A write transaction on the state database: the collector's commits wait behind it.
fn hold_commits(db: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

fn sigkill(child: &tokio::process::Child) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn committed_len(db: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT committed_len FROM file_commits WHERE sink = 'local'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_sigkill_between_write_and_commit_writes_nothing_twice() {
    let now = now_ms();
    let mut cfg = sim_config(12_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 40;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"3d\"");
    let config = setup.config.to_str().unwrap();

    let mut child = spawn(&["collect-now", "--config", config]);
    let events = setup.events.clone();
    wait_until("first pages", &mut child, async || {
        count_lines(&events) >= 2_000
    })
    .await;
    let lock = hold_commits(&setup.state_db());
    let held_at = file_len(&setup.events);
    // A page lands in the file; its commit waits behind the lock.
    wait_until("a page after the lock", &mut child, async || {
        file_len(&events) > held_at
    })
    .await;
    let mut written = file_len(&setup.events);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = file_len(&setup.events);
        if now == written {
            break;
        }
        written = now;
    }
    sigkill(&child);
    assert!(!child.wait().await.unwrap().success());
    drop(lock);
    let committed = committed_len(&setup.state_db());
    assert!(
        committed <= held_at && written > committed,
        "the kill landed between a write ({written} bytes) and its commit ({committed})"
    );

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected = expected_ids(&handle);
    assert_eq!(expected.len(), 12_000);
    let counts = id_counts(&read_events(&setup.events));
    assert_exactly_once("file", &counts, &expected);
    sim.shutdown().await;
}
