//! Duo log endpoints: kinds, response parsing and cursors. Pure: no I/O.

pub mod page;

// The kinds are a leaf of their own (`crate::log_kind`), so that `event` and `config` can
// name them without depending on page parsing.
pub use crate::log_kind::{LogKind, Paging};
