//! OCSF 1.7.0 for the inventory and its changes. Pure.
//!
//! Classes: users and admins → User Inventory Info (5003); phones and trusted endpoints →
//! Device Inventory Info (5001); applications and the account summary → Cloud Resources
//! Inventory Info (5023), the closest class: a Duo application is a resource of the Duo
//! (SaaS) tenant, listed in `resources[]` with its key and type, and the summary is the tenant
//! itself as one resource whose counts OCSF has no attribute for (they go to `unmapped`).
//! Changes → Account Change (3001) and Group Management (3006). Every Duo field no attribute
//! took goes to `unmapped`, so nothing is lost; the record arrives with its secrets dropped.

use serde_json::{json, Map, Value};

use crate::inventory::diff::{ChangeClass, ChangeEvent};
use crate::inventory::{Entity, InventoryKind};

use super::super::inventory_text::{change_event_id, changes_json, collector, inventory_event_id};
use super::VERSION;

/// What every inventory event of one snapshot shares.
#[derive(Debug, Clone, Copy)]
pub struct InventoryCtx<'a> {
    pub integration: &'a str,
    pub account_id: Option<&'a str>,
    /// The snapshot's time, epoch ms (the event `time`).
    pub snapshot_ms: i64,
    /// RFC 3339 of the same.
    pub collected_at: &'a str,
}

fn metadata(ctx: &InventoryCtx<'_>, uid: &str, log_name: &str) -> Value {
    let mut m = json!({
        "version": VERSION,
        "uid": uid,
        "product": {"name": "Duo", "vendor_name": "Cisco"},
        "log_name": log_name,
        "log_provider": "Duo Admin API",
    });
    if let Some(a) = ctx.account_id {
        m["tenant_uid"] = json!(a);
    }
    m
}

fn base(
    ctx: &InventoryCtx<'_>,
    class_uid: u32,
    activity_id: u32,
    uid: &str,
    log: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("class_uid".into(), json!(class_uid));
    m.insert("category_uid".into(), json!(class_uid / 1000));
    m.insert("activity_id".into(), json!(activity_id));
    m.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    m.insert("severity_id".into(), json!(1));
    m.insert("time".into(), json!(ctx.snapshot_ms));
    m.insert("metadata".into(), metadata(ctx, uid, log));
    m
}

/// Takes a member out of the record (so it is not repeated in `unmapped`).
/// A null stays in the record, so `unmapped` keeps every leaf Duo sent.
fn take(rec: &mut Map<String, Value>, key: &str) -> Option<Value> {
    match rec.get(key) {
        None | Some(Value::Null) => None,
        Some(_) => rec.remove(key),
    }
}

fn take_str(rec: &mut Map<String, Value>, key: &str) -> Option<String> {
    match take(rec, key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::String(_)) | None => None,
        Some(other) => {
            rec.insert(key.into(), other);
            None
        }
    }
}

fn take_secs_as_ms(rec: &mut Map<String, Value>, key: &str) -> Option<i64> {
    let v = rec.get(key)?.as_i64()?;
    rec.remove(key);
    v.checked_mul(1000)
}

