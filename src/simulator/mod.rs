//! Embedded Duo Admin API simulator.
//!
//! Behaves like Duo as described in `duo-api.md` (§1.7, §2, §3, §4): signed requests (v2-SHA1,
//! v2-SHA512 and v5, verified against the configured host name), the five log endpoints with
//! Duo's paging rules, the two-minute style visibility delay, Duo-shaped errors, rate limiting,
//! MSP child accounts and injectable faults.
//!
//! Everything is deterministic from `(seed, counts, start_ms, end_ms)`: per event only a compact
//! `(timestamp µs, 128-bit id, visibility delay)` triple is kept, sorted; the JSON records are
//! rendered on demand from a hash of the event id (or all at start with `prerender`).
//!
//! Fault matching: a [`FaultRule`] with `path_contains: None` matches only *log* requests
//! (`/admin/v*/logs/*` and `/admin/v1/trust_monitor/events`); with `Some(s)` it matches any
//! request whose path contains `s` (including `/auth/v2/ping`). Rules are consumed one per
//! matching request, the first matching rule in queue order.

mod auth;
mod data;
mod errors;
mod faults;
mod records;
mod server;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use data::{Dataset, Kind};

/// Maximum number of requests kept by [`SimHandle::requests`].
pub const MAX_RECORDED_REQUESTS: usize = 100_000;

/// Number of events per log kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub authentication: usize,
    pub administrator: usize,
    pub telephony: usize,
    pub activity: usize,
    pub trust_monitor: usize,
    pub offline_enrollment: usize,
}

impl KindCounts {
    /// The same count for every kind.
    pub fn uniform(n: usize) -> Self {
        KindCounts {
            authentication: n,
            administrator: n,
            telephony: n,
            activity: n,
            trust_monitor: n,
            offline_enrollment: n,
        }
    }

    fn get(&self, kind: Kind) -> usize {
        match kind {
            Kind::Authentication => self.authentication,
            Kind::Administrator => self.administrator,
            Kind::Telephony => self.telephony,
            Kind::Activity => self.activity,
            Kind::TrustMonitor => self.trust_monitor,
            Kind::OfflineEnrollment => self.offline_enrollment,
        }
    }
}

/// Simulator configuration. See the field comments; [`Default`] gives a demo tenant.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Host the signatures are verified against (lowercased), e.g. `api-sim00001.duosecurity.com`.
    pub api_hostname: String,
    /// Admin API integration key.
    pub ikey: String,
    /// Admin API secret key.
    pub skey: String,
    pub seed: u64,
    /// Event timestamps are spread over `[start_ms, end_ms)`; `end_ms` may lie in the future.
    pub start_ms: i64,
    pub end_ms: i64,
    pub counts: KindCounts,
    /// Each event becomes visible at `ts + deterministic(0..=this)`.
    pub max_visibility_delay_ms: i64,
    /// `None` = off; otherwise a token bucket per (ikey, account) over all log requests.
    pub rate_limit_per_minute: Option<u32>,
    /// A `Date` further than this from the server clock gives 401/40105.
    pub max_clock_skew_s: i64,
    /// Artificial latency added to every log response.
    pub response_delay_ms: u64,
    /// Log kind names (`authentication`, `trust_monitor`, ...) answered with 403/40301.
    pub forbidden_kinds: Vec<String>,
    /// MSP: Accounts API keys and child accounts.
    pub accounts: Option<AccountsConfig>,
    /// Administrator log: make one second hold more than 1000 records (needs > 1000 events).
    pub admin_second_over_1000: bool,
    /// Added to the simulator's clock for `/auth/v2/ping` and the `Date` check, as if the
    /// collector's host clock were off by minus this much.
    pub clock_offset_ms: i64,
    /// Auth API keys `(ikey, skey)` accepted by `/auth/v2/check`.
    pub auth_api_keys: Option<(String, String)>,
    /// Render every record's JSON once at start (on all cores) and serve pages by copying the
    /// text, instead of rendering each record per request: for benchmarks, so that the
    /// simulator is not the bottleneck. Costs memory (about 1.1 KB per authentication event).
    pub prerender: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        let now = chrono::Utc::now().timestamp_millis();
        SimConfig {
            api_hostname: "api-sim00001.duosecurity.com".to_string(),
            ikey: "DIS1MULAT0R0ADM1NKEY".to_string(),
            skey: "simulatorsecretkeysimulatorsecretkey0000".to_string(),
            seed: 1,
            start_ms: now - 2 * 86_400_000,
            end_ms: now,
            counts: KindCounts {
                authentication: 3000,
                administrator: 1500,
                telephony: 600,
                activity: 1200,
                trust_monitor: 150,
                offline_enrollment: 1100,
            },
            max_visibility_delay_ms: 120_000,
            rate_limit_per_minute: None,
            max_clock_skew_s: 300,
            response_delay_ms: 0,
            forbidden_kinds: Vec::new(),
            accounts: None,
            admin_second_over_1000: false,
            clock_offset_ms: 0,
            auth_api_keys: None,
            prerender: false,
        }
    }
}

