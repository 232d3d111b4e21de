//! Parsing of log pages. Records stay as raw JSON text; only the few fields the pager needs
//! (id and time) are deserialized, borrowed, so a page costs little more than a scan.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::LogKind;
use crate::event::Event;

/// One parsed page of a v2 log.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<Event>,
    /// The cursor for the next page, comma-joined (`"ms,id"`), or `None` when Duo says done.
    pub next_offset: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed Duo response: {0}")]
pub struct PageError(pub String);

fn malformed(what: impl Into<String>) -> PageError {
    PageError(what.into())
}

#[derive(Deserialize)]
struct Envelope<'a> {
    stat: Cow<'a, str>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
}

/// Returns the `response` member of a `{"stat":"OK",…}` envelope.
pub fn response_of(body: &[u8]) -> Result<&RawValue, PageError> {
    let env: Envelope<'_> = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a Duo JSON envelope ({e})")))?;
    if env.stat != "OK" {
        return Err(malformed(format!("stat is {:?}, not \"OK\"", env.stat)));
    }
    env.response
        .ok_or_else(|| malformed("no `response` member"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Offset<'a> {
    Parts(Vec<Cow<'a, str>>),
    Joined(Cow<'a, str>),
    Number(i64),
}

impl Offset<'_> {
    fn joined(&self) -> Option<String> {
        let s = match self {
            Offset::Parts(parts) => parts.join(","),
            Offset::Joined(s) => s.to_string(),
            Offset::Number(n) => n.to_string(),
        };
        (!s.is_empty()).then_some(s)
    }
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    next_offset: Option<Offset<'a>>,
}

/// A page's records and metadata: `authlogs` (authentication v2), `items` (the other v2 logs)
/// or `events` (Trust Monitor).
#[derive(Deserialize)]
struct ListResponse<'a> {
    #[serde(borrow, alias = "authlogs", alias = "events")]
    items: Vec<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
}

/// The fields of a record the pager needs; the union over all v2 kinds.
#[derive(Deserialize)]
struct RecordKey<'a> {
    #[serde(borrow, default)]
    txid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    telephony_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    activity_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    isotimestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<f64>,
}

/// A whole `{"stat":"OK","response":{…}}` v2 page, read in one pass.
#[derive(Deserialize)]
struct V2Envelope<'a> {
    #[serde(borrow)]
    stat: Cow<'a, str>,
    #[serde(borrow)]
    response: ListResponse<'a>,
}

/// A page of parsed events and its cursor (`metadata.next_offset`, if any).
fn page_of(events: Vec<Event>, metadata: Option<Metadata<'_>>) -> Page {
    Page {
        events,
        next_offset: metadata
            .and_then(|m| m.next_offset)
            .and_then(|o| o.joined()),
    }
}

/// Parses a page of `kind`, whatever its paging family.
pub fn parse(kind: LogKind, body: &[u8]) -> Result<Page, PageError> {
    match kind.paging() {
        super::Paging::TrustMonitor => parse_trust_monitor(body),
        super::Paging::V2 => parse_v2(kind, body),
        super::Paging::V1 => parse_v1(kind, body),
    }
}

/// Parses a v2 page (authentication, telephony, activity).
pub fn parse_v2(kind: LogKind, body: &[u8]) -> Result<Page, PageError> {
    // The hot path: one pass over the body. Anything unexpected (an error envelope, another
    // shape) is parsed again in two steps, which name the problem precisely.
    let parsed = match serde_json::from_slice::<V2Envelope<'_>>(body) {
        Ok(env) if env.stat == "OK" => env.response,
        _ => {
            let response = response_of(body)?;
            serde_json::from_str(response.get())
                .map_err(|e| malformed(format!("unexpected {kind} page shape ({e})")))?
        }
    };
    let mut events = Vec::with_capacity(parsed.items.len());
    for raw in parsed.items {
        events.push(v2_event(kind, raw)?);
    }
    Ok(page_of(events, parsed.metadata))
}

fn v2_event(kind: LogKind, raw: &RawValue) -> Result<Event, PageError> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(malformed(format!("a {kind} record is not a JSON object")));
    }
    let key: RecordKey<'_> = serde_json::from_str(text)
        .map_err(|e| malformed(format!("a {kind} record has unexpected field types ({e})")))?;
    let id = match kind {
        LogKind::Authentication => key.txid,
        LogKind::Telephony => key.telephony_id,
        LogKind::Activity => key.activity_id,
        _ => None,
    };
    let iso = key.isotimestamp.or(key.ts);
    let ts_ms = match (iso.as_deref().and_then(parse_iso_ms), key.timestamp) {
        (Some(ms), _) => ms,
        (None, Some(seconds)) => (seconds * 1000.0) as i64,
        (None, None) => {
            return Err(malformed(format!(
                "a {kind} record has no usable timestamp"
            )))
        }
    };
    let event_id = match id {
        Some(id) if !id.is_empty() => id.into_owned(),
        _ => fingerprint(text),
    };
    Ok(Event {
        raw: text.to_string(),
        event_id,
        ts_ms,
    })
}

