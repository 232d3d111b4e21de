//! Administrator and activity logs (by action), offline enrollment, telephony.

use super::{admin_type, endpoint, head, status, unmapped, user_fields, Head};
use crate::event::Event;
use crate::normalize::ip::split_ip;
use crate::normalize::json::W;
use crate::normalize::record::{embedded_object, Rec};
use crate::normalize::Ctx;

/// The OCSF class of a Duo admin action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Authentication (3002): admin logins.
    Login { failed: bool },
    /// Account Change (3001): users, admins, bypass codes.
    Account,
    /// Group Management (3006).
    Group,
    /// Entity Management (3004): integrations, phones, policies, tokens …
    Entity,
    /// API Activity (6003) or, without a source address, Base Event (0).
    Other,
}

pub(crate) fn classify(action: &str) -> Class {
    let a = action.to_ascii_lowercase();
    if a == "admin_login" {
        return Class::Login { failed: false };
    }
    if a.ends_with("_login_error") || a == "admin_2fa_error" || a == "admin_login_fail" {
        return Class::Login { failed: true };
    }
    let prefix = a.split('_').next().unwrap_or("");
    match prefix {
        "user" | "admin" | "bypass" => Class::Account,
        "group" => Class::Group,
        "integration" | "phone" | "policy" | "hardtoken" | "directory" | "activation"
        | "endpoint" | "webauthnkey" | "webauthncredential" | "u2ftoken" | "desktoptoken"
        | "token" | "o2fa" | "trusted" | "settings" | "setting" | "customer" | "account" => {
            Class::Entity
        }
        _ => Class::Other,
    }
}

/// Account Change (3001) activities by the words of a Duo action, first match wins.
const ACCOUNT_ACTIVITIES: &[(&[&str], u32)] = &[
    (&["reset_password", "password_reset"], 4),
    (&["create"], 1),
    (&["delete"], 6),
    (&["enable"], 2),
    (&["disable"], 5),
    (&["unlock"], 12),
    (&["lock"], 9),
];

/// Group Management (3006) activities.
const GROUP_ACTIVITIES: &[(&[&str], u32)] = &[(&["create"], 6), (&["delete"], 5)];

/// Entity Management (3004) activities; "deprovision" before "provision", "deactivat" before
/// "activat", as the longer word contains the shorter.
const ENTITY_ACTIVITIES: &[(&[&str], u32)] = &[
    (&["deprovision", "unenroll"], 7),
    (&["provision", "enroll"], 6),
    (&["create"], 1),
    (&["view", "read"], 2),
    (&["update"], 3),
    (&["delete"], 4),
    (&["deactivat"], 11),
    (&["activat"], 10),
    (&["disable"], 9),
    (&["enable"], 8),
];

fn activity_for(class: Class, action: &str) -> u32 {
    let a = action.to_ascii_lowercase();
    let table = match class {
        Class::Login { .. } => return 1,
        Class::Other => return 99,
        Class::Account => ACCOUNT_ACTIVITIES,
        Class::Group => GROUP_ACTIVITIES,
        Class::Entity => ENTITY_ACTIVITIES,
    };
    table
        .iter()
        .find(|(words, _)| words.iter().any(|w| a.contains(w)))
        .map_or(99, |&(_, id)| id)
}

/// `(type_id, type)` of the managed entity an action is about.
fn entity_type(action: &str) -> (u32, &'static str) {
    match action.split('_').next().unwrap_or("") {
        "phone" | "hardtoken" | "endpoint" | "webauthnkey" | "u2ftoken" | "desktoptoken"
        | "token" => (1, "Device"),
        "policy" => (5, "Policy"),
        "o2fa" | "user" => (2, "User"),
        "integration" => (99, "Integration"),
        "directory" => (99, "Directory"),
        "activation" => (99, "Duo Mobile activation"),
        _ => (99, "Other"),
    }
}

