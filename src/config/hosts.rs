//! Checks of where requests go: the Duo API host name, the optional `connect_to` base URL and
//! the optional `proxy`.

use std::net::IpAddr;

use super::report::Report;
use crate::proxy_setting::ProxySetting;

const HOSTNAME_HINT: &str =
    "must be only the host name, of the form api-XXXXXXXX.duosecurity.com, as shown in the Duo Admin Panel";

pub(super) fn validate_api_hostname(
    report: &mut Report,
    scope: &str,
    value: Option<String>,
) -> Option<String> {
    let Some(host) = value.map(|h| h.trim().to_string()) else {
        report.error(
            scope,
            "api_hostname",
            format!("missing; it {HOSTNAME_HINT}"),
        );
        return None;
    };
    if host.contains("://") {
        report.error(
            scope,
            "api_hostname",
            format!("{host:?} has a scheme; it {HOSTNAME_HINT} (remove \"https://\")"),
        );
        return None;
    }
    if host.contains('/') {
        report.error(
            scope,
            "api_hostname",
            format!("{host:?} has a path; it {HOSTNAME_HINT}"),
        );
        return None;
    }
    if host.contains(':') {
        report.error(
            scope,
            "api_hostname",
            format!("{host:?} has a port; it {HOSTNAME_HINT} (Duo is always on port 443)"),
        );
        return None;
    }
    let valid_chars = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if !valid_chars {
        report.error(
            scope,
            "api_hostname",
            format!("{host:?} is not a valid host name; it {HOSTNAME_HINT}"),
        );
        return None;
    }
    let lower = host.to_ascii_lowercase();
    if !(lower.ends_with(".duosecurity.com") || lower.ends_with(".duofederal.com")) {
        report.warn(scope, "api_hostname", format!("{host:?} is not under duosecurity.com or duofederal.com; check it against the Duo Admin Panel"));
    }
    Some(lower)
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

pub(super) fn validate_connect_to(
    report: &mut Report,
    scope: &str,
    text: &str,
) -> Option<url::Url> {
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            report.error(
                scope,
                "connect_to",
                format!(
                    "{text:?} is not a URL ({e}); write it like \"https://proxy.example.com:8443\""
                ),
            );
            return None;
        }
    };
    let Some(host) = url.host() else {
        report.error(scope, "connect_to", format!("{text:?} has no host"));
        return None;
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            report.error(scope, "connect_to", format!("{text:?}: plain http:// is allowed only to loopback addresses (127.0.0.1, ::1, localhost); use https://"));
            return None;
        }
        other => {
            report.error(scope, "connect_to", format!("{text:?}: scheme {other:?} is not supported; use https:// (or http:// to a loopback address)"));
            return None;
        }
    }
    if url.path() != "/" || url.query().is_some() {
        report.error(
            scope,
            "connect_to",
            format!("{text:?} must be a base URL without a path or query"),
        );
        return None;
    }
    Some(url)
}

/// The `proxy` key: `"none"`/`""` for direct connections, or an HTTP(S) proxy URL. Messages
/// never echo the URL's credentials.
pub(super) fn validate_proxy(
    report: &mut Report,
    scope: &str,
    text: Option<&str>,
) -> Option<ProxySetting> {
    let Some(text) = text else {
        return Some(ProxySetting::FromEnvironment);
    };
    match ProxySetting::parse(text) {
        Ok(setting) => {
            if let ProxySetting::Explicit(url) = &setting {
                if url.port_is_default() {
                    report.warn(scope, "proxy", format!("{url} gives no port, so the scheme's default is used; proxies usually listen on 3128 or 8080: write the port"));
                }
            }
            Some(setting)
        }
        Err(e) => {
            report.error(scope, "proxy", e);
            None
        }
    }
}
