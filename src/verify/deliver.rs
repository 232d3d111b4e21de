//! The outcome event to the integration's sinks, acknowledged before the command exits.
//!
//! `verify-user` usually runs while the service collects into the same sinks. When no
//! collector holds the state directory's lock, it takes the lock and opens the sinks as the
//! service does (a file sink is first cut back to its committed length); when one does, it
//! opens them beside it ([`Sink::open_beside`]: nothing is cut). Either way a file sink's new
//! length is recorded in the state store (`[state]`: `state.db` or NATS) afterwards, so that
//! the service's next start does not take the event for a page it never committed and cut it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::collector::SinkStatusRecorder;
use crate::config::Integration;
use crate::event::{Batch, Event, StreamId};
use crate::log_kind::LogKind;
use crate::observe::Observer;
use crate::settings::Config;
use crate::sink::{deliver_all, Sink, SinkError, SinkReporting, SinkRetry};
use crate::state::{try_lock_state_dir, FileMarks, StateError, StateStore, Write};

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot use state_dir {dir}: {source}; verify-user records what it writes into file sinks there, so run it as the service's user (e.g. sudo -u duo-collector) or give this user write access")]
    StateDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot open sinks:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Open(Vec<SinkError>),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Delivers `event` to every sink of `integration`; returns the sinks' names once each
/// acknowledged it.
pub async fn deliver_outcome(
    config: &Config,
    integration: &Integration,
    event: Event,
    cancel: &CancellationToken,
) -> Result<Vec<String>, DeliverError> {
    let dir = &config.collector.state_dir;
    let lock = try_lock_state_dir(dir).map_err(|source| DeliverError::StateDir {
        dir: dir.display().to_string(),
        source,
    })?;
    let beside = lock.is_none();
    // The store the service uses (`[state]`), so that the service sees the recorded length.
    let store = StateStore::open(&config.state, &config.state_db_path()).await?;
    let reporting = SinkReporting {
        state: FileMarks::of(&store),
        events: Arc::new(SinkStatusRecorder::new(
            store.clone(),
            Arc::new(Observer::default()),
        )),
    };
    let mut sinks = Vec::new();
    let mut errors = Vec::new();
    for settings in integration.sinks.iter().filter_map(|n| config.sink(n)) {
        let opened = if beside {
            Sink::open_beside(settings, reporting.clone())
        } else {
            Sink::open(settings, reporting.clone())
        };
        match opened {
            Ok(sink) => sinks.push(Arc::new(sink)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(DeliverError::Open(errors));
    }
    // The event travels as the integration's authentication stream does: it is an
    // authentication, and NATS subjects, syslog MSGIDs and HEC sourcetypes follow the stream.
    let stream = StreamId::new(&integration.name, None, LogKind::Authentication);
    let collected_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let events = [event];
    let batch = Batch::of_events(&stream, &collected_at, &events);
    let receipt = deliver_all(&sinks, &batch, &SinkRetry::default(), cancel).await?;
    for mark in receipt.files() {
        let now_ms = crate::clock::now_ms();
        store.write(Write::FileMark { mark, now_ms }).await?;
    }
    receipt.committed();
    tracing::debug!(
        beside,
        sinks = sinks.len(),
        "verify-user: outcome delivered"
    );
    drop(lock);
    Ok(sinks.iter().map(|s| s.name.clone()).collect())
}
