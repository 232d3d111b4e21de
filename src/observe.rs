//! What the running collector tells the outside world: Prometheus metrics, readiness (no
//! stream failing beyond a threshold), a heartbeat for the systemd watchdog, and a one-line
//! status for `systemctl status`. One `Observer` lives for the whole process, across reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::event::StreamId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub integration: String,
    pub account: String,
    pub log: String,
}

impl From<&StreamId> for StreamLabels {
    fn from(s: &StreamId) -> Self {
        StreamLabels {
            integration: s.integration.clone(),
            account: s.account_id.clone().unwrap_or_default(),
            log: s.source_name().to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub integration: String,
    pub log: String,
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub integration: String,
    /// HTTP status, or `error` when no response arrived.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// prometheus-client writes OpenMetrics, whose counter families are named without `_total`
/// and which has `# UNIT` and `# EOF` lines. Prometheus' classic text format (what promtool and
/// most scrapers parse by default) names the family like its samples and has neither line.
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone)]
struct DurationBuckets;

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        // 0.1 s … ~55 min.
        Histogram::new(exponential_buckets(0.1, 2.0, 16))
    }
}

/// A page the collector committed, as it reports it.
#[derive(Debug, Clone, Copy)]
pub struct CommittedPage<'a> {
    pub stream: &'a StreamId,
    pub events: usize,
    /// How far the stream has delivered everything (`Checkpoint::position_ms`).
    pub position_ms: i64,
    /// The stream's lag by Duo's clock (`checkpoint::lag_ms`).
    pub duo_lag_ms: i64,
    /// Events the stream's run has committed so far, this page included.
    pub run_events: u64,
}

/// Someone watching pages go by (the `collect-now` progress display, the systemd status line).
pub trait PageListener: Send + Sync {
    /// A page was committed.
    fn page(&self, page: &CommittedPage<'_>);
    /// The stream's run ended.
    fn finished(&self, stream: &StreamId, failed: bool);
}

/// Metrics, readiness and liveness of the process.
pub struct Observer {
    listeners: Mutex<Vec<std::sync::Arc<dyn PageListener>>>,
    registry: Registry,
    events_collected: Family<StreamLabels, Counter>,
    events_delivered: Family<DeliveryLabels, Counter>,
    pages: Family<StreamLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    rate_limited: Family<IntegrationLabels, Counter>,
    api_retries: Family<IntegrationLabels, Counter>,
    sink_errors: Family<SinkLabels, Counter>,
    checkpoint_lag: Family<StreamLabels, Gauge>,
    last_success: Family<StreamLabels, Gauge>,
    stream_failing: Family<StreamLabels, Gauge>,
    collection_duration: Family<IntegrationLabels, Histogram, DurationBuckets>,
    duo_clock_offset: Family<IntegrationLabels, Gauge<f64, AtomicU64>>,
    request_rate: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    posture: crate::posture_gauges::PostureGauges,
    leases: crate::lease_metrics::LeaseMetrics,
    consecutive_failures: Mutex<HashMap<StreamId, u32>>,
    unready_after_failures: u32,
    ready: AtomicBool,
    heartbeat_ms: AtomicI64,
    /// Integrations in a collection cycle, with the time of their last progress.
    busy: Mutex<HashMap<String, i64>>,
    /// Each integration's `delay`, for the honest lag (`checkpoint::lag_ms`).
    delays_ms: Mutex<HashMap<String, i64>>,
    /// Events and pages committed by this process, for the totals line at stop.
    events_total: std::sync::atomic::AtomicU64,
    pages_total: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new(1)
    }
}

