//! The `raw` format: the Duo record byte for byte, with `_duo_collector` spliced in before its
//! closing brace. No parse and re-serialize of the record: this is the hot path.

use crate::event::{Batch, Event};

/// The part of `"_duo_collector":{…}` that is the same for every event of a batch.
pub(super) fn metadata_prefix(batch: &Batch<'_>) -> String {
    let mut m = String::with_capacity(160);
    m.push_str("\"_duo_collector\":{\"integration\":");
    m.push_str(&json_string(&batch.stream.integration));
    m.push_str(",\"account_id\":");
    match &batch.stream.account_id {
        Some(a) => m.push_str(&json_string(a)),
        None => m.push_str("null"),
    }
    if let Some(name) = batch.account_name {
        m.push_str(",\"account_name\":");
        m.push_str(&json_string(name));
    }
    m.push_str(",\"log\":");
    m.push_str(&json_string(batch.stream.source_name()));
    m.push_str(",\"collected_at\":");
    m.push_str(&json_string(batch.collected_at));
    m.push_str(",\"event_id\":");
    m
}

pub(super) fn render(event: &Event, prefix: &str, out: &mut Vec<u8>) {
    // Records are validated as JSON objects when a page is parsed, so the text ends with `}`.
    let body = event.raw.trim_end();
    let without_close = &body[..body.len() - 1];
    out.extend_from_slice(without_close.as_bytes());
    if without_close.trim_end() != "{" {
        out.push(b',');
    }
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(json_string(&event.event_id).as_bytes());
    out.extend_from_slice(b"}}");
}

fn json_string(s: &str) -> String {
    // Serializing a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use crate::event::{Batch, Event, StreamId};
    use crate::logs::LogKind;
    use crate::normalize::{render_one, Format};

    fn batch_for<'a>(stream: &'a StreamId, events: &'a [Event]) -> Batch<'a> {
        Batch {
            stream,
            account_name: None,
            collected_at: "2026-01-01T00:00:00Z",
            events,
            inventory: None,
        }
    }

    #[test]
    fn splices_metadata_and_keeps_the_record() {
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        let event = Event {
            raw: r#"{"txid":"t-1","user":{"name":"Zoë \"q\""},"n":null}"#.into(),
            event_id: "t-1".into(),
            ts_ms: 1,
        };
        let line = render_one(Format::Raw, &batch_for(&stream, &[]), &event);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["user"]["name"], "Zoë \"q\"");
        assert_eq!(v["n"], serde_json::Value::Null);
        let meta = &v["_duo_collector"];
        assert_eq!(meta["integration"], "corp");
        assert_eq!(meta["account_id"], serde_json::Value::Null);
        assert_eq!(meta["log"], "authentication");
        assert_eq!(meta["event_id"], "t-1");
        assert_eq!(meta["collected_at"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn handles_empty_objects_and_account_names() {
        let stream = StreamId::new("msp", Some("DA123".into()), LogKind::Administrator);
        let mut batch = batch_for(&stream, &[]);
        batch.account_name = Some("Child \u{2603}");
        let event = Event {
            raw: "{ }".into(),
            event_id: "x".into(),
            ts_ms: 0,
        };
        let line = render_one(Format::Raw, &batch, &event);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_duo_collector"]["account_id"], "DA123");
        assert_eq!(v["_duo_collector"]["account_name"], "Child \u{2603}");
    }
}
