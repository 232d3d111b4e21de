//! Authentication logs → Authentication (3002); Trust Monitor → Detection Finding (2004).

use super::{endpoint, head, location, status, unmapped, user, Head};
use crate::event::Event;
use crate::normalize::json::W;
use crate::normalize::record::Rec;
use crate::normalize::Ctx;

/// OCSF `auth_factor.factor_type_id` for a Duo factor; `None` when no factor was used.
fn factor_type(factor: &str) -> Option<u32> {
    let f = factor.to_ascii_lowercase();
    Some(match f.as_str() {
        "not_available" | "remembered_device" | "trusted_network" | "" => return None,
        "duo_push" | "trusted_mobile_authenticator" => 5,
        "phone_call" => 3,
        "sms_passcode" | "sms_refresh" => 1,
        "hardware_token" | "digipass_go_7_token" => 6,
        "duo_mobile_passcode" | "passcode" | "yubikey_code" => 7,
        "u2f_token" => 9,
        _ if f.starts_with("webauthn") => 10,
        _ => 99,
    })
}

pub(super) fn authentication(ctx: &Ctx<'_>, event: &Event, rec: &mut Rec<'_>, w: &mut W<'_>) {
    let result = rec.str("result");
    let enrollment = rec.peek_str("event_type").as_deref() == Some("enrollment");
    let severity_id = match result.as_deref() {
        Some("denied") => 3,
        Some("fraud") => 4,
        _ => 1,
    };
    let original = rec.text("isotimestamp");
    if rec.peek_str("txid").as_deref() == Some(event.event_id.as_str()) {
        rec.mark("txid");
    }
    let h = Head {
        class_uid: 3002,
        // A Duo authentication is a logon whatever its outcome (never Logoff for a denial).
        activity_id: if enrollment { 99 } else { 1 },
        activity_name: Some("Enrollment"),
        severity_id,
        event_code: None,
    };
    head(w, ctx, event, &h, original.as_deref(), None);
    auth_body(w, rec, result.as_deref());
    unmapped(w, ctx, event, rec, |_| {});
}

/// The Authentication attributes of a Duo auth record (also used for Trust Monitor's
/// surfaced authentication).
fn auth_body(w: &mut W<'_>, rec: &mut Rec<'_>, result: Option<&str>) {
    let reason = rec.text("reason");
    let factor = rec.peek_str("factor");
    let email = rec.text("email");
    let app_name;
    let app_key;
    match rec.child("application") {
        Some(app) => {
            app_name = app.text("name");
            app_key = app.text("key");
        }
        None => {
            app_name = None;
            app_key = None;
        }
    }
    w.str(
        "message",
        &format!(
            "Duo {} {} for {}",
            rec.peek_str("event_type")
                .as_deref()
                .unwrap_or("authentication"),
            result.unwrap_or("(no result)"),
            rec.child("user")
                .and_then(|u| u.peek_str("name"))
                .as_deref()
                .unwrap_or("(unknown user)")
        ),
    );
    status(w, result, reason.as_deref());
    user(w, "user", rec.child("user"), email.as_deref(), 1);
    w.obj("service", |w| {
        w.opt_str("name", app_name.as_deref());
        w.opt_str("uid", app_key.as_deref());
    });
    endpoint(w, "src_endpoint", rec.child("access_device"));
    let factor_id = factor.as_deref().and_then(factor_type);
    if let (Some(f), Some(id)) = (factor.as_deref(), factor_id) {
        w.arr("auth_factors", |w| {
            w.item_obj(|w| {
                w.num("factor_type_id", i64::from(id));
                if id == 99 {
                    w.str("factor_type", f);
                }
                w.str("provider", "Duo");
                if let Some(dev) = rec.child("auth_device") {
                    let name = dev.text("name");
                    let uid = dev.text("key");
                    w.obj("device", |w| {
                        w.num("type_id", 0);
                        w.opt_str("name", name.as_deref());
                        w.opt_str("uid", uid.as_deref());
                        super::ip_fields(w, dev, "ip", super::Port::Unmapped);
                        location(w, "location", dev.child("location"));
                    });
                }
            });
        });
    }
    w.bool(
        "is_mfa",
        factor.as_deref().is_some_and(|f| f != "not_available"),
    );
    w.num("auth_protocol_id", 99);
    w.str("auth_protocol", "Duo");
}

pub(super) fn trust_monitor(ctx: &Ctx<'_>, event: &Event, rec: &mut Rec<'_>, w: &mut W<'_>) {
    let priority = rec.bool("priority_event");
    let kind = rec.peek_str("type");
    let state_new = rec.peek_str("state").as_deref() == Some("new");
    let sekey = rec.text("sekey");
    let created = rec.int("surfaced_timestamp");
    let uri = rec.text("triage_event_uri");
    let explanations = rec.peek_array("explanations");
    let mut types = Vec::new();
    let mut summary = None;
    for e in &explanations {
        if let Some(mut e) = Rec::parse(e.get()) {
            if let Some(t) = e.peek_str("type") {
                types.push(t.into_owned());
            }
            if summary.is_none() {
                summary = e.str("summary").map(|s| s.into_owned());
            }
        }
    }
    let surfaced_txid = rec
        .child("surfaced_auth")
        .and_then(|a| a.text("txid"))
        .map(|s| s.into_owned());
    let h = Head {
        class_uid: 2004,
        activity_id: 1,
        activity_name: None,
        severity_id: if priority == Some(true) { 4 } else { 3 },
        event_code: None,
    };
    head(w, ctx, event, &h, None, surfaced_txid.as_deref());
    w.str(
        "message",
        &format!(
            "Duo Trust Monitor {} event",
            kind.as_deref().unwrap_or("(unknown)")
        ),
    );
    if state_new {
        w.num("status_id", 1);
    }
    if let Some(p) = priority {
        w.bool("is_alert", p);
    }
    w.obj("finding_info", |w| {
        w.str("uid", sekey.as_deref().unwrap_or(&event.event_id));
        w.str(
            "title",
            &format!("Duo Trust Monitor: {}", kind.as_deref().unwrap_or("event")),
        );
        w.opt_str("desc", summary.as_deref());
        if let Some(t) = created {
            w.num("created_time", t);
        }
        w.opt_str("src_url", uri.as_deref());
        if !types.is_empty() {
            w.arr("types", |w| {
                for t in &types {
                    w.item_str(t);
                }
            });
        }
        if let Some(txid) = &surfaced_txid {
            w.arr("related_events", |w| {
                w.item_obj(|w| {
                    w.str("uid", txid);
                    w.num("type_uid", 300_201);
                })
            });
        }
    });
    w.arr("evidences", |w| {
        if let Some(auth) = rec.child("surfaced_auth") {
            let email = auth.text("email");
            w.item_obj(|w| {
                user(w, "user", auth.child("user"), email.as_deref(), 1);
                endpoint(w, "src_endpoint", auth.child("access_device"));
            });
        }
        if rec.peek("enabled_for").is_some() || rec.peek("enabled_by").is_some() {
            w.item_obj(|w| {
                if rec.peek("enabled_for").is_some() {
                    user(w, "user", rec.child("enabled_for"), None, 1);
                }
                if rec.peek("enabled_by").is_some() {
                    w.obj("actor", |w| {
                        user(w, "user", rec.child("enabled_by"), None, 2)
                    });
                }
            });
        }
    });
    unmapped(w, ctx, event, rec, |_| {});
}
