//! Which HTTP(S) proxy the Duo client goes through.
//!
//! Three settings per integration:
//! - no `proxy` key: the environment decides, exactly as reqwest does (`HTTPS_PROXY`,
//!   `HTTP_PROXY`, `ALL_PROXY`, their lower-case forms, and `NO_PROXY`); nothing here parses
//!   those variables, so what `test-connectivity` reports is what the client does;
//! - `proxy = "http://[user:pass@]host:port"`: every request of the integration goes through
//!   that proxy; the environment, `NO_PROXY` included, no longer applies to it (the key is the
//!   more specific setting: to bypass a proxy for one integration, write `proxy = "none"`);
//! - `proxy = "none"` (or `""`): direct connections, whatever the environment says.
//!
//! Through a proxy, HTTPS requests are tunnelled with `CONNECT host:443`, so the proxy, not
//! this host, resolves the Duo host name.
//!
//! A proxy URL may carry credentials, a secret: [`ProxyUrl`] prints itself with the user
//! information replaced by `***`, and error messages about a proxy value never echo it whole.

use std::fmt;

use crate::proxy_setting::REDACTED_USERINFO;
pub use crate::proxy_setting::{ProxySetting, ProxyUrl, ProxyUrlError};

impl ProxySetting {
    /// Configures `builder` for this setting. The environment case adds nothing: reqwest reads
    /// the proxy variables itself when the client is built.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, reqwest::Error> {
        Ok(match self {
            ProxySetting::FromEnvironment => builder,
            ProxySetting::Disabled => builder.no_proxy(),
            // `Proxy::all` with no `no_proxy` list: NO_PROXY does not apply to the key.
            ProxySetting::Explicit(url) => builder.proxy(reqwest::Proxy::all(url.url().as_str())?),
        })
    }

    /// Where a request to `target` goes, as the client built by [`ProxySetting::apply`] decides
    /// (the environment is read now, as reqwest reads it when a client is built).
    pub fn route_for(&self, target: &url::Url) -> ProxyRoute {
        match self {
            ProxySetting::Disabled => ProxyRoute::Direct(DirectReason::Disabled),
            ProxySetting::Explicit(url) => ProxyRoute::Proxy(ProxyInUse {
                shown: url.to_string(),
                host: url.url().host_str().unwrap_or_default().to_string(),
                port: url.url().port_or_known_default().unwrap_or(80),
                source: ProxySource::Config,
            }),
            ProxySetting::FromEnvironment => route_from_environment(target),
        }
    }
}

fn route_from_environment(target: &url::Url) -> ProxyRoute {
    let Ok(uri) = target.as_str().parse::<http::Uri>() else {
        return ProxyRoute::Direct(DirectReason::Environment);
    };
    // The same matcher reqwest builds for its system proxy, so the answer cannot drift from
    // what the client does.
    let matcher = hyper_util::client::proxy::matcher::Matcher::from_system();
    let Some(intercept) = matcher.intercept(&uri) else {
        return ProxyRoute::Direct(DirectReason::Environment);
    };
    let proxy = intercept.uri();
    let scheme = proxy.scheme_str().unwrap_or("http");
    let port = proxy
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = proxy.host().unwrap_or_default();
    // The matcher moves credentials out of the URI; say they exist without showing them.
    let userinfo = if intercept.basic_auth().is_some() || intercept.raw_auth().is_some() {
        format!("{REDACTED_USERINFO}@")
    } else {
        String::new()
    };
    ProxyRoute::Proxy(ProxyInUse {
        shown: format!("{scheme}://{userinfo}{host}:{port}"),
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        source: ProxySource::Environment {
            variables: if target.scheme() == "http" {
                "HTTP_PROXY or ALL_PROXY"
            } else {
                "HTTPS_PROXY or ALL_PROXY"
            },
        },
    })
}

/// The route a request takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRoute {
    Direct(DirectReason),
    Proxy(ProxyInUse),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectReason {
    /// `proxy = "none"`.
    Disabled,
    /// No proxy variable applies to the target (unset, or `NO_PROXY` matches it).
    Environment,
}

/// A proxy a request goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInUse {
    /// The proxy URL with credentials redacted, e.g. `http://***@proxy.corp:3128`.
    pub shown: String,
    /// The proxy's host name or IP, which this host must resolve and reach.
    pub host: String,
    pub port: u16,
    pub source: ProxySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// The integration's `proxy` key.
    Config,
    /// The environment; `variables` names the ones that apply to the target's scheme.
    Environment { variables: &'static str },
}

