//! Mapping rules checked field by field (the goldens pin whole documents): addresses with
//! ports in every spelling, values that are no address, Activity targets that are no users,
//! embedded `details` documents, `related.*` without repeats, administrator outcomes.

use std::net::IpAddr;

use crate::fixtures::*;
use duo_collector::logs::LogKind;
use duo_collector::normalize::{render_one, Format};
use serde_json::{json, Value};

fn render(kind: LogKind, format: Format, rec: &Value) -> Value {
    let stream = stream(kind, false);
    let ev = event("ev-1", 1_700_000_000_000, rec);
    let line = render_one(format, &batch(&stream, &[], false), &ev);
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn first(kind: LogKind, pred: impl Fn(&Value) -> bool) -> Value {
    records(11, 300)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .and_then(|(_, recs)| recs.into_iter().map(|r| r.2).find(|r| pred(r)))
        .unwrap_or_else(|| panic!("no {kind} record matches"))
}

fn auth_with_ip(ip: &str) -> Value {
    let mut r = first(LogKind::Authentication, |r| r["factor"] == "duo_push");
    r["access_device"]["ip"] = json!(ip);
    r["auth_device"]["ip"] = json!(ip);
    r
}

/// Every value of an `ip` field (and Activity's `ip.address`) under `v` that is not an
/// address, with its path: what an index with `ip`-typed fields would reject.
fn non_addresses_under_ip(v: &Value, path: &str, out: &mut Vec<String>) {
    fn is_address(x: &Value) -> bool {
        x.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok())
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                let ip_field = k == "ip" || (k == "address" && path.ends_with(".ip"));
                let values: Vec<&Value> = match x {
                    Value::Array(a) => a.iter().collect(),
                    Value::Object(_) => Vec::new(),
                    other => vec![other],
                };
                if ip_field && !values.iter().all(|x| is_address(x)) {
                    out.push(format!("{p} = {x}"));
                }
                non_addresses_under_ip(x, &p, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| non_addresses_under_ip(x, path, out)),
        _ => {}
    }
}

const WITH_PORT: &[(&str, &str)] = &[
    ("1.2.3.4:1234", "1.2.3.4"),
    ("[2a02:cf40::23]:1234", "2a02:cf40::23"),
    ("2a02:cf40::23#1234", "2a02:cf40::23"),
    ("2a02:cf40::23p1234", "2a02:cf40::23"),
    ("2a02:cf40::23.1234", "2a02:cf40::23"),
    ("2a02:cf40::23 port 1234", "2a02:cf40::23"),
    ("2a02:cf40:0:0:0:0:0:23:1234", "2a02:cf40:0:0:0:0:0:23"),
];

#[test]
fn ip_with_port_is_split_in_ecs_and_ocsf_and_a_plain_address_is_not() {
    for &(text, ip) in WITH_PORT {
        let rec = auth_with_ip(text);
        let ecs = render(LogKind::Authentication, Format::Ecs, &rec);
        assert_eq!(ecs["source"]["ip"], ip, "{text}: {ecs}");
        assert_eq!(ecs["source"]["port"], 1234, "{text}");
        assert_eq!(
            ecs["related"]["ip"],
            json!([ip]),
            "{text}: the same address once"
        );
        let dev = &ecs["cisco_duo"]["auth"]["auth_device"];
        assert_eq!(dev["ip"], ip, "{text}: {dev}");
        assert_eq!(dev["port"], 1234, "{text}");
        assert_eq!(dev["address"], text, "{text}: the text as it came");
        assert_eq!(
            ecs["cisco_duo"]["auth"]["access_device"]["address"], text,
            "{text}"
        );
        let mut bad = Vec::new();
        non_addresses_under_ip(&ecs, "", &mut bad);
        assert!(bad.is_empty(), "{text}: {bad:?}");

        let ocsf = render(LogKind::Authentication, Format::Ocsf, &rec);
        assert_eq!(ocsf["src_endpoint"]["ip"], ip, "{text}");
        assert_eq!(ocsf["src_endpoint"]["port"], 1234, "{text}");
        let device = &ocsf["auth_factors"][0]["device"];
        assert_eq!(device["ip"], ip, "{text}: {device}");
        assert!(
            device.get("port").is_none(),
            "{text}: OCSF device has no port"
        );
        assert_eq!(ocsf["unmapped"]["auth_device"]["port"], 1234, "{text}");
        assert_eq!(ocsf["unmapped"]["auth_device"]["ip"], text, "{text}");
    }
    plain_addresses_stay_plain();
}

