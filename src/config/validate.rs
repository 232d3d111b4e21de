//! Turns the raw TOML into a validated [`Config`], collecting every problem with the name of
//! the integration or sink and the field it concerns.

use super::hosts::{validate_api_hostname, validate_connect_to, validate_proxy};
use super::secrets::{resolve_skey, SecretSources};
use super::sinks::validate_sink;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{self, RawCollector, RawIntegration};
use super::{
    CollectorSettings, Config, ConfigError, Integration, DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_STATE_DIR, MAX_LOOKBACK,
};
use crate::log_kind::LogKind;
use crate::pacing::rate::MIN_RATE_PER_MINUTE;
use crate::sig_version::SigVersion;

pub const DEFAULT_SCHEDULE: &str = "0 */5 * * * *";
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(86_400);
const DEFAULT_DELAY: Duration = Duration::from_secs(120);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

type VarLookup = Box<dyn Fn(&str) -> Option<String>>;

/// The process environment, injectable so tests need not mutate global state.
pub struct Env {
    var: VarLookup,
    /// `--credentials-directory`: where `*_credential` names are read outside systemd.
    pub(super) credentials_directory: Option<PathBuf>,
    /// The directory the shipped unit loads credentials from; read when it is readable and
    /// neither systemd nor `--credentials-directory` says otherwise.
    pub(super) unit_credentials_directory: PathBuf,
    /// Whether secrets are read at all (`status` needs none).
    pub(super) resolve_secrets: bool,
}

impl Env {
    pub fn real() -> Env {
        Env {
            var: Box::new(|name| std::env::var(name).ok()),
            credentials_directory: None,
            unit_credentials_directory: PathBuf::from(super::credentials::UNIT_CREDENTIALS_DIR),
            resolve_secrets: true,
        }
    }

    /// Reads `*_credential` names from `dir` (the `--credentials-directory` flag).
    pub fn with_credentials_directory(mut self, dir: Option<PathBuf>) -> Env {
        self.credentials_directory = dir;
        self
    }

    /// Uses `dir` in place of /etc/duo-collector/credentials (tests).
    pub fn with_unit_credentials_directory(mut self, dir: PathBuf) -> Env {
        self.unit_credentials_directory = dir;
        self
    }

    /// Checks how secrets are given without reading them: for commands that never call Duo
    /// or a sink (`status`). The resulting [`Config`] holds empty secrets and says so.
    pub fn without_secrets(mut self) -> Env {
        self.resolve_secrets = false;
        self
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env {
            var: Box::new(move |name| {
                owned
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }),
            credentials_directory: None,
            unit_credentials_directory: PathBuf::from(super::credentials::UNIT_CREDENTIALS_DIR),
            resolve_secrets: true,
        }
    }

    pub(super) fn var(&self, name: &str) -> Option<String> {
        (self.var)(name)
    }
}

/// Collects problems and warnings with a consistent prefix.
#[derive(Default)]
pub(super) struct Report {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub literal_secret: bool,
}

impl Report {
    pub fn error(&mut self, scope: &str, field: &str, message: impl std::fmt::Display) {
        self.problems
            .push(format!("{scope}: field `{field}`: {message}"));
    }

    pub fn warn(&mut self, scope: &str, field: &str, message: impl std::fmt::Display) {
        self.warnings
            .push(format!("{scope}: field `{field}`: {message}"));
    }
}

