//! An inventory page in a sink's format: every entity and change through the inventory
//! mappings (`ocsf/inventory.rs`, `inventory_ecs.rs`, `inventory_text.rs`), with the sink's
//! `exclude_fields` applied as for logs (CEF: extension keys, and paths of the record in `msg`).
//! Pure.

use std::ops::Range;

use serde_json::Value;

use super::filter::remove_path;
use super::ocsf::inventory::{change_event, inventory_change_event, inventory_event};
use super::{
    inventory_cef_excluding, inventory_change_cef_excluding, inventory_change_ecs,
    inventory_change_raw, inventory_ecs, inventory_raw, Format, InventoryCtx,
};
use crate::event::{Batch, InventoryItem};
use crate::inventory::InventoryKind;

/// Renders each item as one line into `out`; returns each line's range.
pub(super) fn render(
    format: Format,
    exclude: &[String],
    batch: &Batch<'_>,
    kind: InventoryKind,
    items: &[InventoryItem],
    out: &mut Vec<u8>,
) -> Vec<Range<usize>> {
    let mut lines = Vec::with_capacity(items.len());
    for (item, event) in items.iter().zip(batch.events) {
        let ctx = InventoryCtx {
            integration: &batch.stream.integration,
            account_id: batch.stream.account_id.as_deref(),
            snapshot_ms: event.ts_ms,
            collected_at: batch.collected_at,
        };
        let start = out.len();
        if format == Format::Cef {
            let line = match item {
                InventoryItem::Entity(e) => inventory_cef_excluding(&ctx, kind, e, exclude),
                InventoryItem::Change(c) => inventory_change_cef_excluding(&ctx, c, exclude),
            };
            out.extend_from_slice(line.as_bytes());
        } else {
            let mut value = json_of(format, &ctx, kind, item);
            for path in exclude {
                remove_path(&mut value, path);
            }
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &value);
        }
        lines.push(start..out.len());
    }
    lines
}

fn json_of(
    format: Format,
    ctx: &InventoryCtx<'_>,
    kind: InventoryKind,
    item: &InventoryItem,
) -> Value {
    match (format, item) {
        (Format::Ecs, InventoryItem::Entity(e)) => inventory_ecs(ctx, kind, e),
        (Format::Ecs, InventoryItem::Change(c)) => inventory_change_ecs(ctx, c),
        (Format::Raw, InventoryItem::Entity(e)) => inventory_raw(ctx, kind, e),
        (Format::Raw, InventoryItem::Change(c)) => inventory_change_raw(ctx, c),
        (_, InventoryItem::Entity(e)) => inventory_event(ctx, kind, e),
        (_, InventoryItem::Change(c)) => {
            change_event(ctx, c).unwrap_or_else(|| inventory_change_event(ctx, c))
        }
    }
}
