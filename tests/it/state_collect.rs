//! The collector on the NATS state store (`[state] backend = "nats"`), in a real
//! `nats-server -js`, against the strict simulator: `collect-now` drains into a file sink with
//! every event exactly once and a second run resumes from the checkpoints in NATS; `status`
//! reads them there. And fencing end to end: a checkpoint moved by another store handle
//! between two pages of a stream stops that stream (nothing more committed, the checkpoint not
//! moved back) while the other streams complete. And leases: a stream another instance holds
//! is left to it; a lease lost mid-drain stops its stream before the next commit.

use std::time::Duration;

use crate::common::*;
use crate::sink_support::{free_port, NatsServer};
use duo_collector::daemon::{self, Runtime, RuntimeOptions};
use duo_collector::event::StreamId;
use duo_collector::log_kind::LogKind;
use duo_collector::simulator::{Fault, FaultRule, KindCounts, Simulator};
use duo_collector::state::{NatsStore, PageCommit, RunOutcome, StateStore, StoreSettings};

const DAY_MS: i64 = 86_400_000;

/// A nats-server and a collector config whose state is in it.
struct NatsState {
    _dir: tempfile::TempDir,
    server: NatsServer,
}

impl NatsState {
    async fn start() -> NatsState {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(dir.path(), free_port()).await;
        NatsState { _dir: dir, server }
    }

    /// Appends `[state]` on this server (and `extra` keys) to `setup`'s config.
    fn use_in(&self, setup: &Setup, extra: &str) {
        let mut text = std::fs::read_to_string(&setup.config).unwrap();
        text.push_str(&format!(
            "\n[state]\nbackend = \"nats\"\nurl = \"{}\"\nbucket_prefix = \"wired\"\n{extra}\n",
            self.server.url()
        ));
        std::fs::write(&setup.config, text).unwrap();
    }
}

/// The strict simulator with a backlog of two streams (authentication over several pages,
/// administrator), and a collector config for both whose state is in `nats`.
async fn two_streams(nats: &NatsState) -> (Simulator, Setup) {
    two_streams_with(nats, "").await
}

async fn two_streams_with(nats: &NatsState, state_extra: &str) -> (Simulator, Setup) {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 2 * DAY_MS, now - 60_000);
    cfg.counts = KindCounts {
        authentication: 2_500,
        administrator: 300,
        ..KindCounts::default()
    };
    let sim = start_sim(cfg).await;
    let setup = Setup::new(
        &sim.base_url(),
        "initial_lookback = \"3d\"\npage_size = 500\nlogs = [\"authentication\", \"administrator\"]",
    );
    nats.use_in(&setup, state_extra);
    (sim, setup)
}

/// Another collector instance on the same buckets.
async fn another_instance(config: &duo_collector::settings::Config) -> NatsStore {
    let StoreSettings::Nats(settings) = &config.state else {
        panic!("the NATS store")
    };
    NatsStore::open(settings).await.unwrap()
}

