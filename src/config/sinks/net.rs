//! The network sinks' settings (syslog, http, nats) and their validation.

use std::time::Duration;

use super::super::raw::RawSink;
use super::super::report::{Env, Report};
use super::{batching, duration, tls_files, token_and_password, Batching, TlsFiles};
use crate::facility::Facility;
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    /// One datagram per message; lossy, no acknowledgement of any kind.
    Udp,
    /// Octet-counted frames; acknowledged once written and flushed to the socket.
    Tcp,
    /// As TCP, over TLS (RFC 5425).
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogProtocol {
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyslogSettings {
    pub transport: SyslogTransport,
    /// `host:port`.
    pub address: String,
    /// The host part of `address` (for TLS server name verification).
    pub host: String,
    pub protocol: SyslogProtocol,
    pub facility: Facility,
    /// HOSTNAME in the header; `None`: this machine's host name.
    pub hostname: Option<String>,
    pub app_name: String,
    /// UDP: the largest datagram; longer messages are truncated (with a warning, counted).
    pub max_message_size: usize,
    pub tls: TlsFiles,
    /// Connect and write timeout.
    pub timeout: Duration,
    pub batch: Batching,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFlavor {
    /// One JSON document per line (`application/x-ndjson`).
    Ndjson,
    /// One JSON array per request.
    JsonArray,
    /// Splunk HTTP Event Collector envelopes.
    SplunkHec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpAuth {
    None,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: Splunk <token>`.
    Splunk(Secret),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub url: url::Url,
    pub flavor: HttpFlavor,
    pub auth: HttpAuth,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub ca_file: Option<std::path::PathBuf>,
    /// Splunk HEC: `index` and `source` fields of the envelope.
    pub index: Option<String>,
    pub source: Option<String>,
    /// The header that carries each request's idempotency key; `None`: not sent.
    pub idempotency_header: Option<String>,
    pub batch: Batching,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    Token(Secret),
    UserPassword {
        username: String,
        password: Secret,
    },
    /// The contents of a `.creds` file (JWT and NKey seed).
    Credentials(Secret),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    /// One or more server URLs, comma-separated.
    pub url: String,
    pub stream: String,
    /// The subject template: `{integration}`, `{log}` and `{account}` are replaced.
    pub subject: String,
    pub create_stream: bool,
    pub auth: NatsAuth,
    pub tls: TlsFiles,
    pub tls_required: bool,
    pub ack_timeout: Duration,
    /// Connect timeout.
    pub timeout: Duration,
    pub batch: Batching,
}

pub const DEFAULT_SUBJECT: &str = "duo.{integration}.{log}";

/// Splits `host:port` (IPv6 hosts in brackets).
fn host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(' ')).then(|| (host.to_string(), port))
}

fn printable(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| (33..=126).contains(&b))
}

pub(super) fn syslog(report: &mut Report, scope: &str, raw: &RawSink) -> Option<SyslogSettings> {
    let transport = match raw.transport.as_deref() {
        Some("udp") => Some(SyslogTransport::Udp),
        Some("tcp") => Some(SyslogTransport::Tcp),
        Some("tls") => Some(SyslogTransport::Tls),
        other => {
            let what = match other {
                None => "missing".to_string(),
                Some(t) => format!("unknown transport {t:?}"),
            };
            report.error(
                scope,
                "transport",
                format!("{what}; use \"tls\" (recommended), \"tcp\" or \"udp\" (lossy)"),
            );
            None
        }
    };
    let address = match raw.address.as_deref().map(|a| (a, host_port(a))) {
        Some((a, Some((host, _)))) => Some((a.to_string(), host)),
        Some((a, None)) => {
            report.error(
                scope,
                "address",
                format!("{a:?} is not host:port, e.g. \"siem.example.com:6514\""),
            );
            None
        }
        None => {
            report.error(
                scope,
                "address",
                "missing; the receiver as host:port, e.g. \"siem.example.com:6514\"",
            );
            None
        }
    };
    let protocol = match raw.protocol.as_deref() {
        None | Some("rfc5424") => Some(SyslogProtocol::Rfc5424),
        Some("rfc3164") => Some(SyslogProtocol::Rfc3164),
        Some(p) => {
            report.error(scope, "protocol", format!("unknown protocol {p:?}; use \"rfc5424\" (default) or \"rfc3164\" for old receivers"));
            None
        }
    };
    let facility = match raw.facility.as_deref().map(str::parse::<Facility>) {
        None => Some(Facility::default()),
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            report.error(scope, "facility", e);
            None
        }
    };
    if let Some(h) = &raw.hostname {
        if !printable(h, 255) {
            report.error(
                scope,
                "hostname",
                "must be 1-255 printable ASCII characters without spaces",
            );
        }
    }
    let app_name = raw
        .app_name
        .clone()
        .unwrap_or_else(|| "duo-collector".into());
    if !printable(&app_name, 48) {
        report.error(
            scope,
            "app_name",
            "must be 1-48 printable ASCII characters without spaces",
        );
    }
    let max_message_size = raw.max_message_size.unwrap_or(8192);
    if raw.max_message_size.is_some() && transport != Some(SyslogTransport::Udp) {
        report.error(
            scope,
            "max_message_size",
            "applies to transport = \"udp\" only (TCP and TLS frames carry any length)",
        );
    }
    if !(480..=65_507).contains(&max_message_size) {
        report.error(
            scope,
            "max_message_size",
            "must be between 480 and 65507 bytes (RFC 5426; 2048 is safe on most networks)",
        );
    }
    let tls = tls_files(report, scope, raw);
    let tls_given = raw.ca_file.is_some()
        || raw.cert_file.is_some()
        || raw.key_file.is_some()
        || raw.server_name.is_some();
    if tls_given && transport.is_some_and(|t| t != SyslogTransport::Tls) {
        report.error(
            scope,
            "ca_file",
            "TLS settings (ca_file, cert_file, key_file, server_name) need transport = \"tls\"",
        );
    }
    let timeout = duration(
        report,
        scope,
        "timeout",
        raw.timeout.as_ref(),
        Duration::from_secs(10),
    );
    let batch = batching(
        report,
        scope,
        raw,
        Batching {
            max_events: 1000,
            max_bytes: 1 << 20,
        },
    );
    let (address, host) = address?;
    Some(SyslogSettings {
        transport: transport?,
        address,
        host,
        protocol: protocol?,
        facility: facility?,
        hostname: raw.hostname.clone(),
        app_name,
        max_message_size,
        tls,
        timeout: timeout?,
        batch: batch?,
    })
}

pub(super) fn http(
    report: &mut Report,
    env: &Env,
    scope: &str,
    raw: &RawSink,
) -> Option<HttpSettings> {
    let url = match raw.url.as_deref().map(url::Url::parse) {
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.scheme() == "http"
                && !matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
            {
                report.warn(
                    scope,
                    "url",
                    "plain http:// sends events and the token unencrypted; use https://",
                );
            }
            if !u.username().is_empty() || u.password().is_some() {
                report.error(
                    scope,
                    "url",
                    "do not put credentials in the URL; use `username` with `password_file`",
                );
                None
            } else {
                Some(u)
            }
        }
        Some(_) => {
            report.error(scope, "url", "not an http(s) URL, e.g. \"https://splunk.example.com:8088/services/collector/event\"");
            None
        }
        None => {
            report.error(
                scope,
                "url",
                "missing; the endpoint that receives POSTed batches",
            );
            None
        }
    };
    let flavor = match raw.flavor.as_deref() {
        None | Some("ndjson") => Some(HttpFlavor::Ndjson),
        Some("json_array") => Some(HttpFlavor::JsonArray),
        Some("splunk_hec") => Some(HttpFlavor::SplunkHec),
        Some(f) => {
            report.error(
                scope,
                "flavor",
                format!("unknown flavor {f:?}; use \"ndjson\", \"json_array\" or \"splunk_hec\""),
            );
            None
        }
    };
    let (token, password) = token_and_password(report, env, scope, raw);
    let hec = flavor == Some(HttpFlavor::SplunkHec);
    let auth = match (token, password) {
        (Some(token), Some(password)) => {
            match (token, raw.username.clone(), password) {
                (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
                    report.error(scope, "username", "use either a token (token_file/token_env) or username and password, not both");
                    None
                }
                (Some(t), None, None) => Some(if hec {
                    HttpAuth::Splunk(t)
                } else {
                    HttpAuth::Bearer(t)
                }),
                (None, _, _) if hec => {
                    report.error(scope, "token_file", "Splunk HEC needs its token: set `token_file` (or `token_env` / `token_credential`)");
                    None
                }
                (None, Some(username), Some(password)) => {
                    Some(HttpAuth::Basic { username, password })
                }
                (None, Some(_), None) => {
                    report.error(scope, "password_file", "`username` is set, so a password is needed: set `password_file` or `password_env`");
                    None
                }
                (None, None, Some(_)) => {
                    report.error(
                        scope,
                        "username",
                        "a password is set, so `username` is needed too",
                    );
                    None
                }
                (None, None, None) => Some(HttpAuth::None),
            }
        }
        _ => None,
    };
    let mut headers = Vec::new();
    for (name, value) in raw.headers.clone().unwrap_or_default() {
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "authorization" | "proxy-authorization") {
            report.error(scope, "headers", format!("{name:?} would put a credential in the config file; use `token_file`, or `username` with `password_file`"));
        } else if matches!(
            lower.as_str(),
            "content-type" | "content-encoding" | "content-length" | "host"
        ) {
            report.error(
                scope,
                "headers",
                format!("{name:?} is set by the sink; remove it"),
            );
        } else if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(&value).is_err()
        {
            report.error(
                scope,
                "headers",
                format!("{name:?} is not a valid header name, or its value has invalid characters"),
            );
        } else {
            headers.push((name, value));
        }
    }
    if flavor != Some(HttpFlavor::SplunkHec) {
        for (field, given) in [
            ("index", raw.index.is_some()),
            ("source", raw.source.is_some()),
        ] {
            if given {
                report.error(scope, field, "only for flavor = \"splunk_hec\"");
            }
        }
    }
    let idempotency_header = idempotency_header(report, scope, raw, &headers);
    let ca_file = super::pem_file(report, scope, "ca_file", raw.ca_file.as_ref());
    let timeout = duration(
        report,
        scope,
        "timeout",
        raw.timeout.as_ref(),
        Duration::from_secs(30),
    );
    let batch = batching(
        report,
        scope,
        raw,
        Batching {
            max_events: 500,
            max_bytes: 5 << 20,
        },
    );
    Some(HttpSettings {
        url: url?,
        flavor: flavor?,
        auth: auth?,
        headers,
        gzip: raw.gzip.unwrap_or(false),
        idempotency_header: idempotency_header?,
        timeout: timeout?,
        ca_file: if raw.ca_file.is_some() {
            Some(ca_file?)
        } else {
            None
        },
        index: raw.index.clone(),
        source: raw.source.clone(),
        batch: batch?,
    })
}

/// The HTTP sink's idempotency header: `Idempotency-Key` unless named otherwise; `""` turns it
/// off. `Some(None)` is "valid, off"; `None` an error.
fn idempotency_header(
    report: &mut Report,
    scope: &str,
    raw: &RawSink,
    headers: &[(String, String)],
) -> Option<Option<String>> {
    let name = raw
        .idempotency_header
        .as_deref()
        .unwrap_or("Idempotency-Key")
        .trim();
    if name.is_empty() {
        return Some(None);
    }
    let lower = name.to_ascii_lowercase();
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        report.error(
            scope,
            "idempotency_header",
            format!("{name:?} is not a valid header name; e.g. \"Idempotency-Key\" or \"X-Batch-Id\" (\"\" to send none)"),
        );
        return None;
    }
    if matches!(
        lower.as_str(),
        "authorization"
            | "proxy-authorization"
            | "content-type"
            | "content-encoding"
            | "content-length"
            | "host"
    ) || headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(name))
    {
        report.error(
            scope,
            "idempotency_header",
            format!("{name:?} is already set by the sink or by `headers`; choose another name"),
        );
        return None;
    }
    Some(Some(name.to_string()))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn addresses_and_subjects() {
        assert_eq!(host_port("siem:6514"), Some(("siem".into(), 6514)));
        assert_eq!(host_port("[::1]:514"), Some(("::1".into(), 514)));
        assert_eq!(host_port("siem"), None);
        assert_eq!(host_port("siem:0"), None);
        assert!(super::super::nats::subject_problem(DEFAULT_SUBJECT).is_none());
        assert!(super::super::nats::subject_problem("duo.{account}.{log}").is_none());
        assert!(super::super::nats::subject_problem("duo.*").is_some());
        assert!(super::super::nats::subject_problem("duo..x").is_some());
        assert!(super::super::nats::subject_problem("duo.{nope}").is_some());
    }
}
