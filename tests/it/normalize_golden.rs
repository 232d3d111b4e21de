//! Golden tests: every (log kind × format) from simulator records, including the tricky
//! variants (nulls, unicode, IPv6, `ip:port`, `[v6]:port`, `"unknown"` flags, JSON-string
//! descriptions) and hostile records (wrong types, empty, special characters).
//! `tests/ocsf/validate.py` (run by `.ci/run`) checks the OCSF snapshots against the official
//! OCSF 1.7.0 schema and round-trips the CEF snapshots through an independent parser.

use crate::fixtures::*;
use duo_collector::logs::LogKind;
use duo_collector::normalize::{render_one, Format, Formatter};
use serde_json::{json, Value};

pub const SPECIAL: &str = "Zoë | a=b \\ c\nd\r ☃ 🙂";

fn features(kind: LogKind) -> &'static [&'static str] {
    match kind {
        LogKind::Authentication => &[
            "]:",
            "\"enrollment\"",
            "\"denied\"",
            "\"fraud\"",
            "\"unknown\"",
            "adaptive_trust",
            "\"city\":null",
            "\"2001:db8:",
            "\"198.51.100.",
            "\"event_type\":null",
            "田中",
            "\"security_agents\":[{",
            "WebAuthn",
            "hardware_token",
            "sms_passcode",
        ],
        LogKind::Administrator => &[
            "\"admin_login\"",
            "admin_login_error",
            "user_update",
            "integration_create",
            "phone_delete",
            "activation_begin",
            "bypass_create",
            "\"API\"",
            "\"System\"",
            "]:",
        ],
        LogKind::Telephony => &["\"sms\"", "\"phone\"", "administrator login", "enrollment"],
        LogKind::Activity => &[
            "admin_login",
            "user_update",
            "phone_create",
            "integration_update",
            "group_create",
            "user_delete",
            "admin_factor_restrictions_update",
            "FAILURE",
            "]:",
            "\"webauthn_credential\"",
            "\"password_auth\"",
            "\"mfa_challenge\"",
        ],
        LogKind::TrustMonitor => &["bypass_status", "\"type\":\"auth\"", "]:", "\"CN\""],
        LogKind::OfflineEnrollment => &[
            "o2fa_user_provisioned",
            "deprovisioned",
            "reenrolled",
            "security_key",
        ],
    }
}

/// Objects become strings, strings numbers, numbers and booleans `"unknown"`.
fn wrong_types(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    Value::Object(
        m.iter()
            .map(|(k, x)| {
                let y = match x {
                    Value::Object(_) => json!("not an object"),
                    Value::String(_) => json!(42),
                    Value::Number(_) | Value::Bool(_) => json!("unknown"),
                    Value::Array(_) => json!({"x": 1}),
                    Value::Null => json!([]),
                };
                (k.clone(), y)
            })
            .collect(),
    )
}

/// Names, actions and descriptions full of characters every format must escape.
fn special(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), special(x, k))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| special(x, key)).collect()),
        Value::String(_)
            if matches!(
                key,
                "name"
                    | "username"
                    | "object"
                    | "action"
                    | "reason"
                    | "context"
                    | "summary"
                    | "hostname"
                    | "type"
                    | "phone"
            ) =>
        {
            json!(SPECIAL)
        }
        Value::String(s) if key == "description" => {
            let mut d: Value = serde_json::from_str(s).unwrap_or(json!({}));
            if let Some(o) = d.as_object_mut() {
                o.insert("notes".into(), json!(SPECIAL));
            }
            json!(d.to_string())
        }
        other => other.clone(),
    }
}

/// Every spelling of an address Duo may send in `access_device.ip` / `auth_device.ip`: with a
/// port (each form Elastic's pipeline splits), plain, and no address at all.
pub const IP_SPELLINGS: &[&str] = &[
    "1.2.3.4:1234",
    "[2a02:cf40::23]:1234",
    "2a02:cf40::23#1234",
    "2a02:cf40::23p1234",
    "2a02:cf40::23.1234",
    "2a02:cf40::23 port 1234",
    "2a02:cf40:0:0:0:0:0:23:1234",
    "2a02:cf40::23",
    "unknown",
    "ws-0001.corp.example.com",
    "",
];

/// Sets a dotted path of an object (creating objects on the way).
fn set(v: &mut Value, path: &str, x: Value) {
    let mut cur = v;
    let mut keys = path.split('.').peekable();
    while let Some(k) = keys.next() {
        if keys.peek().is_none() {
            cur[k] = x;
            return;
        }
        cur = &mut cur[k];
    }
}

/// Cases the generated records may lack: each IP spelling in both devices of an
/// authentication (the same address twice, so `related.ip` must hold it once), in an
/// Activity `access_device.ip.address`, and an Activity whose actor is its own user target.
fn crafted(kind: KindRecords) -> KindRecords {
    let (kind, mut picked) = kind;
    let (id, ts, first) = picked[0].clone();
    match kind {
        LogKind::Authentication => {
            for (n, ip) in IP_SPELLINGS.iter().enumerate() {
                let mut r = first.clone();
                set(&mut r, "factor", json!("duo_push"));
                set(&mut r, "access_device.ip", json!(ip));
                set(&mut r, "auth_device.ip", json!(ip));
                set(
                    &mut r,
                    "auth_device.name",
                    json!("My iPhone X (+17345550000)"),
                );
                picked.push((format!("{id}-ip-{n}"), ts, r));
            }
        }
        LogKind::Activity => {
            for (n, ip) in ["[2a02:cf40::23]:1234", "unknown"].iter().enumerate() {
                let mut r = first.clone();
                set(&mut r, "access_device.ip", json!({"address": ip}));
                picked.push((format!("{id}-ip-{n}"), ts, r));
            }
            let mut r = first.clone();
            let actor = r["actor"]["name"].clone();
            set(&mut r, "action.name", json!("user_update"));
            set(&mut r, "target.type", json!("user"));
            set(&mut r, "target.name", actor);
            picked.push((format!("{id}-self"), ts, r));
        }
        _ => {}
    }
    (kind, picked)
}

