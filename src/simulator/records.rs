//! JSON rendering of one event per log kind (duo-api.md §2.1–§2.6), deterministic from
//! `(dataset seed, event id)`.

use serde_json::{json, Value};

use super::data::{Dataset, Ev, Kind};
use super::fields::{
    access_device, app, ip, iso_s, iso_us, location, phone, random_uuid, sekey, user,
};
use super::rng::{duo_key, mix, uuid_str, Rng};

/// The id a collector dedupes on (a simulator-internal UUID for v1 kinds).
pub fn natural_id(kind: Kind, ev: &Ev) -> String {
    match kind {
        Kind::TrustMonitor => sekey(ev.id),
        _ => uuid_str(ev.id),
    }
}

/// Render event `idx` of `kind`.
pub fn render(ds: &Dataset, kind: Kind, idx: usize) -> Value {
    let ev = ds.kind(kind).events[idx];
    let h = mix(ds.seed, (ev.id >> 64) as u64 ^ ev.id as u64);
    let mut rng = Rng::new(h);
    match kind {
        Kind::Authentication => auth_record(ds, &mut rng, ev.ts_us, &uuid_str(ev.id)),
        Kind::Telephony => telephony(&mut rng, &ev),
        Kind::Activity => activity(ds, &mut rng, &ev),
        Kind::TrustMonitor => trust_monitor(ds, &mut rng, &ev),
        Kind::Administrator => administrator(ds, &mut rng, &ev, idx),
        Kind::OfflineEnrollment => offline_enrollment(ds, &mut rng, &ev, idx),
    }
}

/// Is this Trust Monitor event a `bypass_status` one (else `auth`)?
pub fn tm_is_bypass(ds: &Dataset, ev: &Ev) -> bool {
    mix(ds.seed ^ 0xB7, ev.id as u64).is_multiple_of(7)
}

/// A full authentication record (also used as Trust Monitor `surfaced_auth`).
pub fn auth_record(ds: &Dataset, rng: &mut Rng, ts_us: i64, txid: &str) -> Value {
    const OK_FACTORS: &[(&str, &str)] = &[
        ("duo_push", "user_approved"),
        ("duo_push", "user_approved"),
        ("phone_call", "user_approved"),
        ("sms_passcode", "valid_passcode"),
        ("duo_mobile_passcode", "valid_passcode"),
        ("hardware_token", "valid_passcode"),
        ("WebAuthn Security Key", "user_approved"),
        ("remembered_device", "remembered_device"),
        ("trusted_network", "trusted_network"),
        ("bypass_code", "bypass_user"),
        ("not_available", "allow_unenrolled_user"),
    ];
    const DENY: &[(&str, &str)] = &[
        ("duo_push", "user_cancelled"),
        ("duo_push", "no_response"),
        ("sms_passcode", "invalid_passcode"),
        ("not_available", "deny_unenrolled_user"),
        ("not_available", "locked_out"),
        ("not_available", "location_restricted"),
        ("duo_push", "anomalous_push"),
        ("not_available", "user_not_in_permitted_group"),
        ("duo_push", "user_mistake"),
    ];
    let u = user(ds, rng);
    let (app_key, app_name) = app(ds, rng);
    let roll = rng.below(100);
    let (event_type, factor, reason, result) = if roll < 5 {
        (
            json!("enrollment"),
            json!("not_available"),
            Value::Null,
            "success",
        )
    } else if roll < 6 {
        (Value::Null, Value::Null, Value::Null, "success")
    } else if roll < 9 {
        (
            json!("authentication"),
            json!("duo_push"),
            json!("user_marked_fraud"),
            "fraud",
        )
    } else if roll < 22 {
        let (f, r) = *rng.pick(DENY);
        (json!("authentication"), json!(f), json!(r), "denied")
    } else {
        let (f, r) = *rng.pick(OK_FACTORS);
        (json!("authentication"), json!(f), json!(r), "success")
    };
    let auth_device = match factor.as_str() {
        Some("duo_push") | Some("phone_call") => json!({
            "ip": ip(rng),
            "key": duo_key("DP", rng.next_u64()),
            "location": location(rng),
            "name": format!("My iPhone X ({})", phone(rng)),
        }),
        Some("sms_passcode") => json!({
            "ip": null, "key": duo_key("DP", rng.next_u64()),
            "location": {"city": null, "state": null, "country": null},
            "name": phone(rng),
        }),
        Some("hardware_token") => json!({
            "ip": null, "key": duo_key("DH", rng.next_u64()),
            "location": {"city": null, "state": null, "country": null},
            "name": format!("{:09}", rng.below(1_000_000_000)),
        }),
        _ => json!({
            "ip": null, "key": null,
            "location": {"city": null, "state": null, "country": null},
            "name": null,
        }),
    };
    let mut rec = json!({
        "access_device": access_device(rng),
        "alias": if rng.pct(80) { String::new() } else { format!("{}-alt", u.name) },
        "application": {"key": app_key, "name": app_name},
        "auth_device": auth_device,
        "email": u.email,
        "event_type": event_type,
        "factor": factor,
        "isotimestamp": iso_us(ts_us),
        "ood_software": if rng.pct(90) { Value::Null } else { json!("Chrome") },
        "reason": reason,
        "result": result,
        "timestamp": ts_us.div_euclid(1_000_000),
        "txid": txid,
        "user": {"groups": u.groups, "key": u.key, "name": u.name},
    });
    if let Some(obj) = rec.as_object_mut() {
        match rng.below(5) {
            0 => {}
            1 => {
                obj.insert("trusted_endpoint_status".into(), Value::Null);
            }
            2 => {
                obj.insert("trusted_endpoint_status".into(), json!("trusted"));
            }
            3 => {
                obj.insert("trusted_endpoint_status".into(), json!("not trusted"));
            }
            _ => {
                obj.insert("trusted_endpoint_status".into(), json!("unknown"));
            }
        }
        if rng.pct(30) {
            let a = |level: &str, reason: &str| {
                json!({"features_version": "3.0", "model_version": "2022.07.19.001",
                       "policy_enabled": false, "reason": reason, "trust_level": level})
            };
            obj.insert(
                "adaptive_trust_assessments".into(),
                json!({
                    "more_secure_auth": a("LOW", "New country"),
                    "remember_me": a("NORMAL", "Known device"),
                }),
            );
        }
    }
    rec
}

