//! Inventory endpoints: Duo's JSON objects and its `limit`/`offset` paging, where a listing goes
//! on while the top-level `metadata.next_offset` is present (duo_client_python
//! `json_paging_api_call`).

use serde_json::{json, Map, Value};

use super::super::errors::ApiError;
use super::super::logs::first;
use super::super::rng::{mix, unit_interval};
use super::super::SimConfig;
use super::model::{Inventory, User};

/// A paged inventory listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listing {
    Users,
    Admins,
    Groups,
    Phones,
    Endpoints,
    Integrations,
}

impl Listing {
    pub fn from_path(path: &str) -> Option<Listing> {
        Some(match path {
            "/admin/v1/users" => Listing::Users,
            "/admin/v1/admins" => Listing::Admins,
            "/admin/v1/groups" => Listing::Groups,
            "/admin/v1/phones" => Listing::Phones,
            "/admin/v1/endpoints" => Listing::Endpoints,
            "/admin/v3/integrations" => Listing::Integrations,
            _ => return None,
        })
    }

    /// The name `forbidden_kinds` and the recorded request use.
    pub fn name(self) -> &'static str {
        match self {
            Listing::Users => "users",
            Listing::Admins => "admins",
            Listing::Groups => "groups",
            Listing::Phones => "phones",
            Listing::Endpoints => "endpoints",
            Listing::Integrations => "integrations",
        }
    }

    /// Duo's largest `limit` (duo-api.md §2.9); above it the request is refused.
    pub fn max_limit(self) -> usize {
        match self {
            Listing::Users => 300,
            Listing::Groups => 100,
            _ => 500,
        }
    }

    fn len(self, inv: &Inventory) -> usize {
        match self {
            Listing::Users => inv.users.len(),
            Listing::Admins => inv.admins.len(),
            Listing::Groups => inv.groups.len(),
            Listing::Phones => inv.phones.len(),
            Listing::Endpoints => inv.endpoints.len(),
            Listing::Integrations => inv.integrations.len(),
        }
    }
}

fn to_value<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

fn user_summary(u: &User) -> Map<String, Value> {
    let (first, last) = u.realname.split_once(' ').unwrap_or((&u.realname, ""));
    let v = json!({
        "user_id": u.user_id,
        "username": u.username,
        "realname": u.realname,
        "firstname": first,
        "lastname": last,
        "email": u.email,
        "status": u.status,
        "is_enrolled": u.is_enrolled,
        "created": u.created,
        "last_login": u.last_login,
        "last_directory_sync": null,
        "lockout_reason": u.lockout_reason,
        "notes": u.notes,
        "external_id": null,
        "alias1": null, "alias2": null, "alias3": null, "alias4": null,
        "aliases": {},
        "enable_auto_prompt": true,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A user as `/admin/v1/users` lists it, with its phones, tokens and groups embedded.
pub fn render_user(
    inv: &Inventory,
    u: &User,
    phones: &std::collections::HashMap<&str, usize>,
) -> Value {
    let mut m = user_summary(u);
    let embedded: Vec<Value> = u
        .phone_ids
        .iter()
        .filter_map(|id| phones.get(id.as_str()))
        .map(|&i| to_value(&inv.phones[i]))
        .collect();
    let groups: Vec<Value> = u
        .group_ids
        .iter()
        .filter_map(|id| inv.groups.iter().find(|g| &g.group_id == id))
        .map(to_value)
        .collect();
    m.insert("phones".into(), Value::Array(embedded));
    m.insert("tokens".into(), to_value(&u.tokens));
    m.insert("u2ftokens".into(), json!([]));
    m.insert("webauthncredentials".into(), to_value(&u.webauthn));
    m.insert("desktoptokens".into(), json!([]));
    m.insert("groups".into(), Value::Array(groups));
    Value::Object(m)
}

fn render(inv: &Inventory, listing: Listing, range: std::ops::Range<usize>) -> Vec<Value> {
    match listing {
        Listing::Users => {
            let phones = inv.phone_index();
            inv.users[range]
                .iter()
                .map(|u| render_user(inv, u, &phones))
                .collect()
        }
        Listing::Phones => {
            let holders = inv.phone_users();
            inv.phones[range]
                .iter()
                .map(|p| {
                    let mut v = to_value(p);
                    let users: Vec<Value> = holders
                        .get(p.phone_id.as_str())
                        .map(|us| {
                            us.iter()
                                .map(|&u| Value::Object(user_summary(&inv.users[u])))
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Value::Object(m) = &mut v {
                        m.insert("users".into(), Value::Array(users));
                    }
                    v
                })
                .collect()
        }
        Listing::Admins => inv.admins[range].iter().map(to_value).collect(),
        Listing::Groups => inv.groups[range].iter().map(to_value).collect(),
        Listing::Endpoints => inv.endpoints[range].iter().map(to_value).collect(),
        Listing::Integrations => inv.integrations[range].iter().map(to_value).collect(),
    }
}

fn parse_count(params: &[(String, String)], name: &str) -> Result<Option<usize>, ApiError> {
    match first(params, name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("Invalid {name}"))),
        Some(_) => Err(ApiError::invalid(format!("Invalid {name}"))),
    }
}

/// One page of a listing: the response body, and how many entities it holds.
pub fn serve_listing(
    cfg: &SimConfig,
    inv: &Inventory,
    listing: Listing,
    params: &[(String, String)],
) -> Result<(String, usize), ApiError> {
    let limit = parse_count(params, "limit")?.unwrap_or(100);
    if limit == 0 || limit > listing.max_limit() {
        return Err(ApiError::invalid("Invalid limit"));
    }
    let offset = parse_count(params, "offset")?.unwrap_or(0);
    let total = listing.len(inv);
    let start = offset.min(total);
    let mut end = start.saturating_add(limit).min(total);
    // The strict simulator's short pages: fewer than `limit` while more exist, with an offset
    // right after the last one returned.
    if cfg.short_page_rate > 0.0 && end - start >= 2 {
        let h = mix(
            mix(cfg.seed, listing as u64 + 0x1A7),
            (offset as u64) << 20 | limit as u64,
        );
        if unit_interval(h) < cfg.short_page_rate {
            end = start + 1 + (mix(h, 7) % (end - start - 1) as u64) as usize;
        }
    }
    let page = render(inv, listing, start..end);
    let mut metadata = Map::new();
    metadata.insert("total_objects".into(), json!(total));
    let more = end < total || (cfg.cursor_on_last_page && end > start);
    if more {
        metadata.insert("next_offset".into(), json!(end));
    }
    if start > 0 {
        metadata.insert("prev_offset".into(), json!(start.saturating_sub(limit)));
    }
    let n = page.len();
    let body = json!({"stat": "OK", "response": page, "metadata": metadata});
    Ok((body.to_string(), n))
}

/// `/admin/v1/info/summary`.
pub fn summary(inv: &Inventory) -> String {
    json!({"stat": "OK", "response": {
        "admin_count": inv.admins.len(),
        "integration_count": inv.integrations.len(),
        "telephony_credits_remaining": inv.telephony_credits_remaining,
        "user_count": inv.users.len(),
    }})
    .to_string()
}
