//! The state-store contract, one suite run against both backends: SQLite (a real file) and
//! NATS JetStream key-value buckets (a real `nats-server -js` per test). Each contract is an
//! async fn over a [`Backend`] that can open the store again, after restarting the server
//! behind it (reopen = persistence);
//! `contract!` makes one test per backend of it (`state_contract::sqlite::<name>`,
//! `state_contract::nats::<name>`).

mod support;

pub use support::nats_settings;

use support::*;

use duo_collector::event::StreamId;
use duo_collector::log_kind::LogKind;
use duo_collector::state::{ClockStatus, Revision, RunOutcome, SinkStatus, StateError};

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Sqlite::new().await).await
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Nats::new().await).await
                }
            )*
        }
    };
}

contract!(
    checkpoints_of_every_paging_family_load_commit_and_advance,
    a_stale_revision_is_refused_and_the_checkpoint_never_goes_back,
    of_racing_commits_from_one_revision_exactly_one_lands,
    learned_rates_and_rate_limits_follow_the_ceiling,
    clock_offsets_round_trip,
    sink_status_keeps_failing_since_until_a_success,
    file_marks_move_with_the_commit_and_alone,
    run_history_is_bounded_and_abandoned_runs_are_closed,
    everything_survives_a_reopen,
    names_that_keys_do_not_allow_read_back,
);

// After `contract!`, which it uses.
mod inventory;

async fn checkpoints_of_every_paging_family_load_commit_and_advance(b: &dyn Backend) {
    let store = b.open().await;
    for (stream, first, second) in the_streams() {
        let loaded = store.load_checkpoint(&stream).await.unwrap();
        assert_eq!(
            loaded.value, None,
            "{stream}: nothing before the first commit"
        );
        let run = store.begin_run(&stream, 10).await.unwrap();
        let r1 = store
            .commit_page(commit(&stream, run, &first, 7, loaded.revision), || {})
            .await
            .unwrap();
        assert_ne!(r1, loaded.revision);
        let read = store.load_checkpoint(&stream).await.unwrap();
        assert_eq!(
            (read.value.as_ref(), read.revision),
            (Some(&first), r1),
            "{stream}"
        );
        // The revision a commit returned is the one to commit the next page with.
        let r2 = store
            .commit_page(commit(&stream, run, &second, 3, r1), || {})
            .await
            .unwrap();
        let read = store.load_checkpoint(&stream).await.unwrap();
        assert_eq!((read.value, read.revision), (Some(second), r2), "{stream}");
        store
            .write(ended(&stream, run, RunOutcome::Ok, None, 20))
            .await
            .unwrap();
    }
    let status = store.status().await.unwrap();
    let rows: Vec<(String, Option<String>, i64, i64, i64)> = status
        .iter()
        .map(|s| {
            let run = s.last_run.as_ref().unwrap();
            (
                s.log.clone(),
                s.account_id.clone(),
                s.events_total,
                run.pages,
                run.events,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("administrator".to_string(), None, 10, 2, 10),
            ("authentication".to_string(), None, 10, 2, 10),
            ("telephony".to_string(), None, 10, 2, 10),
            (
                "trust_monitor".to_string(),
                Some("DA1".to_string()),
                10,
                2,
                10
            ),
        ]
    );
    assert_eq!(
        status[0].last_run.as_ref().unwrap().outcome,
        Some(RunOutcome::Ok)
    );
}

async fn a_stale_revision_is_refused_and_the_checkpoint_never_goes_back(b: &dyn Backend) {
    let store = b.open().await;
    let stream = StreamId::new("corp", None, LogKind::Authentication);
    let run = store.begin_run(&stream, 1).await.unwrap();
    let start = store.load_checkpoint(&stream).await.unwrap().revision;
    let first = windowed(1_000, None);
    let r1 = store
        .commit_page(commit(&stream, run, &first, 1, start), || {})
        .await
        .unwrap();

    // Two holders read the same revision; the new holder moves the stream on.
    let ahead = windowed(9_000, None);
    let r2 = store
        .commit_page(commit(&stream, run, &ahead, 1, r1), || {})
        .await
        .unwrap();

    // The former holder, paused at r1, tries to commit an older position.
    let behind = windowed(2_000, None);
    let then_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = then_ran.clone();
    let refused = store
        .commit_page(commit(&stream, run, &behind, 5, r1), move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await;
    assert!(
        matches!(refused, Err(StateError::Fenced { .. })),
        "{refused:?}"
    );
    assert!(
        !then_ran.load(std::sync::atomic::Ordering::SeqCst),
        "nothing runs after a refused commit"
    );
    // A first commit is refused too once the stream has a checkpoint.
    let refused = store
        .commit_page(commit(&stream, run, &behind, 5, start), || {})
        .await;
    assert!(
        matches!(refused, Err(StateError::Fenced { .. })),
        "{refused:?}"
    );

    let now = store.load_checkpoint(&stream).await.unwrap();
    assert_eq!(
        (now.value, now.revision),
        (Some(ahead), r2),
        "never moved backwards"
    );
    let runs = store.runs(&stream).await.unwrap();
    assert_eq!(
        (runs[0].pages, runs[0].events),
        (2, 2),
        "a refused page is not counted"
    );
    assert_eq!(store.status().await.unwrap()[0].events_total, 2);
}

async fn of_racing_commits_from_one_revision_exactly_one_lands(b: &dyn Backend) {
    let store = b.open().await;
    let stream = StreamId::new("corp", None, LogKind::Authentication);
    let run = store.begin_run(&stream, 1).await.unwrap();
    let base = commit_next(&store, &stream, run, &windowed(1_000, None), 1).await;
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let page = commit(&stream, run, &windowed(2_000 + i, None), 1, base);
        tokio::spawn(async move { (i, store.commit_page(page, || {}).await) })
    });
    let results = futures::future::join_all(racers).await;
    let landed: Vec<i64> = results
        .iter()
        .filter_map(|r| match r.as_ref().unwrap() {
            (i, Ok(_)) => Some(*i),
            (_, Err(StateError::Fenced { .. })) => None,
            (_, Err(e)) => panic!("{e}"),
        })
        .collect();
    assert_eq!(landed.len(), 1, "{results:?}");
    let now = store.load_checkpoint(&stream).await.unwrap().value;
    assert_eq!(
        now,
        Some(windowed(2_000 + landed[0], None)),
        "the one that landed"
    );
    assert_eq!(store.runs(&stream).await.unwrap()[0].pages, 2);
}

