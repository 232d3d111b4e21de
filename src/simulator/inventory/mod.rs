//! Identity context the simulator holds per account: the inventory listings (users, admins,
//! groups, phones, trusted endpoints, applications), the account summary, and the Auth API
//! push flow.

mod model;
mod push;
mod serve;

pub use model::{
    Admin, Browser, Endpoint, Group, Integration, Inventory, InventoryCounts, Phone, Token, User,
    WebauthnCredential,
};
pub(crate) use push::{auth, auth_status, preauth, PushState};
pub use push::{PushOutcome, PushRecord};
pub(crate) use serve::{serve_listing, summary, Listing};
