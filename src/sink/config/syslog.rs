//! Syslog sinks: their keys, settings and validation.

use std::time::Duration;

use super::fragment::{count, text, Fragment, Key, SinkType, BATCH, TLS};
use super::{delivery_limits, tls_files, Batching, SinkKind, TlsFiles};
use crate::config::Report;
use crate::facility::Facility;

/// The keys only this type has.
const OWN: &[Key] = &[
    text("transport"),
    text("address"),
    text("protocol"),
    text("facility"),
    text("hostname"),
    text("app_name"),
    count("max_message_size"),
];

/// The default `timeout` and batch limits.
const LIMITS: (Duration, Batching) = (Duration::from_secs(10), Batching::new(1000, 1 << 20));

pub(super) const TYPE: SinkType = SinkType {
    name: "syslog",
    validate: |report, _, scope, raw| syslog(report, scope, raw).map(SinkKind::Syslog),
    keys: &[OWN, TLS, BATCH],
};

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

fn syslog(report: &mut Report, scope: &str, raw: &Fragment<'_>) -> Option<SyslogSettings> {
    let transport = match raw.str("transport") {
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
    let address = match raw.str("address").map(|a| (a, host_port(a))) {
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
    let protocol = match raw.str("protocol") {
        None | Some("rfc5424") => Some(SyslogProtocol::Rfc5424),
        Some("rfc3164") => Some(SyslogProtocol::Rfc3164),
        Some(p) => {
            report.error(scope, "protocol", format!("unknown protocol {p:?}; use \"rfc5424\" (default) or \"rfc3164\" for old receivers"));
            None
        }
    };
    let facility = match raw.str("facility").map(str::parse::<Facility>) {
        None => Some(Facility::default()),
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            report.error(scope, "facility", e);
            None
        }
    };
    if let Some(h) = raw.str("hostname") {
        if !printable(h, 255) {
            report.error(
                scope,
                "hostname",
                "must be 1-255 printable ASCII characters without spaces",
            );
        }
    }
    let app_name = raw
        .string("app_name")
        .unwrap_or_else(|| "duo-collector".into());
    if !printable(&app_name, 48) {
        report.error(
            scope,
            "app_name",
            "must be 1-48 printable ASCII characters without spaces",
        );
    }
    let max_message_size = raw.usize("max_message_size").unwrap_or(8192);
    if raw.has("max_message_size") && transport != Some(SyslogTransport::Udp) {
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
    let tls_given =
        raw.has("ca_file") || raw.has("cert_file") || raw.has("key_file") || raw.has("server_name");
    if tls_given && transport.is_some_and(|t| t != SyslogTransport::Tls) {
        report.error(
            scope,
            "ca_file",
            "TLS settings (ca_file, cert_file, key_file, server_name) need transport = \"tls\"",
        );
    }
    let (timeout, batch) = delivery_limits(report, scope, raw, LIMITS);
    let (address, host) = address?;
    Some(SyslogSettings {
        transport: transport?,
        address,
        host,
        protocol: protocol?,
        facility: facility?,
        hostname: raw.string("hostname"),
        app_name,
        max_message_size,
        tls,
        timeout: timeout?,
        batch: batch?,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_port("siem:6514"), Some(("siem".into(), 6514)));
        assert_eq!(host_port("[::1]:514"), Some(("::1".into(), 514)));
        assert_eq!(host_port("siem"), None);
        assert_eq!(host_port("siem:0"), None);
    }
}
