//! The service: builds the runtime from a validated config, schedules each integration with
//! tokio-cron-scheduler, reloads on SIGHUP, talks to systemd, and shuts down between pages.
//!
//! Each integration has one worker that runs collections one at a time. The cron job only
//! `try_send`s into a channel of capacity one, so a tick that arrives while a collection runs is
//! coalesced into at most one follow-up run, never an overlapping one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio_cron_scheduler::JobScheduler;
use tokio_util::sync::CancellationToken;

use crate::collector::{
    Collect, IntegrationReport, IntegrationRuntime, SinkStatusRecorder, StreamLeases,
};
use crate::config::Integration;
use crate::duo::RetryPolicy;
use crate::observe::Observer;
use crate::pacing::PaceKey;
use crate::service;
use crate::settings::Config;
use crate::sink::SinkSettings;
use crate::sink::{SinkReporting, SinkRetry, SinkSet};
use crate::state::{FileMarks, StateStore, StoreSettings};

mod worker;
use worker::{start_worker, stop_worker, Worker};

/// Knobs that are not part of the config file (tests shorten the waits).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub retry: RetryPolicy,
    pub sink_retry: SinkRetry,
    pub observer: Arc<Observer>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            retry: RetryPolicy::default(),
            sink_retry: SinkRetry::default(),
            observer: Arc::new(Observer::default()),
        }
    }
}

/// The state store, sinks and one runtime per integration.
pub struct Runtime {
    pub store: StateStore,
    pub integrations: Vec<Arc<IntegrationRuntime>>,
    sinks: SinkSet,
    sink_settings: Vec<SinkSettings>,
    options: RuntimeOptions,
    /// The streams this process may drain (with the NATS store, those whose lease it holds).
    pub leases: StreamLeases,
    /// Stops the lease keeper with the runtime (its leases then expire after `lease_ttl`;
    /// [`Runtime::shutdown`] gives them up at once).
    _keeper: Option<tokio_util::sync::DropGuard>,
    /// Held for the runtime's life: one collector per state directory.
    _lock: std::fs::File,
}

/// Takes the state directory's lock, so that `collect-now` and the service (or two services)
/// never collect into the same checkpoints at once, which would repeat events.
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot open {} for writing: state_dir must be writable by the user duo-collector runs as (it holds this lock and state.db); fix its owner or mode, or remount its filesystem read-write, and run again: collection resumes from the last checkpoint",
                path.display()
            )
        })?;
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

