//! One `[[integration]]` table, validated concern by concern: who it is (host, keys), what it
//! reads (logs), when (schedule and timing), where requests go (connect_to, ca_file, proxy),
//! where events go (sinks), MSP children, pacing, and the optional Auth API keys.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::hosts::{validate_api_hostname, validate_connect_to, validate_proxy};
use super::raw::RawIntegration;
use super::report::{Env, Report};
use super::secrets::{resolve_skey, SecretSources};
use super::validate::{parse_duration_field, validate_name};
use super::{AuthApiKeys, Integration, DEFAULT_REQUESTS_PER_MINUTE, MAX_LOOKBACK};
use crate::inventory_kind::InventoryKind;
use crate::log_kind::LogKind;
use crate::pacing::rate::MIN_RATE_PER_MINUTE;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::sig_version::SigVersion;

pub const DEFAULT_SCHEDULE: &str = "0 */5 * * * *";
pub const DEFAULT_INVENTORY_SCHEDULE: &str = "0 0 */6 * * *";
const DEFAULT_INACTIVE_AFTER: Duration = Duration::from_secs(90 * 86_400);
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(86_400);
const DEFAULT_DELAY: Duration = Duration::from_secs(120);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Validates one integration; `None` once any of its problems was reported.
pub(super) fn validate_integration(
    report: &mut Report,
    env: &Env,
    scope: &str,
    raw: RawIntegration,
    sink_names: &HashSet<&str>,
) -> Option<Integration> {
    let name = validate_name(report, scope, raw.name);
    let api_hostname = validate_api_hostname(report, scope, raw.api_hostname);
    let ikey = ikey(report, scope, raw.ikey);
    let placeholder = ikey.as_deref().is_some_and(is_placeholder_ikey)
        || api_hostname.as_deref().is_some_and(is_placeholder_host);
    if let Some(host) = api_hostname.as_deref().filter(|h| is_placeholder_host(h)) {
        report.warn(
            scope,
            "api_hostname",
            format!("{host:?} is the example's placeholder: replace it with the API hostname of your Admin API application (Duo Admin Panel, Applications)"),
        );
    }
    let skey = resolve_skey(
        report,
        env,
        scope,
        SecretSources {
            base: "skey",
            literal: raw.skey,
            file: raw.skey_file,
            env_name: raw.skey_env,
            credential: raw.skey_credential,
        },
        placeholder,
    );
    let logs_explicit = raw.logs.is_some();
    let logs = logs(report, scope, raw.logs);
    let timing = Timing::validate(
        report,
        scope,
        raw.initial_lookback.as_deref(),
        raw.delay.as_deref(),
        raw.request_timeout.as_deref(),
    );
    let schedule = cron_field(report, scope, "schedule", raw.schedule, DEFAULT_SCHEDULE);
    let inventory = inventory(report, scope, raw.inventory);
    let inventory_schedule = cron_field(
        report,
        scope,
        "inventory_schedule",
        raw.inventory_schedule,
        DEFAULT_INVENTORY_SCHEDULE,
    );
    let inactive_after = parse_duration_field(
        report,
        scope,
        "inactive_after",
        raw.inactive_after.as_deref(),
        DEFAULT_INACTIVE_AFTER,
    );
    let sinks = sinks(report, scope, raw.sinks, sink_names);
    let connect_to = match raw.connect_to {
        None => Some(None),
        Some(text) => validate_connect_to(report, scope, &text).map(Some),
    };
    let ca_file = ca_file(report, scope, raw.ca_file);
    let proxy = validate_proxy(report, scope, raw.proxy.as_deref());
    let signature = signature(report, scope, raw.signature.as_deref());
    let page_size = page_size(report, scope, raw.page_size);
    let accounts_api = raw.accounts_api.unwrap_or(false);
    let accounts = accounts(report, scope, raw.accounts, accounts_api);
    let account_refresh = parse_duration_field(
        report,
        scope,
        "account_refresh",
        raw.account_refresh.as_deref(),
        Duration::from_secs(3600),
    );
    let max_in_flight = max_in_flight(report, scope, raw.max_in_flight);
    let requests_per_minute = requests_per_minute(report, scope, raw.requests_per_minute);
    let auth_api = auth_api(
        report,
        env,
        scope,
        raw.auth_ikey,
        SecretSources {
            base: "auth_skey",
            literal: raw.auth_skey,
            file: raw.auth_skey_file,
            env_name: raw.auth_skey_env,
            credential: raw.auth_skey_credential,
        },
        placeholder,
    );
    let timing = timing?;
    Some(Integration {
        name: name?,
        api_hostname: api_hostname?,
        ikey: ikey?,
        skey: skey?,
        logs: logs?,
        schedule: schedule?,
        initial_lookback: timing.initial_lookback,
        delay: timing.delay,
        signature: signature?,
        sinks: sinks?,
        connect_to: connect_to?,
        ca_file: ca_file?,
        proxy: proxy?,
        page_size: page_size?,
        request_timeout: timing.request_timeout,
        logs_explicit,
        accounts_api,
        accounts,
        account_refresh: account_refresh?,
        max_in_flight: max_in_flight?,
        requests_per_minute: requests_per_minute?,
        auth_api: auth_api?,
        inventory: inventory?,
        inventory_schedule: inventory_schedule?,
        inactive_after: inactive_after?,
    })
}