async fn learned_rates_and_rate_limits_follow_the_ceiling(b: &dyn Backend) {
    let store = b.open().await;
    store
        .write(rate("corp", &pace("", "/a"), 3.0, 6.0, 1))
        .await
        .unwrap();
    store
        .write(rate("corp", &pace("DA1", "/b"), 6.0, 6.0, 1))
        .await
        .unwrap();
    store
        .write(rate("other", &pace("", "/a"), 1.0, 6.0, 1))
        .await
        .unwrap();
    store
        .write(limited("corp", &pace("", "/a"), Some(99)))
        .await
        .unwrap();
    // A key without a learned rate is left alone.
    store
        .write(limited("corp", &pace("", "/none"), Some(5)))
        .await
        .unwrap();
    let same = store.learned_rates("corp", 6.0).await.unwrap();
    assert_eq!(same.len(), 2);
    assert_eq!(same.get(&pace("", "/a")), Some(&3.0));
    assert_eq!(same.get(&pace("DA1", "/b")), Some(&6.0));
    let raised = store.learned_rates("corp", 12.0).await.unwrap();
    assert_eq!(
        raised.get(&pace("", "/a")),
        Some(&3.0),
        "Duo pushed back: kept"
    );
    assert_eq!(
        raised.get(&pace("DA1", "/b")),
        None,
        "sat at the old ceiling"
    );
    // A new rate keeps the rate limit; clearing it clears it.
    store
        .write(rate("corp", &pace("", "/a"), 2.0, 6.0, 2))
        .await
        .unwrap();
    let status = store.pacing_status().await.unwrap();
    let rows: Vec<_> = status
        .iter()
        .map(|p| {
            (
                p.integration.as_str(),
                p.account_id.as_deref(),
                p.endpoint.as_str(),
                p.rate_per_minute,
                p.rate_limited_until_ms,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("corp", None, "/a", 2.0, Some(99)),
            ("corp", Some("DA1"), "/b", 6.0, None),
            ("other", None, "/a", 1.0, None),
        ]
    );
    store
        .write(limited("corp", &pace("", "/a"), None))
        .await
        .unwrap();
    assert_eq!(
        store.pacing_status().await.unwrap()[0].rate_limited_until_ms,
        None
    );
}

async fn clock_offsets_round_trip(b: &dyn Backend) {
    let store = b.open().await;
    assert_eq!(store.clock_offset("corp").await.unwrap(), None);
    store.write(clock("corp", -45_000, 7)).await.unwrap();
    store.write(clock("corp", -44_000, 8)).await.unwrap();
    store.write(clock("acme", 10, 9)).await.unwrap();
    let corp = ClockStatus {
        integration: "corp".into(),
        offset_ms: -44_000,
        measured_ms: 8,
    };
    assert_eq!(
        store.clock_offset("corp").await.unwrap(),
        Some(corp.clone())
    );
    let all = store.clock_offsets().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|c| c.integration.as_str())
            .collect::<Vec<_>>(),
        ["acme", "corp"]
    );
    assert_eq!(all[1], corp);
}