/// `(type_id, type)` of the managed entity from an Activity `target.type`.
fn target_entity_type(target_type: &str) -> (u32, &str) {
    match target_type {
        "phone"
        | "hardtoken"
        | "u2f_token"
        | "desktoptoken"
        | "device_registration"
        | "computer_registration" => (1, "Device"),
        "user" | "admin" => (2, "User"),
        "group" => (3, "Group"),
        "policy" => (5, "Policy"),
        "" => (99, "Other"),
        other => (99, other),
    }
}

/// Whether an Activity `target.type` names a person's account (an end user or an
/// administrator); credentials, devices and integrations are no users.
pub(crate) fn is_user_target(target_type: Option<&str>) -> bool {
    matches!(target_type, Some("user" | "admin"))
}

/// Who did it, what it was done to, where from.
struct Action<'s> {
    name: &'s str,
    actor_name: Option<&'s str>,
    actor_uid: Option<&'s str>,
    actor_type: u8,
    target_name: Option<&'s str>,
    target_uid: Option<&'s str>,
    /// Activity's `target.type`; `None` for logs without one (the action says what it is).
    target_type: Option<&'s str>,
    src_ip: Option<&'s str>,
    src_port: Option<u16>,
    failed: bool,
}

/// Writes the class-specific body for an admin action; returns the head.
fn class_head<'s>(a: &Action<'s>) -> (Class, Head<'s>) {
    let mut class = classify(a.name);
    // An account action whose target is no account (a credential, a device) manages an entity.
    if class == Class::Account && a.target_type.is_some() && !is_user_target(a.target_type) {
        class = Class::Entity;
    }
    if class != Class::Other && !matches!(class, Class::Login { .. }) && a.target_name.is_none() {
        class = Class::Other;
    }
    let (class_uid, activity_id) = match class {
        Class::Login { .. } => (3002, 1),
        Class::Account => (3001, activity_for(class, a.name)),
        Class::Group => (3006, activity_for(class, a.name)),
        Class::Entity => (3004, activity_for(class, a.name)),
        Class::Other if a.src_ip.is_some() => (6003, api_activity(a.name)),
        Class::Other => (0, 99),
    };
    let failed = a.failed || matches!(class, Class::Login { failed: true });
    (
        class,
        Head {
            class_uid,
            activity_id,
            activity_name: None,
            severity_id: if failed { 3 } else { 1 },
            event_code: action_code(a.name),
        },
    )
}

/// `None` for the placeholder of a record without an action.
fn action_code(name: &str) -> Option<&str> {
    (name != "unknown").then_some(name)
}

fn api_activity(action: &str) -> u32 {
    let a = action.to_ascii_lowercase();
    if a.contains("create") || a.contains("add") {
        1
    } else if a.contains("view") || a.contains("read") || a.contains("list") {
        2
    } else if a.contains("update") {
        3
    } else if a.contains("delete") || a.contains("remove") {
        4
    } else {
        99
    }
}

/// The acting admin as a `user` object.
fn acting_user(w: &mut W<'_>, a: &Action<'_>) {
    user_fields(
        w,
        "user",
        a.actor_name,
        a.actor_uid,
        None,
        None,
        a.actor_type,
    );
}

fn actor(w: &mut W<'_>, a: &Action<'_>, app: Option<(Option<&str>, Option<&str>)>) {
    w.obj("actor", |w| {
        if a.actor_name.is_some() || a.actor_uid.is_some() {
            acting_user(w, a);
        }
        if let Some((name, uid)) = app {
            w.opt_str("app_name", name);
            w.opt_str("app_uid", uid);
        }
    });
}

fn src_endpoint(w: &mut W<'_>, ip: &str, port: Option<u16>) {
    w.obj("src_endpoint", |w| {
        w.str("ip", ip);
        if let Some(p) = port {
            w.num("port", i64::from(p));
        }
    });
}

