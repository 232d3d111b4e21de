//! The HTTP sink: POSTs batches as NDJSON, a JSON array, or Splunk HEC envelopes.
//!
//! Acknowledged by a 2xx response. Connection errors, timeouts, 408, 429 (honouring
//! Retry-After) and 5xx are retried; any other status is a permanent failure of the page,
//! reported with an excerpt of the response body (and, for HEC, its error code).
//!
//! Every request carries an idempotency key (header `Idempotency-Key` by default): a hash of
//! the stream and the event ids of the piece, so a piece sent again (a retry, or the page
//! fetched again after a crash before its commit) carries the same key, and a receiver that
//! deduplicates by it stores the piece once.

use std::io::Write as _;
use std::ops::Range;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};

use super::config::{Batching, HttpAuth, HttpFlavor, HttpSettings};
use super::{DriverError, Rendered};

pub struct HttpSink {
    settings: HttpSettings,
    client: reqwest::Client,
    hostname: String,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the auth settings.
        f.debug_struct("HttpSink")
            .field("url", &self.settings.url.as_str())
            .finish()
    }
}

/// Splunk sourcetype for a log kind, e.g. `cisco:duo:authentication`.
pub fn hec_sourcetype(stream: &crate::event::StreamId) -> String {
    format!("cisco:duo:{}", stream.source_name())
}

/// The line as a JSON value: itself if it is JSON, else a JSON string (e.g. a CEF line).
fn push_json_value(out: &mut Vec<u8>, line: &[u8]) {
    if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
        out.extend_from_slice(line);
    } else {
        let text = String::from_utf8_lossy(line);
        let _ = serde_json::to_writer(&mut *out, &text);
    }
}

/// Printable excerpt of a response body for error messages.
fn excerpt(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    text.trim().to_string()
}

/// Retry-After as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(wait.max(0) as u64))
}

impl HttpSink {
    pub fn open(settings: &HttpSettings) -> Result<HttpSink, DriverError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let bad = |e: &dyn std::fmt::Display| {
                DriverError::permanent(format!("header {name:?}: {e}"), "fix `headers`")
            };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
            let value = HeaderValue::from_str(value).map_err(|e| bad(&e))?;
            headers.insert(name, value);
        }
        let secret_header = |text: String| {
            let mut v = HeaderValue::from_str(&text).map_err(|_| {
                DriverError::permanent(
                    "the token or password has characters not allowed in an HTTP header",
                    "check the token or password file for stray characters",
                )
            })?;
            v.set_sensitive(true);
            Ok::<_, DriverError>(v)
        };
        match &settings.auth {
            HttpAuth::None => {}
            HttpAuth::Bearer(t) => {
                headers.insert(
                    AUTHORIZATION,
                    secret_header(format!("Bearer {}", t.expose()))?,
                );
            }
            HttpAuth::Splunk(t) => {
                headers.insert(
                    AUTHORIZATION,
                    secret_header(format!("Splunk {}", t.expose()))?,
                );
            }
            HttpAuth::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                headers.insert(AUTHORIZATION, secret_header(format!("Basic {encoded}"))?);
            }
        }
        let content_type = match settings.flavor {
            HttpFlavor::Ndjson => "application/x-ndjson",
            HttpFlavor::JsonArray | HttpFlavor::SplunkHec => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if settings.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("duo-collector/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)));
        if let Some(path) = &settings.ca_file {
            let unusable = |e: &dyn std::fmt::Display| {
                DriverError::permanent(
                    format!("ca_file {}: {e}", path.display()),
                    "point `ca_file` at a readable PEM file of CA certificates",
                )
            };
            let pem = std::fs::read(path).map_err(|e| unusable(&e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(&e))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            DriverError::permanent(
                format!("cannot build the HTTP client: {e}"),
                "check ca_file and the system's TLS roots",
            )
        })?;
        Ok(HttpSink {
            settings: settings.clone(),
            client,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        })
    }

    /// A GET of the URL with the sink's own client (its `ca_file`, timeout and headers): any
    /// HTTP answer shows the receiver is reachable and its certificate trusted.
    pub async fn probe(&self) -> Result<String, DriverError> {
        let url = &self.settings.url;
        match self.client.get(url.clone()).send().await {
            Ok(response) => Ok(format!(
                "{url} answered (HTTP {})",
                response.status().as_u16()
            )),
            Err(e) => Err(DriverError::transient(format!(
                "{url}: {}",
                crate::duo::client::error_chain(&e)
            ))),
        }
    }

    pub fn limits(&self) -> (Batching, usize) {
        let overhead = match self.settings.flavor {
            HttpFlavor::SplunkHec => 160,
            _ => 1,
        };
        (self.settings.batch, overhead)
    }

    /// The request body for events `range` of the page.
    pub fn body(&self, page: &Rendered<'_>, range: Range<usize>) -> Vec<u8> {
        let mut out = Vec::with_capacity(range.len() * 1300);
        match self.settings.flavor {
            HttpFlavor::Ndjson => {
                for i in range {
                    out.extend_from_slice(page.line(i));
                    out.push(b'\n');
                }
            }
            HttpFlavor::JsonArray => {
                out.push(b'[');
                for (n, i) in range.enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    push_json_value(&mut out, page.line(i));
                }
                out.push(b']');
            }
            HttpFlavor::SplunkHec => {
                let stream = page.batch.stream;
                let source = self
                    .settings
                    .source
                    .clone()
                    .unwrap_or_else(|| format!("duo-collector:{}", stream.integration));
                for i in range {
                    let event = &page.batch.events[i];
                    let mut head = serde_json::json!({
                        "time": event.ts_ms as f64 / 1000.0,
                        "host": self.hostname,
                        "source": source,
                        "sourcetype": hec_sourcetype(stream),
                    });
                    if let Some(index) = &self.settings.index {
                        head["index"] = index.clone().into();
                    }
                    let head = head.to_string();
                    // `{…head…,"event":<line>}`
                    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
                    out.extend_from_slice(b",\"event\":");
                    push_json_value(&mut out, page.line(i));
                    out.extend_from_slice(b"}\n");
                }
            }
        }
        out
    }

    pub async fn send(
        &mut self,
        page: &Rendered<'_>,
        range: Range<usize>,
    ) -> Result<(), DriverError> {
        let key = piece_key(page.batch, range.clone());
        let mut body = self.body(page, range);
        if self.settings.gzip {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::default(),
            );
            body = gz
                .write_all(&body)
                .and_then(|()| gz.finish())
                .map_err(|e| DriverError::transient(format!("gzip: {e}")))?;
        }
        let url = &self.settings.url;
        let mut request = self.client.post(url.clone()).body(body);
        if let Some(header) = &self.settings.idempotency_header {
            request = request.header(header.as_str(), key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                // The error chain names the host and the cause; it never holds our headers.
                return Err(DriverError::transient(format!(
                    "POST {} {what}: {}",
                    url.host_str().unwrap_or(""),
                    crate::duo::client::error_chain(&e)
                )));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let mut detail = format!("HTTP {status}");
        if self.settings.flavor == HttpFlavor::SplunkHec {
            if let Ok(hec) = serde_json::from_slice::<serde_json::Value>(&body) {
                if let (Some(code), Some(text)) = (hec["code"].as_i64(), hec["text"].as_str()) {
                    detail.push_str(&format!(" (HEC code {code}: {text}{})", hec_hint(code)));
                }
            }
        }
        let text = excerpt(&body);
        if !text.is_empty() {
            detail.push_str(&format!("; response: {text}"));
        }
        Err(classify(status.as_u16(), detail, after))
    }
}

