//! Two states of one entity → change events. Pure.
//!
//! Users and admins: OCSF Account Change (3001) with its defined activities, and for users
//! Group Management (3006) Add User / Remove User per group joined or left. Phones, endpoints,
//! applications and the summary have no account class: their changes come as
//! [`ChangeClass::Inventory`] (created, changed, deleted) for the integrator to render in the
//! entity's own inventory class. Every event lists the fields it covers with before and after.

use std::collections::BTreeSet;

use super::entity::{factor_list, EntityState, Factor};
use super::InventoryKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeClass {
    /// OCSF Account Change, 3001.
    AccountChange,
    /// OCSF Group Management, 3006.
    GroupManagement,
    /// A device, application or summary changed (no OCSF change class fits).
    Inventory,
}

impl ChangeClass {
    pub fn class_uid(self) -> Option<u32> {
        match self {
            ChangeClass::AccountChange => Some(3001),
            ChangeClass::GroupManagement => Some(3006),
            ChangeClass::Inventory => None,
        }
    }
}

/// OCSF activity ids of Account Change (3001).
pub mod account {
    pub const CREATE: u32 = 1;
    pub const ENABLE: u32 = 2;
    pub const DISABLE: u32 = 5;
    pub const DELETE: u32 = 6;
    pub const LOCK: u32 = 9;
    pub const MFA_FACTOR_ENABLE: u32 = 10;
    pub const MFA_FACTOR_DISABLE: u32 = 11;
    pub const UNLOCK: u32 = 12;
    pub const OTHER: u32 = 99;
}

/// OCSF activity ids of Group Management (3006).
pub mod group {
    pub const ADD_USER: u32 = 3;
    pub const REMOVE_USER: u32 = 4;
}

/// Inventory change activities (for [`ChangeClass::Inventory`]).
pub mod inventory {
    pub const CREATED: u32 = 1;
    pub const CHANGED: u32 = 2;
    pub const DELETED: u32 = 3;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub class: ChangeClass,
    pub activity_id: u32,
    /// OCSF's caption for the activity (for `Other`, what changed).
    pub activity_name: &'static str,
    pub kind: InventoryKind,
    pub entity_id: String,
    pub entity_name: String,
    /// Group Management: the group (id, name).
    pub group: Option<(String, String)>,
    pub changes: Vec<FieldChange>,
}

fn activity_name(class: ChangeClass, id: u32) -> &'static str {
    match (class, id) {
        (ChangeClass::AccountChange, account::CREATE) => "Create",
        (ChangeClass::AccountChange, account::ENABLE) => "Enable",
        (ChangeClass::AccountChange, account::DISABLE) => "Disable",
        (ChangeClass::AccountChange, account::DELETE) => "Delete",
        (ChangeClass::AccountChange, account::LOCK) => "Lock",
        (ChangeClass::AccountChange, account::MFA_FACTOR_ENABLE) => "MFA Factor Enable",
        (ChangeClass::AccountChange, account::MFA_FACTOR_DISABLE) => "MFA Factor Disable",
        (ChangeClass::AccountChange, account::UNLOCK) => "Unlock",
        (ChangeClass::GroupManagement, group::ADD_USER) => "Add User",
        (ChangeClass::GroupManagement, group::REMOVE_USER) => "Remove User",
        (ChangeClass::Inventory, inventory::CREATED) => "Created",
        (ChangeClass::Inventory, inventory::CHANGED) => "Changed",
        (ChangeClass::Inventory, inventory::DELETED) => "Deleted",
        _ => "Other",
    }
}

fn event(
    state: &EntityState,
    class: ChangeClass,
    activity_id: u32,
    changes: Vec<FieldChange>,
) -> ChangeEvent {
    ChangeEvent {
        class,
        activity_id,
        activity_name: activity_name(class, activity_id),
        kind: state.kind(),
        entity_id: state.id().to_string(),
        entity_name: state.display_name().to_string(),
        group: None,
        changes,
    }
}

/// Every tracked field that differs, before and after (`None` on the side that lacks it).
pub fn changed_fields(
    before: Option<&EntityState>,
    after: Option<&EntityState>,
) -> Vec<FieldChange> {
    let b = before.map(EntityState::tracked_fields).unwrap_or_default();
    let a = after.map(EntityState::tracked_fields).unwrap_or_default();
    let names: BTreeSet<&String> = b.iter().chain(a.iter()).map(|(k, _)| k).collect();
    let get =
        |xs: &[(String, String)], k: &str| xs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    names
        .into_iter()
        .filter_map(|k| {
            let (before, after) = (get(&b, k), get(&a, k));
            (before != after).then(|| FieldChange {
                field: k.clone(),
                before,
                after,
            })
        })
        .collect()
}

fn is_account(kind: InventoryKind) -> bool {
    matches!(kind, InventoryKind::Users | InventoryKind::Admins)
}

