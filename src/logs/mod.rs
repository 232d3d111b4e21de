//! Duo log endpoints: kinds, response parsing and cursors. Pure: no I/O.

mod kind;
pub mod page;

pub use kind::{LogKind, Paging};
