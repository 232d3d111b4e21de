//! One inventory page: Duo's `{"stat":"OK","response":[…],"metadata":{"next_offset":N}}` parsed
//! into entities. Fields that carry secrets are dropped here, before anything else sees the
//! record, at any depth.

use serde_json::{Map, Value};

use super::InventoryKind;

/// One entity as Duo sent it, without its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: String,
    pub record: Map<String, Value>,
}

/// One parsed listing page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InventoryPage {
    pub entities: Vec<Entity>,
    /// `metadata.next_offset`: present while Duo has more.
    pub next_offset: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InventoryPageError {
    #[error("{kind}: not a Duo JSON envelope ({detail})")]
    NotJson { kind: InventoryKind, detail: String },
    #[error("{kind}: Duo answered stat {stat:?}")]
    NotOk { kind: InventoryKind, stat: String },
    #[error("{kind}: `response` is not {expected}")]
    Shape {
        kind: InventoryKind,
        expected: &'static str,
    },
    #[error("{kind}: entity {index} has no string `{field}`")]
    MissingId {
        kind: InventoryKind,
        index: usize,
        field: &'static str,
    },
    #[error("{kind}: `metadata.next_offset` is not a non-negative integer: {value}")]
    BadOffset { kind: InventoryKind, value: String },
}

/// A member name that holds a secret: integration secret keys (`secret_key`), SSO and RADIUS
/// secrets, passwords, passcodes and bypass codes. `password_status` and
/// `password_change_required` are states, not secrets, and stay.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("secret")
        || n == "skey"
        || n.ends_with("_skey")
        || n == "password"
        || n == "passcode"
        || n == "passcodes"
        || n == "bypass_codes"
        || n.ends_with("_token_secret")
        || n == "private_key"
}

/// Removes every secret member, at any depth.
pub fn drop_secrets(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !is_secret_field(k));
            m.values_mut().for_each(drop_secrets);
        }
        Value::Array(xs) => xs.iter_mut().for_each(drop_secrets),
        _ => {}
    }
}

/// The summary is one entity per account, under this id.
pub const SUMMARY_ID: &str = "summary";

/// Parses one page of `kind`'s listing (or the summary's single object).
pub fn parse_page(kind: InventoryKind, body: &[u8]) -> Result<InventoryPage, InventoryPageError> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| InventoryPageError::NotJson {
        kind,
        detail: e.to_string(),
    })?;
    let Value::Object(top) = &mut doc else {
        return Err(InventoryPageError::Shape {
            kind,
            expected: "a JSON object envelope",
        });
    };
    match top.get("stat") {
        Some(Value::String(s)) if s == "OK" => {}
        other => {
            return Err(InventoryPageError::NotOk {
                kind,
                stat: other.map(Value::to_string).unwrap_or_default(),
            })
        }
    }
    let next_offset = match top.get("metadata").and_then(|m| m.get("next_offset")) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or(InventoryPageError::BadOffset {
            kind,
            value: n.to_string(),
        })?),
        // Some Duo listings send numbers as strings; accept digits only.
        Some(Value::String(s)) => {
            Some(
                s.parse::<u64>()
                    .map_err(|_| InventoryPageError::BadOffset {
                        kind,
                        value: s.clone(),
                    })?,
            )
        }
        Some(other) => {
            return Err(InventoryPageError::BadOffset {
                kind,
                value: other.to_string(),
            })
        }
    };
    let mut response = top.remove("response").unwrap_or(Value::Null);
    drop_secrets(&mut response);
    let Some(id_field) = kind.id_field() else {
        let Value::Object(record) = response else {
            return Err(InventoryPageError::Shape {
                kind,
                expected: "an object",
            });
        };
        return Ok(InventoryPage {
            entities: vec![Entity {
                id: SUMMARY_ID.to_string(),
                record,
            }],
            next_offset: None,
        });
    };
    let Value::Array(items) = response else {
        return Err(InventoryPageError::Shape {
            kind,
            expected: "an array",
        });
    };
    let entities = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let missing = InventoryPageError::MissingId {
                kind,
                index,
                field: id_field,
            };
            let Value::Object(record) = item else {
                return Err(missing);
            };
            let id = match record.get(id_field) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return Err(missing),
            };
            Ok(Entity { id, record })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InventoryPage {
        entities,
        next_offset,
    })
}
