//! Collection: for each stream, page through Duo with the endpoint's own cursor, hand each page
//! to every sink, and move the checkpoint only after all of them acknowledged it.
//!
//! Streams of one integration (every log kind, and for an MSP every child account) run
//! concurrently; a semaphore bounds the pages in flight per integration. Its permits are handed
//! out in FIFO order, so hundreds of children take turns page by page and none starves, and at
//! most `max_in_flight` pages are in memory at once.

mod accounts;
mod drive;
mod inventory;
mod lease_hold;
mod sink_status;

use crate::duo::Call;
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, SystemClock};
use crate::config::Integration;
use crate::duo::{DuoClient, DuoClock, DuoError, RetryPolicy};
use crate::event::{Batch, Event, StreamId};
use crate::inventory::InventoryKind;
use crate::observe::{CommittedPage, Observer};
use crate::pacing::PaceKey;
use crate::pacing::Pacers;
use crate::pager::PagerError;
use crate::sink::{deliver_all, PageReceipt, Sink, SinkError, SinkRetry, SinkSet};
use crate::state::{
    Checkpoint, ClockReading, PageCommit, Revision, RunEnd, RunOutcome, StateError, StateStore,
    Write,
};

pub use accounts::{parse_children, ChildAccount, ACCOUNT_LIST_PATH};
pub use sink_status::SinkStatusRecorder;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Duo(#[from] DuoError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Pager(#[from] PagerError),
    #[error(transparent)]
    InventoryPager(#[from] crate::inventory::PagerError),
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

/// What one collection of an integration did.
#[derive(Debug, Clone, Default)]
pub struct IntegrationReport {
    pub integration: String,
    pub streams: Vec<StreamReport>,
    /// A failure before any stream ran (e.g. listing MSP child accounts).
    pub error: Option<String>,
}

impl IntegrationReport {
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.streams.iter().any(|s| s.outcome == RunOutcome::Failed)
    }

    pub fn events(&self) -> u64 {
        self.streams.iter().map(|s| s.events).sum()
    }
}

/// Counters a drain updates as it commits pages.
#[derive(Debug, Default)]
struct Progress {
    pages: u64,
    events: u64,
}

/// What a collection takes: the log streams, the inventory snapshots, or both
/// (`collect-now --only logs|inventory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collect {
    pub logs: bool,
    pub inventory: bool,
}

impl Collect {
    pub const ALL: Collect = Collect {
        logs: true,
        inventory: true,
    };
    pub const LOGS: Collect = Collect {
        logs: true,
        inventory: false,
    };
    pub const INVENTORY: Collect = Collect {
        logs: false,
        inventory: true,
    };
}

/// One stream plus where its requests go.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    pub stream: StreamId,
    /// The API host the requests are signed for (an MSP child's own host).
    pub host: String,
    pub account_name: Option<String>,
}

/// Everything needed to collect one integration.
#[derive(Debug)]
pub struct IntegrationRuntime {
    pub settings: Integration,
    client: DuoClient,
    sinks: Vec<Arc<Sink>>,
    store: StateStore,
    retry: RetryPolicy,
    sink_retry: SinkRetry,
    in_flight: Semaphore,
    children: accounts::ChildCache,
    observer: Arc<Observer>,
    /// Duo's clock, measured from every response of this integration.
    duo_clock: DuoClock,
    /// One request scheduler per (account, endpoint).
    pacers: Pacers,
}

impl IntegrationRuntime {
    /// `learned`: the request rates earlier runs learned ([`StateStore::learned_rates`]).
    pub fn new(
        settings: Integration,
        sinks: &SinkSet,
        store: StateStore,
        learned: std::collections::HashMap<PaceKey, f64>,
        retry: RetryPolicy,
        sink_retry: SinkRetry,
        observer: Arc<Observer>,
    ) -> Result<Self, DuoError> {
        let duo_clock = DuoClock::new(Arc::new(SystemClock));
        let client = DuoClient::for_integration(&settings, retry.clone())?
            .observed(observer.clone(), &settings.name)
            .with_clock(duo_clock.clone());
        let sinks = sinks.select(&settings.sinks);
        let in_flight = Semaphore::new(settings.max_in_flight);
        let pacers = Pacers::new(settings.requests_per_minute, learned);
        Ok(IntegrationRuntime {
            settings,
            client,
            sinks,
            store,
            retry,
            sink_retry,
            in_flight,
            children: accounts::ChildCache::default(),
            observer,
            duo_clock,
            pacers,
        })
    }