fn body(w: &mut W<'_>, class: Class, a: &Action<'_>, src: impl FnOnce(&mut W<'_>)) {
    match class {
        Class::Login { .. } => {
            acting_user(w, a);
            w.obj("service", |w| w.str("name", "Duo Admin Panel"));
        }
        Class::Account => {
            let type_id = if a.target_type == Some("admin") { 2 } else { 1 };
            user_fields(w, "user", a.target_name, a.target_uid, None, None, type_id);
        }
        Class::Group => w.obj("group", |w| {
            w.opt_str("name", a.target_name);
            w.opt_str("uid", a.target_uid);
        }),
        Class::Entity => {
            let (type_id, label) = match a.target_type {
                Some(t) => target_entity_type(t),
                None => entity_type(a.name),
            };
            w.obj("entity", |w| {
                w.opt_str("name", a.target_name);
                w.opt_str("uid", a.target_uid);
                w.num("type_id", i64::from(type_id));
                if type_id == 99 {
                    w.str("type", label);
                }
            });
        }
        Class::Other => {
            if let Some(ip) = a.src_ip {
                w.obj("api", |w| {
                    w.str("operation", a.name);
                    w.obj("service", |w| w.str("name", "Duo Admin API"));
                });
                src_endpoint(w, ip, a.src_port);
            }
        }
    }
    src(w);
}

pub(super) fn administrator(ctx: &Ctx<'_>, event: &Event, rec: &mut Rec<'_>, w: &mut W<'_>) {
    let action = rec.text("action");
    let action_name = action.as_deref().unwrap_or("unknown");
    let username = rec.peek_str("username").filter(|s| !s.is_empty());
    let object = rec.peek_str("object").filter(|s| !s.is_empty());
    let original = rec.text("isotimestamp");
    let description = rec.str("description");
    let parsed = description.as_deref().and_then(embedded_object);
    let desc = parsed.and_then(Rec::parse);
    let ip_text = desc.as_ref().and_then(|d| d.peek_str("ip_address"));
    let src = ip_text.as_deref().and_then(split_ip);
    let error = desc.as_ref().and_then(|d| d.peek_str("error"));
    let a = Action {
        name: action_name,
        actor_name: username.as_deref(),
        actor_uid: None,
        actor_type: username.as_deref().map_or(2, admin_type),
        target_name: object.as_deref(),
        target_uid: None,
        target_type: None,
        src_ip: src.map(|hp| hp.ip),
        src_port: src.and_then(|hp| hp.port),
        failed: false,
    };
    let (class, mut h) = class_head(&a);
    if h.activity_id == 99 {
        h.activity_name = Some(action_name);
    }
    // Consumed only where the class has a place for them.
    if h.class_uid != 0 && username.is_some() {
        rec.mark("username");
    }
    if matches!(class, Class::Account | Class::Group | Class::Entity) && object.is_some() {
        rec.mark("object");
    }
    head(w, ctx, event, &h, original.as_deref(), None);
    w.opt_str("message", description.as_deref());
    if let Class::Login { failed } = class {
        status(
            w,
            Some(if failed { "failure" } else { "success" }),
            error.as_deref(),
        );
    }
    if !matches!(class, Class::Login { .. }) && h.class_uid != 0 {
        actor(w, &a, None);
    }
    body(w, class, &a, |w| {
        if matches!(
            class,
            Class::Login { .. } | Class::Account | Class::Group | Class::Entity
        ) {
            if let Some(ip) = a.src_ip {
                src_endpoint(w, ip, a.src_port);
            }
        }
    });
    unmapped(w, ctx, event, rec, |w| {
        if let Some(p) = parsed {
            w.raw_text("description", p);
        }
    });
}

pub(super) fn activity<'a>(ctx: &Ctx<'_>, event: &Event, rec: &mut Rec<'a>, w: &mut W<'_>) {
    // `action` is `{name, details}` (or, in older samples, a plain string).
    let action = match rec.peek_str("action") {
        Some(_) => rec.text("action"),
        None => rec.child("action").and_then(|a| a.text("name")),
    };
    let action_name = action.as_deref().unwrap_or("unknown");
    let nonempty = |s: Option<std::borrow::Cow<'a, str>>| s.filter(|s| !s.is_empty());
    let (actor_name, actor_uid, actor_kind) = match rec.child("actor") {
        Some(x) => (
            nonempty(x.peek_str("name")),
            nonempty(x.peek_str("key")),
            x.peek_str("type"),
        ),
        None => (None, None, None),
    };
    let (target_name, target_uid, target_type) = match rec.child("target") {
        Some(t) => (
            nonempty(t.peek_str("name")),
            nonempty(t.peek_str("key")),
            nonempty(t.peek_str("type")),
        ),
        None => (None, None, None),
    };
    // JSON documents sent as strings; passed through (in `unmapped`) as objects.
    for key in ["actor", "target", "old_target"] {
        if let Some(x) = rec.child(key) {
            x.parse_embedded("details");
        }
    }
    let (app_name, app_uid) = match rec.child("application") {
        Some(x) => (nonempty(x.peek_str("name")), nonempty(x.peek_str("key"))),
        None => (None, None),
    };
    let result = rec.child("outcome").and_then(|o| o.text("result"));
    let original = rec.text("ts");
    if rec.peek_str("activity_id").as_deref() == Some(event.event_id.as_str()) {
        rec.mark("activity_id");
    }
    let failed = result
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case("failure"));
    let src_ip = rec
        .child("access_device")
        .and_then(|d| match d.peek_str("ip") {
            Some(s) => Some(s.into_owned()),
            None => d
                .child("ip")
                .and_then(|i| i.peek_str("address"))
                .map(|s| s.into_owned()),
        });
    let src = src_ip.as_deref().and_then(split_ip);
    let a = Action {
        name: action_name,
        actor_name: actor_name.as_deref(),
        actor_uid: actor_uid.as_deref(),
        actor_type: match actor_kind.as_deref() {
            Some("admin") => 2,
            Some("user") => 1,
            Some("system") => 3,
            Some("api") | Some("integration") => 4,
            _ => 0,
        },
        target_name: target_name.as_deref(),
        target_uid: target_uid.as_deref(),
        // Without a type the target is no account (Activity always sends one).
        target_type: Some(target_type.as_deref().unwrap_or("")),
        src_ip: src.map(|hp| hp.ip),
        src_port: src.and_then(|hp| hp.port),
        failed,
    };
    let (class, mut h) = class_head(&a);
    if h.activity_id == 99 {
        h.activity_name = Some(action_name);
    }
    let class = if matches!(class, Class::Login { .. }) && failed {
        Class::Login { failed: true }
    } else {
        class
    };
    // Consumed only where the class has a place for them.
    let mut mark = |key: &str, name: bool, uid: bool| {
        if let Some(x) = rec.child(key) {
            if name {
                x.mark("name");
            }
            if uid {
                x.mark("key");
            }
        }
    };
    if h.class_uid != 0 {
        mark("actor", actor_name.is_some(), actor_uid.is_some());
        mark("application", app_name.is_some(), app_uid.is_some());
    }
    if matches!(class, Class::Account | Class::Group | Class::Entity) {
        mark("target", target_name.is_some(), target_uid.is_some());
        if class == Class::Entity {
            if let Some(t) = rec.child("target") {
                // Written as it came in `entity.type` when no type id names it.
                if t.peek_str("type")
                    .is_some_and(|t| target_entity_type(&t) == (99, &t))
                {
                    t.mark("type");
                }
            }
        }
    }
    head(w, ctx, event, &h, original.as_deref(), None);
    status(w, result.as_deref(), None);
    if !matches!(class, Class::Login { .. }) && h.class_uid != 0 {
        actor(w, &a, Some((app_name.as_deref(), app_uid.as_deref())));
    }
    body(w, class, &a, |w| {
        if matches!(class, Class::Login { .. }) {
            w.obj("service", |w| {
                w.opt_str("name", app_name.as_deref());
                w.opt_str("uid", app_uid.as_deref());
            });
        }
        // API Activity wrote `src_endpoint` itself (the device stays in `unmapped`).
        if !matches!(class, Class::Other) {
            endpoint(w, "src_endpoint", rec.child("access_device"));
        }
    });
    unmapped(w, ctx, event, rec, |_| {});
}

