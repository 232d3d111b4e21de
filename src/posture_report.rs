//! `duo-collector posture`: the posture counts of each account from its latest complete
//! inventory snapshots in the state store (no Duo call), as text or JSON, optionally with the
//! user names behind each count. The service sets the same counts as gauges after each
//! snapshot (`observe::Observer::posture`).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::inventory::entity::{AdminState, SummaryState, UserState};
use crate::inventory::{posture, EntityState, InventoryKind, Posture, PostureSettings};
use crate::state::{SnapshotKey, StateError, StateStore};

/// Entities read from the state store at a time.
const READ_CHUNK: usize = 500;

/// One account's posture.
#[derive(Debug, Clone, Serialize)]
pub struct AccountPosture {
    pub name: String,
    pub account_id: Option<String>,
    /// When the users snapshot was taken (RFC 3339); the posture is as of then.
    pub snapshot_at: String,
    #[serde(flatten)]
    pub posture: Posture,
}

/// The report: one entry per integration and account with a complete snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct PostureReport {
    pub integrations: Vec<AccountPosture>,
}

async fn read_kind<T>(
    store: &StateStore,
    key: &SnapshotKey,
    pick: impl Fn(EntityState) -> Option<T>,
) -> Result<Vec<T>, StateError> {
    let mut out = Vec::new();
    let mut unreadable = 0usize;
    let mut after = String::new();
    loop {
        let chunk = store.complete_entities(key, &after, READ_CHUNK).await?;
        for entity in &chunk {
            match EntityState::from_stored(&entity.state) {
                Ok(s) => out.extend(pick(s)),
                Err(_) => unreadable += 1,
            }
        }
        match chunk.last() {
            Some(last) if chunk.len() == READ_CHUNK => after = last.entity_id.clone(),
            _ => break,
        }
    }
    if unreadable > 0 {
        tracing::warn!(integration = %key.integration, inventory = %key.kind, unreadable,
            "stored inventory states this build cannot read are left out of the posture");
    }
    Ok(out)
}

/// The posture of one account from its complete snapshots of users, admins and the summary;
/// `None` when no users snapshot has completed. Inactivity is measured at the users
/// snapshot's time.
pub async fn account_posture(
    store: &StateStore,
    integration: &str,
    account_id: Option<&str>,
    inactive_after: Duration,
) -> Result<Option<AccountPosture>, StateError> {
    let key = |kind| SnapshotKey {
        integration: integration.to_string(),
        account_id: account_id.map(str::to_string),
        kind,
    };
    let users_key = key(InventoryKind::Users);
    let Some(snapshot_ms) = store.snapshot_completed_ms(&users_key).await? else {
        return Ok(None);
    };
    let users: Vec<UserState> = read_kind(store, &users_key, |s| match s {
        EntityState::User(u) => Some(u),
        _ => None,
    })
    .await?;
    let admins: Vec<AdminState> = read_kind(store, &key(InventoryKind::Admins), |s| match s {
        EntityState::Admin(a) => Some(a),
        _ => None,
    })
    .await?;
    let summary: Vec<SummaryState> = read_kind(store, &key(InventoryKind::Summary), |s| match s {
        EntityState::Summary(m) => Some(m),
        _ => None,
    })
    .await?;
    let settings = PostureSettings {
        now_s: snapshot_ms / 1000,
        inactive_after_s: inactive_after.as_secs() as i64,
    };
    Ok(Some(AccountPosture {
        name: integration.to_string(),
        account_id: account_id.map(str::to_string),
        snapshot_at: crate::status::iso(snapshot_ms),
        posture: posture(&users, &admins, summary.first(), settings),
    }))
}

/// Every (integration, account) with a complete users snapshot, for the integrations given
/// (name and `inactive_after`), in state order.
pub async fn report(
    store: &StateStore,
    integrations: &[(String, Duration)],
) -> Result<PostureReport, StateError> {
    let mut out = Vec::new();
    for snapshot in store.snapshots().await? {
        if snapshot.kind != InventoryKind::Users.as_str() {
            continue;
        }
        let Some((name, inactive_after)) = integrations
            .iter()
            .find(|(n, _)| *n == snapshot.integration)
        else {
            continue;
        };
        if let Some(p) =
            account_posture(store, name, snapshot.account_id.as_deref(), *inactive_after).await?
        {
            out.push(p);
        }
    }
    Ok(PostureReport { integrations: out })
}

/// The report as JSON: `counts` always, `details` only when asked.
pub fn to_json(report: &PostureReport, details: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if !details {
        if let Some(list) = v["integrations"].as_array_mut() {
            for entry in list {
                if let Some(o) = entry.as_object_mut() {
                    o.remove("details");
                }
            }
        }
    }
    v
}

fn names(out: &mut String, list: &[String]) {
    for n in list {
        let _ = writeln!(out, "      {n}");
    }
}

/// The report as text, one block per account.
pub fn to_text(report: &PostureReport, details: bool) -> String {
    let mut out = String::new();
    if report.integrations.is_empty() {
        out.push_str("no complete users snapshot yet: set `inventory = [\"users\", ...]` for an integration and run `duo-collector collect-now --only inventory`\n");
    }
    for p in &report.integrations {
        let (c, d) = (&p.posture.counts, &p.posture.details);
        let _ = writeln!(
            out,
            "{} (account {}), snapshot {}",
            p.name,
            p.account_id.as_deref().unwrap_or("-"),
            p.snapshot_at
        );
        let rows: [(&str, usize, &[String]); 7] = [
            ("users", c.users, &[]),
            ("not enrolled", c.not_enrolled, &d.not_enrolled),
            ("bypass", c.bypass, &d.bypass),
            ("locked out", c.locked_out, &d.locked_out),
            ("disabled", c.disabled, &d.disabled),
            ("inactive", c.inactive, &d.inactive),
            ("weak MFA only", c.weak_mfa_only, &d.weak_mfa_only),
        ];
        for (label, count, list) in rows {
            let _ = writeln!(out, "  {label:<26}{count}");
            if details {
                names(&mut out, list);
            }
        }
        let _ = writeln!(out, "  {:<26}{}", "shared phones", c.shared_phones);
        if details {
            for (phone, users) in &d.shared_phones {
                let _ = writeln!(out, "      {phone}: {}", users.join(", "));
            }
        }
        let roles: Vec<String> = c.admins.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "  {:<26}{}", "admins", roles.join(", "));
        if details {
            for (role, admins) in &d.admins {
                let _ = writeln!(out, "      {role}: {}", admins.join(", "));
            }
        }
        let credits = c
            .telephony_credits_remaining
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let _ = writeln!(out, "  {:<26}{credits}", "telephony credits left");
    }
    out
}
