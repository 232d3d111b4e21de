//! `[[sink]]` settings, owned by the sinks: the shared fields here, each type's own keys and
//! checks next to it (`file` here; `syslog.rs`, `http.rs`, `nats.rs`), all keys in one table
//! (`fragment.rs`). Every problem names the sink and the field, with the fix. The config hands
//! over each `[[sink]]` table as it was written ([`SinkSection`]); nothing in `config` knows
//! a sink type.

mod fragment;
mod http;
mod nats;
mod syslog;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    optional_secret, parse_duration_field, validate_name, Env, Report, SinkSection,
};
use crate::normalize::Format;
use crate::secret::Secret;

pub use fragment::{accepted_keys, Fragment, Key, Kind, SinkType, Validator, TYPES};
pub use http::{HttpAuth, HttpFlavor, HttpSettings};
pub use nats::{
    connection as nats_connection, NatsAuth, NatsConnection, NatsSettings,
    CONNECTION_KEYS as NATS_CONNECTION_KEYS, DEFAULT_SUBJECT,
};
pub use syslog::{SyslogProtocol, SyslogSettings, SyslogTransport};

pub use crate::tls::TlsFiles;

/// A validated sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSettings {
    pub name: String,
    pub format: Format,
    /// Dotted paths removed from every event this sink writes.
    pub exclude_fields: Vec<String>,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    File {
        path: PathBuf,
        /// Permission bits set on the file (`file_mode`); `None`: 0640 less the umask.
        mode: Option<u32>,
    },
    Stdout,
    Syslog(SyslogSettings),
    Http(HttpSettings),
    Nats(NatsSettings),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File { .. } => "file",
            SinkKind::Stdout => "stdout",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Http(_) => "http",
            SinkKind::Nats(_) => "nats",
        }
    }
}

/// Size limits of the pieces a page is split into (one request, one write, one ack round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most this many events per piece.
    pub max_events: usize,
    /// At most this many bytes per piece (one event larger than this still goes alone).
    pub max_bytes: usize,
}

impl Batching {
    pub const fn new(max_events: usize, max_bytes: usize) -> Batching {
        Batching {
            max_events,
            max_bytes,
        }
    }
}

/// Validates one `[[sink]]` table into its settings; `None` once a problem was reported.
pub fn validate_sink(
    report: &mut Report,
    env: &Env,
    section: &SinkSection,
) -> Option<SinkSettings> {
    let scope = section.scope.as_str();
    let type_name = section.table.get("type").and_then(toml::Value::as_str);
    let sink_type = type_name.and_then(|t| TYPES.iter().copied().find(|s| s.name == t));
    let raw = Fragment::new(&section.table, sink_type);
    if !raw.check(report, scope) {
        return None;
    }
    let name = validate_name(report, scope, raw.string("name"));
    let format = match raw.str("format") {
        None => Some(Format::default()),
        Some(f) => match f.parse::<Format>() {
            Ok(format) => Some(format),
            Err(e) => {
                report.error(scope, "format", e);
                None
            }
        },
    };
    let kind = kind(report, env, scope, type_name, &raw);
    let exclude_fields = raw.strings("exclude_fields").unwrap_or_default();
    for path in &exclude_fields {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            report.error(
                scope,
                "exclude_fields",
                format!("{path:?} is not a dotted field path such as \"access_device.location\""),
            );
        }
    }
    Some(SinkSettings {
        name: name?,
        format: format?,
        exclude_fields,
        kind: kind?,
    })
}

/// The type's own settings, by the type's own validator.
fn kind(
    report: &mut Report,
    env: &Env,
    scope: &str,
    type_name: Option<&str>,
    raw: &Fragment<'_>,
) -> Option<SinkKind> {
    match (raw.sink_type(), type_name) {
        (Some(sink_type), _) => (sink_type.validate)(report, env, scope, raw),
        (None, None) => {
            report.error(
                scope,
                "type",
                format!("missing; use {}", fragment::type_names()),
            );
            None
        }
        (None, Some(other)) => {
            report.error(
                scope,
                "type",
                format!(
                    "unknown sink type {other:?}; use {}",
                    fragment::type_names()
                ),
            );
            None
        }
    }
}

fn file(report: &mut Report, _env: &Env, scope: &str, raw: &Fragment<'_>) -> Option<SinkKind> {
    match raw.str("path") {
        Some(p) if !p.trim().is_empty() => {
            file_mode(report, scope, raw.str("file_mode")).map(|mode| SinkKind::File {
                path: PathBuf::from(p),
                mode,
            })
        }
        _ => {
            report.error(
                scope,
                "path",
                "a file sink needs `path`, e.g. \"/var/log/duo-collector/events.jsonl\"",
            );
            None
        }
    }
}

/// Two file sinks must not write one file: each cuts the file back to its own committed
/// length after a crash, which would cut the other's committed events.
pub fn one_file_sink_per_path(report: &mut Report, sinks: &[SinkSettings]) {
    let mut by_path: std::collections::HashMap<&std::path::Path, &str> =
        std::collections::HashMap::new();
    for sink in sinks {
        if let SinkKind::File { path, .. } = &sink.kind {
            if let Some(first) = by_path.insert(path, &sink.name) {
                report.error(
                    &format!("sink {:?}", sink.name),
                    "path",
                    format!(
                        "{} is already the path of sink {first:?}; one file sink per file",
                        path.display()
                    ),
                );
            }
        }
    }
}