pub(super) fn offline_enrollment(ctx: &Ctx<'_>, event: &Event, rec: &mut Rec<'_>, w: &mut W<'_>) {
    let action = rec.text("action");
    let action_name = action.as_deref().unwrap_or("unknown");
    let username = rec.text("username");
    let original = rec.text("isotimestamp");
    let description = rec.str("description");
    let parsed = description.as_deref().and_then(embedded_object);
    let desc = parsed.and_then(Rec::parse);
    let hostname = desc.as_ref().and_then(|d| d.peek_str("hostname"));
    let agent = desc.as_ref().and_then(|d| d.peek_str("user_agent"));
    let a = action_name.to_ascii_lowercase();
    let activity_id = if a.contains("deprovision") {
        7
    } else if a.contains("provision") || a.contains("enroll") {
        6
    } else {
        99
    };
    let h = Head {
        class_uid: 3004,
        activity_id,
        activity_name: Some(action_name),
        severity_id: 1,
        event_code: action.as_deref(),
    };
    head(w, ctx, event, &h, original.as_deref(), None);
    w.opt_str("message", description.as_deref());
    w.obj("entity", |w| {
        w.str("name", username.as_deref().unwrap_or("unknown"));
        w.num("type_id", 2);
        if username.is_some() {
            user_fields(w, "user", username.as_deref(), None, None, None, 1);
        }
    });
    w.obj("src_endpoint", |w| {
        w.opt_str("hostname", hostname.as_deref());
    });
    w.obj("http_request", |w| {
        w.opt_str("user_agent", agent.as_deref())
    });
    unmapped(w, ctx, event, rec, |w| {
        if let Some(p) = parsed {
            w.raw_text("description", p);
        }
    });
}

