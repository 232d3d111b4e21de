//! Exactly once against a Duo as strict as the real one (issue: "Collect from Duo as it really
//! behaves"): each case is a row of that issue's table, reproduced with the simulator's strict
//! modes, through the real binary.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::*;
use duo_collector::simulator::{Fault, KindCounts, SimHandle};

const DAY_MS: i64 = 86_400_000;

/// Runs `collect-now`, killed if it does not finish in `limit` (a pager that loops forever).
async fn collect_now(config: &str, limit: Duration) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["collect-now", "--config", config])
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(out) => out.expect("binary runs"),
        Err(_) => panic!("collect-now did not finish within {limit:?} (a pager that never ends?)"),
    }
}

/// Every expected event of `kind` up to the last `maxtime` asked for that kind was delivered
/// exactly once.
fn assert_exactly_once(setup: &Setup, handle: &SimHandle, kinds: &[&str], not_before_ms: i64) {
    let events = read_events(&setup.events);
    let mut by_kind: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for e in &events {
        let meta = &e["_duo_collector"];
        *by_kind
            .entry(meta["log"].as_str().unwrap().to_string())
            .or_default()
            .entry(meta["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for kind in kinds {
        let maxtime = handle
            .requests()
            .iter()
            .rev()
            .filter(|r| r.kind.as_deref() == Some(kind))
            .find_map(|r| {
                r.params
                    .iter()
                    .find(|(k, _)| k == "maxtime")
                    .and_then(|(_, v)| v.parse::<i64>().ok())
            })
            .unwrap_or_else(|| panic!("{kind}: no request with a maxtime"));
        let expected: HashSet<String> = handle
            .expected_events(None, kind, handle.duo_now_ms(), maxtime)
            .into_iter()
            .filter(|e| e.ts_ms >= not_before_ms)
            .map(|e| e.id)
            .collect();
        assert!(!expected.is_empty(), "{kind}: the case has events");
        let got = by_kind.remove(*kind).unwrap_or_default();
        let missing = expected.iter().filter(|id| !got.contains_key(*id)).count();
        let repeated = got.values().filter(|c| **c > 1).count();
        assert_eq!(
            (missing, repeated),
            (0, 0),
            "{kind}: {} expected, {} delivered",
            expected.len(),
            got.len()
        );
        let unexpected = got.keys().filter(|id| !expected.contains(*id)).count();
        assert_eq!(unexpected, 0, "{kind}: events outside the expected set");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_monitor_backfill_from_180_days_finishes_exactly_once() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 178 * DAY_MS, now - 60_000);
    cfg.counts = KindCounts {
        trust_monitor: 1_100,
        ..KindCounts::default()
    };
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        "logs = [\"trust_monitor\"]\ninitial_lookback = \"180d\"\npage_size = 200",
    );
    let out = collect_now(setup.config.to_str().unwrap(), Duration::from_secs(90)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_exactly_once(&setup, &handle, &["trust_monitor"], 0);
    let requests: Vec<_> = log_requests(&handle, "trust_monitor").collect();
    let mintimes: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r.params.iter().find(|(k, _)| k == "mintime"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        mintimes.len(),
        1,
        "the window kept one mintime for all its pages"
    );
    // 1100 events at most 200 a page, some short, plus the closing empty page.
    assert!(requests.len() <= 20, "{} requests", requests.len());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_pages_that_carry_a_cursor_lose_nothing() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 2 * DAY_MS, now - 60_000);
    cfg.short_page_rate = 0.5;
    cfg.counts = KindCounts {
        authentication: 6_000,
        telephony: 5_000,
        activity: 5_000,
        ..KindCounts::default()
    };
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        "logs = [\"authentication\", \"telephony\", \"activity\"]\ninitial_lookback = \"3d\"",
    );
    let out = collect_now(setup.config.to_str().unwrap(), Duration::from_secs(120)).await;
    assert!(out.status.success(), "{}", text(&out));
    let kinds = ["authentication", "telephony", "activity"];
    // Which pages are short is drawn per request (its `maxtime` comes from now), so the
    // precondition is counted over the three kinds together, not per kind.
    let short: usize = kinds
        .iter()
        .map(|kind| {
            log_requests(&handle, kind)
                .filter(|r| r.records.is_some_and(|n| n > 0 && n < 1000))
                .count()
        })
        .sum();
    assert!(
        short >= 4,
        "the simulator served short pages with a cursor ({short})"
    );
    assert_exactly_once(&setup, &handle, &kinds, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_45s_ahead_never_asks_inside_duos_delay_window() {
    let now = now_ms();
    // Live events (published up to the delay, 5 s, late) over the last hour and the next
    // minutes.
    let mut cfg = sim_config(30_000, now - 3_600_000, now + 600_000);
    cfg.clock_offset_ms = -45_000;
    cfg.max_visibility_delay_ms = 5_000;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"2h\"");
    let config = setup.config.to_str().unwrap();
    for _ in 0..2 {
        let out = collect_now(config, Duration::from_secs(60)).await;
        assert!(out.status.success(), "{}", text(&out));
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    for r in log_requests(&handle, "authentication") {
        let maxtime: i64 = r
            .params
            .iter()
            .find(|(k, _)| k == "maxtime")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let duo_received = r.received_at_ms; // the simulator records Duo's clock
        assert!(
            maxtime <= duo_received - 5_000,
            "maxtime {maxtime} is inside Duo's delay window (Duo's now {duo_received})"
        );
    }
    assert_exactly_once(&setup, &handle, &["authentication"], 0);
    let status = run_cli(&["status", "--config", config]).await;
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("Duo's clock") && shown.contains("s behind this host's"),
        "status shows the measured offset:\n{shown}"
    );
    let offset = shown
        .lines()
        .find(|l| l.contains("Duo's clock"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().split(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no offset in {shown}"));
    assert!((43.0..=47.0).contains(&offset), "{offset}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_rate_limit_drains_with_no_failed_run_and_few_429s() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 2 * DAY_MS, now - 60_000);
    cfg.rate_limit_per_minute = Some(30);
    cfg.rate_limit_burst = 1;
    cfg.counts = KindCounts {
        authentication: 3_000,
        telephony: 3_000,
        activity: 3_000,
        ..KindCounts::default()
    };
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        "logs = [\"authentication\", \"telephony\", \"activity\"]\ninitial_lookback = \"3d\"\nrequests_per_minute = 30",
    );
    let out = collect_now(setup.config.to_str().unwrap(), Duration::from_secs(120)).await;
    assert!(out.status.success(), "{}", text(&out));
    let kinds = ["authentication", "telephony", "activity"];
    assert_exactly_once(&setup, &handle, &kinds, 0);
    let requests: Vec<_> = handle
        .requests()
        .into_iter()
        .filter(|r| r.kind.is_some())
        .collect();
    let limited = requests.iter().filter(|r| r.status == 429).count();
    assert!(
        limited * 20 <= requests.len(),
        "{limited} of {} requests answered 429 (at most 5%)",
        requests.len()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines_429 = stderr.matches("rate limiting this endpoint").count();
    assert!(
        lines_429 <= kinds.len(),
        "one summary line per stream per minute:\n{stderr}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cursor_restarts_its_window_and_loses_nothing() {
    let now = now_ms();
    let cfg = sim_config(3_500, now - 2 * DAY_MS, now - 60_000);
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    handle.inject_faults(vec![Fault::RejectCursor]);
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"3d\"");
    let out = collect_now(setup.config.to_str().unwrap(), Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(handle.pending_faults(), 0, "the cursor was refused once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("Duo refused the saved cursor").count(),
        1,
        "warned once:\n{stderr}"
    );
    // Nothing lost; the first page of the window may repeat, nothing else.
    let counts = id_counts(&read_events(&setup.events));
    let expected = handle.expected_events(
        None,
        "authentication",
        handle.duo_now_ms(),
        last_maxtime(&handle),
    );
    assert!(
        expected.iter().all(|e| counts.contains_key(&e.id)),
        "nothing lost"
    );
    let repeated = counts.values().filter(|c| **c > 1).count();
    assert!(
        repeated <= 1000,
        "{repeated} repeats: at most the restarted window's first page"
    );
    sim.shutdown().await;
}
