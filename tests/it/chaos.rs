//! Chaos: the real binary drains a backlog from the simulator into a file sink and is killed
//! with SIGKILL again and again, at random moments and aimed at the gap between a page's
//! write and its commit. After every kill the file's committed prefix must hold exactly the
//! committed events, each once; at the end, after a drain to completion, every event must be
//! in the file exactly once: 0 lost, 0 duplicated.
//!
//! `cargo test --test it chaos::` runs 10 kills. The full run is one command:
//!
//! ```text
//! CHAOS_KILLS=200 cargo test --release --test it chaos:: -- --nocapture
//! ```
//!
//! (`CHAOS_SEED=<n>` replays a run; the seed is printed.) It prints a line per kill, the
//! lost and duplicated counts, and `N passed, N failed`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

const DAY_MS: i64 = 86_400_000;
/// Events per page (small pages: many commits, many gaps to aim at).
const PAGE: usize = 200;

#[derive(Debug, Clone, Copy)]
enum Aim {
    /// Any moment after the start: starting up, fetching, writing, committing.
    Random,
    /// While the file grows: mid-write or just after it.
    FileGrows,
    /// Between a page's write and its commit, held there by a SQLite write lock.
    BeforeCommit,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// (events committed, the file's committed length) from the state database.
fn committed(db: &Path) -> (u64, u64) {
    if !db.exists() {
        return (0, 0);
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let one =
        |sql: &str| -> u64 { conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0) as u64 };
    let has_table = |name: &str| {
        conn.query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .is_ok()
    };
    let events = if has_table("checkpoints") {
        one("SELECT COALESCE(SUM(events_total), 0) FROM checkpoints")
    } else {
        0
    };
    let len = if has_table("file_commits") {
        one("SELECT COALESCE(MAX(committed_len), 0) FROM file_commits")
    } else {
        0
    };
    (events, len)
}

fn ids_of(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a committed line does not parse ({e}): {l:?}"));
            v["_duo_collector"]["event_id"]
                .as_str()
                .expect("event_id")
                .to_string()
        })
        .collect()
}

/// After a kill: the committed prefix holds the committed events, each once.
fn check_committed_prefix(events: &Path, db: &Path) -> Result<String, String> {
    let (committed_events, committed_len) = committed(db);
    let data = std::fs::read(events).unwrap_or_default();
    if (data.len() as u64) < committed_len {
        return Err(format!(
            "the file ({} bytes) is shorter than committed ({committed_len})",
            data.len()
        ));
    }
    let ids = ids_of(&data[..committed_len as usize]);
    let mut seen = std::collections::HashSet::new();
    let repeated = ids.iter().filter(|id| !seen.insert(*id)).count();
    if repeated > 0 || ids.len() as u64 != committed_events {
        return Err(format!(
            "committed prefix: {} lines for {committed_events} committed events, {repeated} repeated",
            ids.len()
        ));
    }
    Ok(format!(
        "{committed_events} events committed, {} bytes after the commit",
        data.len() as u64 - committed_len
    ))
}

async fn wait_for(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

enum Ended {
    Killed,
    /// The drain finished before the kill.
    Drained,
    /// The collector exited with an error on its own.
    Failed(std::process::ExitStatus),
}

/// Starts the collector and kills it as `aim` says.
async fn run_and_kill(
    config: &str,
    events: &Path,
    db: &Path,
    aim: Aim,
    rng: &mut impl Rng,
) -> Ended {
    let mut child = tokio::process::Command::new(bin())
        .args(["collect-now", "--config", config])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn duo-collector");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lock = None;
    match aim {
        Aim::Random => {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        }
        Aim::FileGrows => {
            // Past a random number of pages, then the next growth.
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
            let before = file_len(events);
            wait_for(deadline, || file_len(events) != before).await;
        }
        Aim::BeforeCommit => {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
            if db.exists() {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                if conn.execute_batch("BEGIN IMMEDIATE").is_ok() {
                    lock = Some(conn);
                }
            }
            let (_, committed_len) = committed_with(lock.as_ref());
            wait_for(deadline, || file_len(events) > committed_len).await;
            // The whole page: the length holds still while the commit waits.
            let mut len = file_len(events);
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = file_len(events);
                if now == len {
                    break;
                }
                len = now;
            }
        }
    }
    let ended = match child.try_wait().unwrap() {
        Some(status) if status.success() => Ended::Drained,
        Some(status) => Ended::Failed(status),
        None => {
            kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
            child.wait().await.unwrap();
            Ended::Killed
        }
    };
    drop(lock);
    ended
}