/// Parses and validates config text; `source_name` names it in messages.
pub fn parse_config_str(text: &str, source_name: &str, env: &Env) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        source_name: source_name.to_string(),
        problems,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        fail(vec![format!(
            "not valid TOML: {}",
            describe_toml_error(text, &e)
        )])
    })?;

    let mut report = Report::default();
    unknown_keys(&mut report, "top level", &table, raw::TOP_KEYS);

    let collector_raw: RawCollector = match table.get("collector") {
        None => RawCollector::default(),
        Some(value) => {
            if let Some(t) = value.as_table() {
                unknown_keys(&mut report, "[collector]", t, raw::COLLECTOR_KEYS);
            }
            deserialize_or_report(&mut report, "[collector]", value).unwrap_or_default()
        }
    };
    let metrics_listen = collector_raw.metrics_listen.as_deref().and_then(|text| {
        match text.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                report.error(
                    "[collector]",
                    "metrics_listen",
                    format!("{text:?} is not an address:port ({e}); e.g. \"127.0.0.1:9464\""),
                );
                None
            }
        }
    });
    let log_format = collector_raw.log_format.clone();
    if let Some(f) = log_format
        .as_deref()
        .filter(|f| !["text", "json"].contains(f))
    {
        report.error(
            "[collector]",
            "log_format",
            format!("{f:?} is not a log format; use \"text\" or \"json\""),
        );
    }
    let collector = CollectorSettings {
        metrics_listen,
        unready_after_failures: collector_raw.unready_after_failures.unwrap_or(1).max(1),
        log_format,
        state_dir: collector_raw
            .state_dir
            .map(PathBuf::from)
            .or_else(|| env.var("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    };

    let sinks = array_of_tables(&mut report, &table, "sink", raw::SINK_KEYS)
        .into_iter()
        .filter_map(|(scope, raw)| validate_sink(&mut report, env, scope, raw))
        .collect::<Vec<_>>();
    let sink_names: HashSet<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    duplicate_names(&mut report, "sink", sinks.iter().map(|s| s.name.as_str()));
    super::sinks::one_file_sink_per_path(&mut report, &sinks);

    let integrations = array_of_tables::<RawIntegration>(
        &mut report,
        &table,
        "integration",
        raw::INTEGRATION_KEYS,
    )
    .into_iter()
    .enumerate()
    .filter_map(|(i, (scope, raw))| {
        validate_integration(&mut report, env, i, scope, raw, &sink_names)
    })
    .collect::<Vec<_>>();
    duplicate_names(
        &mut report,
        "integration",
        integrations.iter().map(|i| i.name.as_str()),
    );
    if integrations.is_empty() && report.problems.is_empty() {
        report.problems.push(
            "no [[integration]] is configured: add one with name, api_hostname, ikey and a secret key"
                .to_string(),
        );
    }
    for sink in &sinks {
        if !integrations.iter().any(|i| i.sinks.contains(&sink.name)) {
            report.warnings.push(format!(
                "sink {:?}: no integration sends to it (add it to an integration's `sinks`)",
                sink.name
            ));
        }
    }

    if report.problems.is_empty() {
        Ok(Config {
            collector,
            integrations,
            sinks,
            warnings: report.warnings,
            literal_secret: report.literal_secret,
            secrets_resolved: env.resolve_secrets,
        })
    } else {
        Err(fail(report.problems))
    }
}

fn unknown_keys(report: &mut Report, scope: &str, table: &toml::Table, known: &[&str]) {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            report.problems.push(format!(
                "{scope}: unknown key `{key}` (valid keys: {})",
                known.join(", ")
            ));
        }
    }
}

/// A TOML syntax error as "line L, column C: message", without the source excerpt that toml
/// would print: that excerpt could be the line holding a secret key.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = redact_values(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Drops quoted values from serde messages such as `invalid type: string "…", expected u32`,
/// since a misplaced secret would otherwise be echoed.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start + "string".len()]);
        let after = &rest[start + "string \"".len()..];
        match after.find("\", expected") {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

fn deserialize_or_report<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    scope: &str,
    value: &toml::Value,
) -> Option<T> {
    match value.clone().try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            // serde names no field in "invalid type: integer `12`, expected a string"; every
            // field is optional, so each key alone shows which of them is wrong.
            let culprits: Vec<String> = value
                .as_table()
                .into_iter()
                .flatten()
                .filter_map(|(key, v)| {
                    let alone: toml::Table = [(key.clone(), v.clone())].into_iter().collect();
                    toml::Value::Table(alone)
                        .try_into::<T>()
                        .err()
                        .map(|e| format!("{scope}: field `{key}`: {}", redact_values(e.message())))
                })
                .collect();
            if culprits.is_empty() {
                report
                    .problems
                    .push(format!("{scope}: {}", redact_values(e.message())));
            } else {
                report.problems.extend(culprits);
            }
            None
        }
    }
}