async fn sink_status_keeps_failing_since_until_a_success(b: &dyn Backend) {
    let store = b.open().await;
    assert!(store.sink_status().await.unwrap().is_empty());
    store.write(sink_ok("siem", 10)).await.unwrap();
    store
        .write(sink_failed("siem", 20, "refused"))
        .await
        .unwrap();
    store
        .write(sink_failed("siem", 30, "timed out"))
        .await
        .unwrap();
    store.write(sink_failed("bus", 31, "down")).await.unwrap();
    let all = store.sink_status().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.sink.as_str()).collect::<Vec<_>>(),
        ["bus", "siem"]
    );
    let failing = SinkStatus {
        sink: "siem".into(),
        last_success_ms: Some(10),
        failing_since_ms: Some(20),
        last_error: Some("timed out".into()),
        last_error_ms: Some(30),
        failed_attempts: 2,
    };
    assert_eq!(all[1], failing);
    store.write(sink_ok("siem", 40)).await.unwrap();
    let recovered = SinkStatus {
        last_success_ms: Some(40),
        failing_since_ms: None,
        failed_attempts: 0,
        // The last error stays visible.
        ..failing
    };
    assert_eq!(store.sink_status().await.unwrap()[1], recovered);
}

async fn file_marks_move_with_the_commit_and_alone(b: &dyn Backend) {
    let store = b.open().await;
    assert_eq!(store.file_mark("local").await.unwrap(), None);
    store
        .write(file_mark_at(&mark("local", 0), 1))
        .await
        .unwrap();
    store
        .write(file_mark_at(&mark("audit", 9), 1))
        .await
        .unwrap();
    assert_eq!(
        store.file_mark("local").await.unwrap(),
        Some(mark("local", 0))
    );
    let stream = StreamId::new("corp", None, LogKind::Authentication);
    let run = store.begin_run(&stream, 1).await.unwrap();
    let mut page = commit(&stream, run, &windowed(1_000, None), 3, Revision::NONE);
    page.files = vec![mark("local", 120)];
    store.commit_page(page, || {}).await.unwrap();
    assert_eq!(
        store.file_mark("local").await.unwrap(),
        Some(mark("local", 120))
    );
    assert_eq!(
        store.file_mark("audit").await.unwrap(),
        Some(mark("audit", 9)),
        "per sink"
    );
}

/// The history each backend keeps per stream (`RUNS_KEPT_PER_STREAM`).
const RUNS_KEPT: usize = 50;