/// The first authentication request passes (a zero delay), the second is held for `hold`:
/// the seam where another writer acts between two pages of the stream. It has arrived when
/// `pending_faults()` is 0.
fn hold_second_auth_page(handle: &duo_collector::simulator::SimHandle, hold: Duration) {
    let rule = |delay| FaultRule {
        path_contains: Some("/admin/v2/logs/authentication".into()),
        fault: Fault::Delay(delay),
    };
    handle.inject_fault_rules(vec![rule(Duration::ZERO), rule(hold)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_now_on_the_nats_store_delivers_once_resumes_from_nats_and_status_reads_it() {
    let nats = NatsState::start().await;
    let (sim, setup) = two_streams(&nats).await;
    let handle = sim.handle();
    let config = setup.config.to_str().unwrap();

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("not used yet"),
        "the NATS store is used: {}",
        text(&out)
    );
    assert!(
        !setup.state_db().exists(),
        "no state.db: the state is in NATS"
    );
    let kinds = ["authentication", "administrator"];
    let first = tally(&handle, &read_events(&setup.events), &kinds, now_ms());
    assert!(first.exactly_once(), "{first}");
    let log_requests_before = handle
        .requests()
        .iter()
        .filter(|r| r.kind.is_some())
        .count();

    // Past the one-second resolution of Duo's clock, so the next window can open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = run_cli(&["collect-now", "--config", config]).await;
    assert!(again.status.success(), "{}", text(&again));
    let second = tally(&handle, &read_events(&setup.events), &kinds, now_ms());
    assert_eq!(second, first, "the second run collected nothing again");
    let requests = handle.requests();
    let resumed: Vec<_> = requests[..]
        .iter()
        .filter(|r| r.kind.is_some())
        .skip(log_requests_before)
        .collect();
    assert!(
        resumed.len() <= 4,
        "resumed from the NATS checkpoints, not from initial_lookback: {} requests",
        resumed.len()
    );

    let status = run_cli(&["status", "--json", "--config", config]).await;
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let streams = json["streams"].as_array().expect("streams");
    let total = |log: &str| {
        streams
            .iter()
            .find(|s| s["log"] == log)
            .unwrap_or_else(|| panic!("no {log} row: {json}"))["events_total"]
            .as_i64()
    };
    assert_eq!(total("authentication"), Some(2_500), "{json}");
    assert_eq!(total("administrator"), Some(300), "{json}");
    let sinks = json["sinks"].to_string();
    assert!(sinks.contains("local"), "{sinks}");
    sim.shutdown().await;
}

/// Between the first and the second page of the authentication stream (the simulator holds
/// the second request, a fault, while another handle on the same buckets commits a newer
/// revision), the stream's checkpoint moves behind the collector's back: its next commit is
/// fenced, the stream stops with the error naming it, the checkpoint stays the other writer's,
/// and the administrator stream completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_moved_mid_drain_fences_that_stream_and_the_others_complete() {
    let nats = NatsState::start().await;
    let (sim, setup) = two_streams(&nats).await;
    let handle = sim.handle();
    // Held for long enough that the other writer's commit lands first: milliseconds against 5 s.
    hold_second_auth_page(&handle, Duration::from_secs(5));
    let config = duo_collector::settings::Config::load(&setup.config).unwrap();
    let other = StateStore::open(&config.state, &setup.state_db())
        .await
        .unwrap();
    assert!(matches!(config.state, StoreSettings::Nats(_)));

    let runtime = Runtime::open(&config, &RuntimeOptions::default())
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let collection = daemon::collect_once(&runtime, None, &cancel);
    let auth = StreamId::new("corp", None, LogKind::Authentication);
    let intruder = async {
        // The second request took its fault: page 1 is committed, page 2 is on hold.
        wait_until("the second authentication request", || {
            handle.pending_faults() == 0
        })
        .await;
        let seen = other.load_checkpoint(&auth).await.unwrap();
        let moved = seen.value.clone().expect("page 1 committed");
        let run = other.begin_run(&auth, now_ms()).await.unwrap();
        let revision = other
            .commit_page(
                PageCommit {
                    stream: auth.clone(),
                    run_id: run,
                    checkpoint: moved.clone(),
                    events: 0,
                    now_ms: now_ms(),
                    files: Vec::new(),
                    revision: seen.revision,
                },
                || {},
            )
            .await
            .unwrap();
        (moved, revision)
    };
    let (reports, (moved, moved_revision)) = tokio::join!(collection, intruder);

    let report = &reports[0];
    let by_log = |log: LogKind| {
        report
            .streams
            .iter()
            .find(|s| s.stream.log == log)
            .unwrap_or_else(|| panic!("no {log} report: {report:?}"))
    };
    let fenced = by_log(LogKind::Authentication);
    assert_eq!(fenced.outcome, RunOutcome::Failed, "{fenced:?}");
    let error = fenced.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("another instance moved this stream's checkpoint")
            && error.contains("corp/authentication"),
        "{error}"
    );
    assert_eq!(
        fenced.pages, 1,
        "nothing committed after the fence: {fenced:?}"
    );
    let admin = by_log(LogKind::Administrator);
    assert_eq!(admin.outcome, RunOutcome::Ok, "{admin:?}");

    let now = other.load_checkpoint(&auth).await.unwrap();
    assert_eq!(
        (now.value.as_ref(), now.revision),
        (Some(&moved), moved_revision),
        "the other writer's checkpoint stands: not moved back, not moved on"
    );
    let delivered = read_events(&setup.events);
    let (admin_events, auth_events): (Vec<_>, Vec<_>) = delivered
        .into_iter()
        .partition(|e| e["_duo_collector"]["log"] == "administrator");
    let admin_tally = tally(&handle, &admin_events, &["administrator"], now_ms());
    assert!(admin_tally.exactly_once(), "{admin_tally}");
    let auth_delivered = auth_events.len();
    assert!(
        auth_delivered <= 1_000,
        "at most the committed page and the fenced one: {auth_delivered}"
    );
    sim.shutdown().await;
}

