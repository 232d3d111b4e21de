//! Turns the raw TOML into a validated [`Config`], collecting every problem with the name of
//! the integration or sink and the field it concerns.

use super::integration::validate_integration;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{self, RawCollector, RawIntegration};
use super::report::{Env, Report};
use super::{
    CollectorSettings, ConfigError, ConfigFile, LogFormat, SinkSection, DEFAULT_STATE_DIR,
};

/// Parses config text and validates everything but the sinks' own settings: each `[[sink]]`
/// is handed on as written ([`SinkSection`]) for the sinks to validate (`settings`
/// puts the two together). `Err` only for text that is not TOML; every other problem is in
/// the returned report, so that all of them are shown at once.
pub fn parse_config_file(
    text: &str,
    source_name: &str,
    env: &Env,
) -> Result<ConfigFile, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
        source_name: source_name.to_string(),
        problems: vec![format!("not valid TOML: {}", describe_toml_error(text, &e))],
    })?;

    let mut report = Report::default();
    unknown_keys(&mut report, "top level", &table, raw::TOP_KEYS);
    let collector = collector(&mut report, env, &table);
    let sinks: Vec<SinkSection> = tables(&mut report, &table, "sink")
        .into_iter()
        .map(|(scope, table)| SinkSection {
            scope,
            table: table.clone(),
        })
        .collect();
    let state = match table.get("state") {
        None => None,
        Some(toml::Value::Table(t)) => Some(t.clone()),
        Some(_) => {
            report.error(
                "top level",
                "state",
                "must be a table: a [state] section with `backend = \"sqlite\"` or `backend = \"nats\"`",
            );
            None
        }
    };
    let sink_names: HashSet<&str> = sinks.iter().filter_map(SinkSection::name).collect();
    let integrations = array_of_tables::<RawIntegration>(
        &mut report,
        &table,
        "integration",
        raw::INTEGRATION_KEYS,
    )
    .into_iter()
    .filter_map(|(scope, raw)| validate_integration(&mut report, env, &scope, raw, &sink_names))
    .collect::<Vec<_>>();
    duplicate_names(
        &mut report,
        "integration",
        integrations.iter().map(|i| i.name.as_str()),
    );
    for name in &sink_names {
        if !integrations
            .iter()
            .any(|i| i.sinks.iter().any(|s| s == name))
        {
            report.warnings.push(format!(
                "sink {name:?}: no integration sends to it (add it to an integration's `sinks`)"
            ));
        }
    }
    Ok(ConfigFile {
        source_name: source_name.to_string(),
        collector,
        integrations,
        sinks,
        state,
        report,
        secrets_resolved: env.resolve_secrets,
    })
}

/// The `[collector]` table: everything optional.
fn collector(report: &mut Report, env: &Env, table: &toml::Table) -> CollectorSettings {
    let raw: RawCollector = match table.get("collector") {
        None => RawCollector::default(),
        Some(value) => {
            if let Some(t) = value.as_table() {
                unknown_keys(report, "[collector]", t, raw::COLLECTOR_KEYS);
            }
            deserialize_or_report(report, "[collector]", value).unwrap_or_default()
        }
    };
    let metrics_listen = raw.metrics_listen.as_deref().and_then(|text| match text
        .parse::<std::net::SocketAddr>(
    ) {
        Ok(a) => Some(a),
        Err(e) => {
            report.error(
                "[collector]",
                "metrics_listen",
                format!("{text:?} is not an address:port ({e}); e.g. \"127.0.0.1:9464\""),
            );
            None
        }
    });
    let log_format = raw.log_format.as_deref().and_then(|text| {
        text.parse::<LogFormat>()
            .map_err(|e| report.error("[collector]", "log_format", e))
            .ok()
    });
    CollectorSettings {
        metrics_listen,
        unready_after_failures: raw.unready_after_failures.unwrap_or(1).max(1),
        log_format,
        state_dir: raw
            .state_dir
            .map(PathBuf::from)
            .or_else(|| env.var("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
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

/// The `[[name]]` tables, each with a scope label naming it for messages.
fn tables<'t>(
    report: &mut Report,
    table: &'t toml::Table,
    name: &str,
) -> Vec<(String, &'t toml::Table)> {
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
        match item.as_table() {
            Some(t) => out.push((scope, t)),
            None => report.problems.push(format!("{scope}: must be a table")),
        }
    }
    out
}

/// Reads `[[name]]` entries with `known` keys into `T`.
fn array_of_tables<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    table: &toml::Table,
    name: &str,
    known: &[&str],
) -> Vec<(String, T)> {
    let mut out = Vec::new();
    for (scope, t) in tables(report, table, name) {
        unknown_keys(report, &scope, t, known);
        if let Some(parsed) = deserialize_or_report(report, &scope, &toml::Value::Table(t.clone()))
        {
            out.push((scope, parsed));
        }
    }
    out
}

pub fn duplicate_names<'a>(report: &mut Report, what: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            report.problems.push(format!(
                "{what} {name:?}: field `name`: duplicate name; every {what} needs a unique name"
            ));
        }
    }
}

pub fn validate_name(report: &mut Report, scope: &str, name: Option<String>) -> Option<String> {
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

pub fn parse_duration_field(
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
