//! Syslog message formatting and framing. Pure: no I/O.
//!
//! RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, with `-` for a nil
//! field, `PRI = facility * 8 + severity`, header fields limited to printable US-ASCII and their
//! RFC lengths, and SD-PARAM values escaping `"`, `\` and `]`.
//! Framing: octet counting (`LEN SP MSG`, RFC 6587 §3.4.1, as RFC 5425 requires for TLS) over
//! TCP and TLS; one message per datagram over UDP (RFC 5426).
//! RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`) for old receivers.

use std::io::Write as _;

/// The header fields of one message. Empty strings are written as the nil value `-`.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub facility: u8,
    pub severity: u8,
    /// Epoch milliseconds; written as RFC 3339 UTC with milliseconds.
    pub timestamp_ms: Option<i64>,
    pub hostname: &'a str,
    pub app_name: &'a str,
    pub procid: &'a str,
    pub msgid: &'a str,
}

/// One SD-ELEMENT: an SD-ID and its parameters.
#[derive(Debug, Clone, Copy)]
pub struct SdElement<'a> {
    pub id: &'a str,
    pub params: &'a [(&'a str, &'a str)],
}

pub fn pri(facility: u8, severity: u8) -> u16 {
    u16::from(facility.min(23)) * 8 + u16::from(severity.min(7))
}

/// Writes a header field: printable US-ASCII only (others become `?`), at most `max` octets,
/// `-` when empty.
fn field(out: &mut Vec<u8>, value: &str, max: usize) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    for b in value.bytes().take(max) {
        out.push(if (33..=126).contains(&b) { b } else { b'?' });
    }
}

