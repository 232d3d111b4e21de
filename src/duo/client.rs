//! The signed HTTP client for the Duo Admin, Accounts and Auth APIs; how a failure is retried is
//! `retry.rs`'s decision.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::clock::DuoClock;
use super::error::{self, DuoError};
use super::retry::{jitter, Backoff, Next, RetryPolicy};
use super::sign::{self, SigVersion, SignInput};
use crate::config::Integration;
use crate::logs::page::PageError;
use crate::secret::Secret;

pub const USER_AGENT: &str = concat!("duo-collector/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client bound to one set of keys.
#[derive(Debug, Clone)]
pub struct DuoClient {
    http: reqwest::Client,
    connect_to: Option<url::Url>,
    ikey: String,
    skey: Secret,
    signature: SigVersion,
    timeout: Duration,
    retry: RetryPolicy,
    /// Where each response is counted, and the integration name used as label.
    observer: Option<(std::sync::Arc<crate::observe::Observer>, String)>,
    /// Fed with every response's `Date` header: Duo's clock.
    clock: Option<DuoClock>,
}

/// A request before signing: what [`DuoClient::request`] and [`DuoClient::request_once`] send.
pub struct Call<'a> {
    method: reqwest::Method,
    host: &'a str,
    path: &'a str,
    params: &'a [(String, String)],
}

