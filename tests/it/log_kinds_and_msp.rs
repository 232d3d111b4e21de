//! Every log kind, MSP child accounts and stream isolation, in-process against the simulator.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::*;
use duo_collector::collector::IntegrationReport;
use duo_collector::daemon::{collect_once, Runtime, RuntimeOptions};
use duo_collector::settings::Config;
use duo_collector::simulator::{
    AccountsConfig, ChildAccount, Fault, FaultRule, KindCounts, SimHandle,
};
use duo_collector::state::RunOutcome;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;
const ALL_LOGS: &str = r#"logs = ["authentication", "administrator", "telephony", "activity", "trust_monitor", "offline_enrollment"]"#;
const WINDOWED: [&str; 4] = ["authentication", "telephony", "activity", "trust_monitor"];
const V1: [&str; 2] = ["administrator", "offline_enrollment"];

async fn collect_with(runtime: &Runtime) -> Vec<IntegrationReport> {
    collect_once(runtime, None, &CancellationToken::new()).await
}

fn runtime(setup: &Setup) -> Runtime {
    let config = Config::load(&setup.config).expect("valid config");
    Runtime::build(&config, &RuntimeOptions::default()).expect("runtime")
}

/// A delivered record without our metadata, and its event id.
type Delivered = (serde_json::Value, String);

/// Delivered events grouped by (account, log).
fn delivered(setup: &Setup) -> HashMap<(Option<String>, String), Vec<Delivered>> {
    let mut out: HashMap<_, Vec<_>> = HashMap::new();
    for mut e in read_events(&setup.events) {
        let meta = e.as_object_mut().unwrap().remove("_duo_collector").unwrap();
        let account = meta["account_id"].as_str().map(str::to_string);
        let log = meta["log"].as_str().unwrap().to_string();
        let id = meta["event_id"].as_str().unwrap().to_string();
        out.entry((account, log)).or_default().push((e, id));
    }
    out
}

