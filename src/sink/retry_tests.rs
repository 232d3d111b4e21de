//! The retry policy on paused tokio time: a transient failure waits the backoff (doubling up to
//! its cap) and is tried again; out of attempts the page is given up; every attempt is reported.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::test_support::RecordedDeliveries;
use super::*;
use crate::event::{Batch, Event, StreamId};
use crate::log_kind::LogKind;
use crate::normalize::Format;
use crate::state::State;

/// A file sink on `/dev/full`: every write fails with ENOSPC, a transient error.
fn full_disk_sink(state: &State, events: Arc<RecordedDeliveries>) -> Sink {
    let settings = SinkSettings {
        name: "full".into(),
        format: Format::Raw,
        exclude_fields: Vec::new(),
        kind: SinkKind::File {
            path: "/dev/full".into(),
            mode: None,
        },
    };
    let reporting = SinkReporting {
        state: state.clone().into(),
        events,
    };
    Sink::open(&settings, reporting).unwrap()
}

/// Delivers a page of one event to `sink`.
async fn deliver_one(
    sink: &Sink,
    retry: &SinkRetry,
    cancel: &CancellationToken,
) -> Result<(), SinkError> {
    let stream = StreamId::new("corp", None, LogKind::Authentication);
    let page = [Event {
        raw: "{\"txid\":\"a\"}".into(),
        event_id: "a".into(),
        ts_ms: 1,
    }];
    let batch = Batch::of_events(&stream, "2026-12-01T00:00:00Z", &page);
    sink.deliver(&batch, retry, cancel).await
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_backs_off_doubling_to_its_cap_then_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state.db")).unwrap();
    let events = Arc::new(RecordedDeliveries::default());
    let sink = full_disk_sink(&state, events.clone());
    let retry = SinkRetry {
        attempts: Some(5),
        initial: Duration::from_millis(100),
        max: Duration::from_millis(300),
        jitter: false,
    };
    let started = tokio::time::Instant::now();
    let result = deliver_one(&sink, &retry, &CancellationToken::new()).await;
    assert!(
        matches!(result, Err(SinkError::GaveUp { attempts: 5, .. })),
        "{result:?}"
    );
    assert_eq!(
        events.reports(),
        [
            "full failed, retry in 100ms",
            "full failed, retry in 200ms",
            "full failed, retry in 300ms",
            "full failed, retry in 300ms",
            "full failed, given up",
        ]
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(900),
        "the waits, no more"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_wait_for_a_failing_sink_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state.db")).unwrap();
    let sink = full_disk_sink(&state, Arc::default());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        stop.cancel();
    });
    let started = tokio::time::Instant::now();
    let result = deliver_one(&sink, &SinkRetry::until_delivered(), &cancel).await;
    assert!(matches!(result, Err(SinkError::Cancelled)), "{result:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(30) && started.elapsed() < Duration::from_secs(90),
        "retried until shutdown, not beyond its next wait: {:?}",
        started.elapsed()
    );
}
