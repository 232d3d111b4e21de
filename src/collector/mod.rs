//! Collection: for each stream, page through Duo with the endpoint's own cursor, hand each page
//! to every sink, and move the checkpoint only after all of them acknowledged it.

mod v2;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Integration;
use crate::duo::{DuoClient, DuoError, RetryPolicy};
use crate::event::StreamId;
use crate::logs::{LogKind, Paging};
use crate::sink::{Sink, SinkError, SinkRetry, SinkSet};
use crate::state::{RunOutcome, State, StateError};

/// Duo refuses a `mintime` older than 180 days; stay this far inside the limit.
const RETENTION_MARGIN_MS: i64 = 10 * 60 * 1000;
pub const RETENTION_MS: i64 = 180 * 86_400 * 1000;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Duo(#[from] DuoError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0} is not collected yet by this version")]
    Unsupported(LogKind),
}

/// What one stream's run did.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub stream: StreamId,
    pub pages: u64,
    pub events: u64,
    pub outcome: RunOutcome,
    pub error: Option<String>,
}

/// Counters a drain updates as it commits pages.
#[derive(Debug, Default)]
struct Progress {
    pages: u64,
    events: u64,
}

/// Everything needed to collect one integration.
#[derive(Debug)]
pub struct IntegrationRuntime {
    pub settings: Integration,
    client: DuoClient,
    sinks: Vec<Arc<Sink>>,
    state: State,
    sink_retry: SinkRetry,
}

impl IntegrationRuntime {
    pub fn new(
        settings: Integration,
        sinks: &SinkSet,
        state: State,
        retry: RetryPolicy,
        sink_retry: SinkRetry,
    ) -> Result<Self, DuoError> {
        let client = DuoClient::for_integration(&settings, retry)?;
        let sinks = sinks.select(&settings.sinks);
        Ok(IntegrationRuntime {
            settings,
            client,
            sinks,
            state,
            sink_retry,
        })
    }

    /// Drains every configured log kind up to now − delay. Each stream fails alone.
    pub async fn collect_all(&self, cancel: &CancellationToken) -> Vec<StreamReport> {
        let mut reports = Vec::new();
        for kind in &self.settings.logs {
            if cancel.is_cancelled() {
                break;
            }
            let stream = StreamId::new(&self.settings.name, None, *kind);
            reports.push(
                self.collect_stream(&stream, &self.settings.api_hostname, cancel)
                    .await,
            );
        }
        reports
    }

    async fn collect_stream(
        &self,
        stream: &StreamId,
        host: &str,
        cancel: &CancellationToken,
    ) -> StreamReport {
        let mut progress = Progress::default();
        let run_id = match self.state.begin_run(stream, now_ms()) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(stream = %stream, error = %e, "cannot record the run start");
                return StreamReport {
                    stream: stream.clone(),
                    pages: 0,
                    events: 0,
                    outcome: RunOutcome::Failed,
                    error: Some(e.to_string()),
                };
            }
        };
        tracing::info!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, "collection started");
        let result = match stream.log.paging() {
            Paging::V2 => v2::drain(self, stream, host, run_id, &mut progress, cancel).await,
            _ => Err(CollectError::Unsupported(stream.log)),
        };
        let (outcome, error) = match result {
            Ok(()) if cancel.is_cancelled() => (RunOutcome::Interrupted, None),
            Ok(()) => (RunOutcome::Ok, None),
            Err(CollectError::Duo(DuoError::Cancelled))
            | Err(CollectError::Sink(SinkError::Cancelled)) => (RunOutcome::Interrupted, None),
            Err(e) => (RunOutcome::Failed, Some(e.to_string())),
        };
        match &error {
            None => {
                tracing::info!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, pages = progress.pages, events = progress.events, outcome = ?outcome, "collection finished")
            }
            Some(e) => {
                tracing::error!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, pages = progress.pages, events = progress.events, error = %e, "collection failed; the checkpoint stays at the last acknowledged page")
            }
        }
        if let Err(e) = self
            .state
            .end_run(stream, run_id, outcome, error.as_deref(), now_ms())
        {
            tracing::error!(stream = %stream, error = %e, "cannot record the run end");
        }
        StreamReport {
            stream: stream.clone(),
            pages: progress.pages,
            events: progress.events,
            outcome,
            error,
        }
    }
}