/// Reads `[[name]]` entries, each with a scope label naming it for messages.
fn array_of_tables<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    table: &toml::Table,
    name: &str,
    known: &[&str],
) -> Vec<(String, T)> {
    let Some(value) = table.get(name) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        report.problems.push(format!(
            "`{name}` must be written as [[{name}]] tables (an array of tables)"
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let scope = match item.get("name").and_then(|n| n.as_str()) {
            Some(n) => format!("{name} {n:?}"),
            None => format!("{name} #{}", i + 1),
        };
        let Some(t) = item.as_table() else {
            report.problems.push(format!("{scope}: must be a table"));
            continue;
        };
        unknown_keys(report, &scope, t, known);
        if let Some(parsed) = deserialize_or_report(report, &scope, item) {
            out.push((scope, parsed));
        }
    }
    out
}

fn duplicate_names<'a>(report: &mut Report, what: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            report.problems.push(format!(
                "{what} {name:?}: field `name`: duplicate name; every {what} needs a unique name"
            ));
        }
    }
}

pub(super) fn validate_name(
    report: &mut Report,
    scope: &str,
    name: Option<String>,
) -> Option<String> {
    match name {
        None => {
            report.error(
                scope,
                "name",
                "missing; give it a unique name (letters, digits, - and _)",
            );
            None
        }
        Some(n)
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            report.error(
                scope,
                "name",
                format!("{n:?} may only contain letters, digits, - and _"),
            );
            None
        }
        Some(n) => Some(n),
    }
}

pub(super) fn parse_duration_field(
    report: &mut Report,
    scope: &str,
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Option<Duration> {
    match value {
        None => Some(default),
        Some(text) => match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                report.error(
                    scope,
                    field,
                    format!("{text:?} is not a duration ({e}); write it like \"90s\", \"2m\", \"12h\" or \"1d\""),
                );
                None
            }
        },
    }
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