pub(super) fn telephony(ctx: &Ctx<'_>, event: &Event, rec: &mut Rec<'_>, w: &mut W<'_>) {
    let kind = rec.peek_str("type");
    let context = rec.peek_str("context");
    let credits = rec.peek_int("credits");
    let original = rec.text("ts").or_else(|| rec.text("isotimestamp"));
    let txid = rec.text("txid");
    if rec.peek_str("telephony_id").as_deref() == Some(event.event_id.as_str()) {
        rec.mark("telephony_id");
    }
    let label = match kind.as_deref() {
        Some("sms") => "SMS",
        Some("phone") => "Phone Call",
        _ => "Telephony",
    };
    let h = Head {
        class_uid: 0,
        activity_id: 99,
        activity_name: Some(label),
        severity_id: 1,
        event_code: None,
    };
    head(w, ctx, event, &h, original.as_deref(), txid.as_deref());
    w.str(
        "message",
        &format!(
            "Duo telephony: {} for {} ({} credit(s))",
            label,
            context.as_deref().unwrap_or("unknown context"),
            credits.map_or("?".to_string(), |c| c.to_string())
        ),
    );
    unmapped(w, ctx, event, rec, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_actions() {
        assert_eq!(classify("admin_login"), Class::Login { failed: false });
        assert_eq!(classify("admin_login_error"), Class::Login { failed: true });
        assert_eq!(classify("user_update"), Class::Account);
        assert_eq!(classify("bypass_create"), Class::Account);
        assert_eq!(classify("group_create"), Class::Group);
        assert_eq!(classify("integration_create"), Class::Entity);
        assert_eq!(classify("phone_delete"), Class::Entity);
        assert_eq!(classify("something_new"), Class::Other);
        assert_eq!(activity_for(Class::Account, "user_delete"), 6);
        assert_eq!(activity_for(Class::Entity, "activation_begin"), 10);
        assert_eq!(activity_for(Class::Entity, "o2fa_user_deprovisioned"), 7);
    }
}
