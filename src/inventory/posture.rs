//! The posture report from a complete snapshot. Pure: the states, the summary, now and
//! `inactive_after` in; counts and the user names behind them out.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::entity::{AdminState, SummaryState, UserState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostureSettings {
    /// Unix seconds (Duo's clock, or the snapshot's time).
    pub now_s: i64,
    /// A user whose last login is older than this (or who never logged in and was created
    /// before it) is inactive.
    pub inactive_after_s: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PostureCounts {
    pub users: usize,
    pub not_enrolled: usize,
    pub bypass: usize,
    pub locked_out: usize,
    pub disabled: usize,
    pub inactive: usize,
    /// Phones held by more than one user.
    pub shared_phones: usize,
    /// Enrolled users whose only factors are SMS or phone calls.
    pub weak_mfa_only: usize,
    /// Admins by role.
    pub admins: BTreeMap<String, usize>,
    pub telephony_credits_remaining: Option<i64>,
}

/// The usernames behind each count (`--details`), sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PostureDetails {
    pub not_enrolled: Vec<String>,
    pub bypass: Vec<String>,
    pub locked_out: Vec<String>,
    pub disabled: Vec<String>,
    pub inactive: Vec<String>,
    /// Phone id → the usernames sharing it.
    pub shared_phones: BTreeMap<String, Vec<String>>,
    pub weak_mfa_only: Vec<String>,
    /// Role → admin names.
    pub admins: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Posture {
    pub counts: PostureCounts,
    pub details: PostureDetails,
}

fn is_inactive(u: &UserState, cutoff_s: i64) -> bool {
    match u.last_login {
        Some(t) => t < cutoff_s,
        None => u.created.is_some_and(|c| c < cutoff_s),
    }
}

fn weak_only(u: &UserState) -> bool {
    u.is_enrolled && !u.factors.is_empty() && u.factors.iter().all(|f| f.is_weak())
}

/// The counts of one account's snapshot. Phones shared are read from the users' phone lists,
/// so the users snapshot alone is enough.
pub fn posture(
    users: &[UserState],
    admins: &[AdminState],
    summary: Option<&SummaryState>,
    settings: PostureSettings,
) -> Posture {
    let cutoff = settings.now_s - settings.inactive_after_s;
    let mut d = PostureDetails::default();
    let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for u in users {
        let name = || u.username.clone();
        if !u.is_enrolled {
            d.not_enrolled.push(name());
        }
        match u.status.as_str() {
            "bypass" => d.bypass.push(name()),
            "locked out" => d.locked_out.push(name()),
            "disabled" => d.disabled.push(name()),
            _ => {}
        }
        if is_inactive(u, cutoff) {
            d.inactive.push(name());
        }
        if weak_only(u) {
            d.weak_mfa_only.push(name());
        }
        for f in u.factors.iter().filter(|f| f.kind == "phone") {
            holders.entry(&f.id).or_default().insert(&u.username);
        }
    }
    d.shared_phones = holders
        .into_iter()
        .filter(|(_, us)| us.len() > 1)
        .map(|(p, us)| (p.to_string(), us.into_iter().map(str::to_string).collect()))
        .collect();
    for a in admins {
        d.admins
            .entry(a.role.clone())
            .or_default()
            .push(a.name.clone());
    }
    for list in [
        &mut d.not_enrolled,
        &mut d.bypass,
        &mut d.locked_out,
        &mut d.disabled,
        &mut d.inactive,
        &mut d.weak_mfa_only,
    ] {
        list.sort();
    }
    d.admins.values_mut().for_each(|v| v.sort());
    let counts = PostureCounts {
        users: users.len(),
        not_enrolled: d.not_enrolled.len(),
        bypass: d.bypass.len(),
        locked_out: d.locked_out.len(),
        disabled: d.disabled.len(),
        inactive: d.inactive.len(),
        shared_phones: d.shared_phones.len(),
        weak_mfa_only: d.weak_mfa_only.len(),
        admins: d.admins.iter().map(|(r, v)| (r.clone(), v.len())).collect(),
        telephony_credits_remaining: summary.and_then(|s| s.telephony_credits_remaining),
    };
    Posture { counts, details: d }
}