fn open_sinks(
    settings: &[SinkSettings],
    store: &StateStore,
    observer: &Arc<Observer>,
) -> anyhow::Result<SinkSet> {
    let reporting = SinkReporting {
        state: FileMarks::of(store),
        events: Arc::new(SinkStatusRecorder::new(store.clone(), observer.clone())),
    };
    SinkSet::open(settings, &reporting).map_err(|errors| {
        anyhow::anyhow!(
            "cannot open sinks:\n{}",
            errors
                .iter()
                .map(|e| format!("  - {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn warn_abandoned(abandoned: usize) {
    if abandoned > 0 {
        tracing::warn!(runs = abandoned, "previous process stopped during collection; resuming from the last acknowledged checkpoints");
    }
}

fn take_state_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    let dir = &config.collector.state_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create state_dir {}", dir.display()))?;
    lock_state_dir(dir)
}

/// The rates earlier runs learned for `integration`; none (and a warning) if they cannot be read.
async fn learned_rates(store: &StateStore, integration: &Integration) -> HashMap<PaceKey, f64> {
    store
        .learned_rates(&integration.name, integration.requests_per_minute)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(integration = %integration.name, error = %e, "cannot read the learned request rates; starting from requests_per_minute");
            HashMap::new()
        })
}

impl Runtime {
    /// The runtime on the SQLite store (`[state]` absent or `backend = "sqlite"`), built
    /// without awaiting; [`Runtime::open`] takes either backend.
    pub fn build(config: &Config, options: &RuntimeOptions) -> anyhow::Result<Runtime> {
        if let StoreSettings::Nats(_) = &config.state {
            anyhow::bail!("[state] backend = \"nats\" is opened by Runtime::open (async)");
        }
        let lock = take_state_dir(config)?;
        let state = crate::state::State::open(&config.state_db_path())?;
        warn_abandoned(state.close_abandoned_runs(crate::clock::now_ms())?);
        let learned = config
            .integrations
            .iter()
            .map(|i| {
                let rates = state
                    .learned_rates(&i.name, i.requests_per_minute)
                    .unwrap_or_else(|e| {
                        tracing::warn!(integration = %i.name, error = %e, "cannot read the learned request rates; starting from requests_per_minute");
                        HashMap::new()
                    });
                (i.name.clone(), rates)
            })
            .collect();
        Runtime::assemble(config, options, StateStore::sqlite(state), learned, lock)
    }

    /// The runtime on the store `[state]` chose: SQLite in `state_dir`, or NATS JetStream
    /// key-value buckets. The state-dir lock is taken either way (one collector per state dir).
    pub async fn open(config: &Config, options: &RuntimeOptions) -> anyhow::Result<Runtime> {
        let StoreSettings::Nats(_) = &config.state else {
            return Runtime::build(config, options);
        };
        let lock = take_state_dir(config)?;
        let store = StateStore::open(&config.state, &config.state_db_path()).await?;
        if let StateStore::Nats(nats) = &store {
            // Lease holders and run records name instances by this id: the one line that ties
            // a process (and its host) to them.
            tracing::info!(instance = %nats.instance(), "state in NATS JetStream; this instance's id");
        }
        warn_abandoned(store.close_abandoned_runs(crate::clock::now_ms()).await?);
        let mut learned = HashMap::new();
        for integration in &config.integrations {
            learned.insert(
                integration.name.clone(),
                learned_rates(&store, integration).await,
            );
        }
        Runtime::assemble(config, options, store, learned, lock)
    }

    fn assemble(
        config: &Config,
        options: &RuntimeOptions,
        store: StateStore,
        mut learned: HashMap<String, HashMap<PaceKey, f64>>,
        lock: std::fs::File,
    ) -> anyhow::Result<Runtime> {
        let sinks = open_sinks(&config.sinks, &store, &options.observer)?;
        let leases = match &store {
            StateStore::Nats(nats) => StreamLeases::start(nats.clone(), options.observer.clone()),
            StateStore::Sqlite(_) => StreamLeases::default(),
        };
        let mut runtime = Runtime {
            _keeper: leases.drop_guard(),
            leases,
            store,
            integrations: Vec::new(),
            sinks,
            sink_settings: config.sinks.clone(),
            options: options.clone(),
            _lock: lock,
        };
        for integration in &config.integrations {
            let rates = learned.remove(&integration.name).unwrap_or_default();
            let rt = runtime.integration_runtime(integration, rates)?;
            runtime.integrations.push(rt);
        }
        Ok(runtime)
    }

    fn integration_runtime(
        &self,
        integration: &Integration,
        learned: HashMap<PaceKey, f64>,
    ) -> anyhow::Result<Arc<IntegrationRuntime>> {
        let rt = IntegrationRuntime::new(
            integration.clone(),
            &self.sinks,
            self.store.clone(),
            learned,
            self.options.retry.clone(),
            self.options.sink_retry.clone(),
            self.options.observer.clone(),
        )
        .with_context(|| format!("integration {:?}", integration.name))?
        .with_leases(self.leases.clone());
        Ok(Arc::new(rt))
    }

    /// Ends the runtime after its collections: with the NATS store, gives every lease up and
    /// withdraws this instance, so the others take its streams at once.
    pub async fn shutdown(&self) {
        self.leases.shutdown().await;
    }

    /// Switches to a new config's sinks: unchanged sinks keep their open instance (and their
    /// order of writes); changed and new ones are opened.
    fn adopt_sinks(&mut self, new: &[SinkSettings]) -> anyhow::Result<()> {
        let unchanged: Vec<String> = new
            .iter()
            .filter(|s| self.sink_settings.contains(s))
            .map(|s| s.name.clone())
            .collect();
        let to_open: Vec<SinkSettings> = new
            .iter()
            .filter(|s| !unchanged.contains(&s.name))
            .cloned()
            .collect();
        let opened = open_sinks(&to_open, &self.store, &self.options.observer)?;
        self.sinks = self.sinks.retain_and_merge(&unchanged, opened);
        self.sink_settings = new.to_vec();
        Ok(())
    }
}

/// One full drain of the selected integrations, concurrently; for `collect-now`.
pub async fn collect_once(
    runtime: &Runtime,
    only: Option<&str>,
    cancel: &CancellationToken,
) -> Vec<IntegrationReport> {
    collect_once_with(runtime, only, Collect::ALL, cancel).await
}

/// [`collect_once`] of the logs, the inventory or both (`collect-now --only`).
pub async fn collect_once_with(
    runtime: &Runtime,
    only: Option<&str>,
    what: Collect,
    cancel: &CancellationToken,
) -> Vec<IntegrationReport> {
    let selected = runtime
        .integrations
        .iter()
        .filter(|rt| only.is_none_or(|name| rt.settings.name == name));
    let runs = selected.map(|rt| rt.collect(what, cancel));
    futures::future::join_all(runs).await
}

/// Where SIGHUP reloads the config from (`None`: reload is not available, e.g. the demo).
pub struct ReloadSource {
    pub path: PathBuf,
}

/// Runs until `cancel` fires: every integration on its schedule, plus once at start; SIGHUP
/// reloads the config from `reload` between pages.
pub async fn run(
    mut runtime: Runtime,
    config: Config,
    reload: Option<ReloadSource>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let observer = runtime.options.observer.clone();
    // The collector reports pages to the observer; under systemd they also make the status line.
    observer.add_listener(Arc::new(service::StatusLine));
    let metrics = match config.collector.metrics_listen {
        Some(addr) => Some(
            service::bind_metrics(addr)
                .await
                .with_context(|| format!("[collector] metrics_listen {addr}: cannot listen"))?,
        ),
        None => None,
    };
    // A service shares its streams fairly with the other instances (collect-now does not).
    runtime.leases.share_with_others();
    let scheduler = JobScheduler::new()
        .await
        .context("cannot start the scheduler")?;
    let mut workers: HashMap<String, Worker> = HashMap::new();
    for rt in runtime.integrations.clone() {
        let worker = start_worker(&scheduler, &runtime, rt.clone(), &cancel).await?;
        workers.insert(rt.settings.name.clone(), worker);
    }
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    let mut background = Vec::new();
    if let Some(listener) = metrics {
        tracing::info!(address = %config.collector.metrics_listen.map(|a| a.to_string()).unwrap_or_default(), "serving /metrics, /healthz and /readyz");
        background.push(tokio::spawn(service::serve_metrics(
            listener,
            observer.clone(),
            cancel.clone(),
        )));
    }
    if let Some(interval) = service::watchdog_interval() {
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "systemd watchdog enabled"
        );
        background.push(tokio::spawn(service::watchdog_loop(
            interval,
            observer.clone(),
            cancel.clone(),
        )));
    }
    observer.set_ready(true);
    service::ready(&format!("collecting {} integration(s)", workers.len()));
    tracing::info!(integrations = workers.len(), "duo-collector running");

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let mut config = config;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = hangup.recv() => {
                let Some(source) = &reload else {
                    tracing::warn!("SIGHUP received, but this process has no config file to reload");
                    continue;
                };
                service::reloading();
                match Config::load(&source.path) {
                    Err(e) => tracing::error!("reload: the new config is invalid; still running on the previous one:\n{e}"),
                    Ok(new) => match apply(&mut runtime, &scheduler, &mut workers, &config, &new, &cancel).await {
                        Ok(summary) => {
                            tracing::info!("{summary}");
                            config = new;
                        }
                        Err(e) => tracing::error!("reload failed; still running on the previous config: {e:#}"),
                    },
                }
                service::ready(&format!("collecting {} integration(s)", workers.len()));
            }
        }
    }
    observer.set_ready(false);
    service::stopping();
    tracing::info!("shutting down: finishing the page in flight");
    let mut scheduler = scheduler;
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "scheduler shutdown");
    }
    for (_, w) in workers.drain() {
        let _ = w.handle.await;
    }
    runtime.shutdown().await;
    for b in background {
        let _ = b.await;
    }
    let (events, pages) = observer.totals();
    tracing::info!(
        events,
        pages,
        uptime = %crate::human::duration_secs(started.elapsed().as_secs() as i64),
        "stopped: {} in {} since start",
        crate::human::count(events, "event", "events"),
        crate::human::count(pages, "page", "pages")
    );
    Ok(())
}

