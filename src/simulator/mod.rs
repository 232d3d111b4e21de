//! Embedded Duo Admin API simulator.
//!
//! Behaves like Duo as described in `duo-api.md` (§1.7, §2, §3, §4): signed requests (v2-SHA1,
//! v2-SHA512 and v5, verified against the configured host name), the five log endpoints with
//! Duo's paging rules, the two-minute style visibility delay, Duo-shaped errors, rate limiting,
//! MSP child accounts and injectable faults.
//!
//! Where Duo's behaviour is uncertain the simulator can take the harsher reading
//! ([`SimConfig::strict`] turns most of these on; each is a [`SimConfig`] field):
//! - rate limits per (ikey, account, endpoint path), a token bucket, 429/42901 without
//!   `Retry-After`;
//! - short pages: fewer than `limit` records while more exist, still with a cursor (so a window
//!   ends only on a page without a cursor, §2.8);
//! - a cursor on the last page, followed by an empty page without one;
//! - a late-publication tail longer than the usual visibility delay;
//! - Duo's own clock (real clock + offset) for the `Date` header of every response,
//!   `/auth/v2/ping`, the request `Date` check, visibility, the 180-day floor and the limiter;
//! - a positional Trust Monitor `offset` (the n-th record of the `[mintime, maxtime, type]`
//!   result), so changing the query mid-window gives a wrong page, as on Duo;
//! - [`Fault::RejectCursor`]: 400/40002 for a request that carries a cursor.
//!
//! Everything is deterministic from `(seed, counts, start_ms, end_ms)`: per event only a compact
//! `(timestamp µs, 128-bit id, visibility delay)` triple is kept, sorted; the JSON records are
//! rendered on demand from a hash of the event id (or all at start with `prerender`). Which
//! pages are short is a hash of the seed and the request's parameters, so a retry gets the same
//! page.
//!
//! Fault matching: a [`FaultRule`] with `path_contains: None` matches only *log* requests
//! (`/admin/v*/logs/*` and `/admin/v1/trust_monitor/events`); with `Some(s)` it matches any
//! request whose path contains `s` (including `/auth/v2/ping`). Rules are consumed one per
//! matching request, the first matching rule in queue order; a [`Fault::RejectCursor`] rule
//! matches only requests that carry a cursor.

mod auth;
mod clock;
mod config;
mod data;
mod errors;
mod faults;
mod fields;
pub mod inventory;
mod logs;
mod ratelimit;
mod records;
mod rng;
mod served;
mod server;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use clock::DuoClock;
use data::{Dataset, Kind};
use inventory::{Inventory, PushOutcome, PushRecord, PushState};
use ratelimit::RateLimiter;

pub use config::{
    AccountsConfig, ChildAccount, ExpectedEvent, Fault, FaultRule, KindCounts, RecordedRequest,
    SimConfig,
};

/// Maximum number of requests kept by [`SimHandle::requests`].
pub const MAX_RECORDED_REQUESTS: usize = 100_000;

pub(crate) struct ChildEntry {
    pub child: ChildAccount,
    /// `None` once removed (the host is kept so signatures still verify).
    pub data: Option<Arc<Dataset>>,
}

pub(crate) struct State {
    pub cfg: SimConfig,
    pub parent: Arc<Dataset>,
    pub children: Mutex<Vec<ChildEntry>>,
    pub requests: Mutex<VecDeque<RecordedRequest>>,
    pub faults: Mutex<VecDeque<FaultRule>>,
    pub limiter: RateLimiter,
    pub clock: DuoClock,
    /// Per account (`None` = the parent's own).
    pub inventories: Mutex<HashMap<Option<String>, Inventory>>,
    pub push: Mutex<PushState>,
}

/// Lock, recovering from poisoning (a panicking test thread must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
pub(crate) fn now_ms() -> i64 {
    clock::real_now_ms()
}

impl State {
    fn new(cfg: SimConfig) -> State {
        let parent = Arc::new(
            Dataset::generate(&cfg, cfg.seed, &cfg.counts, None, &cfg.api_hostname)
                .prerendered_if(cfg.prerender),
        );
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
        let clock = DuoClock::new(cfg.clock_offset_ms);
        let now_s = clock.now_ms().div_euclid(1000);
        let mut inventories = HashMap::new();
        inventories.insert(None, Inventory::generate(cfg.seed, &cfg.inventory, now_s));
        for c in cfg.accounts.iter().flat_map(|a| a.children.iter()) {
            inventories.insert(
                Some(c.account_id.clone()),
                Inventory::generate(c.seed, &cfg.inventory, now_s),
            );
        }
        State {
            parent,
            inventories: Mutex::new(inventories),
            push: Mutex::new(PushState::default()),
            children: Mutex::new(children),
            requests: Mutex::new(VecDeque::new()),
            faults: Mutex::new(VecDeque::new()),
            limiter: RateLimiter::new(cfg.rate_limit_per_minute, cfg.rate_limit_burst),
            clock,
            cfg,
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

    /// An account's inventory as it is now (`None` = the parent's own): the truth a snapshot
    /// must reproduce.
    pub fn inventory(&self, account_id: Option<&str>) -> Option<Inventory> {
        lock(&self.state.inventories)
            .get(&account_id.map(str::to_string))
            .cloned()
    }

    /// Change an account's inventory (between snapshots, or during one).
    pub fn mutate_inventory(&self, account_id: Option<&str>, change: impl FnOnce(&mut Inventory)) {
        if let Some(inv) = lock(&self.state.inventories).get_mut(&account_id.map(str::to_string)) {
            change(inv);
        }
    }

    /// How `username` answers the pushes sent to them from now on (default: approve).
    pub fn set_push_outcome(&self, username: &str, outcome: PushOutcome) {
        lock(&self.state.push)
            .outcomes
            .insert(username.to_string(), outcome);
    }

    /// Every push sent through the Auth API so far.
    pub fn pushes(&self) -> Vec<PushRecord> {
        lock(&self.state.push).pushes.clone()
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

    /// Set Duo's clock to the real clock + `offset_ms`, from the next request on.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.state.clock.set_offset_ms(offset_ms);
    }

    /// Duo's clock now, ms since the epoch (what `Date`, visibility and the limiter use).
    pub fn duo_now_ms(&self) -> i64 {
        self.state.clock.now_ms()
    }

    /// 429s answered by the rate limiter so far (injected [`Fault::RateLimited`] and
    /// [`Fault::Status`] 429s are not counted: see [`SimHandle::requests`] for those).
    pub fn rate_limited_count(&self) -> u64 {
        self.state.limiter.refused(None)
    }

    /// [`SimHandle::rate_limited_count`] for one endpoint path, e.g. `/admin/v2/logs/activity`.
    pub fn rate_limited_count_for(&self, path: &str) -> u64 {
        self.state.limiter.refused(Some(path))
    }

    /// The events of `kind` (a log kind name) that are visible at `visible_at_ms` (Duo's clock;
    /// late-tail events count from their late publication) and have `ts <= up_to_ts_ms`, in
    /// ascending `(ts, id)` order. Unknown account or kind: empty.
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
        let now_s = self.state.clock.now_ms().div_euclid(1000);
        lock(&self.state.inventories).insert(
            Some(child.account_id.clone()),
            Inventory::generate(child.seed, &self.state.cfg.inventory, now_s),
        );
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
