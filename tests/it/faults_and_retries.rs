//! In-process: the collector against a misbehaving Duo, with short retry waits.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use duo_collector::daemon::{collect_once, Runtime, RuntimeOptions};
use duo_collector::duo::RetryPolicy;
use duo_collector::settings::Config;
use duo_collector::simulator::{Fault, FaultRule};
use duo_collector::state::RunOutcome;
use tokio_util::sync::CancellationToken;

fn fast_options(transient_attempts: u32) -> RuntimeOptions {
    RuntimeOptions {
        retry: RetryPolicy {
            rate_limit_initial: Duration::from_millis(10),
            rate_limit_max: Duration::from_millis(320),
            transient_attempts,
            transient_initial: Duration::from_millis(10),
            jitter: Duration::ZERO,
        },
        ..RuntimeOptions::default()
    }
}

fn rule(fault: Fault) -> FaultRule {
    FaultRule {
        path_contains: None,
        fault,
    }
}

async fn collect(
    setup: &Setup,
    options: &RuntimeOptions,
) -> Vec<duo_collector::collector::StreamReport> {
    let config = Config::load(&setup.config).expect("valid config");
    let runtime = Runtime::build(&config, options).expect("runtime");
    collect_once(&runtime, None, &CancellationToken::new())
        .await
        .into_iter()
        .flat_map(|r| r.streams)
        .collect()
}

