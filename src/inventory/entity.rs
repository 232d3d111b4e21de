//! The compact tracked state of one entity: what a change event compares and the posture report
//! reads, and a SHA-256 over it. Volatile fields (`last_login`, `last_seen`, `last_updated`)
//! are kept for posture but left out of the hash and of the comparison, so a login is not a
//! change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::page::Entity;
use super::InventoryKind;

/// A factor a user holds: a phone (with what it can do), a hardware token, a WebAuthn
/// credential or a U2F token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Factor {
    /// `phone`, `token`, `webauthn`, `u2f`.
    pub kind: String,
    pub id: String,
    /// Phones: Duo's `capabilities`; tokens: the token type.
    pub detail: Vec<String>,
}

impl Factor {
    /// Only SMS and phone calls: a factor a SIM swap or a voicemail defeats.
    pub fn is_weak(&self) -> bool {
        self.kind == "phone"
            && self
                .detail
                .iter()
                .all(|c| matches!(c.as_str(), "sms" | "phone" | "auto"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub user_id: String,
    pub username: String,
    pub realname: String,
    pub email: String,
    pub status: String,
    pub is_enrolled: bool,
    pub created: Option<i64>,
    pub lockout_reason: Option<String>,
    pub factors: Vec<Factor>,
    /// group id → group name.
    pub groups: BTreeMap<String, String>,
    /// Volatile: Unix seconds; `None` never logged in.
    pub last_login: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminState {
    pub admin_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub status: String,
    pub created: Option<i64>,
    /// Volatile.
    pub last_login: Option<i64>,
}

/// A phone, or a trusted endpoint: both devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    pub id: String,
    pub name: String,
    /// Stable attributes compared for changes (platform, model, capabilities, encryption, …).
    pub attributes: BTreeMap<String, String>,
    /// Phones: the users holding it (user ids); endpoints: the owner's username.
    pub users: Vec<String>,
    /// Volatile: `last_seen` (phones) or `last_updated` (endpoints), as Duo sent it.
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationState {
    pub integration_key: String,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryState {
    pub user_count: Option<i64>,
    pub admin_count: Option<i64>,
    pub integration_count: Option<i64>,
    pub telephony_credits_remaining: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntityState {
    User(UserState),
    Admin(AdminState),
    Phone(DeviceState),
    Endpoint(DeviceState),
    Integration(ApplicationState),
    Summary(SummaryState),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntityError {
    #[error("stored state of an inventory entity is unreadable: {0}")]
    Stored(String),
}

fn text(m: &Map<String, Value>, key: &str) -> String {
    match m.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(m: &Map<String, Value>, key: &str) -> Option<i64> {
    match m.get(key) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

fn list<'a>(m: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    m.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn strings(m: &Map<String, Value>, key: &str) -> Vec<String> {
    let mut out: Vec<String> = m
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    out.sort();
    out
}

fn attributes(m: &Map<String, Value>, keys: &[&str]) -> BTreeMap<String, String> {
    keys.iter()
        .filter(|k| m.contains_key(**k))
        .map(|k| {
            let v = match m.get(*k) {
                Some(Value::Array(_)) => strings(m, k).join(","),
                _ => text(m, k),
            };
            (k.to_string(), v)
        })
        .collect()
}

const PHONE_ATTRIBUTES: &[&str] = &[
    "number",
    "extension",
    "name",
    "type",
    "platform",
    "model",
    "capabilities",
    "activated",
    "encrypted",
    "fingerprint",
    "screenlock",
    "tampered",
];
const ENDPOINT_ATTRIBUTES: &[&str] = &[
    "device_name",
    "username",
    "email",
    "os_family",
    "os_version",
    "os_build",
    "model",
    "type",
    "disk_encryption_status",
    "firewall_status",
    "password_status",
    "trusted_endpoint",
];
const APPLICATION_ATTRIBUTES: &[&str] = &[
    "name",
    "type",
    "user_access",
    "groups_allowed",
    "self_service_allowed",
    "username_normalization_policy",
    "policy_key",
    "prompt_v4_enabled",
];

impl EntityState {
    /// The tracked state of a parsed entity (secrets were dropped by the page parser).
    pub fn from_entity(kind: InventoryKind, entity: &Entity) -> EntityState {
        let m = &entity.record;
        match kind {
            InventoryKind::Users => {
                let mut factors: Vec<Factor> = list(m, "phones")
                    .map(|p| Factor {
                        kind: "phone".into(),
                        id: text(p, "phone_id"),
                        detail: strings(p, "capabilities"),
                    })
                    .chain(list(m, "tokens").map(|t| Factor {
                        kind: "token".into(),
                        id: text(t, "token_id"),
                        detail: vec![text(t, "type")],
                    }))
                    .chain(list(m, "webauthncredentials").map(|w| Factor {
                        kind: "webauthn".into(),
                        id: text(w, "webauthnkey"),
                        detail: Vec::new(),
                    }))
                    .chain(list(m, "u2ftokens").map(|u| Factor {
                        kind: "u2f".into(),
                        id: text(u, "registration_id"),
                        detail: Vec::new(),
                    }))
                    .collect();
                factors.sort();
                EntityState::User(UserState {
                    user_id: entity.id.clone(),
                    username: text(m, "username"),
                    realname: text(m, "realname"),
                    email: text(m, "email"),
                    status: text(m, "status"),
                    is_enrolled: m.get("is_enrolled").and_then(Value::as_bool) == Some(true),
                    created: int(m, "created"),
                    lockout_reason: m
                        .get("lockout_reason")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    factors,
                    groups: list(m, "groups")
                        .map(|g| (text(g, "group_id"), text(g, "name")))
                        .collect(),
                    last_login: int(m, "last_login"),
                })
            }
            InventoryKind::Admins => EntityState::Admin(AdminState {
                admin_id: entity.id.clone(),
                name: text(m, "name"),
                email: text(m, "email"),
                role: text(m, "role"),
                status: text(m, "status"),
                created: int(m, "created"),
                last_login: int(m, "last_login"),
            }),
            InventoryKind::Phones => {
                let mut users: Vec<String> = list(m, "users").map(|u| text(u, "user_id")).collect();
                users.sort();
                EntityState::Phone(DeviceState {
                    id: entity.id.clone(),
                    name: text(m, "number"),
                    attributes: attributes(m, PHONE_ATTRIBUTES),
                    users,
                    last_seen: Some(text(m, "last_seen")).filter(|s| !s.is_empty()),
                })
            }
            InventoryKind::Endpoints => EntityState::Endpoint(DeviceState {
                id: entity.id.clone(),
                name: text(m, "device_name"),
                attributes: attributes(m, ENDPOINT_ATTRIBUTES),
                users: Some(text(m, "username"))
                    .filter(|s| !s.is_empty())
                    .into_iter()
                    .collect(),
                last_seen: Some(text(m, "last_updated")).filter(|s| !s.is_empty()),
            }),
            InventoryKind::Integrations => EntityState::Integration(ApplicationState {
                integration_key: entity.id.clone(),
                name: text(m, "name"),
                attributes: attributes(m, APPLICATION_ATTRIBUTES),
            }),
            InventoryKind::Summary => EntityState::Summary(SummaryState {
                user_count: int(m, "user_count"),
                admin_count: int(m, "admin_count"),
                integration_count: int(m, "integration_count"),
                telephony_credits_remaining: int(m, "telephony_credits_remaining"),
            }),
        }
    }

    pub fn kind(&self) -> InventoryKind {
        match self {
            EntityState::User(_) => InventoryKind::Users,
            EntityState::Admin(_) => InventoryKind::Admins,
            EntityState::Phone(_) => InventoryKind::Phones,
            EntityState::Endpoint(_) => InventoryKind::Endpoints,
            EntityState::Integration(_) => InventoryKind::Integrations,
            EntityState::Summary(_) => InventoryKind::Summary,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            EntityState::User(u) => &u.user_id,
            EntityState::Admin(a) => &a.admin_id,
            EntityState::Phone(d) | EntityState::Endpoint(d) => &d.id,
            EntityState::Integration(a) => &a.integration_key,
            EntityState::Summary(_) => super::page::SUMMARY_ID,
        }
    }

    /// What people call it: username, admin name, phone number, device or application name.
    pub fn display_name(&self) -> &str {
        match self {
            EntityState::User(u) => &u.username,
            EntityState::Admin(a) => &a.name,
            EntityState::Phone(d) | EntityState::Endpoint(d) => &d.name,
            EntityState::Integration(a) => &a.name,
            EntityState::Summary(_) => "summary",
        }
    }

    /// The tracked fields as `(name, text)`, in a fixed order, without the volatile ones.
    /// Factors and groups are one field each (a sorted list), so a change names them.
    pub fn tracked_fields(&self) -> Vec<(String, String)> {
        let opt = |v: &Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
        let mut out: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| out.push((k.to_string(), v));
        match self {
            EntityState::User(u) => {
                put("username", u.username.clone());
                put("realname", u.realname.clone());
                put("email", u.email.clone());
                put("status", u.status.clone());
                put("is_enrolled", u.is_enrolled.to_string());
                put("created", opt(&u.created));
                put(
                    "lockout_reason",
                    u.lockout_reason.clone().unwrap_or_default(),
                );
                put("factors", factor_list(&u.factors));
                put(
                    "groups",
                    u.groups.keys().cloned().collect::<Vec<_>>().join(","),
                );
            }
            EntityState::Admin(a) => {
                put("name", a.name.clone());
                put("email", a.email.clone());
                put("role", a.role.clone());
                put("status", a.status.clone());
                put("created", opt(&a.created));
            }
            EntityState::Phone(d) | EntityState::Endpoint(d) => {
                put("name", d.name.clone());
                for (k, v) in &d.attributes {
                    put(k, v.clone());
                }
                put("users", d.users.join(","));
            }
            EntityState::Integration(a) => {
                for (k, v) in &a.attributes {
                    put(k, v.clone());
                }
            }
            EntityState::Summary(s) => {
                put("user_count", opt(&s.user_count));
                put("admin_count", opt(&s.admin_count));
                put("integration_count", opt(&s.integration_count));
                put(
                    "telephony_credits_remaining",
                    opt(&s.telephony_credits_remaining),
                );
            }
        }
        out
    }

    /// SHA-256 (hex) over the kind and the tracked fields: equal hashes, no change event.
    pub fn change_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kind().as_str().as_bytes());
        for (k, v) in self.tracked_fields() {
            // Length-prefixed, so no pair of values can run into each other.
            for part in [k.as_bytes(), v.as_bytes()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
        }
        hex::encode(h.finalize())
    }

    /// The text the state store keeps (JSON).
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_stored(text: &str) -> Result<EntityState, EntityError> {
        serde_json::from_str(text).map_err(|e| EntityError::Stored(e.to_string()))
    }
}

/// `kind:id` per factor, sorted.
pub fn factor_list(factors: &[Factor]) -> String {
    factors
        .iter()
        .map(|f| format!("{}:{}", f.kind, f.id))
        .collect::<Vec<_>>()
        .join(",")
}
