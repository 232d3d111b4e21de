//! Raw and CEF for the inventory and its changes, as for logs. Pure.
//!
//! Raw: the Duo record (secrets dropped) plus one `_duo_collector` object. CEF:
//! `CEF:0|Cisco|Duo|<version>|inventory:<kind>|…` for an entity and
//! `…|change:<kind>:<activity>|…` for a change, the record or the changed fields in `msg`
//! as compact JSON.

use serde_json::{json, Value};

use super::cef::{push_ext_value, push_header};
use super::InventoryCtx;
use crate::inventory::diff::ChangeEvent;
use crate::inventory::{Entity, InventoryKind};

pub(super) fn collector(ctx: &InventoryCtx<'_>, kind: InventoryKind, event_id: &str) -> Value {
    json!({
        "integration": ctx.integration,
        "account_id": ctx.account_id,
        "inventory": kind.as_str(),
        "collected_at": ctx.collected_at,
        "event_id": event_id,
    })
}

/// The event id of an entity's state in one snapshot (the same in every format).
pub fn inventory_event_id(ctx: &InventoryCtx<'_>, kind: InventoryKind, entity: &Entity) -> String {
    format!("{}:{}:{}", kind.as_str(), entity.id, ctx.snapshot_ms)
}

pub fn inventory_raw(ctx: &InventoryCtx<'_>, kind: InventoryKind, entity: &Entity) -> Value {
    let mut rec = entity.record.clone();
    let id = inventory_event_id(ctx, kind, entity);
    rec.insert("_duo_collector".into(), collector(ctx, kind, &id));
    Value::Object(rec)
}

fn ext(out: &mut Vec<u8>, key: &str, value: &str) {
    if out.last() != Some(&b'|') {
        out.push(b' ');
    }
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    push_ext_value(out, value);
}

fn header(out: &mut Vec<u8>, class: &str, name: &str, severity: u8) {
    out.extend_from_slice(b"CEF:0|Cisco|Duo|");
    push_header(out, env!("CARGO_PKG_VERSION"));
    out.push(b'|');
    push_header(out, class);
    out.push(b'|');
    push_header(out, name);
    out.push(b'|');
    out.extend_from_slice(severity.to_string().as_bytes());
    out.push(b'|');
}

fn common(out: &mut Vec<u8>, ctx: &InventoryCtx<'_>, id: &str) {
    ext(out, "rt", &ctx.snapshot_ms.to_string());
    ext(out, "externalId", id);
    ext(out, "cs5Label", "integration");
    ext(out, "cs5", ctx.integration);
    if let Some(a) = ctx.account_id {
        ext(out, "cs6Label", "accountId");
        ext(out, "cs6", a);
    }
}

pub fn inventory_cef(ctx: &InventoryCtx<'_>, kind: InventoryKind, entity: &Entity) -> String {
    let mut out = Vec::new();
    let id = inventory_event_id(ctx, kind, entity);
    header(
        &mut out,
        &format!("inventory:{}", kind.as_str()),
        &format!("Duo {} inventory", kind.as_str()),
        1,
    );
    common(&mut out, ctx, &id);
    ext(&mut out, "cat", kind.as_str());
    ext(&mut out, "cs1Label", "entityId");
    ext(&mut out, "cs1", &entity.id);
    let name = ["username", "name", "device_name", "number"]
        .iter()
        .find_map(|k| entity.record.get(*k).and_then(Value::as_str));
    if let Some(n) = name {
        ext(&mut out, "cs2Label", "entityName");
        ext(&mut out, "cs2", n);
    }
    ext(
        &mut out,
        "msg",
        &Value::Object(entity.record.clone()).to_string(),
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The event id of a change (the same in every format).
pub fn change_event_id(ctx: &InventoryCtx<'_>, change: &ChangeEvent) -> String {
    format!(
        "change:{}:{}:{:?}:{}:{}",
        change.kind.as_str(),
        change.entity_id,
        change.class,
        change.activity_id,
        ctx.snapshot_ms
    )
}

/// The changed fields, before and after, as every format lists them.
pub(super) fn changes_json(change: &ChangeEvent) -> Value {
    change
        .changes
        .iter()
        .map(|c| json!({"field": c.field, "before": c.before, "after": c.after}))
        .collect()
}

pub fn inventory_change_raw(ctx: &InventoryCtx<'_>, change: &ChangeEvent) -> Value {
    let id = change_event_id(ctx, change);
    json!({
        "entity_id": change.entity_id,
        "entity_name": change.entity_name,
        "class": format!("{:?}", change.class),
        "activity_id": change.activity_id,
        "activity": change.activity_name,
        "group": change.group.as_ref().map(|(id, name)| json!({"group_id": id, "name": name})),
        "changes": changes_json(change),
        "_duo_collector": collector(ctx, change.kind, &id),
    })
}

pub fn inventory_change_cef(ctx: &InventoryCtx<'_>, change: &ChangeEvent) -> String {
    let mut out = Vec::new();
    let id = change_event_id(ctx, change);
    header(
        &mut out,
        &format!("change:{}:{}", change.kind.as_str(), change.activity_id),
        &format!("Duo {} {}", change.kind.as_str(), change.activity_name),
        3,
    );
    common(&mut out, ctx, &id);
    ext(&mut out, "act", change.activity_name);
    ext(&mut out, "duid", &change.entity_id);
    ext(&mut out, "duser", &change.entity_name);
    if let Some((gid, gname)) = &change.group {
        ext(&mut out, "cs3Label", "groupId");
        ext(&mut out, "cs3", gid);
        ext(&mut out, "cs4Label", "groupName");
        ext(&mut out, "cs4", gname);
    }
    ext(&mut out, "msg", &changes_json(change).to_string());
    String::from_utf8_lossy(&out).into_owned()
}
