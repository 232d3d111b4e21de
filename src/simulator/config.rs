//! What a simulator is told (configuration, faults) and what it tells a test (recorded requests,
//! expected events).

use std::time::Duration;

use super::data::Kind;

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

    pub(crate) fn get(&self, kind: Kind) -> usize {
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

/// Simulator configuration. See the field comments; [`Default`] gives a demo tenant with every
/// harsh mode off, [`SimConfig::strict`] turns on the ones exactly-once tests run against.
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
    /// Each event becomes visible at `ts + deterministic(0..=this)` (but see `late_tail_rate`).
    pub max_visibility_delay_ms: i64,
    /// `None` = off; otherwise a token bucket per (ikey, account, endpoint path) — the unit Duo
    /// rate-limits — over every signed endpoint (`/auth/v2/ping` is never limited). Refills
    /// `per_minute / 60` tokens per second; `Some(0)` refuses everything.
    pub rate_limit_per_minute: Option<u32>,
    /// Capacity of each rate-limit bucket (buckets start full); 0 counts as 1.
    pub rate_limit_burst: u32,
    /// This fraction of v2 and Trust Monitor pages (chosen from the seed and the request's
    /// parameters, so a retry gets the same page) is cut to 1..limit−1 records while more
    /// records exist, with a cursor that continues right after the last record returned.
    pub short_page_rate: f64,
    /// The last non-empty page of a window still carries a cursor; following it gives an empty
    /// page without one (Duo's docs leave open which of the two ends a window).
    pub cursor_on_last_page: bool,
    /// This fraction of events is published later than Duo's usual delay: visible at
    /// `ts + max_visibility_delay_ms + deterministic(0..=late_tail_ms)`.
    pub late_tail_rate: f64,
    pub late_tail_ms: i64,
    /// A `Date` further than this from Duo's clock gives 401/40105.
    pub max_clock_skew_s: i64,
    /// Artificial latency added to every log response.
    pub response_delay_ms: u64,
    /// Log kind names (`authentication`, `trust_monitor`, ...) and inventory listing names
    /// (`users`, `admins`, `groups`, `phones`, `endpoints`, `integrations`, `summary`)
    /// answered with 403/40301.
    pub forbidden_kinds: Vec<String>,
    /// MSP: Accounts API keys and child accounts.
    pub accounts: Option<AccountsConfig>,
    /// Administrator log: make one second hold more than 1000 records (needs > 1000 events).
    pub admin_second_over_1000: bool,
    /// Duo's clock = the real clock + this. It drives everything: the `Date` response header,
    /// `/auth/v2/ping`, the request `Date` check, visibility, the 180-day `mintime` floor and the
    /// rate limiter. A host clock 45 s ahead of Duo is `-45_000`. Changeable at run time with
    /// [`super::SimHandle::set_clock_offset_ms`].
    pub clock_offset_ms: i64,
    /// Auth API keys `(ikey, skey)` accepted by `/auth/v2/check`.
    pub auth_api_keys: Option<(String, String)>,
    /// Render every record's JSON once at start (on all cores) and serve pages by copying the
    /// text, instead of rendering each record per request: for benchmarks, so that the
    /// simulator is not the bottleneck. Costs memory (about 1.1 KB per authentication event).
    pub prerender: bool,
    /// Inventory per account (users, admins, groups, endpoints, applications); child accounts
    /// get the same counts from their own seed.
    pub inventory: super::inventory::InventoryCounts,
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
            rate_limit_burst: 1,
            short_page_rate: 0.0,
            cursor_on_last_page: false,
            late_tail_rate: 0.0,
            late_tail_ms: 0,
            max_clock_skew_s: 300,
            response_delay_ms: 0,
            forbidden_kinds: Vec::new(),
            accounts: None,
            admin_second_over_1000: false,
            clock_offset_ms: 0,
            auth_api_keys: None,
            prerender: false,
            inventory: super::inventory::InventoryCounts::default(),
        }
    }
}

impl SimConfig {
    /// The harsh readings of Duo an exactly-once collector must survive: short pages with
    /// cursors, a cursor on the last page, and per-endpoint rate limits (600/min, burst 5).
    /// The late tail stays off: events published later than the collector's `delay` are lost
    /// by any collector, so tests turn it on together with a matching `delay`.
    pub fn strict(self) -> SimConfig {
        SimConfig {
            short_page_rate: 0.25,
            cursor_on_last_page: true,
            rate_limit_per_minute: Some(600),
            rate_limit_burst: 5,
            ..self
        }
    }

    /// One line per harsh mode that is on, for startup output.
    pub fn describe_modes(&self) -> Vec<String> {
        let mut modes = Vec::new();
        if let Some(per_minute) = self.rate_limit_per_minute {
            modes.push(format!(
                "rate limit: {per_minute} requests/min per (key, account, endpoint), burst {}",
                self.rate_limit_burst.max(1)
            ));
        }
        if self.short_page_rate > 0.0 {
            modes.push(format!(
                "short pages: {:.0}% of v2 and Trust Monitor pages hold fewer than `limit` records and still carry a cursor",
                self.short_page_rate * 100.0
            ));
        }
        if self.cursor_on_last_page {
            modes.push(
                "cursor on the last page: a window ends with an empty page without a cursor"
                    .to_string(),
            );
        }
        if self.late_tail_rate > 0.0 && self.late_tail_ms > 0 {
            modes.push(format!(
                "late tail: {:.2}% of events published up to {} after the usual {} delay",
                self.late_tail_rate * 100.0,
                humantime::format_duration(Duration::from_millis(self.late_tail_ms as u64)),
                humantime::format_duration(Duration::from_millis(
                    self.max_visibility_delay_ms.max(0) as u64
                )),
            ));
        }
        if self.clock_offset_ms != 0 {
            modes.push(format!(
                "Duo's clock: {:+} ms from this host's",
                self.clock_offset_ms
            ));
        }
        modes
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
    /// 400 / 40002 "Invalid next_offset", as Duo answers a cursor it no longer accepts. Only a
    /// log request that carries a cursor (`next_offset`, or `offset`) consumes it; others pass
    /// it by and it stays queued.
    RejectCursor,
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
    /// Duo's clock (the real clock + the clock offset), ms since the epoch.
    pub received_at_ms: i64,
    pub status: u16,
    /// The ikey from the Authorization header, if one could be parsed.
    pub ikey: Option<String>,
    /// The `account_id` parameter, if any.
    pub account_id: Option<String>,
    /// Log kind name for log endpoints.
    pub kind: Option<String>,
    /// Listing name (`users`, `admins`, `groups`, `phones`, `endpoints`, `integrations`) for
    /// inventory endpoints.
    pub listing: Option<String>,
    /// Number of records (or listed entities) returned, successful responses only.
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
