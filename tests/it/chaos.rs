//! Chaos: the real binary drains a backlog of all six log kinds from the strict simulator
//! (rate limits, short pages with cursors) with faults injected (5xx, 429, truncated and
//! malformed bodies, HTML error pages) into a file sink, and is killed with SIGKILL again and
//! again: at random moments, while the file grows, and aimed at the gap between a page's write
//! and its commit. After every kill the file's committed prefix must hold exactly the committed
//! events, each once; at the end, after a drain to completion, every event must be in the file
//! exactly once: 0 lost, 0 duplicated.
//!
//! Of `CHAOS_KILLS` kills, a quarter are aimed at the gap, an eighth at a growing file, and the
//! rest are random. `cargo test --test it chaos::` runs 10 kills. The full run (50 random kills and
//! 20 in the gap, plus 10 while the file grows) is one command:
//!
//! ```text
//! CHAOS_KILLS=80 cargo test --release --test it chaos:: -- --nocapture
//! ```
//!
//! (`CHAOS_SEED=<n>` replays a run; the seed is printed.) It prints a line per kill, the kills
//! per aim, the lost and duplicated counts, and `N passed, N failed`. `chaos/run` runs it with
//! the rest of the chaos suite.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use duo_collector::simulator::{Fault, KindCounts, SimHandle};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

const DAY_MS: i64 = 86_400_000;
/// Events per page (small pages: many commits, many gaps to aim at).
const PAGE: usize = 100;
/// The pace of the collector and the simulator's limit per endpoint: a drain that takes a
/// while, and 429s when a restarted collector's first requests meet a bucket still empty.
const PER_MINUTE: u32 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Killed; where the kill landed (an aim at the gap that found no page there is Random).
    Killed(Aim),
    /// The drain finished before the kill.
    Drained,
    /// The collector exited with an error on its own.
    /// The collector exited with an error on its own: its status and the end of its log.
    Failed(std::process::ExitStatus, String),
}