/// SD-NAME: printable US-ASCII except `=`, space, `]` and `"`, at most 32 octets.
fn sd_name(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes().take(32) {
        let ok = (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"');
        out.push(if ok { b } else { b'_' });
    }
}

/// SD-PARAM value: UTF-8 with `"`, `\` and `]` escaped by a backslash.
fn sd_value(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Appends one RFC 5424 message (unframed) to `out`.
pub fn rfc5424(out: &mut Vec<u8>, h: &Header<'_>, sd: &[SdElement<'_>], msg: &[u8]) {
    let _ = write!(out, "<{}>1 ", pri(h.facility, h.severity));
    match h.timestamp_ms.and_then(rfc3339_ms) {
        Some(t) => out.extend_from_slice(t.as_bytes()),
        None => out.push(b'-'),
    }
    out.push(b' ');
    field(out, h.hostname, 255);
    out.push(b' ');
    field(out, h.app_name, 48);
    out.push(b' ');
    field(out, h.procid, 128);
    out.push(b' ');
    field(out, h.msgid, 32);
    out.push(b' ');
    if sd.is_empty() {
        out.push(b'-');
    }
    for element in sd {
        out.push(b'[');
        sd_name(out, element.id);
        for (name, value) in element.params {
            out.push(b' ');
            sd_name(out, name);
            out.extend_from_slice(b"=\"");
            sd_value(out, value);
            out.push(b'"');
        }
        out.push(b']');
    }
    if !msg.is_empty() {
        out.push(b' ');
        out.extend_from_slice(msg);
    }
}

/// Appends one RFC 3164 message (unframed): `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`.
pub fn rfc3164(out: &mut Vec<u8>, h: &Header<'_>, msg: &[u8]) {
    let _ = write!(out, "<{}>", pri(h.facility, h.severity));
    let time = h
        .timestamp_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now);
    let _ = write!(out, "{} ", time.format("%b %e %H:%M:%S"));
    field(
        out,
        if h.hostname.is_empty() {
            "-"
        } else {
            h.hostname
        },
        255,
    );
    out.push(b' ');
    field(out, h.app_name, 32);
    if !h.procid.is_empty() {
        out.push(b'[');
        field(out, h.procid, 16);
        out.push(b']');
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(msg);
}

/// Frames a message for a stream transport by octet counting: `LEN SP MSG`.
pub fn octet_counted(out: &mut Vec<u8>, message: &[u8]) {
    let _ = write!(out, "{} ", message.len());
    out.extend_from_slice(message);
}

/// Cuts a datagram to `max` bytes without splitting a UTF-8 character. Returns whether it cut.
pub fn truncate_datagram(message: &mut Vec<u8>, max: usize) -> bool {
    if message.len() <= max {
        return false;
    }
    let mut end = max;
    // Step back over continuation bytes (10xxxxxx) so the cut lands on a character boundary.
    while end > 0 && (message[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    message.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use syslog_rfc5424::parse_message;

    fn header<'a>() -> Header<'a> {
        Header {
            facility: 16,
            severity: 4,
            timestamp_ms: Some(1_700_000_000_123),
            hostname: "collector-1",
            app_name: "duo-collector",
            procid: "4242",
            msgid: "authentication",
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn header_fields_and_pri_parse_back() {
        let mut out = Vec::new();
        let params = [("integration", "corp"), ("event_id", "tx-1")];
        let sd = [SdElement {
            id: "duo@32473",
            params: &params,
        }];
        rfc5424(&mut out, &header(), &sd, br#"{"a":1}"#);
        assert!(text(&out).starts_with("<132>1 2023-11-14T22:13:20.123Z collector-1 "));
        let m = parse_message(text(&out)).unwrap();
        assert_eq!(m.facility as u8, 16);
        assert_eq!(m.severity as u8, 4);
        assert_eq!(m.hostname.as_deref(), Some("collector-1"));
        assert_eq!(m.appname.as_deref(), Some("duo-collector"));
        assert_eq!(m.msgid.as_deref(), Some("authentication"));
        assert_eq!(m.timestamp, Some(1_700_000_000));
        assert_eq!(m.timestamp_nanos, Some(123_000_000));
        assert_eq!(m.msg, r#"{"a":1}"#);
        let el = m.sd.find_sdid("duo@32473").unwrap();
        assert_eq!(el.get("event_id").map(String::as_str), Some("tx-1"));
        assert_eq!(el.get("integration").map(String::as_str), Some("corp"));
    }

    #[test]
    fn nil_values_are_dashes() {
        let mut out = Vec::new();
        let h = Header {
            timestamp_ms: None,
            hostname: "",
            procid: "",
            msgid: "",
            ..header()
        };
        rfc5424(&mut out, &h, &[], b"hello");
        assert_eq!(text(&out), "<132>1 - - duo-collector - - - hello");
        let m = parse_message(text(&out)).unwrap();
        assert_eq!(m.hostname, None);
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid, None);
        assert_eq!(m.timestamp, None);
        assert!(m.sd.is_empty());
        assert_eq!(m.msg, "hello");
    }

    #[test]
    fn sd_values_are_escaped_and_names_sanitised() {
        let mut out = Vec::new();
        let params = [("q=uo te", r#"a"b\c]d"#)];
        let sd = [SdElement {
            id: "x@1",
            params: &params,
        }];
        rfc5424(&mut out, &header(), &sd, b"m");
        assert!(
            text(&out).contains(r#"[x@1 q_uo_te="a\"b\\c\]d"]"#),
            "{}",
            text(&out)
        );
        let m = parse_message(text(&out)).unwrap();
        let el = m.sd.find_sdid("x@1").unwrap();
        assert_eq!(el.get("q_uo_te").map(String::as_str), Some(r#"a"b\c]d"#));
        assert_eq!(m.msg, "m");
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        let mut out = Vec::new();
        let long = "h".repeat(300);
        let h = Header {
            hostname: &long,
            msgid: "two words",
            ..header()
        };
        rfc5424(&mut out, &h, &[], b"x");
        let m = parse_message(text(&out)).unwrap();
        assert_eq!(m.hostname.unwrap().len(), 255);
        assert_eq!(m.msgid.as_deref(), Some("two?words"));
    }

    #[test]
    fn octet_counting_frames_parse_back_in_sequence() {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, msg) in ["é ü", "{\"k\":\"v w\"}", ""].iter().enumerate() {
            let mut one = Vec::new();
            let h = Header {
                severity: i as u8,
                ..header()
            };
            rfc5424(&mut one, &h, &[], msg.as_bytes());
            octet_counted(&mut stream, &one);
            expected.push((i as u8, msg.to_string()));
        }
        // Read back: LEN SP MSG, where LEN counts octets, not characters.
        let mut rest = &stream[..];
        for (severity, msg) in expected {
            let sp = rest.iter().position(|b| *b == b' ').unwrap();
            let len: usize = text(&rest[..sp]).parse().unwrap();
            let frame = &rest[sp + 1..sp + 1 + len];
            let m = parse_message(text(frame)).unwrap();
            assert_eq!(m.severity as u8, severity);
            assert_eq!(m.msg, msg);
            rest = &rest[sp + 1 + len..];
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn pri_and_facility_names() {
        assert_eq!(pri(0, 0), 0);
        assert_eq!(pri(23, 7), 191);
    }

    #[test]
    fn datagrams_are_cut_on_a_character_boundary() {
        let mut m = "aé".repeat(10).into_bytes();
        assert!(truncate_datagram(&mut m, 5)); // "aéa" is 4 bytes, "aéaé" would be 6
        assert_eq!(m, "aéa".as_bytes());
        let mut short = b"abc".to_vec();
        assert!(!truncate_datagram(&mut short, 5));
    }

    #[test]
    fn rfc3164_layout() {
        let mut out = Vec::new();
        rfc3164(&mut out, &header(), b"msg");
        assert_eq!(
            text(&out),
            "<132>Nov 14 22:13:20 collector-1 duo-collector[4242]: msg"
        );
    }
}
