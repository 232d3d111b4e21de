//! IP addresses as Duo sends them in `access_device.ip`, `auth_device.ip` and admin
//! descriptions: a plain address, or an address with a port in one of the spellings that
//! Elastic's Cisco Duo ingest pipeline accepts:
//!
//! - `1.2.3.4:1234` and `[2a02:cf40::23]:1234`;
//! - `2a02:cf40::23#1234`, `2a02:cf40::23p1234`, `2a02:cf40::23.1234`,
//!   `2a02:cf40::23 port 1234` (RFC 5952 §6 lists these as seen in the wild);
//! - `2a02:cf40:0:0:0:0:0:23:1234`: a bare `:port` after an IPv6 address written out in full
//!   (eight groups). After a compressed address (`::`) a trailing `:1234` is a group of the
//!   address, not a port, so `2a02:cf40::23` and `2a02:cf40::23:1234` are addresses.
//!
//! The address itself is always parsed by `std::net`; only the port separators are ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a Duo `ip` text holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostPort<'s> {
    /// The address, as written (borrowed from the input, without brackets or port).
    pub ip: &'s str,
    pub port: Option<u16>,
}

impl HostPort<'_> {
    /// Whether the text was a plain address (nothing but the address, no port).
    pub fn is_plain(&self, text: &str) -> bool {
        self.port.is_none() && self.ip == text
    }
}

/// Separators between an IPv6 address and its port, besides the bracketed form.
const V6_PORT_SEPARATORS: [&str; 4] = [" port ", "#", "p", "."];

/// Splits a Duo `ip` text into the address and its port; `None` when the text holds no IP
/// address (a hostname, `unknown`, garbage, an empty string).
pub(crate) fn split_ip(text: &str) -> Option<HostPort<'_>> {
    let s = text.trim();
    if s.parse::<IpAddr>().is_ok() {
        return Some(HostPort { ip: s, port: None });
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':')?)?),
        };
        return Some(HostPort { ip, port });
    }
    if let Some((ip, p)) = s.rsplit_once(':') {
        if ip.parse::<Ipv4Addr>().is_ok() || is_full_ipv6(ip) {
            return Some(HostPort {
                ip,
                port: Some(port(p)?),
            });
        }
    }
    V6_PORT_SEPARATORS.iter().find_map(|sep| {
        let (ip, p) = s.rsplit_once(sep)?;
        ip.parse::<Ipv6Addr>().ok()?;
        Some(HostPort {
            ip,
            port: Some(port(p)?),
        })
    })
}

/// A decimal port: digits only (no sign, no spaces), at most 65535.
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Eight explicit groups of 1–4 hex digits (no `::`, no embedded IPv4).
fn is_full_ipv6(s: &str) -> bool {
    let mut groups = 0;
    for g in s.split(':') {
        if g.is_empty() || g.len() > 4 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        groups += 1;
    }
    groups == 8 && s.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(ip: &str, port: Option<u16>) -> Option<HostPort<'_>> {
        Some(HostPort { ip, port })
    }

    #[test]
    fn every_spelling() {
        let table: &[(&str, Option<HostPort<'_>>)] = &[
            // Plain addresses.
            ("1.2.3.4", hp("1.2.3.4", None)),
            (" 1.2.3.4 ", hp("1.2.3.4", None)),
            ("2a02:cf40::23", hp("2a02:cf40::23", None)),
            ("2A02:CF40::23", hp("2A02:CF40::23", None)),
            ("::", hp("::", None)),
            ("::ffff:1.2.3.4", hp("::ffff:1.2.3.4", None)),
            ("[2a02:cf40::23]", hp("2a02:cf40::23", None)),
            // A trailing group after `::` belongs to the address.
            ("2a02:cf40::23:1234", hp("2a02:cf40::23:1234", None)),
            ("2a02:cf40:0:0:0:0:0:23", hp("2a02:cf40:0:0:0:0:0:23", None)),
            // With a port.
            ("1.2.3.4:1234", hp("1.2.3.4", Some(1234))),
            ("[2a02:cf40::23]:1234", hp("2a02:cf40::23", Some(1234))),
            ("2a02:cf40::23#1234", hp("2a02:cf40::23", Some(1234))),
            ("2a02:cf40::23p1234", hp("2a02:cf40::23", Some(1234))),
            ("2a02:cf40::23.1234", hp("2a02:cf40::23", Some(1234))),
            ("2a02:cf40::23 port 1234", hp("2a02:cf40::23", Some(1234))),
            (
                "2a02:cf40:0:0:0:0:0:23:1234",
                hp("2a02:cf40:0:0:0:0:0:23", Some(1234)),
            ),
            ("::ffff:1.2.3.4.443", hp("::ffff:1.2.3.4", Some(443))),
            ("1.2.3.4:0", hp("1.2.3.4", Some(0))),
            ("1.2.3.4:65535", hp("1.2.3.4", Some(65535))),
            // Not an address.
            ("", None),
            ("   ", None),
            ("unknown", None),
            ("not an ip", None),
            ("ws-0001.corp.example.com", None),
            ("host:1234", None),
            ("localhost port 80", None),
            ("1.2.3", None),
            ("1.2.3.4.5", None),
            ("fe80::1%eth0", None),
            ("[::1", None),
            ("[1.2.3.4]:80", None),
            ("[::1]80", None),
            ("[::1]:", None),
            // Ports that are no ports.
            ("1.2.3.4:99999", None),
            ("1.2.3.4:+80", None),
            ("1.2.3.4:", None),
            ("1.2.3.4: 80", None),
            ("[::1]:65536", None),
            ("2a02:cf40::23#", None),
            ("2a02:cf40::23p-1", None),
            ("2a02:cf40::23 port ", None),
            // The loose separators are for IPv6 only, and a bare `:port` needs a full address.
            ("1.2.3.4#80", None),
            ("1.2.3.4 port 80", None),
            ("1.2.3.4p80", None),
            ("2a02:cf40::23:99999", None),
            ("2a02:cf40:0:0:0:0:23:1234:99999", None),
            ("2a02:cf40:0:0:0:0:0:23:1234:80", None),
        ];
        for (text, want) in table {
            assert_eq!(split_ip(text), *want, "{text:?}");
        }
    }

    #[test]
    fn plain_only_when_nothing_but_the_address() {
        for (text, plain) in [
            ("1.2.3.4", true),
            ("2a02:cf40::23", true),
            (" 1.2.3.4", false),
            ("[2a02:cf40::23]", false),
            ("1.2.3.4:80", false),
        ] {
            let hp = split_ip(text).unwrap();
            assert_eq!(hp.is_plain(text), plain, "{text:?}");
        }
    }
}