/// Starts the collector and kills it as `aim` says.
async fn run_and_kill(
    config: &str,
    events: &Path,
    db: &Path,
    aim: Aim,
    rng: &mut impl Rng,
) -> Ended {
    let log = Path::new(config).with_file_name("collector.log");
    let mut child = tokio::process::Command::new(bin())
        .args(["collect-now", "--config", config])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("the collector's log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn duo-collector");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lock = None;
    let mut landed = aim;
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
            // Past startup (whose own writes the lock would hold up): the drain has written.
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
            let before = file_len(events);
            wait_for(deadline, || file_len(events) != before).await;
            if db.exists() {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                if conn.execute_batch("BEGIN IMMEDIATE").is_ok() {
                    lock = Some(conn);
                }
            }
            let locked_at = Instant::now();
            let (_, committed_len) = committed_with(lock.as_ref());
            // Well within the collector's 10 s wait for a lock: held longer, the lock would
            // stop the run with "locked by another process" (tests/chaos_state.rs).
            let gap_deadline = locked_at + Duration::from_secs(4);
            if lock.is_none() || !wait_for(gap_deadline, || file_len(events) > committed_len).await
            {
                landed = Aim::Random;
            }
            // The whole page: the length holds still while the commit waits (and the lock is
            // let go in any case by 6 s, whatever else keeps writing).
            let mut len = file_len(events);
            while locked_at.elapsed() < Duration::from_secs(6) {
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
        Some(status) => {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            Ended::Failed(
                status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            )
        }
        None => {
            kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
            child.wait().await.unwrap();
            Ended::Killed(landed)
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

/// The kills in a shuffled order: a quarter in the gap, an eighth while the file grows, the
/// rest at random moments.
fn kill_plan(kills: u64, rng: &mut impl Rng) -> Vec<Aim> {
    let gap = (kills / 4).max(1);
    let grows = kills / 8;
    let random = kills.saturating_sub(gap + grows);
    let mut plan: Vec<Aim> = std::iter::repeat_n(Aim::BeforeCommit, gap as usize)
        .chain(std::iter::repeat_n(Aim::FileGrows, grows as usize))
        .chain(std::iter::repeat_n(Aim::Random, random as usize))
        .collect();
    use rand::seq::SliceRandom;
    plan.shuffle(rng);
    plan
}

/// Transient faults among the next requests (each retried by the collector), topped up before
/// every start: a 5xx, a 429, a cut body, a body that is no JSON, an HTML error page.
fn top_up_faults(handle: &SimHandle, rng: &mut impl Rng) {
    let faults = [
        Fault::Status(502),
        Fault::Status(503),
        Fault::RateLimited,
        Fault::TruncatedBody,
        Fault::MalformedJson,
        Fault::HtmlErrorPage,
    ];
    let mut queue = Vec::new();
    while handle.pending_faults() + queue.len() < 24 {
        // A few good answers between two faults, so that a retry is not refused again.
        for _ in 0..rng.random_range(2..6) {
            queue.push(Fault::Delay(Duration::ZERO));
        }
        queue.push(faults[rng.random_range(0..faults.len())].clone());
    }
    handle.inject_faults(queue);
}

/// Runs the kills and the final drain: (checks passed, why each failed check failed).
async fn chaos(kills: u64, seed: u64) -> (u64, Vec<String>) {
    let per_kill = kills.max(10) as usize;
    let counts = KindCounts {
        authentication: per_kill * 400,
        administrator: per_kill * 120,
        telephony: per_kill * 100,
        activity: per_kill * 120,
        trust_monitor: per_kill * 40,
        offline_enrollment: per_kill * 100,
    };
    let events_total = counts.authentication
        + counts.administrator
        + counts.telephony
        + counts.activity
        + counts.trust_monitor
        + counts.offline_enrollment;
    let now = now_ms();
    let mut cfg = sim_config(0, now - 2 * DAY_MS, now - 60_000);
    cfg.counts = counts;
    cfg.rate_limit_per_minute = Some(PER_MINUTE);
    cfg.rate_limit_burst = 2;
    cfg.response_delay_ms = 20;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        &format!(
            "initial_lookback = \"3d\"\npage_size = {PAGE}\nrequests_per_minute = {PER_MINUTE}\n{}",
            all_logs_line()
        ),
    );
    let config = setup.config.to_str().unwrap();
    let db = setup.state_db();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let plan = kill_plan(kills, &mut rng);
    let gap_planned = plan.iter().filter(|a| **a == Aim::BeforeCommit).count() as u64;
    println!(
        "chaos: seed {seed}, {kills} kills, {events_total} events of six kinds in pages of {PAGE}, {PER_MINUTE} requests/min per endpoint, faults on"
    );
    let mut passed = 0u64;
    let mut failures: Vec<String> = Vec::new();
    let mut fail = |why: String| {
        println!("{why}");
        failures.push(why);
    };
    let mut landed = [0u64; 3];
    let mut plan: std::collections::VecDeque<Aim> = plan.into();
    let mut i = 0;
    while let Some(aim) = plan.pop_front() {
        i += 1;
        top_up_faults(&handle, &mut rng);
        let aim = match run_and_kill(config, &setup.events, &db, aim, &mut rng).await {
            Ended::Killed(landed) => {
                // An aim at the gap that found no page there is tried again, a few times.
                if aim == Aim::BeforeCommit && landed != aim && i < 2 * kills {
                    plan.push_back(Aim::BeforeCommit);
                }
                landed
            }
            Ended::Drained => {
                println!("kill {i}: the drain finished first; no more kills");
                break;
            }
            Ended::Failed(status, log) => {
                fail(format!(
                    "kill {i} ({aim:?}): FAILED: the collector exited by itself, {status}:\n{log}"
                ));
                continue;
            }
        };
        landed[aim as usize] += 1;
        match check_committed_prefix(&setup.events, &db) {
            Ok(what) => {
                passed += 1;
                println!("kill {i} ({aim:?}): ok, {what}");
            }
            Err(why) => fail(format!("kill {i} ({aim:?}): FAILED: {why}")),
        }
    }
    let committed_at_kills = committed(&db);
    println!(
        "kills landed: {} random, {} while the file grew, {} between write and commit",
        landed[Aim::Random as usize],
        landed[Aim::FileGrows as usize],
        landed[Aim::BeforeCommit as usize]
    );
    if landed[Aim::BeforeCommit as usize] < gap_planned {
        fail(format!(
            "FAILED: fewer than the {gap_planned} planned kills landed between write and commit"
        ));
    }
    // A second for Duo's clock (read to the second) to pass the last window's end: see
    // tests/chaos_state.rs `resumes_exactly_once`.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let requests = handle.requests();
    let faulted = requests
        .iter()
        .filter(|r| {
            r.fault
                .as_ref()
                .is_some_and(|f| *f != Fault::Delay(Duration::ZERO))
        })
        .count();
    println!(
        "Duo: {} requests, {faulted} answered with an injected fault, {} refused by the rate limit",
        requests.len(),
        handle.rate_limited_count()
    );
    let tally = tally(&handle, &read_events(&setup.events), &ALL_KINDS, now_ms());
    println!("after the drain: {tally}");
    if tally.exactly_once() && tally.expected == events_total {
        passed += 1;
    } else {
        fail(format!(
            "FAILED: after the drain, {tally} ({events_total} events in the simulator)"
        ));
    }
    println!("{passed} passed, {} failed", failures.len());
    let (committed_before_drain, _) = committed_at_kills;
    sim.shutdown().await;
    assert!(
        committed_before_drain > 0,
        "the kills interrupted a drain that had made progress"
    );
    (passed, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_and_between_write_and_commit_loses_and_repeats_nothing() {
    let kills = env_number("CHAOS_KILLS", 10);
    let seed = env_number("CHAOS_SEED", rand::random::<u32>() as u64);
    let (passed, failures) = chaos(kills, seed).await;
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failed, {passed} passed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        passed >= 2,
        "at least one kill landed, and the drain was checked"
    );
}
