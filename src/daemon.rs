//! The service: builds the runtime from a validated config, schedules each integration with
//! tokio-cron-scheduler, and shuts down between pages.
//!
//! Each integration has one worker that runs collections one at a time. The cron job only
//! `try_send`s into a channel of capacity one, so a tick that arrives while a collection runs is
//! coalesced into at most one follow-up run, never an overlapping one.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::collector::{IntegrationReport, IntegrationRuntime};
use crate::config::Config;
use crate::duo::RetryPolicy;
use crate::sink::{SinkRetry, SinkSet};
use crate::state::{RunOutcome, State};

/// Knobs that are not part of the config file (tests shorten the waits).
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    pub retry: RetryPolicy,
    pub sink_retry: SinkRetry,
}

/// The state database, sinks and one runtime per integration.
pub struct Runtime {
    pub state: State,
    pub integrations: Vec<Arc<IntegrationRuntime>>,
    /// Held for the runtime's life: one collector per state directory.
    _lock: std::fs::File,
}

/// Takes the state directory's lock, so that `collect-now` and the service (or two services)
/// never collect into the same checkpoints at once, which would repeat events.
fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another duo-collector is already collecting with state_dir {} (the service, or a collect-now); stop it first, or use `duo-collector status` to inspect",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

impl Runtime {
    pub fn build(config: &Config, options: &RuntimeOptions) -> anyhow::Result<Runtime> {
        let dir = &config.collector.state_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state_dir {}", dir.display()))?;
        let lock = lock_state_dir(dir)?;
        let state = State::open(&config.state_db_path())?;
        let abandoned = state.close_abandoned_runs(crate::collector::now_ms())?;
        if abandoned > 0 {
            tracing::warn!(runs = abandoned, "previous process stopped during collection; resuming from the last acknowledged checkpoints");
        }
        let sinks =
            SinkSet::open_recording(&config.sinks, Some(state.clone())).map_err(|errors| {
                anyhow::anyhow!(
                    "cannot open sinks:\n{}",
                    errors
                        .iter()
                        .map(|e| format!("  - {e}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })?;
        let mut integrations = Vec::new();
        for integration in &config.integrations {
            let rt = IntegrationRuntime::new(
                integration.clone(),
                &sinks,
                state.clone(),
                options.retry.clone(),
                options.sink_retry.clone(),
            )
            .with_context(|| format!("integration {:?}", integration.name))?;
            integrations.push(Arc::new(rt));
        }
        Ok(Runtime {
            state,
            integrations,
            _lock: lock,
        })
    }
}

/// One full drain of the selected integrations, concurrently; for `collect-now`.
pub async fn collect_once(
    runtime: &Runtime,
    only: Option<&str>,
    cancel: &CancellationToken,
) -> Vec<IntegrationReport> {
    let selected = runtime
        .integrations
        .iter()
        .filter(|rt| only.is_none_or(|name| rt.settings.name == name));
    let runs = selected.map(|rt| rt.collect_all(cancel));
    futures::future::join_all(runs).await
}

/// Runs until `cancel` fires: every integration on its schedule, plus once at start.
pub async fn run(runtime: Runtime, cancel: CancellationToken) -> anyhow::Result<()> {
    let scheduler = JobScheduler::new()
        .await
        .context("cannot start the scheduler")?;
    let mut workers = Vec::new();
    for rt in &runtime.integrations {
        let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
        let name = rt.settings.name.clone();
        let job_tx = tick_tx.clone();
        let job_name = name.clone();
        let job = Job::new_async(rt.settings.schedule.as_str(), move |_, _| {
            let tx = job_tx.clone();
            let name = job_name.clone();
            Box::pin(async move {
                if tx.try_send(()).is_err() {
                    tracing::debug!(integration = %name, "schedule tick while a collection is pending or running; coalesced");
                }
            })
        })
        .with_context(|| format!("integration {name:?}: schedule {:?}", rt.settings.schedule))?;
        scheduler.add(job).await.context("cannot add a schedule")?;
        // Collect once right away rather than waiting for the first tick.
        let _ = tick_tx.try_send(());
        let rt = rt.clone();
        let cancel = cancel.clone();
        workers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    tick = tick_rx.recv() => if tick.is_none() { break },
                }
                let report = rt.collect_all(&cancel).await;
                let failed = report.streams.iter().filter(|r| r.outcome == RunOutcome::Failed).count();
                let events = report.events();
                tracing::info!(integration = %rt.settings.name, events, failed_streams = failed, next = ?crate::schedule::next_tick(&rt.settings.schedule, chrono::Utc::now()), "collection cycle done");
            }
        }));
    }
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    tracing::info!(
        integrations = runtime.integrations.len(),
        "duo-collector running"
    );
    cancel.cancelled().await;
    tracing::info!("shutting down: finishing the page in flight");
    let mut scheduler = scheduler;
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "scheduler shutdown");
    }
    for w in workers {
        let _ = w.await;
    }
    tracing::info!("stopped");
    Ok(())
}
