//! The parsers of outside input never panic: log pages of every kind, the Accounts API list,
//! Duo's error envelope and the config loader. Every malformed input is a typed error; a
//! well-formed page keeps every record. The same entry points are fuzzed by `fuzz/run`.

use duo_collector::collector::parse_children;
use duo_collector::config::Env;
use duo_collector::duo::error::from_response;
use duo_collector::duo::DuoError;
use duo_collector::inventory::{
    diff as inventory_diff, parse_page as parse_inventory_page, EntityState, InventoryKind,
    OffsetPager,
};
use duo_collector::logs::page::{parse, Page, PageError};
use duo_collector::logs::LogKind;
use duo_collector::settings::parse_config_str;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
        Just(json!("2024-01-01T00:00:00.123456+00:00")),
        Just(json!(u64::MAX)),
        Just(json!(-1e300)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,14}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field the pager reads, as any JSON value (usually of the right type).
fn field(good: Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(Some(good)),
        1 => Just(None),
        2 => any_json().prop_map(Some),
    ]
}

/// A record of `kind` whose id and time fields may be missing or of any type.
fn record(kind: LogKind) -> impl Strategy<Value = Value> {
    let (id_field, time_field, good_time) = match kind {
        LogKind::Authentication => ("txid", "isotimestamp", json!("2024-01-01T00:00:00.5+00:00")),
        LogKind::Telephony => ("telephony_id", "ts", json!("2024-01-01T00:00:00+00:00")),
        LogKind::Activity => ("activity_id", "ts", json!("2024-01-01T00:00:00Z")),
        LogKind::TrustMonitor => ("sekey", "surfaced_timestamp", json!(1_704_067_200_000i64)),
        LogKind::Administrator | LogKind::OfflineEnrollment => {
            ("action", "timestamp", json!(1_704_067_200))
        }
    };
    (
        field(json!("id-1")),
        field(good_time),
        field(json!(1_704_067_200)),
        any_json(),
    )
        .prop_map(move |(id, time, seconds, extra)| {
            let mut record = serde_json::Map::new();
            if let Some(id) = id {
                record.insert(id_field.into(), id);
            }
            if let Some(time) = time {
                record.insert(time_field.into(), time);
            }
            if let Some(seconds) = seconds {
                record.insert("timestamp".into(), seconds);
            }
            record.insert("extra".into(), extra);
            Value::Object(record)
        })
}

/// A page body of `kind`: a right or wrong envelope around records, any cursor.
fn page_body(kind: LogKind) -> impl Strategy<Value = Value> {
    let records = prop::collection::vec(prop_oneof![8 => record(kind), 1 => any_json()], 0..5);
    let offset = prop_oneof![
        Just(Value::Null),
        Just(json!(["1704067200000", "id-1"])),
        Just(json!("1704067200000,id-1")),
        Just(json!(31229)),
        any_json(),
    ];
    let stat = prop_oneof![6 => Just(json!("OK")), 1 => Just(json!("FAIL")), 1 => any_json()];
    (records, offset, stat, any::<bool>()).prop_map(move |(items, offset, stat, drop_meta)| {
        let response = match kind {
            LogKind::Administrator | LogKind::OfflineEnrollment => Value::from(items),
            LogKind::TrustMonitor => {
                json!({"events": items, "metadata": if drop_meta { Value::Null } else { json!({"next_offset": offset}) }})
            }
            LogKind::Authentication => {
                json!({"authlogs": items, "metadata": {"next_offset": offset}})
            }
            _ => json!({"items": items, "metadata": {"next_offset": offset}}),
        };
        json!({"stat": stat, "response": response})
    })
}

