//! `duo-collector test-connectivity`: a checklist per integration (proxy, DNS, TLS, clock, keys,
//! permissions per log kind, MSP children, Auth API keys) and per sink, each line PASS, WARN or
//! FAIL with a hint that says what to fix.

use crate::duo::Call;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::clock::SystemClock;
use crate::config::Integration;
use crate::duo::{DuoClient, DuoClock, DuoError, ProxyRoute, RetryPolicy};
use crate::inventory::InventoryKind;
use crate::logs::page::{response_of, PageError};
use crate::logs::LogKind;
use crate::pager::{self, Next, PagerSettings};
use crate::settings::Config;
use crate::sink::SinkSettings;
use crate::sink::{DriverError, Probe};
use crate::state::StoreSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn pass(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            verdict: Verdict::Pass,
            detail: detail.into(),
            hint: None,
        }
    }
    fn warn(check: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            verdict: Verdict::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
    fn fail(check: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            verdict: Verdict::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// `integration NAME` or `sink NAME`.
    pub target: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectivityReport {
    pub sections: Vec<Section>,
}

impl ConnectivityReport {
    pub fn failed(&self) -> bool {
        self.sections
            .iter()
            .flat_map(|s| &s.checks)
            .any(|c| c.verdict == Verdict::Fail)
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            out.push_str(&format!("{}\n", s.target));
            for c in &s.checks {
                let v = match c.verdict {
                    Verdict::Pass => "PASS",
                    Verdict::Warn => "WARN",
                    Verdict::Fail => "FAIL",
                };
                out.push_str(&format!("  {v}  {}: {}\n", c.check, c.detail));
                if let Some(h) = &c.hint {
                    out.push_str(&format!("        fix: {h}\n"));
                }
            }
        }
        let fails = self
            .sections
            .iter()
            .flat_map(|s| &s.checks)
            .filter(|c| c.verdict == Verdict::Fail)
            .count();
        let warns = self
            .sections
            .iter()
            .flat_map(|s| &s.checks)
            .filter(|c| c.verdict == Verdict::Warn)
            .count();
        out.push_str(&format!("\n{fails} failed, {warns} warning(s)\n"));
        out
    }
}

/// One attempt per check: a sysadmin wants an answer, not Duo's 63-second backoff.
fn single_attempt() -> RetryPolicy {
    RetryPolicy {
        rate_limit_initial: Duration::from_secs(1),
        rate_limit_max: Duration::ZERO,
        transient_attempts: 1,
        transient_initial: Duration::ZERO,
        jitter: Duration::ZERO,
    }
}

/// Runs every check for the selected integrations (all when `only` is None) and every sink.
pub async fn run(
    config: &Config,
    only: Option<&str>,
    cancel: &CancellationToken,
) -> ConnectivityReport {
    let mut sections = Vec::new();
    // The config's warnings count in the summary like any other: "0 warning(s)" after a
    // printed warning would be a lie.
    if !config.warnings.is_empty() {
        sections.push(Section {
            target: "config".to_string(),
            checks: config
                .warnings
                .iter()
                .map(|w| {
                    Check::warn(
                        "Config",
                        w.clone(),
                        "see the warning; `duo-collector validate` lists them all",
                    )
                })
                .collect(),
        });
    }
    for integration in config
        .integrations
        .iter()
        .filter(|i| only.is_none_or(|n| i.name == n))
    {
        sections.push(Section {
            target: format!(
                "integration {} ({})",
                integration.name, integration.api_hostname
            ),
            checks: check_integration(integration, cancel).await,
        });
    }
    for sink in &config.sinks {
        if only.is_none_or(|n| {
            config
                .integration(n)
                .is_some_and(|i| i.sinks.contains(&sink.name))
        }) {
            sections.push(Section {
                target: format!("sink {}", sink.name),
                checks: vec![check_sink(sink).await],
            });
        }
    }
    if let StoreSettings::Nats(settings) = &config.state {
        sections.push(Section {
            target: format!("state (NATS JetStream, {})", settings.connection.url),
            checks: vec![check_state(settings).await],
        });
    }
    ConnectivityReport { sections }
}

/// Logs in, and opens (creating those that are missing) the state buckets with the
/// configured replicas: the server is reachable, JetStream is enabled, and it has the servers
/// the replicas need.
async fn check_state(settings: &crate::state::NatsStoreSettings) -> Check {
    match crate::state::NatsStore::open(settings).await {
        Ok(_) => Check::pass(
            "State store",
            format!(
                "JetStream answered; the buckets {}-* are open with {} replica(s)",
                settings.bucket_prefix, settings.replicas
            ),
        ),
        Err(e) => Check::fail(
            "State store",
            e.to_string(),
            "check `url` and the login in [state]; run nats-server with JetStream (-js); replicas = 3 needs a JetStream cluster of at least three servers",
        ),
    }
}

/// Duo's clock offset, from the response's `Date` header (or, without one, the ping's `time`).
fn clock_check(date_offset_ms: Option<i64>, ping_time_s: i64, sent_ms: i64) -> Check {
    let offset_ms =
        date_offset_ms.unwrap_or_else(|| ping_time_s * 1000 + 500 - (sent_ms + now_ms()) / 2);
    let seconds = offset_ms as f64 / 1000.0;
    let what = if seconds >= 0.0 { "ahead of" } else { "behind" };
    let text = format!("Duo's clock is {:.1} s {what} this host's", seconds.abs());
    if offset_ms.abs() > crate::duo::clock::WARN_OFFSET_MS {
        Check::warn(
            "Clock",
            text,
            "synchronize this host's clock (chrony or systemd-timesyncd): collection follows Duo's clock, so nothing is lost, but Duo refuses requests whose Date is too far off (40105)",
        )
    } else {
        Check::pass("Clock", text)
    }
}

fn ignore_body(body: &[u8]) -> Result<(), PageError> {
    response_of(body).map(|_| ())
}

#[derive(serde::Deserialize)]
struct PingTime {
    time: i64,
}

fn ping_time(body: &[u8]) -> Result<i64, PageError> {
    let response = response_of(body)?;
    serde_json::from_str::<PingTime>(response.get())
        .map(|p| p.time)
        .map_err(|e| PageError(format!("unexpected ping response ({e})")))
}

/// FAIL line for a keys error: what Duo said, and one hint from Duo's code (the table in
/// `duo::error`).
fn key_failure(check: &str, e: &DuoError) -> Check {
    Check::fail(
        check,
        e.without_hint(),
        e.hint()
            .unwrap_or("see the error; the collector retries transient errors by itself"),
    )
}

async fn resolve(host: &str, port: u16) -> std::io::Result<String> {
    let addrs: Vec<String> = tokio::net::lookup_host((host, port))
        .await?
        .map(|a| a.ip().to_string())
        .collect();
    Ok(addrs.join(", "))
}

/// DNS for the route: through a proxy this host resolves only the proxy's name (the proxy
/// resolves Duo's, which may well not resolve here); directly, the target's. `false` when the
/// name this host must resolve does not.
async fn check_dns(target: &url::Url, route: &ProxyRoute, checks: &mut Vec<Check>) -> bool {
    let target_host = target
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    match route {
        ProxyRoute::Proxy(proxy) => match resolve(&proxy.host, proxy.port).await {
            Ok(addrs) => {
                checks.push(Check::pass(
                    "DNS",
                    format!(
                        "proxy {} resolves to {addrs}; the proxy resolves {target_host}",
                        proxy.host
                    ),
                ));
                true
            }
            Err(e) => {
                checks.push(Check::fail(
                    "DNS",
                    format!("proxy {}: {e}", proxy.host),
                    "check the proxy's host name (`proxy`, or HTTPS_PROXY / ALL_PROXY in the service's environment) and this host's DNS resolver",
                ));
                false
            }
        },
        ProxyRoute::Direct(_) => {
            let port = target.port_or_known_default().unwrap_or(443);
            match resolve(&target_host, port).await {
                Ok(addrs) => {
                    checks.push(Check::pass(
                        "DNS",
                        format!("{target_host} resolves to {addrs}"),
                    ));
                    true
                }
                Err(e) => {
                    checks.push(Check::fail(
                        "DNS",
                        format!("{target_host}: {e}"),
                        "check api_hostname (as shown in the Duo Admin Panel) and this host's DNS resolver; if Duo is reachable only through a proxy, set `proxy` or HTTPS_PROXY",
                    ));
                    false
                }
            }
        }
    }
}

async fn check_integration(integration: &Integration, cancel: &CancellationToken) -> Vec<Check> {
    let mut checks = Vec::new();
    let Some(target) = crate::duo::proxy::request_base(integration) else {
        checks.push(Check::fail(
            "DNS",
            format!("{} is not a host name", integration.api_hostname),
            "check api_hostname",
        ));
        return checks;
    };
    let route = integration.proxy.route_for(&target);
    checks.push(Check::pass("Proxy", route.to_string()));
    if !check_dns(&target, &route, &mut checks).await {
        return checks;
    }
    let duo_clock = DuoClock::new(std::sync::Arc::new(SystemClock));
    let client = match DuoClient::for_integration(integration, single_attempt()) {
        Ok(c) => c.with_clock(duo_clock.clone()),
        Err(e) => {
            checks.push(Check::fail("TLS setup", e.to_string(), "check ca_file"));
            return checks;
        }
    };
    let host = integration.api_hostname.as_str();
    let sent = now_ms();
    match client
        .request(&Call::get(host, "/auth/v2/ping", &[]), cancel, ping_time)
        .await
    {
        Ok(duo_time) => {
            let mut via = integration
                .connect_to
                .as_ref()
                .map(|u| format!(" via {u}"))
                .unwrap_or_default();
            if let ProxyRoute::Proxy(proxy) = &route {
                via.push_str(&format!(" through proxy {}", proxy.shown));
            }
            match integration
                .connect_to
                .as_ref()
                .filter(|u| u.scheme() == "http")
            {
                Some(url) => {
                    checks.push(Check::pass(
                        "Connection",
                        format!("reached {host}{via} (GET /auth/v2/ping)"),
                    ));
                    checks.push(Check::warn(
                        "TLS",
                        format!("not checked: connect_to {url} is plain HTTP"),
                        "fine for the simulator or a local TLS-terminating proxy; Duo itself is reached over https only",
                    ));
                }
                None => checks.push(Check::pass(
                    "Connection and TLS",
                    format!("reached {host}{via} (GET /auth/v2/ping)"),
                )),
            }
            checks.push(clock_check(duo_clock.offset_ms(), duo_time, sent));
        }
        Err(e) => {
            let hint = match &route {
                ProxyRoute::Proxy(proxy) => format!("check that proxy {} is up and lets this host CONNECT to {}:{} (credentials in the proxy URL if it asks for them), and ca_file if the proxy inspects TLS", proxy.shown, target.host_str().unwrap_or(host), target.port_or_known_default().unwrap_or(443)),
                ProxyRoute::Direct(_) => "check network access to the API host on port 443 (or set `proxy` / HTTPS_PROXY if only a proxy reaches it), and ca_file".to_string(),
            };
            checks.push(Check::fail("Connection and TLS", e.without_hint(), hint));
            return checks;
        }
    }

    // Keys, and where the log requests go (for an MSP: the first child).
    let mut log_target: Option<(String, Option<String>)> = None;
    if integration.accounts_api {
        let list = client
            .request(
                &Call::post(host, crate::collector::ACCOUNT_LIST_PATH, &[]),
                cancel,
                crate::collector::parse_children,
            )
            .await;
        match list {
            Ok(children) => {
                checks.push(Check::pass(
                    "Accounts API keys",
                    format!("{} child account(s) listed", children.len()),
                ));
                match children.into_iter().find(|c| {
                    integration.accounts.is_empty() || integration.accounts.contains(&c.account_id)
                }) {
                    Some(c) => {
                        log_target = Some((
                            c.api_hostname.clone().unwrap_or_else(|| host.to_string()),
                            Some(c.account_id),
                        ))
                    }
                    None => checks.push(Check::warn(
                        "Child accounts",
                        "no child account to collect",
                        "check `accounts` against the Duo Admin Panel",
                    )),
                }
            }
            Err(e) => checks.push(key_failure("Accounts API keys", &e)),
        }
    } else {
        match client
            .request(
                &Call::get(host, "/admin/v1/info/summary", &[]),
                cancel,
                ignore_body,
            )
            .await
        {
            Ok(()) => {
                checks.push(Check::pass(
                    "Admin API keys",
                    "valid (GET /admin/v1/info/summary)",
                ));
                log_target = Some((host.to_string(), None));
            }
            Err(e @ DuoError::Api { status: 403, .. }) => {
                checks.push(Check::warn("Admin API keys", format!("valid, but {}", e.without_hint()), "the keys work; \"Grant read information\" is not granted, which the collector does not need"));
                log_target = Some((host.to_string(), None));
            }
            Err(e) => checks.push(key_failure("Admin API keys", &e)),
        }
    }
    if let Some((log_host, account)) = log_target {
        for kind in &integration.logs {
            let check = format!("Log {kind}");
            match client
                .request(
                    &Call::get(
                        &log_host,
                        kind.path(),
                        &probe_params(*kind, integration, account.as_deref(), duo_clock.now_ms()),
                    ),
                    cancel,
                    ignore_body,
                )
                .await
            {
                Ok(()) => checks.push(Check::pass(check, "readable")),
                Err(e) => checks.push(key_failure(&check, &e)),
            }
        }
        for kind in &integration.inventory {
            checks
                .push(inventory_check(&client, *kind, &log_host, account.as_deref(), cancel).await);
        }
    }
    if let Some(auth) = &integration.auth_api {
        let auth_client = client.with_keys(&auth.ikey, &auth.skey);
        match auth_client
            .request(&Call::get(host, "/auth/v2/check", &[]), cancel, ignore_body)
            .await
        {
            Ok(()) => checks.push(Check::pass("Auth API keys", "valid (GET /auth/v2/check)")),
            Err(e) => checks.push(key_failure("Auth API keys", &e)),
        }
    }
    checks
}

/// One request of the inventory listing, one entity wide: a 403 names the permission to grant.
async fn inventory_check(
    client: &DuoClient,
    kind: InventoryKind,
    host: &str,
    account: Option<&str>,
    cancel: &CancellationToken,
) -> Check {
    let check = format!("Inventory {kind}");
    let mut params = Vec::new();
    if kind.page_limit().is_some() {
        params.push(("limit".to_string(), "1".to_string()));
    }
    if let Some(a) = account {
        params.push(("account_id".to_string(), a.to_string()));
    }
    match client
        .request(&Call::get(host, kind.path(), &params), cancel, ignore_body)
        .await
    {
        Ok(()) => Check::pass(check, format!("readable (\"{}\")", kind.permission())),
        Err(e @ DuoError::Api { status: 403, .. }) => {
            Check::fail(check, e.without_hint(), kind.forbidden_fix())
        }
        Err(e) => key_failure(&check, &e),
    }
}

/// The pager's own first request for `kind`, one record wide and over the last five minutes
/// before Duo's `now − delay`: the probe asks what collection would ask.
fn probe_params(
    kind: LogKind,
    integration: &Integration,
    account: Option<&str>,
    duo_now_ms: i64,
) -> Vec<(String, String)> {
    let delay_ms = integration.delay.as_millis() as i64;
    let settings = PagerSettings {
        delay_ms,
        page_size: 1,
        initial_lookback_ms: delay_ms + 300_000,
    };
    let mut params = match pager::for_kind(kind, settings, None, duo_now_ms).next(duo_now_ms) {
        Next::Fetch(request) => request.params,
        Next::Done(_) => Vec::new(),
    };
    if let Some(a) = account {
        params.push(("account_id".to_string(), a.to_string()));
    }
    params
}

/// The sink's own driver, with its real settings, reaches its destination.
async fn check_sink(sink: &SinkSettings) -> Check {
    let name = format!("{} sink", sink.kind.type_name());
    match crate::sink::probe(sink).await {
        Ok(Probe::Reached(detail)) => Check::pass(name, detail),
        Ok(Probe::Unverified { detail, hint }) => Check::warn(name, detail, hint),
        Err(DriverError::Permanent { detail, fix }) => Check::fail(name, detail, fix),
        Err(DriverError::Transient { detail, .. }) => Check::fail(
            name,
            detail,
            "check the address, that the receiver runs, TLS (ca_file) and firewalls",
        ),
    }
}