/// Asserts one stream got exactly the expected events, once each.
fn assert_stream_exact(
    got: &[(serde_json::Value, String)],
    handle: &SimHandle,
    account: Option<&str>,
    kind: &str,
    up_to: i64,
) {
    let expected = handle.expected_events(account, kind, now_ms(), up_to);
    assert!(!expected.is_empty(), "{kind}: the simulator has events");
    if V1.contains(&kind) {
        // v1 ids are our content fingerprints: compare by content, as a multiset.
        let mut want: Vec<String> = expected.iter().map(|e| e.record.to_string()).collect();
        let mut have: Vec<String> = got.iter().map(|(r, _)| r.to_string()).collect();
        want.sort();
        have.sort();
        assert_eq!(have.len(), want.len(), "{account:?}/{kind}: count");
        assert!(
            have == want,
            "{account:?}/{kind}: delivered records differ from the simulator's"
        );
        let ids: HashSet<&String> = got.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), got.len(), "{kind}: event ids are unique");
    } else {
        let want: HashSet<String> = expected.iter().map(|e| e.id.clone()).collect();
        let have: Vec<&String> = got.iter().map(|(_, id)| id).collect();
        let have_set: HashSet<String> = have.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            have.len(),
            have_set.len(),
            "{account:?}/{kind}: delivered twice"
        );
        let missing: Vec<(i64, &String)> = expected
            .iter()
            .filter(|e| !have_set.contains(&e.id))
            .map(|e| (e.ts_ms - up_to, &e.id))
            .collect();
        let extra: Vec<&String> = have_set.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{account:?}/{kind}: not exactly the expected events: missing (ms from the end, id) {missing:?}, extra {extra:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_kind_is_delivered_exactly_once_across_page_boundaries() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 2 * DAY_MS, now - 60_000);
    cfg.counts = KindCounts {
        authentication: 2_500,
        administrator: 3_500,
        telephony: 2_500,
        activity: 2_500,
        trust_monitor: 900,
        offline_enrollment: 2_300,
    };
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(
        &sim.base_url(),
        &format!("{ALL_LOGS}\ninitial_lookback = \"3d\""),
    );
    let rt = runtime(&setup);
    let reports = collect_with(&rt).await;
    for s in &reports[0].streams {
        assert_eq!(s.outcome, RunOutcome::Ok, "{}: {:?}", s.stream, s.error);
    }
    let got = delivered(&setup);
    for kind in WINDOWED.iter().chain(V1.iter()) {
        let stream = got
            .get(&(None, kind.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert_stream_exact(stream, &handle, None, kind, now);
        assert!(
            log_requests(&handle, kind).count() >= 3,
            "{kind} spans several pages"
        );
    }
    // Page boundaries move with the strict simulator's short pages (drawn per request), so a
    // split group is certain only over all kinds together.
    let split: Vec<&str> = WINDOWED
        .iter()
        .chain(V1.iter())
        .copied()
        .filter(|kind| log_requests(&handle, kind).any(|r| r.boundary_split))
        .collect();
    assert!(
        split.len() >= 2,
        "page boundaries split a same-time group in several kinds, got {split:?}"
    );
    let total = count_lines(&setup.events);
    let again = collect_with(&rt).await;
    assert!(!again[0].failed());
    assert_eq!(
        count_lines(&setup.events),
        total,
        "a repeated run adds nothing"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrator_events_published_late_are_collected_by_a_later_run() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 10 * 60_000, now + 10 * 60_000);
    cfg.counts.administrator = 6_000;
    cfg.max_visibility_delay_ms = 3_000; // inside the 5 s delay window
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "logs = [\"administrator\"]");
    let rt = runtime(&setup);
    assert!(!collect_with(&rt).await[0].failed());
    let first = count_lines(&setup.events);
    // Wait until events that were not visible (or not settled) at the first run exist.
    wait_for_published(&handle, "administrator", 7_000, first).await;
    let second_started = now_ms();
    assert!(!collect_with(&rt).await[0].failed());
    let got = delivered(&setup);
    let stream = &got[&(None, "administrator".to_string())];
    assert!(stream.len() > first, "the later run collected more");
    let records: Vec<String> = stream.iter().map(|(r, _)| r.to_string()).collect();
    let unique: HashSet<&String> = records.iter().collect();
    assert_eq!(unique.len(), records.len(), "nothing repeated");
    // Everything settled before the second run is there; nothing unpublished is.
    let all_now: HashSet<String> = handle
        .expected_events(None, "administrator", now_ms(), now_ms())
        .into_iter()
        .map(|e| e.record.to_string())
        .collect();
    assert!(records.iter().all(|r| all_now.contains(r)));
    for e in handle.expected_events(None, "administrator", now_ms(), second_started - 6_000) {
        assert!(
            unique.contains(&e.record.to_string()),
            "settled event missing: {}",
            e.record
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_with_more_than_1000_admin_events_is_passed_with_a_warning() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - DAY_MS, now - 60_000);
    cfg.counts.administrator = 4_000;
    cfg.admin_second_over_1000 = true;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "logs = [\"administrator\"]");
    let rt = runtime(&setup);
    let reports = collect_with(&rt).await;
    assert_eq!(
        reports[0].streams[0].outcome,
        RunOutcome::Ok,
        "{:?}",
        reports[0].streams[0].error
    );
    let got = &delivered(&setup)[&(None, "administrator".to_string())];
    let expected = handle.expected_events(None, "administrator", now_ms(), now);
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for e in &expected {
        *per_second.entry(e.ts_ms / 1000).or_default() += 1;
    }
    let (big_second, big) = per_second
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, n)| (*s, *n))
        .unwrap();
    assert!(big > 1000);
    let from_big = got
        .iter()
        .filter(|(r, _)| r["timestamp"].as_i64() == Some(big_second))
        .count();
    assert_eq!(
        from_big, 1000,
        "the API yields the first 1000 of that second"
    );
    let others: HashSet<String> = expected
        .iter()
        .filter(|e| e.ts_ms / 1000 != big_second)
        .map(|e| e.record.to_string())
        .collect();
    let got_others: Vec<String> = got
        .iter()
        .filter(|(r, _)| r["timestamp"].as_i64() != Some(big_second))
        .map(|(r, _)| r.to_string())
        .collect();
    assert_eq!(got_others.len(), others.len());
    assert_eq!(got_others.into_iter().collect::<HashSet<_>>(), others);
    sim.shutdown().await;
}