/// Applies a validated new config between pages: removed and changed integrations stop after
/// their page in flight (committing it), then new and changed ones start from their checkpoints.
async fn apply(
    runtime: &mut Runtime,
    scheduler: &JobScheduler,
    workers: &mut HashMap<String, Worker>,
    old: &Config,
    new: &Config,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    if new.collector != old.collector {
        tracing::warn!(
            "reload: [collector] settings changed; they take effect at the next restart"
        );
    }
    let sink_changed =
        |i: &Integration| i.sinks.iter().any(|name| old.sink(name) != new.sink(name));
    let keep: Vec<String> = new
        .integrations
        .iter()
        .filter(|i| old.integration(&i.name) == Some(*i) && !sink_changed(i))
        .map(|i| i.name.clone())
        .collect();
    let stopping: Vec<String> = workers
        .keys()
        .filter(|n| !keep.contains(n))
        .cloned()
        .collect();
    for name in &stopping {
        if let Some(w) = workers.remove(name) {
            tracing::info!(integration = %name, "reload: stopping after the page in flight");
            stop_worker(scheduler, w).await;
        }
    }
    runtime.adopt_sinks(&new.sinks)?;
    let mut started = Vec::new();
    for integration in new.integrations.iter().filter(|i| !keep.contains(&i.name)) {
        let learned = learned_rates(&runtime.store, integration).await;
        let rt = runtime.integration_runtime(integration, learned)?;
        let worker = start_worker(scheduler, runtime, rt, cancel).await?;
        workers.insert(integration.name.clone(), worker);
        started.push(integration.name.clone());
    }
    runtime.integrations = workers.values().map(|w| w.runtime.clone()).collect();
    Ok(format!(
        "reload: config applied ({} unchanged, {} stopped, {} started: {})",
        keep.len(),
        stopping.len(),
        started.len(),
        started.join(", ")
    ))
}