fn ikey(report: &mut Report, scope: &str, value: Option<String>) -> Option<String> {
    let Some(key) = value
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
    else {
        report.error(scope, "ikey", "missing; copy the integration key from the Admin API application in the Duo Admin Panel");
        return None;
    };
    if is_placeholder_ikey(&key) {
        report.warn(
            scope,
            "ikey",
            format!("{key:?} is the example's placeholder: replace it with the integration key of your Admin API application (Duo Admin Panel, Applications)"),
        );
    } else if !(key.len() == 20 && key.starts_with("DI")) {
        report.warn(
            scope,
            "ikey",
            "Duo integration keys are 20 characters starting with \"DI\"; check for a typo",
        );
    }
    Some(key)
}

/// `DIXXXXXXXXXXXXXXXXXX` and the like: "DI" and one character repeated, as in the examples.
fn is_placeholder_ikey(ikey: &str) -> bool {
    let rest = ikey.strip_prefix("DI").unwrap_or(ikey);
    let mut chars = rest.chars();
    chars
        .next()
        .is_some_and(|first| rest.len() >= 8 && chars.all(|c| c == first))
}

/// `api-xxxxxxxx.duosecurity.com` and the like: the host label is one character repeated.
fn is_placeholder_host(host: &str) -> bool {
    let label = host.split('.').next().unwrap_or_default();
    let id = label.strip_prefix("api-").unwrap_or(label);
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|first| id.len() >= 4 && chars.all(|c| c.eq_ignore_ascii_case(&first)))
}

/// The log kinds to read: every kind when not given; duplicates dropped.
fn logs(report: &mut Report, scope: &str, value: Option<Vec<String>>) -> Option<Vec<LogKind>> {
    let Some(list) = value else {
        return Some(LogKind::ALL.to_vec());
    };
    if list.is_empty() {
        report.error(
            scope,
            "logs",
            format!("is empty; list at least one of: {}", LogKind::names()),
        );
        return None;
    }
    let mut kinds = Vec::new();
    let mut ok = true;
    for item in list {
        match item.parse::<LogKind>() {
            Ok(k) if !kinds.contains(&k) => kinds.push(k),
            Ok(_) => {}
            Err(e) => {
                report.error(scope, "logs", e);
                ok = false;
            }
        }
    }
    ok.then_some(kinds)
}

fn cron_field(
    report: &mut Report,
    scope: &str,
    field: &str,
    value: Option<String>,
    default: &str,
) -> Option<Schedule> {
    match Schedule::parse(value.as_deref().unwrap_or(default)) {
        Ok(schedule) => Some(schedule),
        Err(e) => {
            report.error(scope, field, e);
            None
        }
    }
}

/// The inventory kinds to snapshot: none when not given; duplicates dropped.
fn inventory(
    report: &mut Report,
    scope: &str,
    value: Option<Vec<String>>,
) -> Option<Vec<InventoryKind>> {
    let mut kinds = Vec::new();
    let mut ok = true;
    for item in value.unwrap_or_default() {
        match item.parse::<InventoryKind>() {
            Ok(k) if !kinds.contains(&k) => kinds.push(k),
            Ok(_) => {}
            Err(e) => {
                report.error(scope, "inventory", e);
                ok = false;
            }
        }
    }
    ok.then_some(kinds)
}

/// How far back a new stream starts, how long Duo is given to publish, how long a request may
/// take.
struct Timing {
    initial_lookback: Duration,
    delay: Duration,
    request_timeout: Duration,
}

impl Timing {
    fn validate(
        report: &mut Report,
        scope: &str,
        initial_lookback: Option<&str>,
        delay: Option<&str>,
        request_timeout: Option<&str>,
    ) -> Option<Timing> {
        let initial_lookback = parse_duration_field(
            report,
            scope,
            "initial_lookback",
            initial_lookback,
            DEFAULT_LOOKBACK,
        )
        .filter(|d| {
            let within = *d <= MAX_LOOKBACK;
            if !within {
                report.error(
                    scope,
                    "initial_lookback",
                    format!(
                        "{} is more than Duo keeps (180 days); use at most \"180d\"",
                        humantime::format_duration(*d)
                    ),
                );
            }
            within
        });
        let delay = parse_duration_field(report, scope, "delay", delay, DEFAULT_DELAY);
        if let Some(d) = delay.filter(|d| *d < DEFAULT_DELAY) {
            report.warn(scope, "delay", format!("{} is under Duo's two-minute availability delay: events that Duo publishes late can be missed", humantime::format_duration(d)));
        }
        let request_timeout = parse_duration_field(
            report,
            scope,
            "request_timeout",
            request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        );
        Some(Timing {
            initial_lookback: initial_lookback?,
            delay: delay?,
            request_timeout: request_timeout?,
        })
    }
}