/// Accounts API (MSP parent) keys plus the child accounts.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub ikey: String,
    pub skey: String,
    pub children: Vec<ChildAccount>,
}

/// A child account with its own dataset (same time range and visibility delay as the parent).
#[derive(Debug, Clone)]
pub struct ChildAccount {
    /// `"DA"` + 18 characters.
    pub account_id: String,
    pub name: String,
    pub api_hostname: String,
    pub counts: KindCounts,
    pub seed: u64,
}

/// An injectable fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// That HTTP status with a Duo-shaped error body (`code` = status·100+1).
    Status(u16),
    /// 429 / 42901.
    RateLimited,
    /// The real response, cut in half (valid HTTP, invalid JSON).
    TruncatedBody,
    /// 200 with a body that is not valid JSON.
    MalformedJson,
    /// 502 with an nginx-style HTML page.
    HtmlErrorPage,
    /// Wait, then answer normally.
    Delay(Duration),
}

/// A fault plus an optional path filter (see the module docs for matching rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub path_contains: Option<String>,
    pub fault: Fault,
}

impl From<Fault> for FaultRule {
    fn from(fault: Fault) -> Self {
        FaultRule {
            path_contains: None,
            fault,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Decoded query (GET) or form body (POST) parameters, in wire order.
    pub params: Vec<(String, String)>,
    /// Server clock, ms since the epoch.
    pub received_at_ms: i64,
    pub status: u16,
    /// The ikey from the Authorization header, if one could be parsed.
    pub ikey: Option<String>,
    /// The `account_id` parameter, if any.
    pub account_id: Option<String>,
    /// Log kind name for log endpoints.
    pub kind: Option<String>,
    /// Number of records returned (successful log responses only).
    pub records: Option<usize>,
    /// The page ended inside a group of records sharing one timestamp unit (ms for v2 and Trust
    /// Monitor, s for v1) that continues after this page.
    pub boundary_split: bool,
    /// The injected fault applied to this request, if any.
    pub fault: Option<Fault>,
    /// Server-side handling time in µs (including injected and configured delays).
    pub handling_us: u64,
    /// The host name the request's signature was valid for.
    pub signed_host: Option<String>,
}

/// An event a perfect collector must have delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedEvent {
    /// Event time (surfaced time for Trust Monitor; whole seconds ·1000 for v1 kinds).
    pub ts_ms: i64,
    /// txid / telephony_id / activity_id / sekey; a simulator-internal UUID for v1 kinds.
    pub id: String,
    pub record: serde_json::Value,
}

pub(crate) struct ChildEntry {
    pub child: ChildAccount,
    /// `None` once removed (the host is kept so signatures still verify).
    pub data: Option<Arc<Dataset>>,
}

pub(crate) struct Bucket {
    pub tokens: f64,
    pub last_ms: i64,
}

pub(crate) struct State {
    pub cfg: SimConfig,
    pub parent: Arc<Dataset>,
    pub children: Mutex<Vec<ChildEntry>>,
    pub requests: Mutex<VecDeque<RecordedRequest>>,
    pub faults: Mutex<VecDeque<FaultRule>>,
    pub buckets: Mutex<HashMap<(String, String), Bucket>>,
}

/// Lock, recovering from poisoning (a panicking test thread must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl State {
    fn new(cfg: SimConfig) -> State {
        let parent = Arc::new(Dataset::generate(
            &cfg,
            cfg.seed,
            &cfg.counts,
            None,
            &cfg.api_hostname,
        ));
        let children = cfg
            .accounts
            .as_ref()
            .map(|a| {
                a.children
                    .iter()
                    .map(|c| ChildEntry {
                        data: Some(Arc::new(Dataset::for_child(&cfg, c))),
                        child: c.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        State {
            cfg,
            parent,
            children: Mutex::new(children),
            requests: Mutex::new(VecDeque::new()),
            faults: Mutex::new(VecDeque::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The dataset of an account (`None` = the parent's own data).
    pub(crate) fn dataset(&self, account_id: Option<&str>) -> Option<Arc<Dataset>> {
        match account_id {
            None => Some(self.parent.clone()),
            Some(id) => lock(&self.children)
                .iter()
                .find(|c| c.child.account_id == id)
                .and_then(|c| c.data.clone()),
        }
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        let mut log = lock(&self.requests);
        if log.len() >= MAX_RECORDED_REQUESTS {
            log.pop_front();
        }
        log.push_back(req);
    }
}

/// Cheap, cloneable access to a running simulator's state.
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<State>,
}

impl SimHandle {
    /// Every request received so far (at most [`MAX_RECORDED_REQUESTS`], oldest dropped first).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).iter().cloned().collect()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Queue faults (consumed one per matching request, in order). Accepts `Vec<Fault>`
    /// (matching log requests) or `Vec<FaultRule>` (with optional path filters).
    pub fn inject_faults<F: Into<FaultRule>>(&self, faults: Vec<F>) {
        self.inject_fault_rules(faults.into_iter().map(Into::into).collect());
    }

    /// Queue faults with explicit path filters.
    pub fn inject_fault_rules(&self, rules: Vec<FaultRule>) {
        lock(&self.state.faults).extend(rules);
    }

    /// Faults not yet consumed.
    pub fn pending_faults(&self) -> usize {
        lock(&self.state.faults).len()
    }

    /// The events of `kind` (a log kind name) that are visible at `visible_at_ms` and have
    /// `ts <= up_to_ts_ms`, in ascending `(ts, id)` order. Unknown account or kind: empty.
    pub fn expected_events(
        &self,
        account_id: Option<&str>,
        kind: &str,
        visible_at_ms: i64,
        up_to_ts_ms: i64,
    ) -> Vec<ExpectedEvent> {
        let (Some(data), Some(kind)) = (self.state.dataset(account_id), Kind::from_name(kind))
        else {
            return Vec::new();
        };
        data.expected(kind, visible_at_ms, up_to_ts_ms)
    }

    /// Add (or replace) a child account; it appears in the next `account/list`.
    pub fn add_child_account(&self, child: ChildAccount) {
        let data = Arc::new(Dataset::for_child(&self.state.cfg, &child));
        let mut children = lock(&self.state.children);
        children.retain(|c| c.child.account_id != child.account_id);
        children.push(ChildEntry {
            child,
            data: Some(data),
        });
    }

    /// Remove a child account: it disappears from `account/list` and its `account_id` is
    /// answered with 400/40002 from then on.
    pub fn remove_child_account(&self, account_id: &str) {
        for c in lock(&self.state.children).iter_mut() {
            if c.child.account_id == account_id {
                c.data = None;
            }
        }
    }
}

/// A running simulator. Dropping it stops the server too (without waiting).
pub struct Simulator {
    addr: SocketAddr,
    handle: SimHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Generate the datasets, bind `listen` (port 0 allowed) and serve in a spawned task.
    pub async fn start(listen: SocketAddr, cfg: SimConfig) -> std::io::Result<Simulator> {
        let state = tokio::task::spawn_blocking(move || Arc::new(State::new(cfg)))
            .await
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = server::router(state.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "simulator server stopped with an error");
            }
        });
        Ok(Simulator {
            addr,
            handle: SimHandle { state },
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (the bound IP, or 127.0.0.1 for an unspecified address).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stop accepting, let in-flight requests finish (at most 5 s), then return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
