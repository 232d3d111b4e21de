//! Collection: for each stream, page through Duo with the endpoint's own cursor, hand each page
//! to every sink, and move the checkpoint only after all of them acknowledged it.
//!
//! Streams of one integration (every log kind, and for an MSP every child account) run
//! concurrently; a semaphore bounds the pages in flight per integration. Its permits are handed
//! out in FIFO order, so hundreds of children take turns page by page and none starves, and at
//! most `max_in_flight` pages are in memory at once.

mod accounts;
mod commit;
mod drive;
mod inventory;
mod leases;
mod sink_status;

use crate::duo::Call;
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, SystemClock};
use crate::config::Integration;
use crate::duo::{DuoClient, DuoClock, DuoError, RetryPolicy};
use crate::event::StreamId;
use crate::inventory::InventoryKind;
use crate::observe::Observer;
use crate::pacing::PaceKey;
use crate::pacing::Pacers;
use crate::pager::PagerError;
use crate::sink::{Sink, SinkError, SinkRetry, SinkSet};
use crate::state::{ClockReading, RunEnd, RunOutcome, StateError, StateStore, Write};

pub use accounts::{parse_children, ChildAccount, ACCOUNT_LIST_PATH};
pub use leases::StreamLeases;
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
    /// Streams left to the other instances that hold their leases (NATS state store).
    pub held_elsewhere: usize,
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
    /// Which streams this process may drain (all, or those whose lease it holds).
    leases: StreamLeases,
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
            leases: StreamLeases::default(),
        })
    }

    /// Drains only the streams `leases` lets it (the NATS store's leases).
    pub fn with_leases(mut self, leases: StreamLeases) -> Self {
        self.leases = leases;
        self
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
        // Every stream of the integration, whatever this collection takes: the fair share is
        // over all of them, and each instance must count the same set.
        let all: std::collections::BTreeSet<StreamId> = accounts
            .iter()
            .flat_map(|a| {
                let logs = self.settings.logs.iter();
                let logs = logs.map(|kind| StreamId::new(&self.settings.name, a.id.clone(), *kind));
                let kinds = self.settings.inventory.iter();
                logs.chain(
                    kinds.map(|kind| StreamId::inventory(&self.settings.name, a.id.clone(), *kind)),
                )
            })
            .collect();
        self.leases.offer(&self.settings.name, all).await;
        let jobs: Vec<Job> = log_targets
            .into_iter()
            .map(Job::Log)
            .chain(
                inventory_targets
                    .into_iter()
                    .map(|(t, kind)| Job::Snapshot(t, kind)),
            )
            .collect();
        (report.streams, report.held_elsewhere) = self.run_jobs(&jobs, &stop).await;
        self.record_duo_clock().await;
        report
    }

    /// Runs every job this process may run now, concurrently; a stream claimed meanwhile (its
    /// holder died, or the fair share moved) joins while the others still run.
    async fn run_jobs(&self, jobs: &[Job], stop: &CancellationToken) -> (Vec<StreamReport>, usize) {
        let claimed = self.leases.claimed(&self.settings.name);
        let wait_claimed = || async {
            match &claimed {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        };
        let mut started = vec![false; jobs.len()];
        let mut running = futures::stream::FuturesUnordered::new();
        let mut reports = Vec::new();
        loop {
            for (i, job) in jobs.iter().enumerate() {
                if started[i] || stop.is_cancelled() {
                    continue;
                }
                let Some(run) = self.leases.enter(job.stream(), stop) else {
                    continue;
                };
                started[i] = true;
                running.push(async move {
                    let report = match job {
                        Job::Log(target) => self.collect_stream(target, &run, stop).await,
                        Job::Snapshot(target, kind) => {
                            self.take_snapshot(target, *kind, &run.stop).await
                        }
                    };
                    (i, report)
                });
            }
            // A one-shot collection takes what nobody holds before it ends.
            if running.is_empty()
                && (stop.is_cancelled() || self.leases.claim_unheld(&self.settings.name).await == 0)
            {
                break;
            }
            if running.is_empty() {
                continue;
            }
            tokio::select! {
                Some(done) = futures::StreamExt::next(&mut running) => reports.push(done),
                _ = wait_claimed() => {}
            }
        }
        let left = started.iter().filter(|s| !**s).count();
        if left > 0 {
            tracing::debug!(integration = %self.settings.name, streams = left, "streams held by other instances; left to them");
        }
        reports.sort_by_key(|(i, _)| *i);
        (reports.into_iter().map(|(_, r)| r).collect(), left)
    }

    async fn collect_stream(
        &self,
        target: &StreamTarget,
        run: &leases::StreamRun,
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
        let begun = self.store.begin_run(stream, now_ms()).await;
        let run_id = match begun {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(integration = %stream.integration, account, log = %stream.log, error = %e, "cannot record the run start");
                return not_run(RunOutcome::Failed, Some(e.to_string()));
            }
        };
        tracing::info!(integration = %stream.integration, account, log = %stream.log, "collection started");
        // A lost or given-up lease stops the stream between pages, as a shutdown would.
        let result = drive::drain(self, target, run_id, &mut progress, &run.stop).await;
        let (outcome, error) = match result {
            // A fenced commit says more than the lost lease that usually comes with it.
            Err(CollectError::State(e @ StateError::Fenced { .. })) => {
                self.leases.fenced();
                // Nothing of the page was committed; the other instance goes on from the
                // checkpoint it wrote. Only this stream stops: the others are not fenced.
                (RunOutcome::Failed, Some(format!("another instance moved this stream's checkpoint ({stream}); this stream stopped and committed nothing: {e}")))
            }
            _ if run.lost_lease() => (RunOutcome::Failed, Some(format!("this instance lost the lease of {stream} (taken over, or not renewed in time); the stream stopped between pages"))),
            Ok(()) if run.handed_over() => {
                tracing::info!(integration = %stream.integration, account, log = %stream.log, "stream handed over to another instance (fair share); it goes on from this checkpoint");
                (RunOutcome::Interrupted, None)
            }
            Ok(()) if cancel.is_cancelled() || run.stop.is_cancelled() => (RunOutcome::Interrupted, None),
            Ok(()) => (RunOutcome::Ok, None),
            Err(CollectError::Duo(DuoError::Cancelled)) | Err(CollectError::Sink(SinkError::Cancelled)) => {
                (RunOutcome::Interrupted, None)
            }
            Err(CollectError::Duo(e @ DuoError::Api { status: 403, .. })) if !self.settings.logs_explicit => {
                (RunOutcome::NotPermitted, Some(format!("{e} (skipped: `logs` is not set, so only the kinds these keys may read are collected)")))
            }
            Err(CollectError::State(e)) if e.needs_operator() => {
                tracing::error!(integration = %stream.integration, error = %e, "the state store failed (every stream of this integration would fail the same way); this integration stops collecting until the next run");
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
        if run.lost_lease() || run.handed_over() {
            self.observer.stream_left(stream, run.lost_lease());
        } else {
            self.observer
                .run_finished(stream, outcome == RunOutcome::Failed);
        }
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

/// One stream's work in a collection.
enum Job {
    Log(StreamTarget),
    Snapshot(StreamTarget, InventoryKind),
}

impl Job {
    fn stream(&self) -> &StreamId {
        match self {
            Job::Log(t) | Job::Snapshot(t, _) => &t.stream,
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