fn assert_exactly_once(setup: &Setup, handle: &duo_collector::simulator::SimHandle) {
    let counts = id_counts(&read_events(&setup.events));
    let expected: HashSet<String> = handle
        .expected_events(None, "authentication", now_ms(), last_maxtime(handle))
        .into_iter()
        .map(|e| e.id)
        .collect();
    let got: HashSet<String> = counts.keys().cloned().collect();
    let missing = expected.difference(&got).count();
    let unexpected = got.difference(&expected).count();
    assert_eq!(
        (missing, unexpected),
        (0, 0),
        "{} expected, {} delivered",
        expected.len(),
        got.len()
    );
    assert!(counts.values().all(|c| *c == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_without_loss_or_repeat() {
    let now = now_ms();
    let sim = start_sim(sim_config(5_000, now - 86_400_000, now - 60_000)).await;
    let handle = sim.handle();
    handle.inject_faults(vec![
        rule(Fault::Status(500)),
        rule(Fault::TruncatedBody),
        rule(Fault::MalformedJson),
        rule(Fault::HtmlErrorPage),
        rule(Fault::Status(503)),
        rule(Fault::RateLimited),
        rule(Fault::RateLimited),
    ]);
    let setup = Setup::new(&sim.base_url(), "");
    let reports = collect(&setup, &fast_options(10)).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, RunOutcome::Ok, "{:?}", reports[0].error);
    assert_exactly_once(&setup, &handle);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_storm_fails_the_run_and_the_next_run_resumes() {
    let now = now_ms();
    // Counts lines per page: full pages, so the lenient simulator.
    let sim = start_sim(lenient_sim_config(5_000, now - 86_400_000, now - 60_000)).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "page_size = 500");
    // Let three pages through, then fail every attempt of the fourth.
    let first = collect_n_pages_then_storm(&setup, &handle).await;
    assert_eq!(first.outcome, RunOutcome::Failed);
    assert!(
        first.error.as_deref().unwrap_or("").contains("502"),
        "{:?}",
        first.error
    );
    assert_eq!(
        count_lines(&setup.events),
        1_500,
        "the checkpoint stayed after the last acked page"
    );

    let second = collect(&setup, &fast_options(3)).await;
    assert_eq!(second[0].outcome, RunOutcome::Ok, "{:?}", second[0].error);
    assert_exactly_once(&setup, &handle);
    sim.shutdown().await;
}

async fn collect_n_pages_then_storm(
    setup: &Setup,
    handle: &duo_collector::simulator::SimHandle,
) -> duo_collector::collector::StreamReport {
    let mut faults: Vec<FaultRule> = Vec::new();
    // Three good pages are not faults; pass them with a zero delay.
    for _ in 0..3 {
        faults.push(rule(Fault::Delay(Duration::ZERO)));
    }
    for _ in 0..3 {
        faults.push(rule(Fault::Status(502)));
    }
    handle.inject_faults(faults);
    collect(setup, &fast_options(3)).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_past_duos_schedule_waits_its_turn_instead_of_failing() {
    let now = now_ms();
    let sim = start_sim(sim_config(100, now - 86_400_000, now - 60_000)).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "");

    // Six 429s then success: 1+2+4+8+16+32 (scaled) waits, the seventh attempt succeeds.
    handle.inject_faults((0..6).map(|_| rule(Fault::RateLimited)).collect());
    let ok = collect(&setup, &fast_options(3)).await;
    assert_eq!(ok[0].outcome, RunOutcome::Ok, "{:?}", ok[0].error);

    // A 429 storm longer than Duo's schedule is not a failure: the stream yields its turn,
    // `status` says "rate limited, resuming at T" while it lasts, and the same run resumes.
    let setup2 = Setup::new(&sim.base_url(), "");
    let before = handle.requests().len();
    handle.inject_faults((0..10).map(|_| rule(Fault::RateLimited)).collect());
    let config = Config::load(&setup2.config).expect("valid config");
    let runtime = Runtime::build(&config, &fast_options(3)).expect("runtime");
    let run = tokio::spawn(async move {
        let reports = collect_once(&runtime, None, &CancellationToken::new()).await;
        reports
            .into_iter()
            .flat_map(|r| r.streams)
            .collect::<Vec<_>>()
    });
    let db = setup2.state_db();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let waiting_seen = loop {
        let state = duo_collector::state::State::open_read_only(&db).ok();
        let limited = state
            .and_then(|s| s.pacing_status().ok())
            .is_some_and(|p| p.iter().any(|e| e.rate_limited_until_ms.is_some()));
        if limited || run.is_finished() || std::time::Instant::now() > deadline {
            break limited;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        waiting_seen,
        "status showed the rate-limit wait while it lasted"
    );
    let limited = run.await.unwrap();
    assert_eq!(limited[0].outcome, RunOutcome::Ok, "{:?}", limited[0].error);
    assert_eq!(handle.pending_faults(), 0);
    assert!(
        handle.requests().len() - before > 10,
        "it went on after the storm"
    );
    assert_exactly_once(&setup2, &handle);
    let state = duo_collector::state::State::open_read_only(&db).unwrap();
    let pace = state.pacing_status().unwrap();
    assert_eq!(pace.len(), 1);
    assert_eq!(
        pace[0].rate_limited_until_ms, None,
        "cleared once Duo answered"
    );
    assert!(
        pace[0].rate_per_minute < pace[0].ceiling_per_minute,
        "the slower rate was learned and kept: {pace:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_log_kind_fails_with_an_actionable_reason() {
    let now = now_ms();
    let mut cfg = sim_config(100, now - 86_400_000, now - 60_000);
    cfg.forbidden_kinds = vec!["authentication".into()];
    let sim = start_sim(cfg).await;
    let setup = Setup::new(&sim.base_url(), "");
    let reports = collect(&setup, &fast_options(3)).await;
    assert_eq!(reports[0].outcome, RunOutcome::Failed);
    let error = reports[0].error.clone().unwrap();
    assert!(
        error.contains("40301") && error.contains("Grant read log"),
        "{error}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookback_of_180_days_is_clamped_inside_duos_retention() {
    let now = now_ms();
    let sim = start_sim(sim_config(1_000, now - 86_400_000, now - 60_000)).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"180d\"");
    let reports = collect(&setup, &fast_options(3)).await;
    assert_eq!(reports[0].outcome, RunOutcome::Ok, "{:?}", reports[0].error);
    assert_exactly_once(&setup, &handle);
    let oldest_mintime = handle
        .requests()
        .iter()
        .filter_map(|r| {
            r.params
                .iter()
                .find(|(k, _)| k == "mintime")
                .map(|(_, v)| v.parse::<i64>().unwrap())
        })
        .min()
        .unwrap();
    assert!(
        oldest_mintime > now - 180 * 86_400_000,
        "mintime was clamped"
    );
}