impl Observer {
    /// `unready_after_failures`: consecutive failed runs of one stream that make `/readyz` fail.
    pub fn new(unready_after_failures: u32) -> Observer {
        let mut registry = Registry::with_prefix("duo_collector");
        let events_collected = Family::default();
        let events_delivered = Family::default();
        let pages = Family::default();
        let api_requests = Family::default();
        let rate_limited = Family::default();
        let api_retries = Family::default();
        let sink_errors = Family::default();
        let checkpoint_lag = Family::default();
        let last_success = Family::default();
        let stream_failing = Family::default();
        let collection_duration = Family::new_with_constructor(DurationBuckets);
        let duo_clock_offset = Family::<IntegrationLabels, Gauge<f64, AtomicU64>>::default();
        let request_rate = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "duo_clock_offset",
            "Duo's clock minus this host's, measured from response Date headers",
            prometheus_client::registry::Unit::Seconds,
            duo_clock_offset.clone(),
        );
        registry.register(
            "request_rate_per_minute",
            "The pace at which the stream's endpoint is asked (adapted on 429s)",
            request_rate.clone(),
        );
        registry.register(
            "events_collected",
            "Events fetched from Duo and handed to the sinks",
            events_collected.clone(),
        );
        registry.register(
            "events_delivered",
            "Events acknowledged by a sink",
            events_delivered.clone(),
        );
        registry.register("pages", "Pages committed (checkpoint moved)", pages.clone());
        registry.register(
            "api_requests",
            "Duo API responses by HTTP status",
            api_requests.clone(),
        );
        registry.register(
            "api_rate_limited",
            "Duo API answers with HTTP 429",
            rate_limited.clone(),
        );
        registry.register(
            "api_retries",
            "Duo API requests retried",
            api_retries.clone(),
        );
        registry.register("sink_errors", "Failed sink deliveries", sink_errors.clone());
        registry.register_with_unit(
            "checkpoint_lag",
            "How far the checkpoint is behind what could be collected (now - delay); 0 when caught up",
            prometheus_client::registry::Unit::Seconds,
            checkpoint_lag.clone(),
        );
        registry.register_with_unit(
            "last_success_timestamp",
            "When a run of the stream last succeeded (Unix time)",
            prometheus_client::registry::Unit::Seconds,
            last_success.clone(),
        );
        registry.register(
            "stream_failing",
            "1 while the stream's latest run failed",
            stream_failing.clone(),
        );
        registry.register_with_unit(
            "collection_duration",
            "Duration of an integration's collection cycle",
            prometheus_client::registry::Unit::Seconds,
            collection_duration.clone(),
        );
        // A gauge rather than an OpenMetrics info metric, so that Prometheus' text parser
        // (and promtool) accept the exposition.
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "Build information (always 1)", build_info);
        let posture = crate::posture_gauges::PostureGauges::register(&mut registry);
        let leases = crate::lease_metrics::LeaseMetrics::register(&mut registry);
        Observer {
            listeners: Mutex::new(Vec::new()),
            registry,
            events_collected,
            events_delivered,
            pages,
            api_requests,
            rate_limited,
            api_retries,
            sink_errors,
            checkpoint_lag,
            last_success,
            stream_failing,
            collection_duration,
            duo_clock_offset,
            request_rate,
            posture,
            leases,
            consecutive_failures: Mutex::new(HashMap::new()),
            unready_after_failures: unready_after_failures.max(1),
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicI64::new(crate::clock::now_ms()),
            busy: Mutex::new(HashMap::new()),
            delays_ms: Mutex::new(HashMap::new()),
            events_total: std::sync::atomic::AtomicU64::new(0),
            pages_total: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// (events, pages) committed by this process so far.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.events_total.load(Ordering::Relaxed),
            self.pages_total.load(Ordering::Relaxed),
        )
    }

    /// The integration's `delay`: lag counts from `now − delay`, the newest collectable time.
    pub fn set_delay(&self, integration: &str, delay: std::time::Duration) {
        self.delays_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(integration.to_string(), delay.as_millis() as i64);
    }

    fn delay_ms(&self, integration: &str) -> i64 {
        self.delays_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(integration)
            .copied()
            .unwrap_or(0)
    }

    /// Sets a stream's `checkpoint_lag_seconds` (after a cycle, from the state: see
    /// `status::stream_lag_seconds`).
    pub fn set_checkpoint_lag(&self, labels: StreamLabels, seconds: i64) {
        self.checkpoint_lag
            .get_or_create(&labels)
            .set(seconds.max(0));
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        openmetrics_to_prometheus_text(&out)
    }

    /// Routes page and run events to `listener` as well.
    pub fn add_listener(&self, listener: std::sync::Arc<dyn PageListener>) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    fn listeners(&self) -> Vec<std::sync::Arc<dyn PageListener>> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A page committed by the collector, delivered to `sinks`.
    pub fn page_committed(&self, page: &CommittedPage<'_>, sinks: &[String]) {
        let CommittedPage {
            stream,
            events,
            position_ms,
            ..
        } = *page;
        let lag_seconds = crate::checkpoint::lag_ms(
            crate::clock::now_ms(),
            self.delay_ms(&stream.integration),
            position_ms,
        ) / 1000;
        for l in self.listeners() {
            l.page(page);
        }
        self.events_total
            .fetch_add(events as u64, std::sync::atomic::Ordering::Relaxed);
        self.pages_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let labels = StreamLabels::from(stream);
        self.pages.get_or_create(&labels).inc();
        self.events_collected
            .get_or_create(&labels)
            .inc_by(events as u64);
        self.checkpoint_lag
            .get_or_create(&labels)
            .set(lag_seconds.max(0));
        for sink in sinks {
            self.events_delivered
                .get_or_create(&DeliveryLabels {
                    integration: stream.integration.clone(),
                    log: stream.source_name().to_string(),
                    sink: sink.clone(),
                })
                .inc_by(events as u64);
        }
        self.progress(&stream.integration);
    }

    fn progress(&self, integration: &str) {
        self.progress_until(integration, std::time::Duration::ZERO);
    }

    /// Progress now, and a deliberate wait of `wait` ahead (a retry backoff): not a wedge.
    fn progress_until(&self, integration: &str, wait: std::time::Duration) {
        let until = crate::clock::now_ms() + wait.as_millis() as i64;
        if let Some(t) = self
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(integration)
        {
            *t = (*t).max(until);
        }
        self.beat();
    }

    pub fn cycle_started(&self, integration: &str) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(integration.to_string(), crate::clock::now_ms());
    }

    /// Integrations busy in a cycle that made no progress for `threshold_ms`: wedged.
    pub fn stalled(&self, threshold_ms: i64) -> Vec<String> {
        let now = crate::clock::now_ms();
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = busy
            .iter()
            .filter(|(_, t)| now - **t > threshold_ms)
            .map(|(i, _)| i.clone())
            .collect();
        v.sort();
        v
    }

    pub fn api_response(&self, integration: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        if status == "429" {
            self.rate_limited
                .get_or_create(&IntegrationLabels {
                    integration: integration.to_string(),
                })
                .inc();
        }
        self.api_requests
            .get_or_create(&ApiLabels {
                integration: integration.to_string(),
                status,
            })
            .inc();
    }

    /// Duo's clock offset for `integration`, as last measured.
    pub fn duo_clock_offset(&self, integration: &str, offset_ms: i64) {
        self.duo_clock_offset
            .get_or_create(&IntegrationLabels {
                integration: integration.to_string(),
            })
            .set(offset_ms as f64 / 1000.0);
    }

    /// The pace of the stream's endpoint changed.
    pub fn request_rate(&self, stream: &StreamId, per_minute: f64) {
        self.request_rate
            .get_or_create(&StreamLabels::from(stream))
            .set(per_minute);
    }

    /// This instance's lease metrics (NATS state store).
    pub fn leases(&self) -> &crate::lease_metrics::LeaseMetrics {
        &self.leases
    }

    /// The posture counts of an account's latest complete inventory snapshot.
    pub fn posture(
        &self,
        integration: &str,
        account: Option<&str>,
        counts: &crate::inventory::PostureCounts,
    ) {
        self.posture.set(integration, account.unwrap_or(""), counts);
    }

    /// A Duo request retried after `wait` (a deliberate backoff, not a wedge).
    pub fn api_retry(&self, integration: &str, wait: std::time::Duration) {
        self.api_retries
            .get_or_create(&IntegrationLabels {
                integration: integration.to_string(),
            })
            .inc();
        self.progress_until(integration, wait);
    }

    /// A failed sink attempt that will be retried: counted, and progress for the watchdog.
    /// A stream of `integration` now waits `wait` before retrying (backpressure from a sink),
    /// which the watchdog must not take for a wedge.
    pub fn waiting(&self, integration: &str, wait: std::time::Duration) {
        self.progress_until(integration, wait);
    }

    pub fn sink_error(&self, sink: &str) {
        self.sink_errors
            .get_or_create(&SinkLabels {
                sink: sink.to_string(),
            })
            .inc();
    }

    /// Records the end of a stream's run: success resets its failure count.
    pub fn run_finished(&self, stream: &StreamId, failed: bool) {
        for l in self.listeners() {
            l.finished(stream, failed);
        }
        let labels = StreamLabels::from(stream);
        let mut failures = self
            .consecutive_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if failed {
            *failures.entry(stream.clone()).or_insert(0) += 1;
            self.stream_failing.get_or_create(&labels).set(1);
        } else {
            failures.remove(stream);
            self.stream_failing.get_or_create(&labels).set(0);
            self.last_success
                .get_or_create(&labels)
                .set(chrono::Utc::now().timestamp());
        }
        self.beat();
    }

    /// The stream's run ended because another instance has it now (its lease was lost or given
    /// up): its failures and gauges leave this instance's readiness and metrics, which would
    /// otherwise keep them with no later run here to clear them.
    pub fn stream_left(&self, stream: &StreamId, lost: bool) {
        for l in self.listeners() {
            l.finished(stream, lost);
        }
        self.forget_stream(stream);
        self.beat();
    }

    /// A stream this instance no longer holds: out of its readiness and gauges.
    pub fn forget_stream(&self, stream: &StreamId) {
        let labels = StreamLabels::from(stream);
        self.consecutive_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stream);
        self.stream_failing.remove(&labels);
        self.checkpoint_lag.remove(&labels);
    }

    pub fn cycle_finished(&self, integration: &str, seconds: f64) {
        self.collection_duration
            .get_or_create(&IntegrationLabels {
                integration: integration.to_string(),
            })
            .observe(seconds);
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(integration);
        self.beat();
    }

    /// Streams whose latest runs failed at least the threshold number of times in a row.
    pub fn failing_streams(&self) -> Vec<StreamId> {
        let failures = self
            .consecutive_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<StreamId> = failures
            .iter()
            .filter(|(_, n)| **n >= self.unready_after_failures)
            .map(|(s, _)| s.clone())
            .collect();
        v.sort();
        v
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Ready: started, and no stream failing beyond the threshold.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.failing_streams().is_empty()
    }

    /// Marks progress: a page, a retry, an idle wait that woke up.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(crate::clock::now_ms(), Ordering::SeqCst);
    }

    pub fn last_beat_ms(&self) -> i64 {
        self.heartbeat_ms.load(Ordering::SeqCst)
    }
}