fn telephony(rng: &mut Rng, ev: &Ev) -> Value {
    const CONTEXTS: &[&str] = &[
        "authentication",
        "authentication",
        "enrollment",
        "administrator login",
        "verify",
    ];
    let is_sms = rng.pct(60);
    json!({
        "context": rng.pick(CONTEXTS),
        "credits": if is_sms { 1 } else { rng.range(1, 3) },
        "phone": phone(rng),
        "telephony_id": uuid_str(ev.id),
        "ts": iso_us(ev.ts_us),
        "txid": random_uuid(rng),
        "type": if is_sms { "sms" } else { "phone" },
    })
}

fn activity(ds: &Dataset, rng: &mut Rng, ev: &Ev) -> Value {
    const ACTIONS: &[(&str, &str)] = &[
        ("admin_login", "admin"),
        ("user_update", "user"),
        ("phone_create", "phone"),
        ("integration_update", "integration"),
        ("group_create", "group"),
        ("user_delete", "user"),
        ("admin_factor_restrictions_update", "admin"),
        // End users acting on their own credentials: the target is no user.
        ("webauthncredential_create", "webauthn_credential"),
        ("password_change", "password_auth"),
        ("mfa_challenge", "mfa_challenge"),
    ];
    let (action, ttype) = *rng.pick(ACTIONS);
    let actor = user(ds, rng);
    let target = user(ds, rng);
    let credential = match ttype {
        "webauthn_credential" => Some("Security key"),
        "password_auth" => Some("Password"),
        "mfa_challenge" => Some("MFA"),
        _ => None,
    };
    let (app_key, app_name) = app(ds, rng);
    let actor_details = json!({"created": iso_us(ev.ts_us - 86_400_000_000 * 90),
        "last_login": iso_us(ev.ts_us - 3_600_000_000), "status": "Active",
        "groups": actor.groups, "email": actor.email})
    .to_string();
    let target_details = match credential {
        Some(kind) => json!({"authenticator_type": kind,
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0"}),
        None => json!({"email": target.email, "status": "active",
            "realname": target.name, "is_enrolled": rng.pct(80)}),
    }
    .to_string();
    let (target_key, target_name) = match credential {
        Some(_) => (
            duo_key("WA", rng.next_u64()),
            json!(duo_key("WA", rng.next_u64())),
        ),
        None => (target.key, json!(target.name)),
    };
    let actor_type = if credential.is_some() {
        "user"
    } else {
        "admin"
    };
    json!({
        "access_device": {
            "browser": "Chrome", "browser_version": "120.0.6099.130",
            "epkey": null, "ip": {"address": ip(rng)},
            "location": location(rng), "os": "Windows", "os_version": "10",
        },
        "action": {
            "details": if rng.pct(50) { Value::Null } else { json!(target_details) },
            "name": action,
        },
        "activity_id": uuid_str(ev.id),
        "actor": {"details": actor_details, "key": duo_key("DE", rng.next_u64()),
                  "name": actor.name, "type": actor_type},
        "akey": ds.akey,
        "application": {"key": app_key, "name": app_name, "type": "Admin Panel"},
        "old_target": null,
        "outcome": {"result": if rng.pct(93) { "SUCCESS" } else { "FAILURE" }},
        "target": {"details": target_details, "key": target_key, "name": target_name,
                   "type": ttype},
        "ts": iso_us(ev.ts_us),
    })
}

fn trust_monitor(ds: &Dataset, rng: &mut Rng, ev: &Ev) -> Value {
    let key = sekey(ev.id);
    let surfaced = ev.ms();
    let bypass = tm_is_bypass(ds, ev);
    let u = user(ds, rng);
    let admin = user(ds, rng);
    let explanations = if bypass {
        json!([{"summary": format!("{} has had bypass status enabled.", u.name),
                "type": "BYPASS_STATUS_ENABLED"}])
    } else {
        json!([
            {"summary": format!("{} has not logged in from this location recently.", u.name),
             "type": "NEW_COUNTRY_CODE"},
            {"summary": format!("{} has not logged in from this IP recently.", u.name),
             "type": "NEW_IP"}
        ])
    };
    let mut rec = json!({
        "explanations": explanations,
        "from_common_netblock": rng.pct(50),
        "from_new_user": rng.pct(10),
        "low_risk_ip": rng.pct(20),
        "priority_event": rng.pct(40),
        "priority_reasons": if rng.pct(50) { json!([]) } else {
            json!([{"label": "CN", "type": "country"}])
        },
        "sekey": key,
        "state": "new",
        "state_updated_timestamp": null,
        "surfaced_timestamp": surfaced,
        "triage_event_uri": format!("https://{}/trust-monitor?sekey={}", ds.admin_host, key),
        "triaged_as_interesting": false,
        "type": if bypass { "bypass_status" } else { "auth" },
    });
    if let Some(obj) = rec.as_object_mut() {
        if bypass {
            obj.insert(
                "bypass_status_enabled".into(),
                json!(surfaced - rng.range(1000, 600_000) as i64),
            );
            obj.insert(
                "enabled_by".into(),
                json!({"key": duo_key("DE", rng.next_u64()), "name": admin.name}),
            );
            obj.insert("enabled_for".into(), json!({"key": u.key, "name": u.name}));
            obj.insert("surfaced_auth".into(), Value::Null);
        } else {
            let auth_us =
                (surfaced - rng.range(5_000, 900_000) as i64) * 1000 + rng.below(1000) as i64;
            let txid = random_uuid(rng);
            obj.insert("surfaced_auth".into(), auth_record(ds, rng, auth_us, &txid));
        }
    }
    rec
}

fn administrator(ds: &Dataset, rng: &mut Rng, ev: &Ev, seq: usize) -> Value {
    let admin = user(ds, rng);
    let target = user(ds, rng);
    let (_, app_name) = app(ds, rng);
    let ts = ev.ts_us.div_euclid(1_000_000);
    // `seq` is unique per dataset and kind, so every record is unique in content.
    let unique_phone = format!(
        "+1 {:03}-555-{:04}",
        200 + (seq / 10_000) % 800,
        seq % 10_000
    );
    let ticket = format!("INC{seq:08}");
    let username = match rng.below(10) {
        0 => "API".to_string(),
        1 => "System".to_string(),
        2 => "AD Sync: corp.example.com".to_string(),
        _ => admin.name.to_string(),
    };
    let (action, object, description) = match rng.below(8) {
        0 | 1 => (
            "admin_login",
            Value::Null,
            json!({"ip_address": ip(rng), "device": unique_phone, "factor": "push",
                   "primary_auth_method": "Password"}),
        ),
        2 => (
            "admin_login_error",
            Value::Null,
            json!({"ip_address": ip(rng), "error": "Invalid password", "email": admin.email,
                   "attempt": ticket}),
        ),
        3 => (
            "user_update",
            json!(target.name),
            json!({"notes": format!("Ticket {ticket}"), "realname": target.name,
                   "status": "Active"}),
        ),
        4 => (
            "integration_create",
            json!(app_name),
            json!({"name": format!("{app_name} ({ticket})"), "type": "Admin API"}),
        ),
        5 => (
            "phone_delete",
            json!(unique_phone),
            json!({"number": unique_phone, "type": "Mobile", "platform": "Apple iOS"}),
        ),
        6 => (
            "activation_begin",
            json!(target.name),
            json!({"number": unique_phone, "type": "Mobile"}),
        ),
        _ => (
            "bypass_create",
            json!(target.name),
            json!({"bypass": "", "count": 1, "valid_secs": 3600, "remaining_uses": 1,
                   "user_id": target.key, "auto_generated": true, "notes": ticket}),
        ),
    };
    json!({
        "action": action,
        "description": description.to_string(),
        "isotimestamp": iso_s(ts),
        "object": object,
        "timestamp": ts,
        "username": username,
    })
}

fn offline_enrollment(ds: &Dataset, rng: &mut Rng, ev: &Ev, seq: usize) -> Value {
    const ACTIONS: &[&str] = &[
        "o2fa_user_provisioned",
        "o2fa_user_provisioned",
        "o2fa_user_deprovisioned",
        "o2fa_user_reenrolled",
    ];
    let u = user(ds, rng);
    let ts = ev.ts_us.div_euclid(1_000_000);
    let description = json!({
        "user_agent": "DuoCredProv/4.2.2.1755 (Windows NT 10.0.19045; x64; Workstation)",
        "hostname": format!("WKS-{seq:08}"),
        "factor": if rng.pct(70) { "duo_otp" } else { "security_key" },
    });
    json!({
        "action": rng.pick(ACTIONS),
        "description": description.to_string(),
        "isotimestamp": iso_s(ts),
        "object": "Microsoft RDP",
        "timestamp": ts,
        "username": u.name,
    })
}