    /// Duo's clock as this integration measures it.
    pub fn duo_clock(&self) -> &DuoClock {
        &self.duo_clock
    }

    /// Measures Duo's clock before the first window of this process is opened: the pagers
    /// compute `maxtime` from it. `/auth/v2/ping` is unsigned and not a log endpoint.
    async fn measure_duo_clock(&self, cancel: &CancellationToken) {
        if self.duo_clock.is_measured() {
            return;
        }
        let pinged = self
            .client
            .request(
                &Call::get(&self.settings.api_hostname, "/auth/v2/ping", &[]),
                cancel,
                |_| Ok(()),
            )
            .await;
        if let Err(e) = pinged {
            tracing::warn!(integration = %self.settings.name, error = %e, "cannot read Duo's clock from /auth/v2/ping; the first window uses this host's clock");
        }
    }

    async fn record_duo_clock(&self) {
        let Some(offset) = self.duo_clock.offset_ms() else {
            return;
        };
        self.observer.duo_clock_offset(&self.settings.name, offset);
        let saved = self.store.write(Write::Clock(ClockReading {
            integration: self.settings.name.clone(),
            offset_ms: offset,
            now_ms: now_ms(),
        }));
        if let Err(e) = saved.await {
            tracing::warn!(integration = %self.settings.name, error = %e, "cannot record Duo's clock offset");
        }
        if offset.abs() > crate::duo::clock::WARN_OFFSET_MS {
            tracing::warn!(integration = %self.settings.name, offset_ms = offset,
                "this host's clock is {}s off Duo's; collection uses Duo's clock, but synchronize this host (chrony or systemd-timesyncd) before Duo refuses requests (40105)", offset / 1000);
        }
    }

    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    async fn request_permit(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed, so acquire only fails if it were.
        self.in_flight.acquire().await.ok()
    }

    /// The accounts to collect now: the integration's own, or every MSP child, each with the
    /// host its requests are signed for and its name.
    async fn accounts(&self, cancel: &CancellationToken) -> Result<Vec<Account>, DuoError> {
        let settings = &self.settings;
        if !settings.accounts_api {
            return Ok(vec![Account {
                id: None,
                host: settings.api_hostname.clone(),
                name: None,
            }]);
        }
        Ok(accounts::children(self, cancel)
            .await?
            .into_iter()
            .map(|c| Account {
                host: c
                    .api_hostname
                    .clone()
                    .unwrap_or_else(|| settings.api_hostname.clone()),
                id: Some(c.account_id),
                name: Some(c.name),
            })
            .collect())
    }

    /// Drains every log stream up to now − delay (the log schedule). Each stream fails alone.
    pub async fn collect_all(&self, cancel: &CancellationToken) -> IntegrationReport {
        self.collect(Collect::LOGS, cancel).await
    }

    /// Takes a snapshot of every configured inventory kind (the service's inventory
    /// schedule), then sets the posture gauges from the complete snapshots. (`collect-now`
    /// has no gauges to set, and so does not hold an account's users in memory for them.)
    pub async fn snapshot_inventory(&self, cancel: &CancellationToken) -> IntegrationReport {
        let report = self.collect(Collect::INVENTORY, cancel).await;
        let mut accounts: Vec<Option<String>> = report
            .streams
            .iter()
            .map(|s| s.stream.account_id.clone())
            .collect();
        accounts.dedup();
        self.update_posture(&accounts).await;
        report
    }