#[derive(Deserialize)]
struct TrustMonitorKey<'a> {
    #[serde(borrow, default)]
    sekey: Option<Cow<'a, str>>,
    #[serde(default)]
    surfaced_timestamp: Option<i64>,
}

/// Parses a Trust Monitor page; the event time is the surfaced time, the id the `sekey`.
pub fn parse_trust_monitor(body: &[u8]) -> Result<Page, PageError> {
    let response = response_of(body)?;
    let parsed: ListResponse<'_> = serde_json::from_str(response.get())
        .map_err(|e| malformed(format!("unexpected trust_monitor page shape ({e})")))?;
    let mut events = Vec::with_capacity(parsed.items.len());
    for raw in parsed.items {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(malformed("a trust_monitor event is not a JSON object"));
        }
        let key: TrustMonitorKey<'_> = serde_json::from_str(text).map_err(|e| {
            malformed(format!(
                "a trust_monitor event has unexpected field types ({e})"
            ))
        })?;
        let ts_ms = key
            .surfaced_timestamp
            .ok_or_else(|| malformed("a trust_monitor event has no surfaced_timestamp"))?;
        let event_id = match key.sekey {
            Some(id) if !id.is_empty() => id.into_owned(),
            _ => fingerprint(text),
        };
        events.push(Event {
            raw: text.to_string(),
            event_id,
            ts_ms,
        });
    }
    Ok(page_of(events, parsed.metadata))
}

#[derive(Deserialize)]
struct V1Key {
    #[serde(default)]
    timestamp: Option<f64>,
}

/// Parses a v1 page (administrator, offline enrollment): a plain array, no cursor. Each event's
/// id is its content fingerprint; identical records within one second are told apart by their
/// occurrence number, so they are neither merged nor repeated.
pub fn parse_v1(kind: LogKind, body: &[u8]) -> Result<Page, PageError> {
    let response = response_of(body)?;
    let items: Vec<&RawValue> = serde_json::from_str(response.get())
        .map_err(|e| malformed(format!("unexpected {kind} page shape ({e})")))?;
    let mut events = Vec::with_capacity(items.len());
    let mut occurrences: std::collections::HashMap<(i64, String), u32> =
        std::collections::HashMap::new();
    for raw in items {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(malformed(format!("a {kind} record is not a JSON object")));
        }
        let key: V1Key = serde_json::from_str(text)
            .map_err(|e| malformed(format!("a {kind} record has unexpected field types ({e})")))?;
        let seconds = key
            .timestamp
            .ok_or_else(|| malformed(format!("a {kind} record has no timestamp")))?
            as i64;
        let base = fingerprint(text);
        let n = occurrences.entry((seconds, base.clone())).or_insert(0);
        let event_id = if *n == 0 {
            base
        } else {
            hex::encode(Sha256::digest(format!("{base}#{n}").as_bytes()))
        };
        *n += 1;
        events.push(Event {
            raw: text.to_string(),
            event_id,
            ts_ms: seconds
                .checked_mul(1000)
                .ok_or_else(|| malformed(format!("a {kind} record has an impossible timestamp")))?,
        });
    }
    Ok(Page {
        events,
        next_offset: None,
    })
}