/// The counterpart of the split: a plain address (also an IPv6 whose last group looks like a
/// port) stays one, with no port, and is consumed.
fn plain_addresses_stay_plain() {
    for ip in ["2a02:cf40::23", "2a02:cf40::23:1234", "203.0.113.9"] {
        let rec = auth_with_ip(ip);
        let ecs = render(LogKind::Authentication, Format::Ecs, &rec);
        assert_eq!(ecs["source"]["ip"], ip);
        assert!(ecs["source"].get("port").is_none(), "{ip}: no port");
        assert_eq!(ecs["cisco_duo"]["auth"]["auth_device"]["ip"], ip);
        assert!(ecs["cisco_duo"]["auth"]["auth_device"]
            .get("address")
            .is_none());
        let ocsf = render(LogKind::Authentication, Format::Ocsf, &rec);
        assert_eq!(ocsf["src_endpoint"]["ip"], ip);
        assert!(ocsf["src_endpoint"].get("port").is_none());
        assert!(
            ocsf["unmapped"]["access_device"].get("ip").is_none(),
            "{ip}: consumed"
        );
    }
}

#[test]
fn a_value_that_is_no_address_never_lands_in_an_ip_field() {
    for text in [
        "unknown",
        "ws-0001.corp.example.com",
        "not an ip",
        "1.2.3.4:99999",
    ] {
        let rec = auth_with_ip(text);
        let ecs = render(LogKind::Authentication, Format::Ecs, &rec);
        let mut bad = Vec::new();
        non_addresses_under_ip(&ecs, "", &mut bad);
        assert!(bad.is_empty(), "{text}: {bad:?}");
        assert!(ecs["source"].get("ip").is_none(), "{text}");
        assert_eq!(ecs["cisco_duo"]["auth"]["auth_device"]["address"], text);
        assert_eq!(ecs["cisco_duo"]["auth"]["access_device"]["address"], text);
        let ocsf = render(LogKind::Authentication, Format::Ocsf, &rec);
        assert!(ocsf["src_endpoint"].get("ip").is_none(), "{text}");
        assert!(
            ocsf["auth_factors"][0]["device"].get("ip").is_none(),
            "{text}"
        );
        // Kept as it came.
        assert_eq!(ocsf["unmapped"]["auth_device"]["ip"], text);
    }
    // Activity sends `ip: {address}`.
    let mut rec = first(LogKind::Activity, |_| true);
    rec["access_device"]["ip"] = json!({"address": "[2a02:cf40::23]:1234"});
    let ecs = render(LogKind::Activity, Format::Ecs, &rec);
    assert_eq!(ecs["source"]["ip"], "2a02:cf40::23");
    assert_eq!(ecs["source"]["port"], 1234);
    let mut bad = Vec::new();
    non_addresses_under_ip(&ecs, "", &mut bad);
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn activity_targets_are_users_only_when_their_type_says_so() {
    for ttype in [
        "webauthn_credential",
        "password_auth",
        "mfa_challenge",
        "phone",
    ] {
        let rec = first(LogKind::Activity, |r| r["target"]["type"] == ttype);
        let target = rec["target"]["name"].as_str().unwrap().to_string();
        let ecs = render(LogKind::Activity, Format::Ecs, &rec);
        assert!(
            ecs["user"].get("target").is_none(),
            "{ttype}: {}",
            ecs["user"]
        );
        let related = ecs["related"]["user"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!related.contains(&json!(target)), "{ttype}: {related:?}");
        assert_eq!(
            ecs["cisco_duo"]["activity"]["target"]["name"],
            json!(target)
        );
        let ocsf = render(LogKind::Activity, Format::Ocsf, &rec);
        assert_ne!(ocsf["class_uid"], 3001, "{ttype}: no Account Change");
        assert_ne!(ocsf["user"]["name"], json!(target), "{ttype}: {ocsf}");
    }
    for ttype in ["user", "admin"] {
        let rec = first(LogKind::Activity, |r| {
            r["target"]["type"] == ttype && r["action"]["name"] != "admin_login"
        });
        let ecs = render(LogKind::Activity, Format::Ecs, &rec);
        assert_eq!(
            ecs["user"]["target"]["name"], rec["target"]["name"],
            "{ttype}"
        );
        assert!(ecs["related"]["user"]
            .as_array()
            .unwrap()
            .contains(&rec["target"]["name"]));
    }
}

#[test]
fn activity_details_are_objects() {
    let rec = first(LogKind::Activity, |r| r["old_target"].is_null());
    let mut rec = rec.clone();
    rec["old_target"] = json!({"details": "{\"status\":\"disabled\"}", "type": "user"});
    let ecs = render(LogKind::Activity, Format::Ecs, &rec);
    let ocsf = render(LogKind::Activity, Format::Ocsf, &rec);
    for (format, pass) in [
        ("ecs", &ecs["cisco_duo"]["activity"]),
        ("ocsf", &ocsf["unmapped"]),
    ] {
        for key in ["actor", "target"] {
            let want: Value = serde_json::from_str(rec[key]["details"].as_str().unwrap()).unwrap();
            assert_eq!(pass[key]["details"], want, "{format} {key}");
        }
        assert_eq!(
            pass["old_target"]["details"],
            json!({"status": "disabled"}),
            "{format}"
        );
    }
}

#[test]
fn related_lists_hold_each_value_once() {
    let mut checked = 0;
    for (kind, recs) in records(5, 200) {
        for (id, ts, rec) in &recs {
            let stream = stream(kind, false);
            let line = render_one(
                Format::Ecs,
                &batch(&stream, &[], false),
                &event(id, *ts, rec),
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            for (name, list) in v["related"].as_object().into_iter().flatten() {
                let list = list.as_array().unwrap();
                let mut seen = Vec::new();
                for x in list {
                    assert!(
                        !seen.contains(&x),
                        "{kind} related.{name} repeats {x}: {list:?}"
                    );
                    seen.push(x);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
    // An actor acting on their own account.
    let mut rec = first(LogKind::Activity, |r| r["target"]["type"] == "user");
    rec["target"]["name"] = rec["actor"]["name"].clone();
    let ecs = render(LogKind::Activity, Format::Ecs, &rec);
    assert_eq!(ecs["related"]["user"], json!([rec["actor"]["name"]]));
}

#[test]
fn administrator_events_have_an_outcome() {
    let (_, recs) = records(5, 200)
        .into_iter()
        .find(|(k, _)| *k == LogKind::Administrator)
        .unwrap();
    for (_, _, rec) in &recs {
        let ecs = render(LogKind::Administrator, Format::Ecs, rec);
        let want = if rec["action"] == "admin_login_error" {
            "failure"
        } else {
            "success"
        };
        assert_eq!(ecs["event"]["outcome"], want, "{rec}");
    }
    for (action, want) in [
        ("admin_2fa_error", "failure"),
        ("ad_sync_failed", "failure"),
        ("azure_sync_fail", "failure"),
        ("integration_update", "success"),
    ] {
        let rec = json!({"action": action, "username": "alice", "timestamp": 1_700_000_000});
        let ecs = render(LogKind::Administrator, Format::Ecs, &rec);
        assert_eq!(ecs["event"]["outcome"], want, "{action}");
    }
    // The object of an admin action is a user only for account actions.
    let rec = json!({"action": "phone_delete", "object": "+1 200-555-0006", "username": "alice"});
    let ecs = render(LogKind::Administrator, Format::Ecs, &rec);
    assert!(ecs["user"].get("target").is_none(), "{}", ecs["user"]);
    assert_eq!(ecs["related"]["user"], json!(["alice"]));
    assert_eq!(ecs["cisco_duo"]["admin"]["object"], "+1 200-555-0006");
    let rec = json!({"action": "user_update", "object": "bob", "username": "alice"});
    let ecs = render(LogKind::Administrator, Format::Ecs, &rec);
    assert_eq!(ecs["user"]["target"]["name"], "bob");
}
