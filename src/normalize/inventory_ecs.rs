//! ECS for the inventory and its changes. Pure.
//!
//! An entity is a state document (`event.kind: state`), the Duo record under
//! `cisco_duo.<kind>` (secrets already dropped) with the ECS fields a SIEM joins on
//! (`user.*`, `host.*`); a change is an event (`event.kind: event`, `event.category: [iam]`)
//! with the fields that changed under `cisco_duo.change.fields`.

use serde_json::{json, Value};

use crate::inventory::diff::{account, group, ChangeClass, ChangeEvent};
use crate::inventory::{Entity, InventoryKind};

use super::ecs::ECS_VERSION;
use super::inventory_text::{change_event_id, changes_json, collector, inventory_event_id};
use super::InventoryCtx;

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn str_of<'a>(e: &'a Entity, key: &str) -> Option<&'a str> {
    e.record
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The ECS state document of one entity.
pub fn inventory_ecs(ctx: &InventoryCtx<'_>, kind: InventoryKind, entity: &Entity) -> Value {
    let event_id = inventory_event_id(ctx, kind, entity);
    let category = match kind {
        InventoryKind::Users | InventoryKind::Admins => json!(["iam"]),
        InventoryKind::Phones | InventoryKind::Endpoints => json!(["host"]),
        InventoryKind::Integrations | InventoryKind::Summary => json!(["configuration"]),
    };
    let mut doc = json!({
        "@timestamp": timestamp(ctx.snapshot_ms),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "state",
            "category": category,
            "type": ["info"],
            "id": event_id,
            "dataset": format!("cisco_duo.{}", kind.as_str()),
            "module": "cisco_duo",
            "provider": "Duo Admin API",
        },
        "observer": {"vendor": "Cisco", "product": "Duo"},
        "cisco_duo": {
            kind.as_str(): Value::Object(entity.record.clone()),
            "collector": collector(ctx, kind, &event_id),
        },
    });
    if let Some(a) = ctx.account_id {
        doc["organization"] = json!({"id": a});
    }
    match kind {
        InventoryKind::Users => {
            let mut user = json!({"id": entity.id});
            for (ecs, duo) in [
                ("name", "username"),
                ("full_name", "realname"),
                ("email", "email"),
            ] {
                if let Some(v) = str_of(entity, duo) {
                    user[ecs] = json!(v);
                }
            }
            doc["user"] = user;
        }
        InventoryKind::Admins => {
            let mut user = json!({"id": entity.id});
            for (ecs, duo) in [("full_name", "name"), ("email", "email"), ("name", "email")] {
                if let Some(v) = str_of(entity, duo) {
                    user[ecs] = json!(v);
                }
            }
            if let Some(role) = str_of(entity, "role") {
                user["roles"] = json!([role]);
            }
            doc["user"] = user;
        }
        InventoryKind::Phones | InventoryKind::Endpoints => {
            let mut host = json!({"id": entity.id});
            if let Some(n) = str_of(entity, "device_name").or(str_of(entity, "number")) {
                host["name"] = json!(n);
            }
            if let Some(f) = str_of(entity, "os_family").or(str_of(entity, "platform")) {
                host["os"] = json!({"family": f});
                if let Some(v) = str_of(entity, "os_version") {
                    host["os"]["version"] = json!(v);
                }
            }
            doc["host"] = host;
        }
        InventoryKind::Integrations | InventoryKind::Summary => {}
    }
    doc
}

/// The ECS event of one change (any class, the inventory's own included).
pub fn inventory_change_ecs(ctx: &InventoryCtx<'_>, change: &ChangeEvent) -> Value {
    let event_id = change_event_id(ctx, change);
    let (subject, ty) = match (change.class, change.activity_id) {
        (ChangeClass::GroupManagement, group::ADD_USER | group::REMOVE_USER) => ("group", "change"),
        (ChangeClass::AccountChange, account::CREATE) => ("user", "creation"),
        (ChangeClass::AccountChange, account::DELETE) => ("user", "deletion"),
        (ChangeClass::AccountChange, _) => ("user", "change"),
        (ChangeClass::Inventory, _) => ("info", "change"),
        (ChangeClass::GroupManagement, _) => ("group", "change"),
    };
    let category = if change.class == ChangeClass::Inventory {
        json!(["configuration"])
    } else {
        json!(["iam"])
    };
    let fields = changes_json(change);
    let mut doc = json!({
        "@timestamp": timestamp(ctx.snapshot_ms),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "event",
            "category": category,
            "type": [subject, ty],
            "action": change.activity_name,
            "id": event_id,
            "dataset": format!("cisco_duo.{}", change.kind.as_str()),
            "module": "cisco_duo",
            "provider": "Duo Admin API",
        },
        "observer": {"vendor": "Cisco", "product": "Duo"},
        "user": {"id": change.entity_id, "name": change.entity_name},
        "cisco_duo": {
            "change": {"fields": fields, "class": format!("{:?}", change.class)},
            "collector": collector(ctx, change.kind, &event_id),
        },
    });
    if change.class == ChangeClass::Inventory {
        doc.as_object_mut().map(|m| m.remove("user"));
        doc["cisco_duo"]["change"]["entity"] =
            json!({"id": change.entity_id, "name": change.entity_name});
    }
    if let Some((id, name)) = &change.group {
        doc["group"] = json!({"id": id, "name": name});
    }
    if let Some(a) = ctx.account_id {
        doc["organization"] = json!({"id": a});
    }
    doc
}
