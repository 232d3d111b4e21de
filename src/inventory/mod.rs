//! Identity context: Duo's inventory (users, admins, phones, trusted endpoints, applications,
//! the account summary) as pure parts the collector wires in.
//!
//! - [`kind`]: what each inventory kind is at Duo (endpoint, page size, id, permission).
//! - [`page`]: one listing page parsed into entities, secrets dropped first.
//! - [`pager`]: the `limit`/`offset` pager as a state machine (no I/O).
//! - [`entity`]: the compact tracked state of an entity and its change hash.
//! - [`diff`]: two states of one entity → OCSF Account Change / Group Management events.
//! - [`posture`]: the posture counts from a complete snapshot.

pub mod diff;
pub mod entity;
pub mod kind;
pub mod page;
pub mod pager;
pub mod posture;

pub use diff::{diff, ChangeClass, ChangeEvent, FieldChange};
pub use entity::{EntityError, EntityState};
pub use kind::InventoryKind;
pub use page::{parse_page, Entity, InventoryPage, InventoryPageError};
pub use pager::{OffsetPager, OffsetRequest, PageStep, PagerError};
pub use posture::{posture, Posture, PostureCounts, PostureDetails, PostureSettings};
