//! The Auth API push flow (duo-api.md §2.10): `preauth`, `auth` with `factor=push` and
//! `async=1`, then `auth_status` until the user answers.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::super::errors::ApiError;
use super::super::logs::first;
use super::model::{Inventory, User};

/// What the simulated user does with a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushOutcome {
    #[default]
    Approve,
    Deny,
    /// Denied and reported as fraud.
    Fraud,
    /// Never answers: `auth_status` keeps saying `waiting`.
    NoAnswer,
}

/// A push sent, as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    pub txid: String,
    pub user_id: String,
    pub username: String,
    pub device: String,
    /// Decoded `pushinfo` pairs (who asks, and why).
    pub pushinfo: Vec<(String, String)>,
    /// `auth_status` calls answered so far.
    pub polls: u32,
    outcome: PushOutcome,
}

#[derive(Default)]
pub struct PushState {
    pub outcomes: HashMap<String, PushOutcome>,
    pub pushes: Vec<PushRecord>,
}

fn ok(v: Value) -> String {
    json!({"stat": "OK", "response": v}).to_string()
}

fn find_user<'a>(
    inv: &'a Inventory,
    params: &[(String, String)],
) -> Result<Option<&'a User>, ApiError> {
    match (first(params, "user_id"), first(params, "username")) {
        (Some(id), _) => Ok(inv.users.iter().find(|u| u.user_id == id)),
        (None, Some(name)) => Ok(inv.user_by_name(name)),
        (None, None) => Err(ApiError::missing_params("username or user_id")),
    }
}

fn push_devices(inv: &Inventory, user: &User) -> Vec<Value> {
    let phones = inv.phone_index();
    user.phone_ids
        .iter()
        .filter_map(|id| phones.get(id.as_str()).map(|&i| &inv.phones[i]))
        .map(|p| {
            let tail = p
                .number
                .get(p.number.len().saturating_sub(4)..)
                .unwrap_or("");
            json!({"device": p.phone_id, "type": "phone", "number": format!("XXX-XXX-{tail}"),
                   "name": p.name, "capabilities": p.capabilities})
        })
        .collect()
}

/// `POST /auth/v2/preauth`.
pub fn preauth(inv: &Inventory, params: &[(String, String)]) -> Result<String, ApiError> {
    let Some(user) = find_user(inv, params)? else {
        return Ok(ok(
            json!({"result": "enroll", "status_msg": "Enroll an authentication device to proceed",
                            "enroll_portal_url": "https://api-sim.duosecurity.com/portal?code=sim"}),
        ));
    };
    Ok(ok(match user.status.as_str() {
        "bypass" => json!({"result": "allow", "status_msg": "Bypass user"}),
        "disabled" | "locked out" | "pending deletion" => {
            json!({"result": "deny", "status_msg": "Your account is disabled"})
        }
        _ if !user.is_enrolled => json!({"result": "enroll",
            "status_msg": "Enroll an authentication device to proceed",
            "enroll_portal_url": "https://api-sim.duosecurity.com/portal?code=sim"}),
        _ => json!({"result": "auth", "status_msg": "Account is active",
                    "devices": push_devices(inv, user)}),
    }))
}

/// `POST /auth/v2/auth` (push only, `async=1` only: what `verify-user` sends).
pub fn auth(
    inv: &Inventory,
    push: &mut PushState,
    params: &[(String, String)],
    txid_seed: u64,
) -> Result<String, ApiError> {
    let factor = first(params, "factor").ok_or_else(|| ApiError::missing_params("factor"))?;
    if factor != "push" {
        return Err(ApiError::invalid("Invalid factor"));
    }
    if first(params, "async") != Some("1") {
        return Err(ApiError::invalid(
            "the simulator answers async=1 push requests only",
        ));
    }
    let user = find_user(inv, params)?.ok_or_else(|| ApiError::invalid("Invalid username"))?;
    let wanted = first(params, "device").unwrap_or("auto");
    let phones = inv.phone_index();
    let device = user
        .phone_ids
        .iter()
        .filter_map(|id| phones.get(id.as_str()).map(|&i| &inv.phones[i]))
        .filter(|p| p.can_push())
        .find(|p| wanted == "auto" || p.phone_id == wanted)
        .ok_or_else(|| ApiError::invalid("Invalid device"))?;
    let pushinfo = first(params, "pushinfo")
        .map(|s| {
            url::form_urlencoded::parse(s.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let txid = uuid_text(txid_seed, push.pushes.len() as u64);
    push.pushes.push(PushRecord {
        txid: txid.clone(),
        user_id: user.user_id.clone(),
        username: user.username.clone(),
        device: device.phone_id.clone(),
        pushinfo,
        polls: 0,
        outcome: push
            .outcomes
            .get(&user.username)
            .copied()
            .unwrap_or_default(),
    });
    Ok(ok(json!({"txid": txid})))
}

/// `GET /auth/v2/auth_status`: `waiting` on the first poll, then the user's answer.
pub fn auth_status(push: &mut PushState, params: &[(String, String)]) -> Result<String, ApiError> {
    let txid = first(params, "txid").ok_or_else(|| ApiError::missing_params("txid"))?;
    let tx = push
        .pushes
        .iter_mut()
        .find(|p| p.txid == txid)
        .ok_or_else(|| ApiError::invalid("Invalid txid"))?;
    tx.polls += 1;
    let waiting = json!({"result": "waiting", "status": "pushed",
                         "status_msg": "Pushed a login request to your device..."});
    if tx.polls == 1 {
        return Ok(ok(waiting));
    }
    Ok(ok(match tx.outcome {
        PushOutcome::Approve => {
            json!({"result": "allow", "status": "allow", "status_msg": "Success. Logging you in..."})
        }
        PushOutcome::Deny => {
            json!({"result": "deny", "status": "deny", "status_msg": "Login request denied."})
        }
        PushOutcome::Fraud => json!({"result": "deny", "status": "fraud",
                                     "status_msg": "Login request reported as fraudulent."}),
        PushOutcome::NoAnswer => waiting,
    }))
}

fn uuid_text(seed: u64, n: u64) -> String {
    let v = super::super::rng::uuid_v4(
        super::super::rng::mix(seed, n),
        super::super::rng::mix(n, seed),
    );
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