/// Duo's `YYYY-MM-DDTHH:MM:SS` (no zone, UTC) as epoch ms.
fn iso_ms(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// The inventory event of one entity.
pub fn inventory_event(ctx: &InventoryCtx<'_>, kind: InventoryKind, entity: &Entity) -> Value {
    let event_id = inventory_event_id(ctx, kind, entity);
    let mut rec = entity.record.clone();
    let mut out = match kind {
        InventoryKind::Users | InventoryKind::Admins => {
            let mut out = base(ctx, 5003, 1, &event_id, kind.as_str());
            out.insert("user".into(), user_object(kind, &entity.id, &mut rec));
            out
        }
        InventoryKind::Phones | InventoryKind::Endpoints => {
            let mut out = base(ctx, 5001, 1, &event_id, kind.as_str());
            out.insert("device".into(), device_object(kind, &entity.id, &mut rec));
            out
        }
        InventoryKind::Integrations | InventoryKind::Summary => {
            let mut out = base(ctx, 5023, 1, &event_id, kind.as_str());
            let mut res = json!({"uid": entity.id, "type": if kind == InventoryKind::Summary {
                "Duo account"
            } else {
                "Duo application"
            }});
            if let Some(name) = take_str(&mut rec, "name") {
                res["name"] = json!(name);
            }
            if let Some(t) = take_str(&mut rec, "type") {
                res["labels"] = json!([t]);
            }
            rec.remove("integration_key");
            out.insert("resources".into(), json!([res]));
            out
        }
    };
    let mut unmapped = rec;
    unmapped.insert("_duo_collector".into(), collector(ctx, kind, &event_id));
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

fn user_object(kind: InventoryKind, id: &str, rec: &mut Map<String, Value>) -> Value {
    let mut u = json!({"uid": id});
    rec.remove(if kind == InventoryKind::Users {
        "user_id"
    } else {
        "admin_id"
    });
    let name_key = if kind == InventoryKind::Users {
        "username"
    } else {
        "email"
    };
    if let Some(n) = take_str(rec, name_key) {
        u["name"] = json!(n);
    }
    let full_key = if kind == InventoryKind::Users {
        "realname"
    } else {
        "name"
    };
    if let Some(n) = take_str(rec, full_key) {
        u["full_name"] = json!(n);
    }
    if kind == InventoryKind::Users {
        if let Some(e) = take_str(rec, "email") {
            u["email_addr"] = json!(e);
        }
        if let Some(Value::Bool(b)) = rec.get("is_enrolled").cloned() {
            rec.remove("is_enrolled");
            u["has_mfa"] = json!(b);
        }
        u["type_id"] = json!(1);
        if let Some(Value::Array(groups)) = take(rec, "groups") {
            let gs: Vec<Value> = groups
                .iter()
                .filter_map(Value::as_object)
                .map(|g| {
                    let mut o = json!({});
                    if let Some(id) = g.get("group_id").and_then(Value::as_str) {
                        o["uid"] = json!(id);
                    }
                    if let Some(n) = g.get("name").and_then(Value::as_str) {
                        o["name"] = json!(n);
                    }
                    o
                })
                .collect();
            if !gs.is_empty() {
                u["groups"] = Value::Array(gs);
            }
            // The groups' own settings (push/sms enabled, status) stay with the record.
            rec.insert("groups".into(), Value::Array(groups));
        }
    } else {
        u["email_addr"] = u["name"].clone();
        u["type_id"] = json!(2);
        if let Some(p) = take_str(rec, "phone") {
            u["phone_number"] = json!(p);
        }
    }
    let mut person = Map::new();
    if let Some(t) = take_secs_as_ms(rec, "created") {
        person.insert("created_time".into(), json!(t));
    }
    if let Some(t) = take_secs_as_ms(rec, "last_login") {
        person.insert("last_login_time".into(), json!(t));
    }
    if !person.is_empty() {
        u["ldap_person"] = Value::Object(person);
    }
    u
}

fn device_object(kind: InventoryKind, id: &str, rec: &mut Map<String, Value>) -> Value {
    let mut d = json!({"uid": id});
    if kind == InventoryKind::Phones {
        rec.remove("phone_id");
        // pydantic-ocsf's 1.7.0 `device.type_id` takes only 0 (Unknown) and 99 (Other): a
        // phone is Other with Duo's own word (Mobile, Landline) as `type`.
        match take_str(rec, "type") {
            Some(t) => {
                d["type_id"] = json!(99);
                d["type"] = json!(t);
            }
            None => d["type_id"] = json!(0),
        }
        if let Some(n) = take_str(rec, "number") {
            d["name"] = json!(n);
        }
        if let Some(m) = take_str(rec, "model") {
            d["model"] = json!(m);
        }
        if let Some(t) = rec
            .get("last_seen")
            .and_then(Value::as_str)
            .and_then(iso_ms)
        {
            rec.remove("last_seen");
            d["last_seen_time"] = json!(t);
        }
        if let Some(Value::Array(users)) = rec.get("users") {
            d["is_shared"] = json!(users.len() > 1);
        }
    } else {
        rec.remove("epkey");
        if let Some(n) = take_str(rec, "device_name") {
            d["hostname"] = json!(n.clone());
            d["name"] = json!(n);
        }
        let mobile = matches!(
            rec.get("os_family").and_then(Value::as_str),
            Some("iOS" | "Android")
        );
        if mobile {
            d["type_id"] = json!(99);
            d["type"] = json!("Mobile");
        } else {
            d["type_id"] = json!(0);
        }
        if let Some(m) = take_str(rec, "model") {
            d["model"] = json!(m);
        }
        if let Some(Value::Bool(t)) = rec.get("trusted_endpoint").cloned() {
            rec.remove("trusted_endpoint");
            d["is_trusted"] = json!(t);
        }
        if let Some(t) = take_secs_as_ms(rec, "last_updated") {
            d["last_seen_time"] = json!(t);
        }
    }
    d
}

/// The change event of [`crate::inventory::diff`] as OCSF 3001 / 3006. `None` for
/// [`ChangeClass::Inventory`], which the integrator renders as the entity's inventory class.
pub fn change_event(ctx: &InventoryCtx<'_>, change: &ChangeEvent) -> Option<Value> {
    let class_uid = change.class.class_uid()?;
    let event_id = change_event_id(ctx, change);
    let mut out = base(
        ctx,
        class_uid,
        change.activity_id,
        &event_id,
        change.kind.as_str(),
    );
    out.insert(
        "severity_id".into(),
        json!(if change.activity_id == 99 { 1 } else { 2 }),
    );
    if change.activity_id == 99 {
        out.insert("activity_name".into(), json!(change.activity_name));
    }
    let mut user = json!({"uid": change.entity_id, "name": change.entity_name});
    user["type_id"] = json!(if change.kind == InventoryKind::Admins {
        2
    } else {
        1
    });
    if change.class == ChangeClass::GroupManagement {
        let (gid, gname) = change.group.clone().unwrap_or_default();
        out.insert("group".into(), json!({"uid": gid, "name": gname}));
    } else {
        out.insert("user_result".into(), user.clone());
    }
    out.insert("user".into(), user);
    let changes = changes_json(change);
    out.insert(
        "unmapped".into(),
        json!({
            "changes": changes,
            "_duo_collector": collector(ctx, change.kind, &event_id),
        }),
    );
    Some(Value::Object(out))
}

/// A device, application or summary change ([`ChangeClass::Inventory`]) in the entity's own
/// inventory class (5001 or 5023), activity Other with "Created", "Changed" or "Deleted" as its
/// name: OCSF has no change class for them, and the inventory class is where a consumer already
/// keeps these entities. The fields that changed go to `unmapped.changes`.
pub fn inventory_change_event(ctx: &InventoryCtx<'_>, change: &ChangeEvent) -> Value {
    let event_id = change_event_id(ctx, change);
    let kind = change.kind;
    let class_uid = match kind {
        InventoryKind::Phones | InventoryKind::Endpoints => 5001,
        _ => 5023,
    };
    let mut out = base(ctx, class_uid, 99, &event_id, kind.as_str());
    out.insert("activity_name".into(), json!(change.activity_name));
    let mut object = json!({"uid": change.entity_id});
    if !change.entity_name.is_empty() {
        object["name"] = json!(change.entity_name);
    }
    if class_uid == 5001 {
        object["type_id"] = json!(0);
        out.insert("device".into(), object);
    } else {
        out.insert("resources".into(), json!([object]));
    }
    out.insert(
        "unmapped".into(),
        json!({
            "changes": changes_json(change),
            "_duo_collector": collector(ctx, kind, &event_id),
        }),
    );
    Value::Object(out)
}