/// The idempotency key of events `range` of the batch: the same events of the same stream
/// give the same key, whenever and however often they are sent (128 bits of SHA-256, hex).
pub fn piece_key(batch: &crate::event::Batch<'_>, range: Range<usize>) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(batch.stream.to_string().as_bytes());
    for event in &batch.events[range] {
        hash.update(b"\n");
        hash.update(event.event_id.as_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}

/// Whether sending the same request again can succeed: 408, 429 and 5xx may (waiting
/// `retry_after` if the server said so); any other status will not, and says what to fix.
pub fn classify(status: u16, detail: String, retry_after: Option<Duration>) -> DriverError {
    if matches!(status, 408 | 429) || (500..600).contains(&status) {
        return DriverError::Transient {
            detail,
            retry_after,
        };
    }
    let fix = match status {
        401 => "the receiver refused the credentials: check the token (token_file / token_env / token_credential) or username and password",
        403 => "the credentials are valid but not allowed to write here: grant them access on the receiver (for Splunk HEC, the token's allowed indexes), or change `url`",
        404 | 405 => "the receiver has no such endpoint: check the path in `url`",
        413 => "the request is larger than the receiver accepts: lower `batch_max_bytes` or `batch_max_events`",
        _ => "the receiver refused the events as sent: check `flavor` and `format` against what it expects, and its logs",
    };
    DriverError::permanent(detail, fix)
}

/// What to do about a Splunk HEC error code.
fn hec_hint(code: i64) -> &'static str {
    match code {
        2 | 3 => "; set the token with token_file",
        4 => "; the token is wrong: check token_file",
        1 => "; the HEC input is disabled in Splunk",
        5 | 6 | 12 | 13 => "; Splunk could not parse the events",
        7 => "; the index is not allowed for this token: check `index`",
        9 => "; Splunk is busy, retrying",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn piece_keys_name_the_events_not_the_attempt() {
        use crate::event::{Batch, Event, StreamId};
        let events: Vec<Event> = (0..4)
            .map(|i| Event {
                raw: "{}".into(),
                event_id: format!("tx{i}"),
                ts_ms: i,
            })
            .collect();
        let stream = StreamId::new("corp", None, crate::logs::LogKind::Authentication);
        let batch = |collected_at| Batch {
            stream: &stream,
            account_name: None,
            collected_at,
            events: &events,
            inventory: None,
        };
        let first = piece_key(&batch("2026-01-01T00:00:00Z"), 0..2);
        // Fetched again later: same events, same key.
        assert_eq!(first, piece_key(&batch("2026-01-02T00:00:00Z"), 0..2));
        assert_eq!(first.len(), 32);
        assert_ne!(first, piece_key(&batch("x"), 2..4));
        assert_ne!(first, piece_key(&batch("x"), 0..3));
        let other = StreamId::new(
            "corp",
            Some("DA1".into()),
            crate::logs::LogKind::Authentication,
        );
        let elsewhere = Batch {
            stream: &other,
            ..batch("x")
        };
        assert_ne!(first, piece_key(&elsewhere, 0..2));
    }

    #[test]
    fn non_json_lines_become_strings() {
        let mut out = Vec::new();
        push_json_value(&mut out, br#"{"a":1}"#);
        push_json_value(&mut out, b"CEF:0|Cisco|Duo|");
        assert_eq!(out, br#"{"a":1}"CEF:0|Cisco|Duo|""#);
    }
}
