//! One worker per integration: its cron jobs (logs and inventory) only `try_send` a tick into a
//! channel of capacity one, and the worker runs one collection at a time, so a tick that comes
//! while one runs is coalesced into at most one follow-up, never an overlapping run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use super::Runtime;
use crate::collector::IntegrationRuntime;
use crate::service;
use crate::state::{RunOutcome, StateStore};

/// A running integration: its schedule job and its worker.
pub(super) struct Worker {
    pub(super) runtime: Arc<IntegrationRuntime>,
    job: uuid::Uuid,
    /// The inventory schedule's job, when the integration snapshots an inventory.
    inventory_job: Option<uuid::Uuid>,
    stop: CancellationToken,
    pub(super) handle: tokio::task::JoinHandle<()>,
}

/// The largest honest lag (`status::lag_ms`) among an integration's streams, in seconds; the
/// same figure `status` shows. Each stream's `checkpoint_lag_seconds` metric is set to its own.
async fn max_lag_seconds(
    store: &StateStore,
    observer: &crate::observe::Observer,
    integration: &str,
    delay: std::time::Duration,
) -> Option<i64> {
    let offset = store
        .clock_offset(integration)
        .await
        .ok()
        .flatten()
        .map(|c| c.offset_ms);
    let now = crate::status::duo_now_ms(crate::clock::now_ms(), offset);
    let delay_ms = delay.as_millis() as i64;
    let streams = store.status().await.ok()?;
    let mut max = None;
    for s in streams.iter().filter(|s| s.integration == integration) {
        let Some(lag) = crate::status::stream_lag_seconds(s, now, delay_ms) else {
            continue;
        };
        observer.set_checkpoint_lag(
            crate::observe::StreamLabels {
                integration: s.integration.clone(),
                account: s.account_id.clone().unwrap_or_default(),
                log: s.log.clone(),
            },
            lag,
        );
        max = max.max(Some(lag));
    }
    max
}

/// A job that sends a tick on `tx` at each `schedule` time; a tick while one is still
/// waiting is dropped (coalesced).
fn coalescing_job(
    schedule: &str,
    tx: mpsc::Sender<()>,
    name: String,
) -> Result<Job, tokio_cron_scheduler::JobSchedulerError> {
    Job::new_async(schedule, move |_, _| {
        let tx = tx.clone();
        let name = name.clone();
        Box::pin(async move {
            if tx.try_send(()).is_err() {
                tracing::debug!(integration = %name, "schedule tick while a collection is pending or running; coalesced");
            }
        })
    })
}

pub(super) async fn start_worker(
    scheduler: &JobScheduler,
    runtime: &Runtime,
    rt: Arc<IntegrationRuntime>,
    cancel: &CancellationToken,
) -> anyhow::Result<Worker> {
    let store = runtime.store.clone();
    let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
    let name = rt.settings.name.clone();
    // A stream claimed between collections (its holder died) starts one.
    runtime.leases.on_claim_start(&name, tick_tx.clone());
    rt.observer().set_delay(&name, rt.settings.delay);
    let job = coalescing_job(rt.settings.schedule.as_str(), tick_tx.clone(), name.clone())
        .with_context(|| {
            format!(
                "integration {name:?}: schedule {:?}",
                rt.settings.schedule.as_str()
            )
        })?;
    let job = scheduler.add(job).await.context("cannot add a schedule")?;
    // Collect once right away rather than waiting for the first tick.
    let _ = tick_tx.try_send(());
    let (inventory_tx, mut inventory_rx) = mpsc::channel::<()>(1);
    let inventory_job = if rt.settings.inventory.is_empty() {
        None
    } else {
        let schedule = rt.settings.inventory_schedule.as_str();
        let job = coalescing_job(schedule, inventory_tx.clone(), name.clone())
            .with_context(|| format!("integration {name:?}: inventory_schedule {schedule:?}"))?;
        let job = scheduler.add(job).await.context("cannot add a schedule")?;
        // A first snapshot at start too, after the first log collection.
        let _ = inventory_tx.try_send(());
        Some(job)
    };
    let stop = cancel.child_token();
    let worker_stop = stop.clone();
    let worker_rt = rt.clone();
    let handle = tokio::spawn(async move {
        let rt = worker_rt;
        loop {
            // One collection at a time: a log tick and an inventory tick take turns.
            let inventory = tokio::select! {
                _ = worker_stop.cancelled() => break,
                tick = tick_rx.recv() => if tick.is_none() { break } else { false },
                Some(()) = inventory_rx.recv() => true,
            };
            if inventory {
                let report = rt.snapshot_inventory(&worker_stop).await;
                let failed = report
                    .streams
                    .iter()
                    .filter(|r| r.outcome == RunOutcome::Failed)
                    .count();
                tracing::info!(integration = %rt.settings.name, snapshots = report.streams.len(), failed_snapshots = failed,
                    events = report.events(), "inventory snapshots done");
                continue;
            }
            let started = Instant::now();
            rt.observer().cycle_started(&rt.settings.name);
            let report = rt.collect_all(&worker_stop).await;
            rt.observer()
                .cycle_finished(&rt.settings.name, started.elapsed().as_secs_f64());
            let failed = report
                .streams
                .iter()
                .filter(|r| r.outcome == RunOutcome::Failed)
                .count();
            let events = report.events();
            let lag =
                max_lag_seconds(&store, rt.observer(), &rt.settings.name, rt.settings.delay).await;
            let next = rt
                .settings
                .schedule
                .next_after(chrono::Utc::now())
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into());
            tracing::info!(integration = %rt.settings.name, events, streams = report.streams.len(), failed_streams = failed, max_lag = %crate::human::duration_secs(lag.unwrap_or(0)), max_lag_seconds = lag.unwrap_or(0), next = %next, "collection cycle done");
            service::status(&format!(
                "idle: {} collected {events} events, {failed} failing stream(s)",
                rt.settings.name
            ));
        }
    });
    Ok(Worker {
        runtime: rt,
        job,
        inventory_job,
        stop,
        handle,
    })
}

pub(super) async fn stop_worker(scheduler: &JobScheduler, worker: Worker) {
    for job in std::iter::once(worker.job).chain(worker.inventory_job) {
        if let Err(e) = scheduler.remove(&job).await {
            tracing::warn!(error = %e, "cannot remove a schedule");
        }
    }
    // The worker finishes the page in flight and commits it before it returns.
    worker.stop.cancel();
    let _ = worker.handle.await;
}