/// `committed` read through the connection that holds the lock (if any).
fn committed_with(conn: Option<&rusqlite::Connection>) -> (u64, u64) {
    let Some(conn) = conn else {
        return (0, 0);
    };
    let len = conn
        .query_row(
            "SELECT COALESCE(MAX(committed_len), 0) FROM file_commits",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0) as u64;
    (0, len)
}

async fn chaos(kills: u64, seed: u64) -> (u64, u64) {
    let events_total = (kills as usize * 1_500).max(15_000);
    let now = now_ms();
    let mut cfg = sim_config(events_total, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 20;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        &format!("initial_lookback = \"3d\"\npage_size = {PAGE}\nrequests_per_minute = 600"),
    );
    let config = setup.config.to_str().unwrap();
    let db = setup.state_db();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    println!("chaos: seed {seed}, {kills} kills, {events_total} events in pages of {PAGE}");
    let (mut passed, mut failed) = (0u64, 0u64);
    for i in 1..=kills {
        let aim = match rng.random_range(0..3) {
            0 => Aim::Random,
            1 => Aim::FileGrows,
            _ => Aim::BeforeCommit,
        };
        match run_and_kill(config, &setup.events, &db, aim, &mut rng).await {
            Ended::Killed => {}
            Ended::Drained => {
                println!("kill {i}: the drain finished first; no more kills");
                break;
            }
            Ended::Failed(status) => {
                failed += 1;
                println!("kill {i} ({aim:?}): FAILED: the collector exited by itself, {status}");
                continue;
            }
        }
        match check_committed_prefix(&setup.events, &db) {
            Ok(what) => {
                passed += 1;
                println!("kill {i} ({aim:?}): ok, {what}");
            }
            Err(why) => {
                failed += 1;
                println!("kill {i} ({aim:?}): FAILED: {why}");
            }
        }
    }
    let committed_at_kills = committed(&db);
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected: HashMap<String, ()> = handle
        .expected_events(None, "authentication", now_ms(), last_maxtime(&handle))
        .into_iter()
        .map(|e| (e.id, ()))
        .collect();
    let counts = id_counts(&read_events(&setup.events));
    let lost = expected
        .keys()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let duplicated: usize = counts.values().map(|c| c - 1).sum();
    let unexpected = counts
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .count();
    println!(
        "after the drain: {} events expected, {lost} lost, {duplicated} duplicated, {unexpected} unexpected",
        expected.len()
    );
    let (committed_before_drain, _) = committed_at_kills;
    if lost == 0 && duplicated == 0 && unexpected == 0 && expected.len() == events_total {
        passed += 1;
    } else {
        failed += 1;
    }
    println!("{passed} passed, {failed} failed");
    sim.shutdown().await;
    assert!(
        committed_before_drain > 0,
        "the kills interrupted a drain that had made progress"
    );
    (passed, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_and_between_write_and_commit_loses_and_repeats_nothing() {
    let kills = env_number("CHAOS_KILLS", 10);
    let seed = env_number("CHAOS_SEED", rand::random::<u32>() as u64);
    let (passed, failed) = chaos(kills, seed).await;
    assert_eq!(failed, 0, "seed {seed}: {failed} failed, {passed} passed");
    assert!(
        passed >= 2,
        "at least one kill landed, and the drain was checked"
    );
}