/// `timeout` and the batch limits, with the type's defaults; each `None` after a problem.
pub(super) fn delivery_limits(
    report: &mut Report,
    scope: &str,
    raw: &Fragment<'_>,
    (timeout, batch): (Duration, Batching),
) -> (Option<Duration>, Option<Batching>) {
    (
        duration(report, scope, raw, "timeout", timeout),
        batching(report, scope, raw, batch),
    )
}

fn batching(
    report: &mut Report,
    scope: &str,
    raw: &Fragment<'_>,
    default: Batching,
) -> Option<Batching> {
    let mut ok = true;
    let max_events = raw.usize("batch_max_events").unwrap_or(default.max_events);
    if !(1..=100_000).contains(&max_events) {
        report.error(scope, "batch_max_events", "must be between 1 and 100000");
        ok = false;
    }
    let max_bytes = raw.usize("batch_max_bytes").unwrap_or(default.max_bytes);
    if !(1024..=256 << 20).contains(&max_bytes) {
        report.error(
            scope,
            "batch_max_bytes",
            "must be between 1024 and 268435456 (256 MiB)",
        );
        ok = false;
    }
    ok.then_some(Batching {
        max_events,
        max_bytes,
    })
}

/// Checks that a PEM file holds what it should: certificates, or one private key.
pub(super) fn pem_file(
    report: &mut Report,
    scope: &str,
    field: &str,
    path: Option<&str>,
) -> Option<PathBuf> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let path = PathBuf::from(path?);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            report.error(scope, field, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let valid = if field == "key_file" {
        PrivateKeyDer::from_pem_slice(&bytes).is_ok()
    } else {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .is_ok_and(|certs| !certs.is_empty())
    };
    if !valid {
        let what = if field == "key_file" {
            "a PEM private key (-----BEGIN PRIVATE KEY-----)"
        } else {
            "PEM certificates (-----BEGIN CERTIFICATE-----)"
        };
        report.error(
            scope,
            field,
            format!("{} does not hold {what}", path.display()),
        );
        return None;
    }
    Some(path)
}

/// `ca_file`, `cert_file`, `key_file`, `server_name` (certificate and key go together).
pub(super) fn tls_files(report: &mut Report, scope: &str, raw: &Fragment<'_>) -> TlsFiles {
    let files = TlsFiles {
        ca_file: pem_file(report, scope, "ca_file", raw.str("ca_file")),
        cert_file: pem_file(report, scope, "cert_file", raw.str("cert_file")),
        key_file: pem_file(report, scope, "key_file", raw.str("key_file")),
        // Not every TLS sink can pin a name (NATS verifies the URL's host).
        server_name: raw
            .declares("server_name")
            .then(|| raw.string("server_name"))
            .flatten(),
    };
    match (raw.has("cert_file"), raw.has("key_file")) {
        (true, false) => report.error(
            scope,
            "key_file",
            "`cert_file` is set, so the client certificate's private key is needed too",
        ),
        (false, true) => report.error(
            scope,
            "cert_file",
            "`key_file` is set, so the client certificate (PEM chain) is needed too",
        ),
        _ => {}
    }
    files
}

/// The sink's token (`token_file`/`token_env`/`token_credential`) and password
/// (`password_file`/`password_env`), each `Some(None)` when absent and `None` after an error.
pub(super) type TokenAndPassword = (Option<Option<Secret>>, Option<Option<Secret>>);

pub(super) fn token_and_password(
    report: &mut Report,
    env: &Env,
    scope: &str,
    raw: &Fragment<'_>,
) -> TokenAndPassword {
    let token = optional_secret(
        report,
        env,
        scope,
        "token",
        raw.str("token_file"),
        raw.str("token_env"),
        raw.str("token_credential"),
    );
    let password = optional_secret(
        report,
        env,
        scope,
        "password",
        raw.str("password_file"),
        raw.str("password_env"),
        None,
    );
    (token, password)
}

/// A duration field that must not be zero.
pub(super) fn duration(
    report: &mut Report,
    scope: &str,
    raw: &Fragment<'_>,
    field: &str,
    default: Duration,
) -> Option<Duration> {
    let d = parse_duration_field(report, scope, field, raw.str(field), default)?;
    if d.is_zero() {
        report.error(scope, field, "must be longer than zero, e.g. \"10s\"");
        return None;
    }
    Some(d)
}

/// `file_mode = "0640"`: octal permission bits for the events file, at most rw for the owner
/// and r for group and others (the service writes it; nobody else should).
fn file_mode(report: &mut Report, scope: &str, text: Option<&str>) -> Option<Option<u32>> {
    let Some(text) = text else {
        return Some(None);
    };
    match u32::from_str_radix(text.trim().trim_start_matches("0o"), 8) {
        Ok(mode) if mode & !0o644 == 0 && mode & 0o600 == 0o600 => Some(Some(mode)),
        Ok(_) => {
            report.error(scope, "file_mode", format!("{text:?} is not allowed: the owner needs read and write, and others at most read; e.g. \"0640\" (group readable, for a log shipper in the service's group)"));
            None
        }
        Err(_) => {
            report.error(
                scope,
                "file_mode",
                format!("{text:?} is not an octal mode such as \"0640\""),
            );
            None
        }
    }
}