fn records_in(body: &Value) -> Option<usize> {
    let response = &body["response"];
    [
        response.as_array(),
        response["authlogs"].as_array(),
        response["items"].as_array(),
        response["events"].as_array(),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(Vec::len)
}

fn check_page(kind: LogKind, body: &Value, parsed: Result<Page, PageError>) {
    match parsed {
        Ok(page) => {
            assert_eq!(
                Some(page.events.len()),
                records_in(body),
                "every record is kept"
            );
            for event in &page.events {
                assert!(!event.event_id.is_empty(), "{kind}: an event without an id");
                let record: Value = serde_json::from_str(&event.raw).expect("raw is the record");
                assert!(record.is_object());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn kind() -> impl Strategy<Value = LogKind> {
    prop::sample::select(LogKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pages_of_every_kind_parse_or_fail_with_a_page_error(
        (kind, body) in kind().prop_flat_map(|k| (Just(k), page_body(k)))
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        check_page(kind, &body, parse(kind, &bytes));
    }

    #[test]
    fn truncated_and_corrupted_pages_are_errors_not_panics(
        (kind, body) in kind().prop_flat_map(|k| (Just(k), page_body(k))),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(parse(kind, truncated).is_err(), "a truncated page is refused");
        let mut corrupted = bytes.clone();
        for (at, byte) in flips {
            let i = at.index(corrupted.len());
            corrupted[i] = byte;
        }
        let _ = parse(kind, &corrupted);
    }

    #[test]
    fn arbitrary_bytes_are_refused_by_every_parser(bytes in prop::collection::vec(any::<u8>(), 0..256), status in any::<u16>()) {
        for kind in LogKind::ALL {
            let _ = parse(kind, &bytes);
        }
        let _ = parse_children(&bytes);
        let error = from_response(status, &bytes);
        prop_assert!(matches!(error, DuoError::Api { .. }), "an API error");
        let _ = error.to_string();
    }

    #[test]
    fn account_lists_parse_or_fail_with_a_page_error(
        accounts in prop::collection::vec(any_json(), 0..4),
        stat in prop_oneof![Just(json!("OK")), any_json()],
    ) {
        let body = serde_json::to_vec(&json!({"stat": stat, "response": accounts})).unwrap();
        if let Ok(children) = parse_children(&body) {
            prop_assert_eq!(children.len(), accounts.len());
        }
    }

    #[test]
    fn error_envelopes_keep_the_code_whatever_its_type(
        code in prop_oneof![any::<u32>().prop_map(Value::from), any::<u32>().prop_map(|c| Value::from(c.to_string())), any_json()],
        message in prop_oneof![Just(Value::Null), "\\PC{0,40}".prop_map(Value::from), any_json()],
        status in 400u16..600,
    ) {
        let body = serde_json::to_vec(&json!({"stat": "FAIL", "code": code, "message": message})).unwrap();
        let error = from_response(status, &body);
        let expected = match &code {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if message.is_string() || message.is_null() {
            prop_assert_eq!(error.code(), expected);
        }
        let _ = error.to_string();
    }

    #[test]
    fn configs_with_keys_removed_or_replaced_load_or_fail_with_a_config_error(
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![
            Just(None),
            Just(Some("\"\"".to_string())),
            Just(Some("-1".to_string())),
            Just(Some("[]".to_string())),
            Just(Some("{ a = 1 }".to_string())),
            Just(Some("\"/nonexistent/x\"".to_string())),
            "[ -~]{0,16}".prop_map(|s| Some(format!("{s:?}"))),
        ]), 0..6),
    ) {
        let mut lines: Vec<String> = SAMPLE.lines().map(str::to_string).collect();
        for (at, replacement) in edits {
            let i = at.index(lines.len());
            let Some((key, _)) = lines[i].split_once(" = ") else { continue };
            lines[i] = match replacement {
                None => String::new(),
                Some(value) => format!("{key} = {value}"),
            };
        }
        let env = Env::from_pairs(&[("DUO_SKEY", "s3cr3t-skey-value-s3cr3t-skey-value-0042")]);
        if let Err(e) = parse_config_str(&lines.join("\n"), "props.toml", &env) {
            let text = e.to_string();
            prop_assert!(text.contains("props.toml"), "{}", text);
            prop_assert!(!text.contains("s3cr3t"), "a config error never shows a secret");
        }
    }

    #[test]
    fn arbitrary_text_is_a_config_error(text in "\\PC{0,200}") {
        prop_assume!(!["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)));
        let env = Env::from_pairs(&[]);
        let _ = parse_config_str(&text, "props.toml", &env).map(|_| ()).map_err(|e| e.to_string());
    }
}

const SAMPLE: &str = r#"[collector]
state_dir = "/nonexistent/state"
metrics_listen = "127.0.0.1:9464"

[[integration]]
name = "corp"
api_hostname = "api-abcd1234.duosecurity.com"
ikey = "DIWJ8X6AEYOR5OMC6TQ1"
skey_env = "DUO_SKEY"
schedule = "0 */5 * * * *"
delay = "2m"
page_size = 500
logs = ["authentication", "administrator"]
sinks = ["out", "web"]

[[sink]]
name = "out"
type = "file"
path = "/nonexistent/events.jsonl"
format = "ocsf"

[[sink]]
name = "web"
type = "http"
url = "https://siem.example.com/in"
batch_max_events = 100
idempotency_header = "X-Batch-Id"
"#;

#[test]
fn the_sample_config_is_valid() {
    let env = Env::from_pairs(&[("DUO_SKEY", "s3cr3t-skey-value-s3cr3t-skey-value-0042")]);
    parse_config_str(SAMPLE, "props.toml", &env).unwrap();
}

fn inventory_kind() -> impl Strategy<Value = InventoryKind> {
    prop::sample::select(InventoryKind::ALL.to_vec())
}

/// An inventory entity: its id of any type, a secret member at the top or nested, anything else.
fn inventory_record(kind: InventoryKind) -> impl Strategy<Value = Value> {
    let id_field = kind.id_field().unwrap_or("user_count");
    (
        field(json!("DU0000000000000000001")),
        any_json(),
        any_json(),
        any::<bool>(),
    )
        .prop_map(move |(id, extra, secret, nested)| {
            let mut m = match extra {
                Value::Object(m) => m,
                other => [("extra".to_string(), other)].into_iter().collect(),
            };
            if let Some(id) = id {
                m.insert(id_field.to_string(), id);
            }
            let s = json!({"secret_key": "SECRETVALUE", "skey": "SECRETVALUE", "note": secret});
            if nested {
                m.insert("sso".into(), json!({"inner": [s]}));
            } else if let Value::Object(top) = s {
                m.extend(top);
            }
            Value::Object(m)
        })
}

fn inventory_body(kind: InventoryKind) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(inventory_record(kind), 0..5),
        field(json!(100)),
        prop_oneof![4 => Just(json!("OK")), 1 => any_json()],
    )
        .prop_map(move |(records, next, stat)| {
            let response = match kind {
                InventoryKind::Summary => records.into_iter().next().unwrap_or(json!({})),
                _ => Value::from(records),
            };
            let mut body = json!({"stat": stat, "response": response});
            if let Some(n) = next {
                body["metadata"] = json!({"next_offset": n});
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inventory_pages_parse_without_secrets_or_fail_with_a_typed_error(
        (kind, body) in inventory_kind().prop_flat_map(|k| (Just(k), inventory_body(k)))
    ) {
        let text = body.to_string();
        match parse_inventory_page(kind, text.as_bytes()) {
            Ok(page) => {
                let wanted = match &body["response"] {
                    Value::Array(xs) => xs.len(),
                    _ => 1,
                };
                prop_assert_eq!(page.entities.len(), wanted);
                let mut pager = OffsetPager::new(kind);
                for e in &page.entities {
                    let rendered = serde_json::to_string(&e.record).unwrap();
                    prop_assert!(!rendered.contains("SECRETVALUE"), "{}", rendered);
                    let state = EntityState::from_entity(kind, e);
                    let _ = inventory_diff(None, Some(&state));
                    prop_assert_eq!(EntityState::from_stored(&state.to_stored()).ok(), Some(state));
                }
                let _ = pager.on_page(page);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_bytes_are_refused_by_the_inventory_parser(
        kind in inventory_kind(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = parse_inventory_page(kind, &bytes);
    }
}