fn validate_integration(
    report: &mut Report,
    env: &Env,
    _index: usize,
    scope: String,
    raw: RawIntegration,
    sink_names: &HashSet<&str>,
) -> Option<Integration> {
    let scope = scope.as_str();
    let name = validate_name(report, scope, raw.name);
    let api_hostname = validate_api_hostname(report, scope, raw.api_hostname);
    let ikey = match raw.ikey {
        Some(k) if !k.trim().is_empty() => {
            if is_placeholder_ikey(&k) {
                report.warn(
                    scope,
                    "ikey",
                    format!("{k:?} is the example's placeholder: replace it with the integration key of your Admin API application (Duo Admin Panel, Applications)"),
                );
            } else if !(k.len() == 20 && k.starts_with("DI")) {
                report.warn(
                    scope,
                    "ikey",
                    "Duo integration keys are 20 characters starting with \"DI\"; check for a typo",
                );
            }
            Some(k.trim().to_string())
        }
        _ => {
            report.error(scope, "ikey", "missing; copy the integration key from the Admin API application in the Duo Admin Panel");
            None
        }
    };
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
            literal: raw.skey,
            file: raw.skey_file,
            env_name: raw.skey_env,
            credential: raw.skey_credential,
        },
        placeholder,
    );

    let logs_explicit = raw.logs.is_some();
    let logs = match raw.logs {
        None => Some(LogKind::ALL.to_vec()),
        Some(list) if list.is_empty() => {
            report.error(
                scope,
                "logs",
                format!("is empty; list at least one of: {}", LogKind::names()),
            );
            None
        }
        Some(list) => {
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
    };

    let schedule = raw.schedule.unwrap_or_else(|| DEFAULT_SCHEDULE.to_string());
    let schedule_ok = match crate::schedule::validate_cron(&schedule) {
        Ok(()) => true,
        Err(e) => {
            report.error(scope, "schedule", e);
            false
        }
    };

    let initial_lookback = parse_duration_field(
        report,
        scope,
        "initial_lookback",
        raw.initial_lookback.as_deref(),
        DEFAULT_LOOKBACK,
    )
    .and_then(|d| {
        if d > MAX_LOOKBACK {
            report.error(
                scope,
                "initial_lookback",
                format!(
                    "{} is more than Duo keeps (180 days); use at most \"180d\"",
                    humantime::format_duration(d)
                ),
            );
            None
        } else {
            Some(d)
        }
    });
    let delay = parse_duration_field(report, scope, "delay", raw.delay.as_deref(), DEFAULT_DELAY);
    if let Some(d) = delay {
        if d < DEFAULT_DELAY {
            report.warn(scope, "delay", format!("{} is under Duo's two-minute availability delay: events that Duo publishes late can be missed", humantime::format_duration(d)));
        }
    }
    let request_timeout = parse_duration_field(
        report,
        scope,
        "request_timeout",
        raw.request_timeout.as_deref(),
        DEFAULT_REQUEST_TIMEOUT,
    );

    let signature = match raw.signature.as_deref() {
        None | Some("v5") => Some(SigVersion::V5),
        Some("v2") => Some(SigVersion::V2Sha1),
        Some(other) => {
            report.error(scope, "signature", format!("{other:?} is not a signature version; use \"v5\" (HMAC-SHA512, Duo's default) or \"v2\" (HMAC-SHA1)"));
            None
        }
    };

    let sinks = match raw.sinks {
        None => {
            report.error(
                scope,
                "sinks",
                "missing; name at least one [[sink]] to deliver events to",
            );
            None
        }
        Some(list) if list.is_empty() => {
            report.error(
                scope,
                "sinks",
                "is empty; name at least one [[sink]] to deliver events to",
            );
            None
        }
        Some(list) => {
            let mut ok = true;
            for s in &list {
                if !sink_names.contains(s.as_str()) {
                    report.error(scope, "sinks", format!("refers to sink {s:?}, which is not defined; add a [[sink]] with name = {s:?} or fix the name"));
                    ok = false;
                }
            }
            ok.then_some(list)
        }
    };

    let connect_to = raw
        .connect_to
        .and_then(|text| validate_connect_to(report, scope, &text));
    let connect_ok =
        connect_to.is_some() || report.problems.iter().all(|p| !p.contains("`connect_to`"));

    let ca_file = raw.ca_file.map(PathBuf::from);
    if let Some(path) = &ca_file {
        if let Err(e) = std::fs::read(path) {
            report.error(
                scope,
                "ca_file",
                format!("cannot read {}: {e}", path.display()),
            );
        }
    }

    let proxy = validate_proxy(report, scope, raw.proxy.as_deref());

    let page_size = match raw.page_size {
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
    };

    let accounts_api = raw.accounts_api.unwrap_or(false);
    let accounts = raw.accounts.unwrap_or_default();
    if !accounts.is_empty() && !accounts_api {
        report.error(
            scope,
            "accounts",
            "only applies with accounts_api = true (MSP child accounts)",
        );
    }
    for a in &accounts {
        if !a.starts_with("DA") {
            report.warn(
                scope,
                "accounts",
                format!("{a:?} does not look like a Duo account id (\"DA…\")"),
            );
        }
    }
    let account_refresh = parse_duration_field(
        report,
        scope,
        "account_refresh",
        raw.account_refresh.as_deref(),
        Duration::from_secs(3600),
    );
    let max_in_flight = match raw.max_in_flight {
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
    };
    let requests_per_minute = match raw.requests_per_minute {
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
    };

    let auth_api = match (raw.auth_ikey, raw.auth_skey_file) {
        (None, None) => None,
        (Some(ikey), Some(_)) if !env.resolve_secrets => Some(super::AuthApiKeys {
            ikey: ikey.trim().to_string(),
            skey: crate::secret::Secret::new(String::new()),
        }),
        (Some(ikey), Some(path)) => match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Some(super::AuthApiKeys {
                ikey: ikey.trim().to_string(),
                skey: crate::secret::Secret::new(s.trim()),
            }),
            Ok(_) => {
                report.error(scope, "auth_skey_file", format!("{path} is empty"));
                None
            }
            Err(e) => {
                report.error(scope, "auth_skey_file", format!("cannot read {path}: {e}"));
                None
            }
        },
        _ => {
            report.error(
                scope,
                "auth_ikey",
                "Auth API keys need both `auth_ikey` and `auth_skey_file`",
            );
            None
        }
    };

    if !schedule_ok || !connect_ok {
        return None;
    }
    Some(Integration {
        name: name?,
        api_hostname: api_hostname?,
        ikey: ikey?,
        skey: skey?,
        logs: logs?,
        schedule,
        initial_lookback: initial_lookback?,
        delay: delay?,
        signature: signature?,
        sinks: sinks?,
        connect_to,
        ca_file,
        proxy: proxy?,
        page_size: page_size?,
        request_timeout: request_timeout?,
        logs_explicit,
        accounts_api,
        accounts,
        account_refresh: account_refresh?,
        max_in_flight: max_in_flight?,
        requests_per_minute: requests_per_minute?,
        auth_api,
    })
}