/// The sinks named must exist.
fn sinks(
    report: &mut Report,
    scope: &str,
    value: Option<Vec<String>>,
    sink_names: &HashSet<&str>,
) -> Option<Vec<String>> {
    let list = match value {
        None => {
            report.error(
                scope,
                "sinks",
                "missing; name at least one [[sink]] to deliver events to",
            );
            return None;
        }
        Some(list) if list.is_empty() => {
            report.error(
                scope,
                "sinks",
                "is empty; name at least one [[sink]] to deliver events to",
            );
            return None;
        }
        Some(list) => list,
    };
    let mut ok = true;
    for s in list.iter().filter(|s| !sink_names.contains(s.as_str())) {
        report.error(scope, "sinks", format!("refers to sink {s:?}, which is not defined; add a [[sink]] with name = {s:?} or fix the name"));
        ok = false;
    }
    ok.then_some(list)
}

/// `Some(None)`: not given; `None`: given but unreadable (reported).
fn ca_file(report: &mut Report, scope: &str, value: Option<String>) -> Option<Option<PathBuf>> {
    let Some(path) = value.map(PathBuf::from) else {
        return Some(None);
    };
    match std::fs::read(&path) {
        Ok(_) => Some(Some(path)),
        Err(e) => {
            report.error(
                scope,
                "ca_file",
                format!("cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

fn signature(report: &mut Report, scope: &str, value: Option<&str>) -> Option<SigVersion> {
    match value {
        None | Some("v5") => Some(SigVersion::V5),
        Some("v2") => Some(SigVersion::V2Sha1),
        Some(other) => {
            report.error(scope, "signature", format!("{other:?} is not a signature version; use \"v5\" (HMAC-SHA512, Duo's default) or \"v2\" (HMAC-SHA1)"));
            None
        }
    }
}

fn page_size(report: &mut Report, scope: &str, value: Option<u32>) -> Option<u32> {
    match value {
        None => Some(1000),
        Some(n) if (1..=1000).contains(&n) => Some(n),
        Some(n) => {
            report.error(
                scope,
                "page_size",
                format!("{n} is out of range; Duo accepts 1 to 1000 records per page"),
            );
            None
        }
    }
}

/// MSP child account ids (only with `accounts_api`); a problem here does not stop the
/// integration, a suspicious id is a warning.
fn accounts(
    report: &mut Report,
    scope: &str,
    value: Option<Vec<String>>,
    accounts_api: bool,
) -> Vec<String> {
    let accounts = value.unwrap_or_default();
    if !accounts.is_empty() && !accounts_api {
        report.error(
            scope,
            "accounts",
            "only applies with accounts_api = true (MSP child accounts)",
        );
    }
    for a in accounts.iter().filter(|a| !a.starts_with("DA")) {
        report.warn(
            scope,
            "accounts",
            format!("{a:?} does not look like a Duo account id (\"DA…\")"),
        );
    }
    accounts
}

fn max_in_flight(report: &mut Report, scope: &str, value: Option<usize>) -> Option<usize> {
    match value {
        None => Some(4),
        Some(n) if (1..=64).contains(&n) => Some(n),
        Some(n) => {
            report.error(
                scope,
                "max_in_flight",
                format!("{n} is out of range; use 1 to 64 (Duo rate-limits log requests)"),
            );
            None
        }
    }
}

fn requests_per_minute(report: &mut Report, scope: &str, value: Option<f64>) -> Option<f64> {
    match value {
        None => Some(DEFAULT_REQUESTS_PER_MINUTE),
        Some(n) if n == 0.0 || (MIN_RATE_PER_MINUTE..=600.0).contains(&n) => Some(n),
        Some(n) => {
            report.error(
                scope,
                "requests_per_minute",
                format!(
                    "{n} is out of range; use {MIN_RATE_PER_MINUTE} to 600 requests per minute per endpoint (Duo's staff quote 2 for log endpoints), or 0 for no pacing (simulators only)"
                ),
            );
            None
        }
    }
}

/// The optional Auth API keys: `auth_ikey` with its secret key from one source, read like
/// `skey`. `Some(None)`: not configured; `None`: a problem was reported.
fn auth_api(
    report: &mut Report,
    env: &Env,
    scope: &str,
    ikey: Option<String>,
    skey: SecretSources,
    placeholder: bool,
) -> Option<Option<AuthApiKeys>> {
    let skey_given = [&skey.literal, &skey.file, &skey.env_name, &skey.credential]
        .iter()
        .any(|s| s.is_some());
    match (ikey, skey_given) {
        (None, false) => Some(None),
        (Some(ikey), true) => {
            let skey: Secret = resolve_skey(report, env, scope, skey, placeholder)?;
            Some(Some(AuthApiKeys {
                ikey: ikey.trim().to_string(),
                skey,
            }))
        }
        _ => {
            report.error(
                scope,
                "auth_ikey",
                "Auth API keys need both `auth_ikey` and a secret key (`auth_skey_file`, `auth_skey_credential` or `auth_skey_env`)",
            );
            None
        }
    }
}
