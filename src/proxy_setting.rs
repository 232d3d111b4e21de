//! The `proxy` setting of an integration, as a leaf type: `config` reads it, `duo::proxy`
//! applies it to the HTTP client and says where a request goes.
//!
//! A proxy URL may carry credentials, a secret: [`ProxyUrl`] prints itself with the user
//! information replaced by `***`, and error messages about a proxy value never echo it whole.

use std::fmt;

/// Placeholder printed instead of a proxy URL's user name and password.
pub(crate) const REDACTED_USERINFO: &str = "***";

/// How an integration's requests reach Duo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxySetting {
    /// reqwest's handling of `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY` … (the default).
    #[default]
    FromEnvironment,
    /// `proxy = "none"`: direct connections; proxy variables in the environment are ignored.
    Disabled,
    /// `proxy = "http://…"`: this proxy for every request.
    Explicit(ProxyUrl),
}

/// A proxy URL (scheme http or https, a host, no path) whose `Debug` and `Display` hide the
/// user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(url::Url);

/// Why a `proxy` value was refused; the messages name the fix and never echo credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("{shown} is not a URL ({reason}); write it like \"http://proxy.example.com:3128\" (or \"none\" for direct connections)")]
    NotAUrl { shown: String, reason: String },
    #[error("{shown}: scheme {scheme:?} is not supported; use an HTTP proxy, \"http://host:port\" (or \"https://host:port\" for TLS to the proxy)")]
    Scheme { shown: String, scheme: String },
    #[error("{shown} has no host; write it like \"http://proxy.example.com:3128\"")]
    NoHost { shown: String },
    #[error("{shown} must be only scheme, host and port, without a path, query or fragment")]
    HasPath { shown: String },
}

impl ProxySetting {
    /// Reads a `proxy` value: `"none"` or `""` disable proxies, anything else is a proxy URL.
    pub fn parse(text: &str) -> Result<ProxySetting, ProxyUrlError> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(ProxySetting::Disabled);
        }
        ProxyUrl::parse(text).map(ProxySetting::Explicit)
    }
}

impl ProxyUrl {
    /// The URL itself, credentials included: for the HTTP client only, never to print.
    pub(crate) fn url(&self) -> &url::Url {
        &self.0
    }

    pub fn parse(text: &str) -> Result<ProxyUrl, ProxyUrlError> {
        let shown = || redact_text(text);
        let url = url::Url::parse(text).map_err(|e| ProxyUrlError::NotAUrl {
            shown: shown(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(ProxyUrlError::Scheme {
                    shown: shown(),
                    scheme: other.to_string(),
                })
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ProxyUrlError::NoHost { shown: shown() });
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(ProxyUrlError::HasPath { shown: shown() });
        }
        Ok(ProxyUrl(url))
    }

    pub fn has_credentials(&self) -> bool {
        !self.0.username().is_empty() || self.0.password().is_some()
    }

    /// Whether the URL gave no port (the scheme's default, 80 or 443, is then used).
    pub fn port_is_default(&self) -> bool {
        self.0.port().is_none()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let userinfo = if self.has_credentials() {
            format!("{REDACTED_USERINFO}@")
        } else {
            String::new()
        };
        let host = self.0.host_str().unwrap_or_default();
        let port = self.0.port_or_known_default().unwrap_or(80);
        write!(f, "{}://{userinfo}{host}:{port}", self.0.scheme())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// A proxy value that may not parse, with anything before the last `@` of its authority
/// replaced: a broken URL can still hold a password.
pub(crate) fn redact_text(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, text),
    };
    let redacted = match rest.rsplit_once('@') {
        Some((_, host_part)) => format!("{REDACTED_USERINFO}@{host_part}"),
        None => rest.to_string(),
    };
    match scheme {
        Some(s) => format!("{:?}", format!("{s}://{redacted}")),
        None => format!("{redacted:?}"),
    }
}