fn golden_records() -> Vec<KindRecords> {
    records(7, 400)
        .into_iter()
        .map(|(kind, recs)| {
            let mut picked: Vec<crate::fixtures::Rec> = Vec::new();
            for f in features(kind) {
                let hit = recs.iter().find(|(_, _, r)| r.to_string().contains(f));
                let hit = hit.unwrap_or_else(|| panic!("no {kind} record has {f}"));
                if !picked.iter().any(|p| p.0 == hit.0) {
                    picked.push(hit.clone());
                }
            }
            let (id, ts, first) = recs[0].clone();
            picked.push((format!("{id}-wrong-types"), ts, wrong_types(&first)));
            picked.push((format!("{id}-special"), ts, special(&first, "")));
            if let Some((id2, ts2, r2)) = recs
                .iter()
                .find(|(_, _, r)| r.to_string().contains("surfaced_auth\":{"))
            {
                picked.push((format!("{id2}-special"), *ts2, special(r2, "")));
            }
            picked.push((format!("{id}-empty"), ts, json!({})));
            crafted((kind, picked))
        })
        .collect()
}

#[test]
fn golden_every_kind_and_format() {
    for (i, (kind, recs)) in golden_records().into_iter().enumerate() {
        let msp = i % 2 == 1;
        let stream = stream(kind, msp);
        for format in Format::ALL {
            let mut rendered = Vec::new();
            for (id, ts, rec) in &recs {
                let ev = event(id, *ts, rec);
                let line = render_one(format, &batch(&stream, &[], msp), &ev);
                assert!(
                    !line.contains('\n'),
                    "{kind} {format}: line break in {line}"
                );
                rendered.push(match format {
                    Format::Cef => json!({
                        "line": line,
                        "event_id": id,
                        "special": id.ends_with("-special"),
                    }),
                    _ => serde_json::from_str::<Value>(&line)
                        .unwrap_or_else(|e| panic!("{kind} {format}: {e}: {line}")),
                });
            }
            insta::assert_json_snapshot!(format!("{kind}_{format}"), rendered);
        }
    }
}

#[test]
fn ocsf_is_the_default_format() {
    assert_eq!(Format::default(), Format::Ocsf);
    assert_eq!(Formatter::default().format, Format::Ocsf);
    let cfg = duo_collector::settings::parse_config_str(
        "[[integration]]\nname=\"a\"\napi_hostname=\"api-1.duosecurity.com\"\nikey=\"DIXXXXXXXXXXXXXXXXXX\"\nskey=\"s\"\nsinks=[\"f\"]\n[[sink]]\nname=\"f\"\ntype=\"file\"\npath=\"/tmp/x.jsonl\"\n",
        "test",
        &duo_collector::config::Env::from_pairs(&[]),
    );
    let dbg = format!("{cfg:?}");
    assert!(dbg.contains("format: Ocsf"), "{dbg}");
}

#[test]
fn exclude_fields_removes_paths_in_every_format() {
    let recs = records(3, 20);
    let (kind, evs) = &recs[0];
    let (id, ts, rec) = &evs[0];
    let stream = stream(*kind, false);
    let ev = event(id, *ts, rec);
    let b = batch(&stream, &[], false);
    let excl = |f: Format, paths: &[&str]| {
        Formatter::new(f, paths.iter().map(|s| s.to_string()).collect()).render_one(&b, &ev)
    };
    let v: Value = serde_json::from_str(&excl(
        Format::Ocsf,
        &[
            "src_endpoint.location",
            "unmapped.access_device.security_agents",
            "user.groups",
        ],
    ))
    .unwrap();
    assert!(v["src_endpoint"].get("location").is_none());
    assert!(v["src_endpoint"].get("ip").is_some());
    assert!(v["unmapped"]["access_device"]
        .get("security_agents")
        .is_none());
    assert!(v["user"].get("groups").is_none());
    let v: Value = serde_json::from_str(&excl(
        Format::Ecs,
        &["cisco_duo.auth.access_device", "source.geo"],
    ))
    .unwrap();
    assert!(v["cisco_duo"]["auth"].get("access_device").is_none());
    assert!(v["source"].get("geo").is_none());
    let v: Value =
        serde_json::from_str(&excl(Format::Raw, &["access_device.location", "user"])).unwrap();
    assert!(v["access_device"].get("location").is_none());
    assert!(v.get("user").is_none());
    assert!(v.get("txid").is_some());
    let line = excl(Format::Cef, &["cs1", "suser"]);
    assert!(!line.contains(" cs1=") && !line.contains("cs1Label=") && !line.contains("suser="));
    assert!(line.contains("externalId="));
    // Without exclusions the same fields are there.
    let full = Formatter::new(Format::Ocsf, vec![]).render_one(&b, &ev);
    let v: Value = serde_json::from_str(&full).unwrap();
    assert!(v["src_endpoint"].get("ip").is_some());
    assert!(v["unmapped"]["access_device"]
        .get("security_agents")
        .is_some());
}
