//! The inventory kinds live in the leaf `crate::inventory_kind` (config names them too).

pub use crate::inventory_kind::InventoryKind;
