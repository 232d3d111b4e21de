//! The inventory parts (`crate::inventory`) against the simulator's inventory (its truth),
//! paged through the simulator's own listing code with strict short pages. (Here rather than
//! in `inventory/`, so that the pure module does not import the simulator, even in tests.)

use std::collections::HashSet;

use crate::inventory::diff::{account, group, inventory as inv_activity};
use crate::inventory::*;
use crate::simulator::inventory::{serve_listing, summary, Inventory, InventoryCounts, Listing};
use crate::simulator::SimConfig;

const NOW_S: i64 = 1_760_000_000;
const DAY_S: i64 = 86_400;

fn sim_cfg() -> SimConfig {
    SimConfig {
        seed: 11,
        ..SimConfig::default().strict()
    }
}

fn truth() -> Inventory {
    Inventory::generate(
        11,
        &InventoryCounts {
            users: 700,
            admins: 12,
            groups: 6,
            endpoints: 130,
            integrations: 9,
        },
        NOW_S,
    )
}

/// One complete snapshot of `kind`, as the collector will take it: the pager decides every
/// request, the simulator answers, the page parser reads.
fn snapshot(cfg: &SimConfig, inv: &Inventory, kind: InventoryKind) -> (Vec<Entity>, u64) {
    let mut pager = OffsetPager::new(kind);
    let mut out = Vec::new();
    while let Some(req) = pager.next() {
        let body = match Listing::from_path(kind.path()) {
            Some(listing) => {
                serve_listing(cfg, inv, listing, &req.params())
                    .expect("the simulator serves the request")
                    .0
            }
            None => summary(inv),
        };
        let page = parse_page(kind, body.as_bytes()).expect("a valid page");
        let step = pager.on_page(page).expect("the offset moves forward");
        out.extend(step.entities);
        assert_eq!(step.complete, pager.next().is_none());
    }
    (out, pager.progress().0)
}

fn states(cfg: &SimConfig, inv: &Inventory, kind: InventoryKind) -> Vec<EntityState> {
    snapshot(cfg, inv, kind)
        .0
        .iter()
        .map(|e| EntityState::from_entity(kind, e))
        .collect()
}

#[test]
fn every_kind_pages_each_entity_once_through_short_pages() {
    let cfg = sim_cfg();
    let inv = truth();
    let want: [(InventoryKind, Vec<String>); 5] = [
        (
            InventoryKind::Users,
            inv.users.iter().map(|u| u.user_id.clone()).collect(),
        ),
        (
            InventoryKind::Admins,
            inv.admins.iter().map(|a| a.admin_id.clone()).collect(),
        ),
        (
            InventoryKind::Phones,
            inv.phones.iter().map(|p| p.phone_id.clone()).collect(),
        ),
        (
            InventoryKind::Endpoints,
            inv.endpoints.iter().map(|e| e.epkey.clone()).collect(),
        ),
        (
            InventoryKind::Integrations,
            inv.integrations
                .iter()
                .map(|i| i.integration_key.clone())
                .collect(),
        ),
    ];
    let mut short_pages_seen = false;
    for (kind, want) in want {
        let (got, pages) = snapshot(&cfg, &inv, kind);
        let ids: Vec<String> = got.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, want, "{kind}: every entity once, in order");
        let limit = kind.page_limit().unwrap_or(1) as usize;
        // More requests than full pages would need: short pages were followed, not taken as
        // the end.
        short_pages_seen |= pages as usize > want.len().div_ceil(limit) + 1;
    }
    assert!(short_pages_seen, "the strict simulator drew short pages");
    let (summary, pages) = snapshot(&cfg, &inv, InventoryKind::Summary);
    assert_eq!(pages, 1);
    let EntityState::Summary(s) = EntityState::from_entity(InventoryKind::Summary, &summary[0])
    else {
        panic!("a summary")
    };
    assert_eq!(s.user_count, Some(inv.users.len() as i64));
    assert_eq!(
        s.telephony_credits_remaining,
        Some(inv.telephony_credits_remaining)
    );
}

