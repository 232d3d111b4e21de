//! HTTP sinks: their keys, settings and validation.

use std::time::Duration;

use super::fragment::{
    flag, table, text, Fragment, Key, SinkType, BATCH, CA_FILE, PASSWORD, TOKEN,
};
use super::{delivery_limits, token_and_password, Batching, SinkKind};
use crate::config::{Env, Report};
use crate::secret::Secret;

/// The keys only this type has.
const OWN: &[Key] = &[
    text("url"),
    text("flavor"),
    table("headers"),
    flag("gzip"),
    text("index"),
    text("source"),
    text("idempotency_header"),
];

/// The default `timeout` and batch limits.
const LIMITS: (Duration, Batching) = (Duration::from_secs(30), Batching::new(500, 5 << 20));

pub(super) const TYPE: SinkType = SinkType {
    name: "http",
    validate: |report, env, scope, raw| http(report, env, scope, raw).map(SinkKind::Http),
    keys: &[OWN, TOKEN, PASSWORD, CA_FILE, BATCH],
};

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

fn http(report: &mut Report, env: &Env, scope: &str, raw: &Fragment<'_>) -> Option<HttpSettings> {
    let url = match raw.str("url").map(url::Url::parse) {
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
    let flavor = match raw.str("flavor") {
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
    let username = raw.string("username");
    let gzip = raw.bool("gzip").unwrap_or(false);
    let hec = flavor == Some(HttpFlavor::SplunkHec);
    let auth = match (token, password) {
        (Some(token), Some(password)) => {
            match (token, username, password) {
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
    for (name, value) in raw.string_map("headers").unwrap_or_default() {
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
        for (field, given) in [("index", raw.has("index")), ("source", raw.has("source"))] {
            if given {
                report.error(scope, field, "only for flavor = \"splunk_hec\"");
            }
        }
    }
    let idempotency_header = idempotency_header(report, scope, raw, &headers);
    let ca_file = super::pem_file(report, scope, "ca_file", raw.str("ca_file"));
    let (timeout, batch) = delivery_limits(report, scope, raw, LIMITS);
    Some(HttpSettings {
        url: url?,
        flavor: flavor?,
        auth: auth?,
        headers,
        gzip,
        idempotency_header: idempotency_header?,
        timeout: timeout?,
        ca_file: if raw.has("ca_file") {
            Some(ca_file?)
        } else {
            None
        },
        index: raw.string("index"),
        source: raw.string("source"),
        batch: batch?,
    })
}

/// The HTTP sink's idempotency header: `Idempotency-Key` unless named otherwise; `""` turns it
/// off. `Some(None)` is "valid, off"; `None` an error.
fn idempotency_header(
    report: &mut Report,
    scope: &str,
    raw: &Fragment<'_>,
    headers: &[(String, String)],
) -> Option<Option<String>> {
    let name = raw
        .str("idempotency_header")
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