impl<'a> Call<'a> {
    pub fn get(host: &'a str, path: &'a str, params: &'a [(String, String)]) -> Call<'a> {
        Call {
            method: reqwest::Method::GET,
            host,
            path,
            params,
        }
    }

    /// The parameters go as a form body (v2 signatures) or JSON body (v5).
    pub fn post(host: &'a str, path: &'a str, params: &'a [(String, String)]) -> Call<'a> {
        Call {
            method: reqwest::Method::POST,
            ..Call::get(host, path, params)
        }
    }
}

impl DuoClient {
    pub fn for_integration(
        integration: &Integration,
        retry: RetryPolicy,
    ) -> Result<Self, DuoError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(path) = &integration.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                DuoError::Transport(format!("cannot read ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                DuoError::Transport(format!(
                    "ca_file {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        // `without_url`: the proxy URL can hold credentials.
        let builder = integration.proxy.apply(builder).map_err(|e| {
            DuoError::Transport(format!(
                "cannot use the proxy of integration {}: {}",
                integration.name,
                error_chain(&e.without_url())
            ))
        })?;
        super::proxy::log_route(integration);
        let http = builder.build().map_err(|e| {
            DuoError::Transport(format!("cannot build the HTTP client: {}", error_chain(&e)))
        })?;
        Ok(DuoClient {
            http,
            connect_to: integration.connect_to.clone(),
            ikey: integration.ikey.clone(),
            skey: integration.skey.clone(),
            signature: integration.signature,
            timeout: integration.request_timeout,
            retry,
            observer: None,
            clock: None,
        })
    }

    /// Every response's `Date` header is recorded in `clock`.
    pub fn with_clock(mut self, clock: DuoClock) -> DuoClient {
        self.clock = Some(clock);
        self
    }

    pub fn clock(&self) -> Option<&DuoClock> {
        self.clock.as_ref()
    }

    /// Counts every response in `observer`'s metrics under this integration name.
    pub fn observed(
        mut self,
        observer: std::sync::Arc<crate::observe::Observer>,
        integration: &str,
    ) -> DuoClient {
        self.observer = Some((observer, integration.to_string()));
        self
    }

    /// The same client (connection pool, TLS settings) with other keys.
    pub fn with_keys(&self, ikey: &str, skey: &Secret) -> DuoClient {
        DuoClient {
            ikey: ikey.to_string(),
            skey: skey.clone(),
            ..self.clone()
        }
    }

    /// A signed request, retried per the policy; `parse` turns the body into the result, and a
    /// parse failure counts as a transient error (a truncated or garbled response).
    pub async fn request<T>(
        &self,
        call: &Call<'_>,
        cancel: &CancellationToken,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, DuoError> {
        self.with_retries(call, cancel, parse).await
    }

    /// One signed request, not retried: the caller paces and retries (the log pagers, which
    /// must not hold a page permit while they wait). The response is counted in the metrics.
    pub async fn request_once<T>(
        &self,
        call: &Call<'_>,
        cancel: &CancellationToken,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, DuoError> {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return Err(DuoError::Cancelled),
            r = self.send_once(call) => r,
        };
        self.count_response(&outcome);
        outcome.and_then(|body| parse(&body).map_err(|e| DuoError::Malformed(e.0)))
    }

    fn count_response(&self, outcome: &Result<Vec<u8>, DuoError>) {
        if let Some((observer, integration)) = &self.observer {
            let status = match outcome {
                Ok(_) => Some(200),
                Err(DuoError::Api { status, .. }) => Some(*status),
                Err(_) => None,
            };
            observer.api_response(integration, status);
        }
    }

    async fn with_retries<T>(
        &self,
        call: &Call<'_>,
        cancel: &CancellationToken,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, DuoError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return Err(DuoError::Cancelled),
                r = self.send_once(call) => r,
            };
            self.count_response(&outcome);
            let err =
                match outcome.and_then(|body| parse(&body).map_err(|e| DuoError::Malformed(e.0))) {
                    Ok(value) => return Ok(value),
                    Err(e) => e,
                };
            let wait = match backoff.after(&err) {
                Next::Retry(wait) => wait,
                Next::GiveUp if err.is_rate_limited() => {
                    return Err(DuoError::RateLimited {
                        attempts,
                        waited: started.elapsed(),
                    })
                }
                Next::GiveUp => return Err(err),
            };
            let wait = wait + jitter(self.retry.jitter);
            if let Some((observer, integration)) = &self.observer {
                observer.api_retry(integration, wait);
            }
            tracing::warn!(host = call.host, path = call.path, attempt = attempts, wait_ms = wait.as_millis() as u64, error = %err, "Duo request failed; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return Err(DuoError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn url_for(&self, host: &str, path: &str) -> Result<url::Url, DuoError> {
        let base = match &self.connect_to {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!("https://{host}"))
                .map_err(|e| DuoError::Transport(format!("invalid API host {host:?}: {e}")))?,
        };
        base.join(path)
            .map_err(|e| DuoError::Transport(format!("invalid path {path:?}: {e}")))
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Vec<u8>, DuoError> {
        let mut url = self.url_for(call.host, call.path)?;
        let date = sign::rfc2822_date(chrono::Utc::now());
        let is_get = call.method == reqwest::Method::GET;
        let json_body = self.signature == SigVersion::V5 && !is_get;
        let body: Vec<u8> = if json_body {
            let map: serde_json::Map<String, serde_json::Value> = call
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            // serde_json::Map is sorted, matching `json.dumps(sort_keys=True)`.
            serde_json::to_vec(&map).unwrap_or_else(|_| b"{}".to_vec())
        } else if is_get {
            Vec::new()
        } else {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(call.params)
                .finish()
                .into_bytes()
        };
        if is_get && !call.params.is_empty() {
            url.query_pairs_mut().extend_pairs(call.params);
        }
        let signed_params: &[(String, String)] = if json_body { &[] } else { call.params };
        let input = SignInput {
            date: &date,
            method: call.method.as_str(),
            host: call.host,
            path: call.path,
            params: signed_params,
            body: &body,
            x_duo_headers: &[],
        };
        let signature = sign::signature_hex(self.signature, self.skey.expose().as_bytes(), &input);
        let mut request = self
            .http
            .request(call.method.clone(), url)
            .timeout(self.timeout)
            .header("Date", &date)
            .header(
                "Authorization",
                sign::authorization_header(&self.ikey, &signature),
            );
        if !is_get {
            let content_type = if json_body {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            request = request.header("Content-Type", content_type).body(body);
        }
        let started = Instant::now();
        let sent_local_ms = self.clock.as_ref().map(|c| c.local_now_ms());
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if let (Some(clock), Some(sent)) = (&self.clock, sent_local_ms) {
            if let Some(date) = response
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
            {
                clock.observe_date_header(date, sent, clock.local_now_ms());
            }
        }
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        tracing::debug!(
            host = call.host,
            path = call.path,
            status,
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Duo API call"
        );
        if status == 200 {
            Ok(bytes.to_vec())
        } else {
            Err(error::from_response(status, &bytes))
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> DuoError {
        if e.is_timeout() {
            DuoError::Timeout(self.timeout)
        } else if e.is_decode() || e.is_body() {
            DuoError::Malformed(error_chain(&e))
        } else {
            DuoError::Transport(error_chain(&e))
        }
    }
}

/// An error with its causes, `a: b: c`, since reqwest's own Display hides the cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