#[test]
fn integration_secret_keys_never_leave_the_page_parser() {
    let cfg = sim_cfg();
    let inv = truth();
    let (apps, _) = snapshot(&cfg, &inv, InventoryKind::Integrations);
    assert_eq!(apps.len(), inv.integrations.len());
    for (app, truth) in apps.iter().zip(&inv.integrations) {
        assert!(!app.record.contains_key("secret_key"), "{:?}", app.record);
        let text = serde_json::to_string(&app.record).unwrap();
        assert!(
            !text.contains(&truth.secret_key),
            "the secret's value is gone"
        );
        assert_eq!(app.record["name"], truth.name.as_str());
    }
    let nested = br#"{"stat":"OK","response":[{"integration_key":"DI1","name":"x",
        "sso":{"saml_config":{"shared_secret":"s3"}},"radius":[{"skey":"k"}],
        "password_status":"Set"}]}"#;
    let page = parse_page(InventoryKind::Integrations, nested).unwrap();
    let text = serde_json::to_string(&page.entities[0].record).unwrap();
    assert!(!text.contains("s3") && !text.contains("\"skey\""), "{text}");
    assert!(text.contains("password_status"), "states stay: {text}");
}

fn page(ids: &[&str], next: Option<u64>) -> InventoryPage {
    let items: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"admin_id":"{id}"}}"#))
        .collect();
    let meta = match next {
        Some(n) => format!(r#","metadata":{{"next_offset":{n}}}"#),
        None => String::new(),
    };
    let body = format!(r#"{{"stat":"OK","response":[{}]{meta}}}"#, items.join(","));
    parse_page(InventoryKind::Admins, body.as_bytes()).unwrap()
}

#[test]
fn pager_follows_next_offset_and_nothing_else() {
    let mut p = OffsetPager::new(InventoryKind::Admins);
    assert_eq!(
        p.next(),
        Some(OffsetRequest {
            limit: Some(100),
            offset: Some(0)
        })
    );
    // A short page with an offset goes on.
    let step = p.on_page(page(&["a"], Some(1))).unwrap();
    assert!(!step.complete);
    assert_eq!(p.next().unwrap().offset, Some(1));
    // An empty page with an offset goes on too.
    assert!(!p.on_page(page(&[], Some(5))).unwrap().complete);
    // A page without one ends the snapshot, whatever its size.
    let step = p.on_page(page(&["b", "c"], None)).unwrap();
    assert!(step.complete && p.is_complete() && p.next().is_none());
    assert_eq!(p.progress(), (3, 3));
    assert_eq!(
        p.on_page(page(&[], None)),
        Err(PagerError::AfterComplete {
            kind: InventoryKind::Admins
        })
    );
    assert_eq!(
        OffsetPager::new(InventoryKind::Users)
            .next()
            .unwrap()
            .params(),
        vec![
            ("limit".to_string(), "300".to_string()),
            ("offset".to_string(), "0".to_string())
        ]
    );
    assert!(OffsetPager::new(InventoryKind::Summary)
        .next()
        .unwrap()
        .params()
        .is_empty());
}

#[test]
fn pager_refuses_a_repeated_or_backwards_offset() {
    for bad in [0, 3] {
        let mut p = OffsetPager::new(InventoryKind::Admins);
        p.on_page(page(&["a", "b", "c"], Some(3))).unwrap();
        let got = if bad == 0 { 2 } else { 3 };
        assert_eq!(
            p.on_page(page(&["d"], Some(got))),
            Err(PagerError::OffsetNotForward {
                kind: InventoryKind::Admins,
                sent: 3,
                got
            })
        );
    }
}

#[test]
fn page_parser_turns_bad_input_into_typed_errors() {
    use InventoryPageError as E;
    let k = InventoryKind::Users;
    assert!(matches!(parse_page(k, b"nope"), Err(E::NotJson { .. })));
    assert!(matches!(parse_page(k, b"[]"), Err(E::Shape { .. })));
    assert!(matches!(
        parse_page(k, br#"{"stat":"FAIL","code":40301}"#),
        Err(E::NotOk { .. })
    ));
    assert!(matches!(
        parse_page(k, br#"{"stat":"OK","response":{}}"#),
        Err(E::Shape { .. })
    ));
    assert!(matches!(
        parse_page(k, br#"{"stat":"OK","response":[{"username":"x"}]}"#),
        Err(E::MissingId { index: 0, .. })
    ));
    for bad in [r#"-1"#, r#"1.5"#, r#""x""#, r#"[1]"#] {
        let body = format!(r#"{{"stat":"OK","response":[],"metadata":{{"next_offset":{bad}}}}}"#);
        assert!(
            matches!(parse_page(k, body.as_bytes()), Err(E::BadOffset { .. })),
            "{bad}"
        );
    }
    let ok = parse_page(
        k,
        br#"{"stat":"OK","response":[],"metadata":{"next_offset":"300"}}"#,
    )
    .unwrap();
    assert_eq!(ok.next_offset, Some(300));
}

fn user_states(inv: &Inventory) -> Vec<EntityState> {
    states(&sim_cfg(), inv, InventoryKind::Users)
}

#[test]
fn a_login_is_not_a_change_but_a_status_is() {
    let inv = truth();
    let before = user_states(&inv);
    let mut later = inv.clone();
    for u in &mut later.users {
        u.last_login = Some(NOW_S);
    }
    let mut phones_seen = later.clone();
    for p in &mut phones_seen.phones {
        p.last_seen = "2030-01-01T00:00:00".into();
    }
    let after = user_states(&phones_seen);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.change_hash(), a.change_hash(), "{}", b.id());
        assert!(diff(Some(b), Some(a)).is_empty());
    }
    let cfg = sim_cfg();
    let phones_before = states(&cfg, &inv, InventoryKind::Phones);
    let phones_after = states(&cfg, &phones_seen, InventoryKind::Phones);
    for (b, a) in phones_before.iter().zip(&phones_after) {
        assert_eq!(b.change_hash(), a.change_hash(), "last_seen is volatile");
    }
    let stored = EntityState::from_stored(&after[0].to_stored()).unwrap();
    assert_eq!(stored, after[0]);
    assert!(EntityState::from_stored("{").is_err());
}

/// Pairs old and new states by id, as the state store will.
fn all_changes(before: &[EntityState], after: &[EntityState]) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    for b in before {
        out.extend(diff(Some(b), after.iter().find(|a| a.id() == b.id())));
    }
    for a in after
        .iter()
        .filter(|a| !before.iter().any(|b| b.id() == a.id()))
    {
        out.extend(diff(None, Some(a)));
    }
    out
}

#[test]
fn mutations_give_change_events_for_exactly_the_mutated_users() {
    let inv = truth();
    let before = user_states(&inv);
    let mut next = inv.clone();
    let active: Vec<usize> = (0..next.users.len())
        .filter(|&i| next.users[i].status == "active")
        .collect();
    let (dis, lock, rename, join) = (active[0], active[1], active[2], active[3]);
    next.users[dis].status = "disabled".into();
    next.users[lock].status = "locked out".into();
    next.users[lock].lockout_reason = Some("Failed Attempts".into());
    next.users[rename].email = "renamed@example.com".into();
    let new_group = next
        .groups
        .iter()
        .find(|g| !next.users[join].group_ids.contains(&g.group_id))
        .unwrap()
        .group_id
        .clone();
    next.users[join].group_ids.push(new_group.clone());
    let with_phone = (0..next.users.len())
        .find(|&i| next.users[i].phone_ids.len() == 1 && ![dis, lock, rename, join].contains(&i))
        .unwrap();
    next.users[with_phone].phone_ids.clear();
    let deleted = next.users.remove(next.users.len() - 1);
    let mut created = next.users[0].clone();
    created.user_id = "DUNEWUSER00000000001".into();
    created.username = "new.user".into();
    next.users.push(created);

    let after = user_states(&next);
    let events = all_changes(&before, &after);
    let of = |id: &str| -> Vec<(u32, u32)> {
        events
            .iter()
            .filter(|e| e.entity_id == id)
            .map(|e| (e.class.class_uid().unwrap(), e.activity_id))
            .collect()
    };
    assert_eq!(of(&inv.users[dis].user_id), vec![(3001, account::DISABLE)]);
    assert_eq!(of(&inv.users[lock].user_id), vec![(3001, account::LOCK)]);
    assert_eq!(of(&inv.users[rename].user_id), vec![(3001, account::OTHER)]);
    assert_eq!(of(&inv.users[join].user_id), vec![(3006, group::ADD_USER)]);
    assert_eq!(
        of(&inv.users[with_phone].user_id),
        vec![(3001, account::MFA_FACTOR_DISABLE)]
    );
    assert_eq!(of(&deleted.user_id), vec![(3001, account::DELETE)]);
    assert_eq!(of("DUNEWUSER00000000001"), vec![(3001, account::CREATE)]);
    let touched: HashSet<&str> = events.iter().map(|e| e.entity_id.as_str()).collect();
    assert_eq!(touched.len(), 7, "no other user changed: {touched:?}");

    let lock_event = events
        .iter()
        .find(|e| e.entity_id == inv.users[lock].user_id)
        .unwrap();
    assert!(lock_event.changes.iter().any(|c| c.field == "status"
        && c.before.as_deref() == Some("active")
        && c.after.as_deref() == Some("locked out")));
    let join_event = events
        .iter()
        .find(|e| e.entity_id == inv.users[join].user_id)
        .unwrap();
    assert_eq!(join_event.group.as_ref().unwrap().0, new_group);
    assert_eq!(join_event.activity_name, "Add User");

    // And back: unlock and enable.
    let back = all_changes(
        &after,
        &user_states(&{
            let mut undo = next.clone();
            undo.users[dis].status = "active".into();
            undo.users[lock].status = "active".into();
            undo.users[lock].lockout_reason = None;
            undo
        }),
    );
    let acts: HashSet<u32> = back.iter().map(|e| e.activity_id).collect();
    assert_eq!(acts, HashSet::from([account::ENABLE, account::UNLOCK]));
}

#[test]
fn devices_and_admins_change_only_where_mutated() {
    let cfg = sim_cfg();
    let inv = truth();
    let mut next = inv.clone();
    next.endpoints[3].firewall_status = "Off".into();
    next.endpoints[4].last_updated += 3600;
    next.admins[2].status = "Disabled".into();
    next.admins[3].role = "Billing-Changed".into();
    next.admins[5].last_login = Some(NOW_S);
    let ends = all_changes(
        &states(&cfg, &inv, InventoryKind::Endpoints),
        &states(&cfg, &next, InventoryKind::Endpoints),
    );
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].entity_id, inv.endpoints[3].epkey);
    assert_eq!(ends[0].activity_id, inv_activity::CHANGED);
    assert_eq!(ends[0].changes[0].field, "firewall_status");
    let admins = all_changes(
        &states(&cfg, &inv, InventoryKind::Admins),
        &states(&cfg, &next, InventoryKind::Admins),
    );
    let got: Vec<(&str, u32)> = admins
        .iter()
        .map(|e| (e.entity_id.as_str(), e.activity_id))
        .collect();
    let want_disable = if inv.admins[2].status == "Disabled" {
        vec![]
    } else {
        vec![(inv.admins[2].admin_id.as_str(), account::DISABLE)]
    };
    let mut want = want_disable;
    want.push((inv.admins[3].admin_id.as_str(), account::OTHER));
    assert_eq!(got, want);
}

