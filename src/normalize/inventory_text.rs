//! Raw and CEF for the inventory and its changes, as for logs. Pure.
//!
//! Raw: the Duo record (secrets dropped) plus one `_duo_collector` object. CEF:
//! `CEF:0|Cisco|Duo|<version>|inventory:<kind>|…` for an entity and
//! `…|change:<kind>:<activity>|…` for a change, the record or the changed fields in `msg`
//! as compact JSON.

use serde_json::{json, Value};

use super::cef::{push_ext_value, push_header};
use super::filter::remove_path;
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

/// A CEF line being written, leaving out the extension keys a sink excludes (a `…Label` key
/// goes with its value's key, as for logs).
struct CefLine<'e> {
    out: Vec<u8>,
    exclude: &'e [String],
}

impl<'e> CefLine<'e> {
    fn new(exclude: &'e [String]) -> CefLine<'e> {
        CefLine {
            out: Vec::new(),
            exclude,
        }
    }

    fn ext(&mut self, key: &str, value: &str) {
        let base = key.strip_suffix("Label").unwrap_or(key);
        if self.exclude.iter().any(|x| x == key || x == base) {
            return;
        }
        if self.out.last() != Some(&b'|') {
            self.out.push(b' ');
        }
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
        push_ext_value(&mut self.out, value);
    }

    /// `msg`: the JSON, without the excluded paths (named as in the record, as for raw).
    fn msg(&mut self, mut value: Value) {
        for path in self.exclude {
            remove_path(&mut value, path);
        }
        self.ext("msg", &value.to_string());
    }

    fn into_string(self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
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

fn common(line: &mut CefLine<'_>, ctx: &InventoryCtx<'_>, id: &str) {
    line.ext("rt", &ctx.snapshot_ms.to_string());
    line.ext("externalId", id);
    line.ext("cs5Label", "integration");
    line.ext("cs5", ctx.integration);
    if let Some(a) = ctx.account_id {
        line.ext("cs6Label", "accountId");
        line.ext("cs6", a);
    }
}

pub fn inventory_cef(ctx: &InventoryCtx<'_>, kind: InventoryKind, entity: &Entity) -> String {
    inventory_cef_excluding(ctx, kind, entity, &[])
}

/// [`inventory_cef`] without the extension keys and record paths in `exclude`.
pub fn inventory_cef_excluding(
    ctx: &InventoryCtx<'_>,
    kind: InventoryKind,
    entity: &Entity,
    exclude: &[String],
) -> String {
    let mut line = CefLine::new(exclude);
    let id = inventory_event_id(ctx, kind, entity);
    header(
        &mut line.out,
        &format!("inventory:{}", kind.as_str()),
        &format!("Duo {} inventory", kind.as_str()),
        1,
    );
    common(&mut line, ctx, &id);
    line.ext("cat", kind.as_str());
    line.ext("cs1Label", "entityId");
    line.ext("cs1", &entity.id);
    let name = ["username", "name", "device_name", "number"]
        .iter()
        .find_map(|k| entity.record.get(*k).and_then(Value::as_str));
    if let Some(n) = name {
        line.ext("cs2Label", "entityName");
        line.ext("cs2", n);
    }
    line.msg(Value::Object(entity.record.clone()));
    line.into_string()
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
    inventory_change_cef_excluding(ctx, change, &[])
}

/// [`inventory_change_cef`] without the extension keys in `exclude`.
pub fn inventory_change_cef_excluding(
    ctx: &InventoryCtx<'_>,
    change: &ChangeEvent,
    exclude: &[String],
) -> String {
    let mut line = CefLine::new(exclude);
    let id = change_event_id(ctx, change);
    header(
        &mut line.out,
        &format!("change:{}:{}", change.kind.as_str(), change.activity_id),
        &format!("Duo {} {}", change.kind.as_str(), change.activity_name),
        3,
    );
    common(&mut line, ctx, &id);
    line.ext("act", change.activity_name);
    line.ext("duid", &change.entity_id);
    line.ext("duser", &change.entity_name);
    if let Some((gid, gname)) = &change.group {
        line.ext("cs3Label", "groupId");
        line.ext("cs3", gid);
        line.ext("cs4Label", "groupName");
        line.ext("cs4", gname);
    }
    line.msg(changes_json(change));
    line.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cef_sink_s_exclusions_drop_extension_keys_with_their_labels_and_record_paths() {
        let ctx = InventoryCtx {
            integration: "corp",
            account_id: None,
            snapshot_ms: 1_700_000_000_000,
            collected_at: "2023-11-14T22:13:20Z",
        };
        let record = json!({"user_id": "DU1", "username": "ada", "email": "ada@example.com"});
        let entity = Entity {
            id: "DU1".into(),
            record: record.as_object().unwrap().clone(),
        };
        let full = inventory_cef(&ctx, InventoryKind::Users, &entity);
        assert!(full.contains("cs2Label=entityName cs2=ada") && full.contains("ada@example.com"));
        let exclude = ["cs2".to_string(), "email".to_string()];
        let line = inventory_cef_excluding(&ctx, InventoryKind::Users, &entity, &exclude);
        assert!(
            !line.contains("cs2") && !line.contains("ada@example.com"),
            "{line}"
        );
        assert!(
            line.contains("cs1=DU1") && line.contains("username"),
            "{line}"
        );
    }
}
