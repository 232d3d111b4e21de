//! Validation of `[[sink]]` tables: the shared fields here, each network sink type in
//! `sinks/net.rs`. Every problem names the sink and the field, with the fix.

mod nats;
mod net;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawSink;
use super::report::{Env, Report};
use super::validate::validate_name;
use super::{SinkKind, SinkSettings};
use crate::normalize::Format;
use crate::secret::Secret;

pub use net::{
    HttpAuth, HttpFlavor, HttpSettings, NatsAuth, NatsSettings, SyslogProtocol, SyslogSettings,
    SyslogTransport,
};

const TYPES: &str = "\"file\", \"stdout\", \"syslog\", \"http\" or \"nats\"";

/// Size limits of the pieces a page is split into (one request, one write, one ack round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most this many events per piece.
    pub max_events: usize,
    /// At most this many bytes per piece (one event larger than this still goes alone).
    pub max_bytes: usize,
}

/// Certificate files for a TLS connection (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trusted roots (PEM) instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server certificate must match, if not the host of the address.
    pub server_name: Option<String>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        *self == TlsFiles::default()
    }
}

pub(super) fn validate_sink(
    report: &mut Report,
    env: &Env,
    scope: String,
    raw: RawSink,
) -> Option<SinkSettings> {
    let name = validate_name(report, &scope, raw.name.clone());
    let format = match raw.format.as_deref() {
        None => Some(Format::default()),
        Some(f) => match f.parse::<Format>() {
            Ok(format) => Some(format),
            Err(e) => {
                report.error(&scope, "format", e);
                None
            }
        },
    };
    let kind_name = raw.kind.clone();
    if let Some(kind) = kind_name.as_deref() {
        fields_not_for_type(report, &scope, kind, &raw);
    }
    let kind = match kind_name.as_deref() {
        None => {
            report.error(&scope, "type", format!("missing; use {TYPES}"));
            None
        }
        Some("file") => match raw.path {
            Some(p) if !p.trim().is_empty() => file_mode(report, &scope, raw.file_mode.as_deref())
                .map(|mode| SinkKind::File {
                    path: PathBuf::from(p),
                    mode,
                }),
            _ => {
                report.error(
                    &scope,
                    "path",
                    "a file sink needs `path`, e.g. \"/var/log/duo-collector/events.jsonl\"",
                );
                None
            }
        },
        Some("stdout") => Some(SinkKind::Stdout),
        Some("syslog") => net::syslog(report, &scope, &raw).map(SinkKind::Syslog),
        Some("http") => net::http(report, env, &scope, &raw).map(SinkKind::Http),
        Some("nats") => nats::nats(report, env, &scope, &raw).map(SinkKind::Nats),
        Some(other) => {
            report.error(
                &scope,
                "type",
                format!("unknown sink type {other:?}; use {TYPES}"),
            );
            None
        }
    };
    let exclude_fields = raw.exclude_fields.unwrap_or_default();
    for path in &exclude_fields {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            report.error(
                &scope,
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

/// The fields each type takes, beyond name, type, format and exclude_fields.
fn fields_for(kind: &str) -> &'static [&'static str] {
    const BATCH: [&str; 3] = ["timeout", "batch_max_events", "batch_max_bytes"];
    match kind {
        "file" => &["path", "file_mode"],
        "stdout" => &[],
        "syslog" => &[
            "transport",
            "address",
            "protocol",
            "facility",
            "hostname",
            "app_name",
            "max_message_size",
            "ca_file",
            "cert_file",
            "key_file",
            "server_name",
            BATCH[0],
            BATCH[1],
            BATCH[2],
        ],
        "http" => &[
            "url",
            "flavor",
            "headers",
            "token_file",
            "token_env",
            "token_credential",
            "username",
            "password_file",
            "password_env",
            "gzip",
            "index",
            "source",
            "idempotency_header",
            "ca_file",
            BATCH[0],
            BATCH[1],
            BATCH[2],
        ],
        "nats" => &[
            "url",
            "stream",
            "subject",
            "create_stream",
            "token_file",
            "token_env",
            "token_credential",
            "username",
            "password_file",
            "password_env",
            "creds_file",
            "tls_required",
            "ack_timeout",
            "ca_file",
            "cert_file",
            "key_file",
            BATCH[0],
            BATCH[1],
            BATCH[2],
        ],
        _ => &[],
    }
}

/// A field set that this sink type does not use is an error (it would be silently ignored).
fn fields_not_for_type(report: &mut Report, scope: &str, kind: &str, raw: &RawSink) {
    let allowed = fields_for(kind);
    if !["file", "stdout", "syslog", "http", "nats"].contains(&kind) {
        return;
    }
    let set = [
        ("path", raw.path.is_some()),
        ("transport", raw.transport.is_some()),
        ("address", raw.address.is_some()),
        ("protocol", raw.protocol.is_some()),
        ("facility", raw.facility.is_some()),
        ("hostname", raw.hostname.is_some()),
        ("app_name", raw.app_name.is_some()),
        ("max_message_size", raw.max_message_size.is_some()),
        ("ca_file", raw.ca_file.is_some()),
        ("cert_file", raw.cert_file.is_some()),
        ("key_file", raw.key_file.is_some()),
        ("server_name", raw.server_name.is_some()),
        ("url", raw.url.is_some()),
        ("flavor", raw.flavor.is_some()),
        ("headers", raw.headers.is_some()),
        ("token_file", raw.token_file.is_some()),
        ("token_env", raw.token_env.is_some()),
        ("token_credential", raw.token_credential.is_some()),
        ("username", raw.username.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("gzip", raw.gzip.is_some()),
        ("index", raw.index.is_some()),
        ("source", raw.source.is_some()),
        ("idempotency_header", raw.idempotency_header.is_some()),
        ("stream", raw.stream.is_some()),
        ("subject", raw.subject.is_some()),
        ("create_stream", raw.create_stream.is_some()),
        ("creds_file", raw.creds_file.is_some()),
        ("tls_required", raw.tls_required.is_some()),
        ("ack_timeout", raw.ack_timeout.is_some()),
        ("timeout", raw.timeout.is_some()),
        ("batch_max_events", raw.batch_max_events.is_some()),
        ("batch_max_bytes", raw.batch_max_bytes.is_some()),
    ];
    for (field, given) in set {
        if given && !allowed.contains(&field) {
            report.error(
                scope,
                field,
                format!("not used by a {kind} sink; remove it (or change `type`)"),
            );
        }
    }
}

/// Two file sinks must not write one file: each cuts the file back to its own committed
/// length after a crash, which would cut the other's committed events.
pub(super) fn one_file_sink_per_path(report: &mut Report, sinks: &[SinkSettings]) {
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

pub(super) fn batching(
    report: &mut Report,
    scope: &str,
    raw: &RawSink,
    default: Batching,
) -> Option<Batching> {
    let mut ok = true;
    let max_events = raw.batch_max_events.unwrap_or(default.max_events);
    if !(1..=100_000).contains(&max_events) {
        report.error(scope, "batch_max_events", "must be between 1 and 100000");
        ok = false;
    }
    let max_bytes = raw.batch_max_bytes.unwrap_or(default.max_bytes);
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
    path: Option<&String>,
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
pub(super) fn tls_files(report: &mut Report, scope: &str, raw: &RawSink) -> TlsFiles {
    let files = TlsFiles {
        ca_file: pem_file(report, scope, "ca_file", raw.ca_file.as_ref()),
        cert_file: pem_file(report, scope, "cert_file", raw.cert_file.as_ref()),
        key_file: pem_file(report, scope, "key_file", raw.key_file.as_ref()),
        server_name: raw.server_name.clone(),
    };
    match (&raw.cert_file, &raw.key_file) {
        (Some(_), None) => report.error(
            scope,
            "key_file",
            "`cert_file` is set, so the client certificate's private key is needed too",
        ),
        (None, Some(_)) => report.error(
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
    raw: &RawSink,
) -> TokenAndPassword {
    let token = optional_secret(
        report,
        env,
        scope,
        "token",
        raw.token_file.as_ref(),
        raw.token_env.as_ref(),
        raw.token_credential.as_ref(),
    );
    let password = optional_secret(
        report,
        env,
        scope,
        "password",
        raw.password_file.as_ref(),
        raw.password_env.as_ref(),
        None,
    );
    (token, password)
}

/// A secret from exactly one of `<base>_file`, `<base>_env`, `<base>_credential`, or none.
/// `Some(None)`: none given; `None`: an error was reported.
pub(super) fn optional_secret(
    report: &mut Report,
    env: &Env,
    scope: &str,
    base: &str,
    file: Option<&String>,
    env_name: Option<&String>,
    credential: Option<&String>,
) -> Option<Option<Secret>> {
    let given = [file.is_some(), env_name.is_some(), credential.is_some()]
        .into_iter()
        .filter(|g| *g)
        .count();
    if given == 0 {
        return Some(None);
    }
    if given > 1 {
        report.error(
            scope,
            &format!("{base}_file"),
            format!("set only one of `{base}_file`, `{base}_env` and `{base}_credential`"),
        );
        return None;
    }
    if !env.resolve_secrets {
        return Some(Some(Secret::new(String::new())));
    }
    let (field, value) = if let Some(name) = env_name {
        let field = format!("{base}_env");
        match env.var(name) {
            Some(v) => (field, v),
            None => {
                report.error(
                    scope,
                    &field,
                    format!("environment variable {name:?} is not set"),
                );
                return None;
            }
        }
    } else {
        let (field, path) = match (file, credential) {
            (Some(path), _) => (format!("{base}_file"), PathBuf::from(path)),
            (None, Some(name)) => {
                let field = format!("{base}_credential");
                match super::credentials::credential_path(env, name) {
                    Ok(path) => (field, path),
                    Err(e) => {
                        report.error(scope, &field, e);
                        return None;
                    }
                }
            }
            (None, None) => return Some(None),
        };
        match std::fs::read_to_string(&path) {
            Ok(v) => (field, v),
            Err(e) => {
                report.error(
                    scope,
                    &field,
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        }
    };
    let value = value.trim();
    if value.is_empty() {
        report.error(scope, &field, "the secret is empty");
        return None;
    }
    Some(Some(Secret::new(value)))
}

pub(super) fn duration(
    report: &mut Report,
    scope: &str,
    field: &str,
    value: Option<&String>,
    default: Duration,
) -> Option<Duration> {
    let d = super::validate::parse_duration_field(
        report,
        scope,
        field,
        value.map(String::as_str),
        default,
    )?;
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