#[test]
fn posture_counts_equal_the_simulators_truth() {
    let cfg = sim_cfg();
    let inv = truth();
    let users: Vec<_> = user_states(&inv)
        .into_iter()
        .filter_map(|s| match s {
            EntityState::User(u) => Some(u),
            _ => None,
        })
        .collect();
    let admins: Vec<_> = states(&cfg, &inv, InventoryKind::Admins)
        .into_iter()
        .filter_map(|s| match s {
            EntityState::Admin(a) => Some(a),
            _ => None,
        })
        .collect();
    let summary = match EntityState::from_entity(
        InventoryKind::Summary,
        &snapshot(&cfg, &inv, InventoryKind::Summary).0[0],
    ) {
        EntityState::Summary(s) => s,
        other => panic!("{other:?}"),
    };
    let inactive_after = 90 * DAY_S;
    let report = posture(
        &users,
        &admins,
        Some(&summary),
        PostureSettings {
            now_s: NOW_S,
            inactive_after_s: inactive_after,
        },
    );
    let c = &report.counts;
    let cutoff = NOW_S - inactive_after;
    let phones = inv.phone_index();
    let count = |f: &dyn Fn(&crate::simulator::inventory::User) -> bool| {
        inv.users.iter().filter(|u| f(u)).count()
    };
    assert_eq!(c.users, inv.users.len());
    assert_eq!(c.not_enrolled, count(&|u| !u.is_enrolled));
    assert_eq!(c.bypass, count(&|u| u.status == "bypass"));
    assert_eq!(c.locked_out, count(&|u| u.status == "locked out"));
    assert_eq!(c.disabled, count(&|u| u.status == "disabled"));
    assert_eq!(
        c.inactive,
        count(&|u| match u.last_login {
            Some(t) => t < cutoff,
            None => u.created < cutoff,
        })
    );
    assert_eq!(
        c.shared_phones,
        inv.phone_users().values().filter(|us| us.len() > 1).count()
    );
    assert_eq!(
        c.weak_mfa_only,
        count(&|u| u.is_enrolled
            && !u.phone_ids.is_empty()
            && u.tokens.is_empty()
            && u.webauthn.is_empty()
            && u.phone_ids.iter().all(|p| inv.phones[phones[p.as_str()]]
                .capabilities
                .iter()
                .all(|c| c == "sms" || c == "phone")))
    );
    for role in inv.admins.iter().map(|a| &a.role) {
        assert_eq!(
            c.admins[role],
            inv.admins.iter().filter(|a| &a.role == role).count()
        );
    }
    assert_eq!(
        c.telephony_credits_remaining,
        Some(inv.telephony_credits_remaining)
    );
    // The mix a posture report looks for is there, so the counts above compare something.
    for (what, n) in [
        ("not enrolled", c.not_enrolled),
        ("bypass", c.bypass),
        ("inactive", c.inactive),
        ("shared phones", c.shared_phones),
        ("weak only", c.weak_mfa_only),
    ] {
        assert!(n > 0, "{what}");
    }
    assert_eq!(report.details.bypass.len(), c.bypass);
    let first_bypass = inv.users.iter().find(|u| u.status == "bypass").unwrap();
    assert!(report.details.bypass.contains(&first_bypass.username));
}

#[test]
fn kinds_name_their_permission_and_fix() {
    for kind in InventoryKind::ALL {
        assert_eq!(kind.as_str().parse::<InventoryKind>(), Ok(kind));
        assert!(kind.forbidden_fix().contains(kind.permission()));
    }
    assert!("groups".parse::<InventoryKind>().is_err());
    assert_eq!(
        InventoryKind::Admins.permission(),
        "Grant Administrators - Read"
    );
    assert_eq!(InventoryKind::Users.permission(), "Grant read resource");
}