/// Epoch milliseconds of an RFC 3339 time such as `2020-08-17T13:43:58.335969+00:00`.
pub fn parse_iso_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A stable content id: SHA-256 of the record's canonical JSON (keys sorted, no whitespace).
pub fn fingerprint(record_json: &str) -> String {
    let canonical = match serde_json::from_str::<serde_json::Value>(record_json) {
        // serde_json's map is a BTreeMap (no `preserve_order`), so keys serialize sorted.
        Ok(v) => serde_json::to_string(&v).unwrap_or_else(|_| record_json.to_string()),
        Err(_) => record_json.to_string(),
    };
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_auth_page_with_array_cursor() {
        let body = br#"{"stat":"OK","response":{"authlogs":[
            {"txid":"a","isotimestamp":"2020-08-17T13:43:58.335969+00:00","timestamp":1597671838,"user":{"name":"\u00e9"}},
            {"txid":"b\"q","timestamp":1597671839}
        ],"metadata":{"next_offset":["1597671839000","b"],"total_objects":5}}}"#;
        let page = parse_v2(LogKind::Authentication, body).unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.events[0].event_id, "a");
        assert_eq!(page.events[0].ts_ms, 1_597_671_838_335);
        assert!(page.events[0].raw.contains(r#""name":"\u00e9""#));
        assert_eq!(page.events[1].event_id, "b\"q");
        assert_eq!(page.events[1].ts_ms, 1_597_671_839_000);
        assert_eq!(page.next_offset.as_deref(), Some("1597671839000,b"));
    }

    #[test]
    fn parses_string_cursor_and_null() {
        let body = br#"{"stat":"OK","response":{"items":[{"telephony_id":"t1","ts":"2023-03-21T22:34:49.466370+00:00"}],"metadata":{"next_offset":"1679438089466,t1"}}}"#;
        let page = parse_v2(LogKind::Telephony, body).unwrap();
        assert_eq!(page.events[0].event_id, "t1");
        assert_eq!(page.next_offset.as_deref(), Some("1679438089466,t1"));
        let empty = br#"{"response":{"authlogs":[],"metadata":{"next_offset":null,"total_objects":0}},"stat":"OK"}"#;
        let page = parse_v2(LogKind::Authentication, empty).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(page.next_offset, None);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for body in [
            &b""[..],
            b"<html>502 Bad Gateway</html>",
            b"{\"stat\":\"OK\",\"response\":{\"authlogs\":[{\"txid\":\"a\",\"timest",
            b"{\"stat\":\"FAIL\",\"code\":40103,\"message\":\"x\"}",
            b"{\"stat\":\"OK\",\"response\":{\"authlogs\":[1,2]}}",
            b"{\"stat\":\"OK\",\"response\":{\"authlogs\":[{\"txid\":\"a\"}]}}",
            b"{\"stat\":\"OK\",\"response\":{\"authlogs\":[{\"txid\":5,\"timestamp\":1}]}}",
            b"{\"stat\":\"OK\",\"response\":[]}",
        ] {
            assert!(
                parse_v2(LogKind::Authentication, body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn parses_trust_monitor_and_v1_pages() {
        let tm = br#"{"stat":"OK","response":{"events":[{"sekey":"SE1","surfaced_timestamp":1675893605269,"type":"auth"}],"metadata":{"next_offset":"31229"}}}"#;
        let page = parse_trust_monitor(tm).unwrap();
        assert_eq!(
            (page.events[0].event_id.as_str(), page.events[0].ts_ms),
            ("SE1", 1_675_893_605_269)
        );
        assert_eq!(page.next_offset.as_deref(), Some("31229"));
        let done = br#"{"stat":"OK","response":{"events":[],"metadata":{}}}"#;
        assert_eq!(parse_trust_monitor(done).unwrap().next_offset, None);

        let v1 = br#"{"stat":"OK","response":[
            {"action":"admin_login","description":"{}","object":null,"timestamp":1626781477,"username":"a"},
            {"action":"admin_login","description":"{}","object":null,"timestamp":1626781477,"username":"a"},
            {"action":"user_update","description":"{\"x\":1}","object":"u","timestamp":1626781478,"username":"a"}
        ]}"#;
        let page = parse_v1(LogKind::Administrator, v1).unwrap();
        assert_eq!(page.events.len(), 3);
        assert_eq!(page.events[0].ts_ms, 1_626_781_477_000);
        // Two identical records in one second get two different, stable ids.
        assert_ne!(page.events[0].event_id, page.events[1].event_id);
        assert_eq!(page.events[0].event_id, fingerprint(&page.events[0].raw));
        let again = parse_v1(LogKind::Administrator, v1).unwrap();
        assert_eq!(page.events, again.events);
        assert!(parse_v1(
            LogKind::Administrator,
            br#"{"stat":"OK","response":[{"action":"x"}]}"#
        )
        .is_err());
    }

    #[test]
    fn impossible_v1_timestamps_are_errors_not_overflows() {
        let body = br#"{"stat":"OK","response":[{"action":"x","timestamp":9.3e15}]}"#;
        assert!(parse_v1(LogKind::Administrator, body).is_err());
    }

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace() {
        let a = fingerprint(r#"{"b":1,"a":{"y":2,"x":"é"}}"#);
        let b = fingerprint(r#"{ "a": {"x":"\u00e9", "y":2}, "b":1 }"#);
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(a, fingerprint(r#"{"b":2,"a":{"y":2,"x":"é"}}"#));
    }
}