impl fmt::Display for ProxyRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyRoute::Direct(DirectReason::Disabled) => {
                write!(f, "none, direct connection (proxy = \"none\")")
            }
            ProxyRoute::Direct(DirectReason::Environment) => write!(
                f,
                "none, direct connection (no proxy variable applies: HTTPS_PROXY and ALL_PROXY unset, or NO_PROXY matches the host)"
            ),
            ProxyRoute::Proxy(p) => match p.source {
                ProxySource::Config => write!(f, "{} (from `proxy` in the config)", p.shown),
                ProxySource::Environment { variables } => {
                    write!(f, "{} (from the environment: {variables})", p.shown)
                }
            },
        }
    }
}

/// The base URL an integration's requests go to, which decides their route: `connect_to`, else
/// the API host on port 443.
pub fn request_base(integration: &crate::config::Integration) -> Option<url::Url> {
    match &integration.connect_to {
        Some(u) => Some(u.clone()),
        None => url::Url::parse(&format!("https://{}/", integration.api_hostname)).ok(),
    }
}

/// Says once, when a client is built, which proxy an integration's requests go through.
pub fn log_route(integration: &crate::config::Integration) {
    let Some(base) = request_base(integration) else {
        return;
    };
    match integration.proxy.route_for(&base) {
        ProxyRoute::Proxy(proxy) => tracing::info!(
            integration = %integration.name,
            proxy = %proxy.shown,
            source = match proxy.source {
                ProxySource::Config => "config",
                ProxySource::Environment { .. } => "environment",
            },
            "Duo requests go through a proxy"
        ),
        route @ ProxyRoute::Direct(_) => {
            tracing::debug!(integration = %integration.name, route = %route, "Duo requests go direct")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_setting::redact_text;

    #[test]
    fn none_and_empty_disable_proxies() {
        assert_eq!(ProxySetting::parse("none"), Ok(ProxySetting::Disabled));
        assert_eq!(ProxySetting::parse(" NONE "), Ok(ProxySetting::Disabled));
        assert_eq!(ProxySetting::parse(""), Ok(ProxySetting::Disabled));
    }

    #[test]
    fn credentials_are_never_shown() {
        let setting = ProxySetting::parse("http://alice:s3cret@proxy.corp:3128").unwrap();
        let ProxySetting::Explicit(url) = &setting else {
            panic!("{setting:?}");
        };
        assert!(url.has_credentials());
        assert_eq!(url.to_string(), "http://***@proxy.corp:3128");
        let debug = format!("{setting:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("alice"),
            "{debug}"
        );
        let route = setting.route_for(&url::Url::parse("https://api-x.duosecurity.com/").unwrap());
        let shown = route.to_string();
        assert!(
            shown.starts_with("http://***@proxy.corp:3128 (from `proxy`"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn default_port_is_the_schemes() {
        let ProxySetting::Explicit(url) = ProxySetting::parse("http://proxy.corp").unwrap() else {
            panic!()
        };
        assert!(url.port_is_default());
        assert_eq!(url.to_string(), "http://proxy.corp:80");
    }

    #[test]
    fn bad_values_name_the_fix_without_the_password() {
        for (text, wanted) in [
            ("socks5://bob:hunter2@proxy:1080", "scheme \"socks5\""),
            ("http://bob:hunter2@proxy:3128/path", "without a path"),
            ("proxy.corp:3128", "scheme \"proxy.corp\""),
            ("http://bob:hunter2@:3128", "not a URL"),
            ("http://bob:hunter2@pro xy:3128", "not a URL"),
        ] {
            let e = ProxySetting::parse(text).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text}: {e}");
            assert!(!e.contains("hunter2") && !e.contains("bob"), "{text}: {e}");
        }
    }

    #[test]
    fn redaction_of_unparsable_text_keeps_the_host() {
        assert_eq!(redact_text("http://u:p@ss@host:1"), "\"http://***@host:1\"");
        assert_eq!(redact_text("u:p@host"), "\"***@host\"");
        assert_eq!(redact_text("http://host:1"), "\"http://host:1\"");
    }

    #[test]
    fn disabled_goes_direct() {
        let target = url::Url::parse("https://api-x.duosecurity.com/").unwrap();
        assert_eq!(
            ProxySetting::Disabled.route_for(&target),
            ProxyRoute::Direct(DirectReason::Disabled)
        );
    }
}