    /// Drains what `what` selects: the log streams up to now − delay, and a snapshot of each
    /// configured inventory kind, for every account. Each stream and snapshot fails alone.
    pub async fn collect(&self, what: Collect, cancel: &CancellationToken) -> IntegrationReport {
        let mut report = IntegrationReport {
            integration: self.settings.name.clone(),
            ..IntegrationReport::default()
        };
        self.measure_duo_clock(cancel).await;
        let inventory = if what.inventory {
            self.settings.inventory.as_slice()
        } else {
            &[]
        };
        if !what.logs && inventory.is_empty() {
            return report;
        }
        let accounts = match self.accounts(cancel).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(integration = %self.settings.name, error = %e, "cannot list MSP child accounts; nothing collected this cycle");
                report.error = Some(format!("listing child accounts: {e}"));
                return report;
            }
        };
        // The state database failing (locked, read-only, disk full) stops every stream: none
        // could commit, and each would fetch and deliver a page for nothing.
        let stop = cancel.child_token();
        let logs = if what.logs {
            self.settings.logs.as_slice()
        } else {
            &[]
        };
        let log_targets: Vec<StreamTarget> = accounts
            .iter()
            .flat_map(|a| {
                logs.iter()
                    .map(|kind| a.target(StreamId::new(&self.settings.name, a.id.clone(), *kind)))
            })
            .collect();
        let inventory_targets: Vec<(StreamTarget, InventoryKind)> = accounts
            .iter()
            .flat_map(|a| {
                inventory.iter().map(|kind| {
                    let stream = StreamId::inventory(&self.settings.name, a.id.clone(), *kind);
                    (a.target(stream), *kind)
                })
            })
            .collect();
        let log_runs =
            futures::future::join_all(log_targets.iter().map(|t| self.collect_stream(t, &stop)));
        let snapshots = futures::future::join_all(
            inventory_targets
                .iter()
                .map(|(t, kind)| self.take_snapshot(t, *kind, &stop)),
        );
        let (mut streams, snapshots) = futures::join!(log_runs, snapshots);
        streams.extend(snapshots);
        report.streams = streams;
        self.record_duo_clock().await;
        report
    }

    async fn collect_stream(
        &self,
        target: &StreamTarget,
        cancel: &CancellationToken,
    ) -> StreamReport {
        let stream = &target.stream;
        let account = stream.account_id.as_deref().unwrap_or("-");
        let mut progress = Progress::default();
        let not_run = |outcome, error: Option<String>| StreamReport {
            stream: stream.clone(),
            pages: 0,
            events: 0,
            outcome,
            error,
        };
        let lease = match lease_hold::take(&self.store, stream).await {
            Ok(lease_hold::Lease::Elsewhere) => {
                tracing::info!(integration = %stream.integration, account, log = %stream.log, "another instance holds this stream's lease; left to it this run");
                return not_run(RunOutcome::Ok, None);
            }
            Ok(lease) => lease,
            Err(e) => {
                tracing::error!(integration = %stream.integration, account, log = %stream.log, error = %e, "cannot take the stream's lease");
                return not_run(RunOutcome::Failed, Some(e.to_string()));
            }
        };
        let begun = self.store.begin_run(stream, now_ms()).await;
        let run_id = match begun {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(integration = %stream.integration, account, log = %stream.log, error = %e, "cannot record the run start");
                return not_run(RunOutcome::Failed, Some(e.to_string()));
            }
        };
        tracing::info!(integration = %stream.integration, account, log = %stream.log, "collection started");
        // A lost lease stops the stream between pages, as a shutdown would.
        let (stream_stop, drained) = (cancel.child_token(), CancellationToken::new());
        let drain = async {
            let result = drive::drain(self, target, run_id, &mut progress, &stream_stop).await;
            drained.cancel();
            result
        };
        let (result, lease_kept) = match lease {
            lease_hold::Lease::Held(nats, held) => {
                futures::join!(drain, lease_hold::keep(&nats, held, &drained, &stream_stop))
            }
            _ => (drain.await, true),
        };
        let (outcome, error) = match result {
            _ if !lease_kept => (RunOutcome::Failed, Some(format!("this instance lost the lease of {stream} (taken over, or not renewed in time); the stream stopped between pages"))),
            Ok(()) if cancel.is_cancelled() => (RunOutcome::Interrupted, None),
            Ok(()) => (RunOutcome::Ok, None),
            Err(CollectError::Duo(DuoError::Cancelled)) | Err(CollectError::Sink(SinkError::Cancelled)) => {
                (RunOutcome::Interrupted, None)
            }
            Err(CollectError::Duo(e @ DuoError::Api { status: 403, .. })) if !self.settings.logs_explicit => {
                (RunOutcome::NotPermitted, Some(format!("{e} (skipped: `logs` is not set, so only the kinds these keys may read are collected)")))
            }
            Err(CollectError::State(e @ StateError::Fenced { .. })) => {
                // Nothing of the page was committed; the other instance goes on from the
                // checkpoint it wrote. Only this stream stops: the others are not fenced.
                (RunOutcome::Failed, Some(format!("another instance moved this stream's checkpoint ({stream}); this stream stopped and committed nothing: {e}")))
            }
            Err(CollectError::State(e)) if e.needs_operator() => {
                tracing::error!(integration = %stream.integration, error = %e, "the state database failed; this integration stops collecting until the next run");
                cancel.cancel();
                (RunOutcome::Failed, Some(e.to_string()))
            }
            Err(e) => (RunOutcome::Failed, Some(e.to_string())),
        };
        match (&outcome, &error) {
            (RunOutcome::Failed, Some(e)) => {
                tracing::error!(integration = %stream.integration, account, log = %stream.log, pages = progress.pages, events = progress.events, error = %e, "collection failed; the checkpoint stays at the last acknowledged page")
            }
            (_, Some(e)) => {
                tracing::warn!(integration = %stream.integration, account, log = %stream.log, error = %e, "log kind not readable with these keys")
            }
            (_, None) => {
                tracing::info!(integration = %stream.integration, account, log = %stream.log, pages = progress.pages, events = progress.events, outcome = outcome.as_str(), "collection finished")
            }
        }
        self.observer
            .run_finished(stream, outcome == RunOutcome::Failed);
        let end = self.store.write(Write::EndRun(RunEnd {
            stream: stream.clone(),
            run_id,
            outcome,
            error: error.clone(),
            now_ms: now_ms(),
        }));
        if let Err(e) = end.await {
            tracing::error!(integration = %stream.integration, account, log = %stream.log, error = %e, "cannot record the run end");
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

/// An account to collect: `None` for the integration's own.
#[derive(Debug, Clone)]
struct Account {
    id: Option<String>,
    host: String,
    name: Option<String>,
}

impl Account {
    fn target(&self, stream: StreamId) -> StreamTarget {
        StreamTarget {
            stream,
            host: self.host.clone(),
            account_name: self.name.clone(),
        }
    }
}

/// A stream's run as its commits see it: the run they count for, and the revision the next
/// commit is fenced on (the one this run last read or wrote).
#[derive(Debug, Clone, Copy)]
struct Fence {
    run_id: i64,
    revision: Revision,
}

/// Hands a page to every sink and, once all acknowledged it, commits the checkpoint.
async fn deliver_and_commit(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    run: &mut Fence,
    events: &[Event],
    cp: &Checkpoint,
    progress: &mut Progress,
    cancel: &CancellationToken,
) -> Result<(), CollectError> {
    let mut receipt = PageReceipt::default();
    if !events.is_empty() {
        let collected_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let batch = Batch {
            stream: &target.stream,
            account_name: target.account_name.as_deref(),
            collected_at: &collected_at,
            events,
            inventory: None,
        };
        // Sinks count their own failed attempts in the observer.
        receipt = deliver_all(&rt.sinks, &batch, &rt.sink_retry, cancel).await?;
    }
    // The file sinks' lengths move with the checkpoint: exactly-once files across crashes. The
    // receipt goes with the commit, so the pages are marked committed with it even if this
    // future is dropped meanwhile. Fenced on the revision this stream last read or wrote.
    let commit = PageCommit {
        stream: target.stream.clone(),
        run_id: run.run_id,
        checkpoint: cp.clone(),
        events: events.len(),
        now_ms: now_ms(),
        files: receipt.files(),
        revision: run.revision,
    };
    run.revision = rt
        .store
        .commit_page(commit, move || receipt.committed())
        .await?;
    let position_ms = cp.position_ms();
    let lag_ms = crate::checkpoint::lag_ms(
        rt.duo_clock.now_ms(),
        rt.settings.delay.as_millis() as i64,
        position_ms,
    );
    let sink_names: Vec<String> = rt.sinks.iter().map(|s| s.name.clone()).collect();
    rt.observer.page_committed(
        &CommittedPage {
            stream: &target.stream,
            events: events.len(),
            position_ms,
            duo_lag_ms: lag_ms,
            run_events: progress.events + events.len() as u64,
        },
        &sink_names,
    );
    progress.pages += 1;
    progress.events += events.len() as u64;
    Ok(())
}