/// The change events between the previous and the new state of one entity: `None` before is a
/// creation, `None` after a deletion (only ever passed after a *complete* snapshot). Equal
/// change hashes give no events.
pub fn diff(before: Option<&EntityState>, after: Option<&EntityState>) -> Vec<ChangeEvent> {
    match (before, after) {
        (None, None) => Vec::new(),
        (None, Some(new)) => {
            let class = if is_account(new.kind()) {
                ChangeClass::AccountChange
            } else {
                ChangeClass::Inventory
            };
            let id = if is_account(new.kind()) {
                account::CREATE
            } else {
                inventory::CREATED
            };
            vec![event(new, class, id, changed_fields(None, Some(new)))]
        }
        (Some(old), None) => {
            let (class, id) = if is_account(old.kind()) {
                (ChangeClass::AccountChange, account::DELETE)
            } else {
                (ChangeClass::Inventory, inventory::DELETED)
            };
            vec![event(old, class, id, changed_fields(Some(old), None))]
        }
        (Some(old), Some(new)) if old.change_hash() == new.change_hash() => Vec::new(),
        (Some(old), Some(new)) => match (old, new) {
            (EntityState::User(o), EntityState::User(n)) => {
                user_changes(old, new, &o.factors, &n.factors, &o.groups, &n.groups)
            }
            (EntityState::Admin(_), EntityState::Admin(_)) => account_changes(old, new, |_| true),
            _ => vec![event(
                new,
                ChangeClass::Inventory,
                inventory::CHANGED,
                changed_fields(Some(old), Some(new)),
            )],
        },
    }
}

/// The status word, lower-cased (Duo writes users' in lower case, admins' capitalized).
fn status_of(s: &EntityState) -> String {
    match s {
        EntityState::User(u) => u.status.to_ascii_lowercase(),
        EntityState::Admin(a) => a.status.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn status_activity(before: &str, after: &str) -> u32 {
    match (before, after) {
        (_, "disabled") => account::DISABLE,
        (_, "locked out") => account::LOCK,
        ("locked out", "active") => account::UNLOCK,
        ("disabled", "active") => account::ENABLE,
        _ => account::OTHER,
    }
}

/// Status to its activity, and every other changed field (kept by `keep`) to Other.
fn account_changes(
    old: &EntityState,
    new: &EntityState,
    keep: impl Fn(&FieldChange) -> bool,
) -> Vec<ChangeEvent> {
    let fields = changed_fields(Some(old), Some(new));
    let (status, rest): (Vec<_>, Vec<_>) = fields
        .into_iter()
        .filter(|c| keep(c))
        .partition(|c| c.field == "status" || c.field == "lockout_reason");
    let mut out = Vec::new();
    if status.iter().any(|c| c.field == "status") {
        let id = status_activity(&status_of(old), &status_of(new));
        out.push(event(new, ChangeClass::AccountChange, id, status));
    } else if !status.is_empty() {
        out.push(event(
            new,
            ChangeClass::AccountChange,
            account::OTHER,
            status,
        ));
    }
    if !rest.is_empty() {
        out.push(event(new, ChangeClass::AccountChange, account::OTHER, rest));
    }
    out
}

fn user_changes(
    old: &EntityState,
    new: &EntityState,
    old_factors: &[Factor],
    new_factors: &[Factor],
    old_groups: &std::collections::BTreeMap<String, String>,
    new_groups: &std::collections::BTreeMap<String, String>,
) -> Vec<ChangeEvent> {
    let mut out = account_changes(old, new, |c| c.field != "factors" && c.field != "groups");
    let key = |f: &Factor| (f.kind.clone(), f.id.clone());
    let old_keys: BTreeSet<_> = old_factors.iter().map(key).collect();
    let new_keys: BTreeSet<_> = new_factors.iter().map(key).collect();
    let added: Vec<Factor> = new_factors
        .iter()
        .filter(|f| !old_keys.contains(&key(f)))
        .cloned()
        .collect();
    let removed: Vec<Factor> = old_factors
        .iter()
        .filter(|f| !new_keys.contains(&key(f)))
        .cloned()
        .collect();
    let factors_change = || FieldChange {
        field: "factors".to_string(),
        before: Some(factor_list(old_factors)),
        after: Some(factor_list(new_factors)),
    };
    if !added.is_empty() {
        out.push(event(
            new,
            ChangeClass::AccountChange,
            account::MFA_FACTOR_ENABLE,
            vec![factors_change()],
        ));
    }
    if !removed.is_empty() {
        out.push(event(
            new,
            ChangeClass::AccountChange,
            account::MFA_FACTOR_DISABLE,
            vec![factors_change()],
        ));
    }
    let groups_change = || FieldChange {
        field: "groups".to_string(),
        before: Some(old_groups.keys().cloned().collect::<Vec<_>>().join(",")),
        after: Some(new_groups.keys().cloned().collect::<Vec<_>>().join(",")),
    };
    // Joined groups (in the new state only), then left ones (in the old state only).
    for (activity, from, other) in [
        (group::ADD_USER, new_groups, old_groups),
        (group::REMOVE_USER, old_groups, new_groups),
    ] {
        for (id, name) in from.iter().filter(|(g, _)| !other.contains_key(*g)) {
            let mut e = event(
                new,
                ChangeClass::GroupManagement,
                activity,
                vec![groups_change()],
            );
            e.group = Some((id.clone(), name.clone()));
            out.push(e);
        }
    }
    out
}