fn child(n: u8, counts: KindCounts) -> ChildAccount {
    ChildAccount {
        account_id: format!("DA{n:018}"),
        name: format!("Child Ünïcode {n}"),
        api_hostname: format!("api-child{n:03}.duosecurity.com"),
        counts,
        seed: 100 + u64::from(n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msp_children_are_collected_separately_and_new_children_are_picked_up() {
    let now = now_ms();
    let counts = KindCounts {
        authentication: 1_500,
        administrator: 1_200,
        ..KindCounts::default()
    };
    let mut cfg = sim_config(0, now - DAY_MS, now - 60_000);
    cfg.ikey = "DIADM1NKEYADM1NKEY00".into(); // the parent's own Admin API keys are not ours
    cfg.accounts = Some(AccountsConfig {
        ikey: IKEY.into(),
        skey: SKEY.into(),
        children: vec![child(1, counts), child(2, counts), child(3, counts)],
    });
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    // The data spans a day; a child added later must still reach its first event.
    let setup = Setup::new(&sim.base_url(), "accounts_api = true\naccount_refresh = \"0s\"\ninitial_lookback = \"2d\"\nlogs = [\"authentication\", \"administrator\"]");
    let rt = runtime(&setup);
    let reports = collect_with(&rt).await;
    assert!(!reports[0].failed(), "{:?}", reports[0]);
    assert_eq!(reports[0].streams.len(), 6);

    let check_children = |ids: &[u8]| {
        let got = delivered(&setup);
        for n in ids {
            let c = child(*n, counts);
            for kind in ["authentication", "administrator"] {
                let stream = &got[&(Some(c.account_id.clone()), kind.to_string())];
                assert_stream_exact(stream, &handle, Some(&c.account_id), kind, now);
            }
        }
        assert_eq!(got.len(), ids.len() * 2, "no stream without an account");
    };
    check_children(&[1, 2, 3]);
    let lines = read_events(&setup.events);
    let names: HashSet<&str> = lines
        .iter()
        .map(|e| e["_duo_collector"]["account_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Child Ünïcode 1", "Child Ünïcode 2", "Child Ünïcode 3"]
            .into_iter()
            .collect()
    );
    // Each child's requests carried its account id and were signed for the child's own host.
    for r in handle.requests().iter().filter(|r| r.kind.is_some()) {
        let id = r
            .account_id
            .as_deref()
            .expect("account_id on every child request");
        let n: u8 = id[2..].parse().unwrap();
        assert_eq!(
            r.signed_host.as_deref(),
            Some(child(n, counts).api_hostname.as_str())
        );
    }
    let list = handle
        .requests()
        .into_iter()
        .find(|r| r.path == "/accounts/v1/account/list")
        .unwrap();
    assert_eq!(
        list.signed_host.as_deref(),
        Some(HOST),
        "the account list is signed for the parent host"
    );

    handle.add_child_account(child(4, counts));
    let reports = collect_with(&rt).await;
    assert!(!reports[0].failed(), "{:?}", reports[0]);
    check_children(&[1, 2, 3, 4]);

    // `accounts` restricts the children.
    let only = Setup::new(
        &sim.base_url(),
        &format!(
            "accounts_api = true\naccounts = [\"{}\"]\nlogs = [\"authentication\"]",
            child(2, counts).account_id
        ),
    );
    let reports = collect_with(&runtime(&only)).await;
    assert_eq!(reports[0].streams.len(), 1);
    assert_eq!(
        reports[0].streams[0].stream.account_id.as_deref(),
        Some(child(2, counts).account_id.as_str())
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_or_failing_kind_does_not_stop_the_others() {
    let now = now_ms();
    let mut cfg = sim_config(0, now - DAY_MS, now - 60_000);
    cfg.counts = KindCounts::uniform(400);
    cfg.forbidden_kinds = vec!["trust_monitor".into()];
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    // As many 503s as the client tries: the stream fails this run.
    handle.inject_faults(
        (0..RuntimeOptions::default().retry.transient_attempts)
            .map(|_| FaultRule {
                path_contains: Some("/admin/v2/logs/telephony".into()),
                fault: Fault::Status(503),
            })
            .collect::<Vec<_>>(),
    );
    let setup = Setup::new(&sim.base_url(), ALL_LOGS);
    let config = Config::load(&setup.config).unwrap();
    let mut options = RuntimeOptions::default();
    options.retry.transient_initial = Duration::from_millis(10);
    options.retry.jitter = Duration::ZERO;
    let rt = Runtime::build(&config, &options).unwrap();
    let reports = collect_with(&rt).await;
    assert_eq!(handle.pending_faults(), 0);
    let by_kind: HashMap<String, &duo_collector::collector::StreamReport> = reports[0]
        .streams
        .iter()
        .map(|s| (s.stream.log.to_string(), s))
        .collect();
    assert_eq!(by_kind["trust_monitor"].outcome, RunOutcome::Failed);
    assert!(by_kind["trust_monitor"]
        .error
        .as_ref()
        .unwrap()
        .contains("40301"));
    assert_eq!(by_kind["telephony"].outcome, RunOutcome::Failed);
    assert!(by_kind["telephony"].error.as_ref().unwrap().contains("503"));
    for kind in [
        "authentication",
        "administrator",
        "activity",
        "offline_enrollment",
    ] {
        assert_eq!(
            by_kind[kind].outcome,
            RunOutcome::Ok,
            "{kind}: {:?}",
            by_kind[kind].error
        );
        assert!(by_kind[kind].events > 0);
    }
    // `status` names the failing kinds and why.
    let out = run_cli(&[
        "status",
        "--config",
        setup.config.to_str().unwrap(),
        "--json",
    ])
    .await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tm = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["log"] == "trust_monitor")
        .unwrap();
    assert_eq!(tm["last_run_outcome"], "failed");
    assert!(
        tm["last_error"]
            .as_str()
            .unwrap()
            .contains("Grant read log"),
        "{tm}"
    );

    // Without an explicit `logs`, a kind the keys may not read is skipped, not a failure.
    let setup2 = Setup::new(&sim.base_url(), "");
    let text = std::fs::read_to_string(&setup2.config)
        .unwrap()
        .replace("logs = [\"authentication\"]\n", "");
    std::fs::write(&setup2.config, text).unwrap();
    let rt2 = Runtime::build(&Config::load(&setup2.config).unwrap(), &options).unwrap();
    let reports = collect_with(&rt2).await;
    let tm = reports[0]
        .streams
        .iter()
        .find(|s| s.stream.log.as_str() == "trust_monitor")
        .unwrap();
    assert_eq!(tm.outcome, RunOutcome::NotPermitted);
    assert!(!reports[0].failed(), "{:?}", reports[0]);
    sim.shutdown().await;
}