/// A stream whose lease another instance holds is not drained (not one request for it), the
/// others are; once that lease is released, the next collection drains it, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_another_instance_holds_is_left_to_it_until_its_lease_is_released() {
    let nats = NatsState::start().await;
    let (sim, setup) = two_streams(&nats).await;
    let handle = sim.handle();
    let config = duo_collector::settings::Config::load(&setup.config).unwrap();
    let other = another_instance(&config).await;
    let auth = StreamId::new("corp", None, LogKind::Authentication);
    let held = other
        .take_lease(&auth, now_ms())
        .await
        .unwrap()
        .expect("free");

    let runtime = Runtime::open(&config, &RuntimeOptions::default())
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let reports = daemon::collect_once(&runtime, None, &cancel).await;
    assert!(!reports[0].failed(), "{reports:?}");
    assert_eq!(
        log_requests(&handle, "authentication").count(),
        0,
        "not one request for a stream held elsewhere"
    );
    let delivered = read_events(&setup.events);
    let admin = tally(&handle, &delivered, &["administrator"], now_ms());
    assert!(admin.exactly_once(), "{admin}");

    other.release_lease(&held).await.unwrap();
    let reports = daemon::collect_once(&runtime, None, &cancel).await;
    assert!(!reports[0].failed(), "{reports:?}");
    let both = tally(
        &handle,
        &read_events(&setup.events),
        &["authentication", "administrator"],
        now_ms(),
    );
    assert!(both.exactly_once(), "{both}");
    let holders = other.lease_holders().await.unwrap();
    assert_eq!(
        holders.len(),
        2,
        "the collector holds both leases between runs: {holders:?}"
    );
    runtime.shutdown().await;
    assert!(
        other.lease_holders().await.unwrap().is_empty(),
        "a clean stop gives the leases up"
    );
    sim.shutdown().await;
}

/// The stream's lease taken away mid-drain (deleted behind the holder's back and taken by
/// another instance while the simulator holds the second page's request): the holder's next
/// renewal is refused, the stream stops before that page is committed, with the error saying
/// so; the other stream completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_lease_is_lost_mid_drain_stops_before_its_next_commit() {
    let nats = NatsState::start().await;
    let (sim, setup) = two_streams_with(&nats, "lease_ttl = \"3s\"\ntimeout = \"500ms\"").await;
    let handle = sim.handle();
    hold_second_auth_page(&handle, Duration::from_secs(6));
    let config = duo_collector::settings::Config::load(&setup.config).unwrap();
    let other = another_instance(&config).await;
    let options = RuntimeOptions::default();
    let runtime = Runtime::open(&config, &options).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let auth = StreamId::new("corp", None, LogKind::Authentication);
    let thief = async {
        wait_until("the second authentication request", || {
            handle.pending_faults() == 0
        })
        .await;
        let client = async_nats::connect(nats.server.url()).await.unwrap();
        let leases = async_nats::jetstream::new(client)
            .get_key_value("wired-leases")
            .await
            .unwrap();
        let key = duo_collector::state::nats_keys::stream_key(&auth);
        leases.delete(&key).await.unwrap();
        other
            .take_lease(&auth, now_ms())
            .await
            .unwrap()
            .expect("free now")
    };
    let (reports, _stolen) = tokio::join!(daemon::collect_once(&runtime, None, &cancel), thief);
    let fenced = reports[0]
        .streams
        .iter()
        .find(|s| s.stream.log == LogKind::Authentication)
        .unwrap();
    assert_eq!(fenced.outcome, RunOutcome::Failed, "{fenced:?}");
    assert!(
        fenced
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("lost the lease"),
        "{fenced:?}"
    );
    assert_eq!(fenced.pages, 1, "the page after the loss is not committed");
    let admin = reports[0]
        .streams
        .iter()
        .find(|s| s.stream.log == LogKind::Administrator)
        .unwrap();
    assert_eq!(admin.outcome, RunOutcome::Ok, "{admin:?}");
    // The stream is the other instance's now: no failure of this one keeps it unready.
    assert!(
        options.observer.failing_streams().is_empty(),
        "{:?}",
        options.observer.failing_streams()
    );
    assert!(
        options
            .observer
            .encode()
            .contains("duo_collector_leases_lost_total{instance="),
        "the loss is counted"
    );
    sim.shutdown().await;
}