async fn run_history_is_bounded_and_abandoned_runs_are_closed(b: &dyn Backend) {
    let store = b.open().await;
    let stream = StreamId::new("corp", None, LogKind::Authentication);
    let other = StreamId::new("corp", None, LogKind::Telephony);
    let running = store.begin_run(&stream, 1).await.unwrap();
    store.begin_run(&other, 1).await.unwrap();
    assert_eq!(store.close_abandoned_runs(5).await.unwrap(), 2);
    let last = store.runs(&stream).await.unwrap()[0].clone();
    assert_eq!(
        (last.outcome, last.ended_ms),
        (Some(RunOutcome::Interrupted), Some(5))
    );
    assert!(last.error.is_some());
    assert_eq!(
        store.close_abandoned_runs(6).await.unwrap(),
        0,
        "closed once"
    );

    let mut ids = vec![running];
    for i in 0..(RUNS_KEPT as i64 + 10) {
        let id = store.begin_run(&stream, 100 + i).await.unwrap();
        store
            .write(ended(&stream, id, RunOutcome::Failed, Some("x"), 100 + i))
            .await
            .unwrap();
        ids.push(id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "run ids are unique per stream");
    let runs = store.runs(&stream).await.unwrap();
    assert_eq!(runs.len(), RUNS_KEPT, "bounded");
    assert_eq!(
        runs[0].started_ms,
        100 + RUNS_KEPT as i64 + 9,
        "newest first"
    );
    assert_eq!(store.runs(&other).await.unwrap().len(), 1, "per stream");
}

async fn everything_survives_a_reopen(b: &dyn Backend) {
    let stream = StreamId::new("corp", None, LogKind::Administrator);
    let cp = v1(5_000, &["f1", "f2"]);
    {
        let store = b.open().await;
        let run = store.begin_run(&stream, 1).await.unwrap();
        commit_next(&store, &stream, run, &cp, 2).await;
        store
            .write(ended(&stream, run, RunOutcome::Ok, None, 3))
            .await
            .unwrap();
        store
            .write(rate("corp", &pace("", "/a"), 3.0, 6.0, 1))
            .await
            .unwrap();
        store.write(clock("corp", -5, 2)).await.unwrap();
        store.write(sink_failed("siem", 2, "down")).await.unwrap();
        store
            .write(file_mark_at(&mark("local", 42), 2))
            .await
            .unwrap();
    }
    // The server too: JetStream's store on disk, not only the client, holds the state.
    b.restart().await;
    let store = b.open().await;
    let loaded = store.load_checkpoint(&stream).await.unwrap();
    assert_eq!(loaded.value, Some(cp));
    // The revision read after a reopen is the one to go on with.
    let run = store.begin_run(&stream, 4).await.unwrap();
    let next = v1(6_000, &[]);
    store
        .commit_page(commit(&stream, run, &next, 1, loaded.revision), || {})
        .await
        .unwrap();
    assert_eq!(
        store.load_checkpoint(&stream).await.unwrap().value,
        Some(next)
    );
    assert_eq!(store.status().await.unwrap()[0].events_total, 3);
    assert_eq!(store.runs(&stream).await.unwrap().len(), 2);
    assert_eq!(store.learned_rates("corp", 6.0).await.unwrap().len(), 1);
    assert_eq!(
        store
            .clock_offset("corp")
            .await
            .unwrap()
            .map(|c| c.offset_ms),
        Some(-5)
    );
    assert_eq!(store.sink_status().await.unwrap()[0].failed_attempts, 1);
    assert_eq!(
        store.file_mark("local").await.unwrap(),
        Some(mark("local", 42))
    );
}

async fn names_that_keys_do_not_allow_read_back(b: &dyn Backend) {
    let store = b.open().await;
    let odd = StreamId::new("msp east/1.x", Some("DA 1.*>".into()), LogKind::Activity);
    let plain = StreamId::new("msp east", None, LogKind::Activity);
    for stream in [&odd, &plain] {
        let run = store.begin_run(stream, 1).await.unwrap();
        commit_next(&store, stream, run, &windowed(1_000, None), 1).await;
    }
    let streams: Vec<(String, Option<String>)> = store
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.integration, s.account_id))
        .collect();
    assert_eq!(
        streams,
        [
            ("msp east".to_string(), None),
            ("msp east/1.x".to_string(), Some("DA 1.*>".to_string())),
        ]
    );
    store.write(sink_ok("siem.main", 1)).await.unwrap();
    store
        .write(rate(
            "msp east/1.x",
            &pace("DA 1.*>", "/admin/v2/logs/activity"),
            1.0,
            6.0,
            1,
        ))
        .await
        .unwrap();
    assert_eq!(store.sink_status().await.unwrap()[0].sink, "siem.main");
    let rates = store.learned_rates("msp east/1.x", 6.0).await.unwrap();
    assert_eq!(
        rates.get(&pace("DA 1.*>", "/admin/v2/logs/activity")),
        Some(&1.0)
    );
}
