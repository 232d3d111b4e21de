//! Inventory snapshots end to end: the real binary (`collect-now --only inventory`, `posture`)
//! against the strict simulator (rate limits per endpoint, Duo's clock),
//! a real SQLite state file and a file sink in OCSF. Truth is the simulator's own inventory
//! (`SimHandle::inventory`), counted here independently of `src/inventory/posture.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use duo_collector::simulator::inventory::{Inventory, InventoryCounts};
use duo_collector::simulator::{Fault, FaultRule, SimHandle};
use serde_json::Value;

use crate::common::{now_ms, run_cli, sim_config, start_sim, text, Setup};

pub(crate) const ALL_KINDS: &str =
    r#"inventory = ["users", "admins", "phones", "endpoints", "integrations", "summary"]"#;

fn counts(users: usize) -> InventoryCounts {
    InventoryCounts {
        users,
        ..InventoryCounts::default()
    }
}

pub(crate) fn sim_cfg(users: usize) -> duo_collector::simulator::SimConfig {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 3_600_000, now);
    cfg.inventory = counts(users);
    cfg
}

/// A setup whose file sink writes OCSF.
pub(crate) fn ocsf_setup(base_url: &str, extra: &str) -> Setup {
    let setup = Setup::new(base_url, extra);
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace("format = \"raw\"", "format = \"ocsf\""),
    )
    .unwrap();
    setup
}

pub(crate) async fn collect(setup: &Setup, only: &str) -> Output {
    let config = setup.config.to_str().unwrap();
    run_cli(&["collect-now", "--config", config, "--only", only]).await
}

pub(crate) async fn posture(setup: &Setup) -> Value {
    let config = setup.config.to_str().unwrap();
    let out = run_cli(&["posture", "--config", config, "--json", "--details"]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// The output lines from line `from` on.
pub(crate) fn events_from(path: &Path, from: usize) -> Vec<Value> {
    crate::common::read_events(path)
        .into_iter()
        .skip(from)
        .collect()
}

/// `metadata.uid` split: entity events are `kind:id:snapshot_ms`, changes
/// `change:kind:id:class:activity:snapshot_ms`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Emitted {
    Entity {
        kind: String,
        id: String,
        snapshot: String,
    },
    Change {
        kind: String,
        id: String,
        class_uid: u64,
        activity_id: u64,
    },
}

fn emitted(e: &Value) -> Emitted {
    let uid = e["metadata"]["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("no uid: {e}"));
    let parts: Vec<&str> = uid.split(':').collect();
    if parts[0] == "change" {
        Emitted::Change {
            kind: parts[1].to_string(),
            id: parts[2].to_string(),
            class_uid: e["class_uid"].as_u64().unwrap(),
            activity_id: e["activity_id"].as_u64().unwrap(),
        }
    } else {
        Emitted::Entity {
            kind: parts[0].to_string(),
            id: parts[1].to_string(),
            snapshot: parts[2].to_string(),
        }
    }
}

/// Every entity id of the simulator's inventory, by kind.
pub(crate) fn truth_ids(inv: &Inventory) -> BTreeMap<String, BTreeSet<String>> {
    let set = |ids: Vec<&String>| ids.into_iter().cloned().collect::<BTreeSet<_>>();
    BTreeMap::from([
        (
            "users".into(),
            set(inv.users.iter().map(|u| &u.user_id).collect()),
        ),
        (
            "admins".into(),
            set(inv.admins.iter().map(|a| &a.admin_id).collect()),
        ),
        (
            "phones".into(),
            set(inv.phones.iter().map(|p| &p.phone_id).collect()),
        ),
        (
            "endpoints".into(),
            set(inv.endpoints.iter().map(|e| &e.epkey).collect()),
        ),
        (
            "integrations".into(),
            set(inv
                .integrations
                .iter()
                .map(|i| &i.integration_key)
                .collect()),
        ),
        ("summary".into(), BTreeSet::from(["summary".to_string()])),
    ])
}

/// Entity ids per kind, asserting each came exactly once.
pub(crate) fn entities_once(events: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut snapshots = BTreeSet::new();
    for e in events {
        if let Emitted::Entity { kind, id, snapshot } = emitted(e) {
            *seen.entry((kind.clone(), id)).or_default() += 1;
            snapshots.insert((kind, snapshot));
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "entities emitted more than once: {twice:?}"
    );
    let kinds: BTreeSet<_> = snapshots.iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds.len(),
        snapshots.len(),
        "one snapshot per kind: {snapshots:?}"
    );
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (kind, id) in seen.into_keys() {
        out.entry(kind).or_default().insert(id);
    }
    out
}

fn changes(events: &[Value]) -> Vec<Emitted> {
    let mut out: Vec<Emitted> = events
        .iter()
        .map(emitted)
        .filter(|e| matches!(e, Emitted::Change { .. }))
        .collect();
    out.sort();
    out
}

pub(crate) fn changed_ids(events: &[Value]) -> BTreeSet<(String, String)> {
    changes(events)
        .into_iter()
        .map(|c| match c {
            Emitted::Change { kind, id, .. } => (kind, id),
            Emitted::Entity { .. } => unreachable!(),
        })
        .collect()
}

/// Disables the first active user; returns its id.
pub(crate) fn disable_an_active_user(inv: &mut Inventory) -> String {
    let user = inv.users.iter_mut().find(|u| u.status == "active").unwrap();
    user.status = "disabled".into();
    user.user_id.clone()
}

/// Moves the first admin to another role; returns its id.
pub(crate) fn change_the_first_admins_role(inv: &mut Inventory) -> String {
    let admin = &mut inv.admins[0];
    admin.role = if admin.role == "Billing" {
        "Help Desk"
    } else {
        "Billing"
    }
    .into();
    admin.admin_id.clone()
}

/// A Python with pydantic-ocsf and cefp, in the virtual environment `.ci/run` makes.
fn ocsf_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools/venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import ocsf.v1_7_0, cefp"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv {}",
            venv.display()
        );
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "pydantic-ocsf==3.0.0",
                "cefp==0.0.2",
            ])
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "pip install pydantic-ocsf cefp"
        );
    }
    python
}

pub(crate) fn log_requests(sim: &SimHandle) -> usize {
    sim.requests().iter().filter(|r| r.kind.is_some()).count()
}

pub(crate) fn listing_requests(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.listing.is_some() || r.path == "/admin/v1/info/summary")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_emits_every_entity_once_in_valid_ocsf_and_changes_only_after_a_mutation() {
    let sim = start_sim(sim_cfg(420)).await;
    let handle = sim.handle();
    let setup = ocsf_setup(&sim.base_url(), ALL_KINDS);

    // First snapshot: every entity of every kind exactly once, no change event, no log polled.
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        log_requests(&handle),
        0,
        "--only inventory polls no log endpoint"
    );
    let users_pages: Vec<(Option<String>, Option<usize>)> = handle
        .requests()
        .iter()
        .filter(|r| r.listing.as_deref() == Some("users") && r.status == 200)
        .map(|r| {
            (
                r.params
                    .iter()
                    .find(|(k, _)| k == "offset")
                    .map(|(_, v)| v.clone()),
                r.records,
            )
        })
        .collect();
    assert_eq!(
        &users_pages[..2],
        &[
            (Some("0".into()), Some(300)),
            (Some("300".into()), Some(120))
        ],
        "420 users in pages of 300: {users_pages:?}"
    );
    let first = events_from(&setup.events, 0);
    let truth = handle.inventory(None).unwrap();
    assert_eq!(entities_once(&first), truth_ids(&truth));
    assert!(
        changes(&first).is_empty(),
        "the first snapshot emits no changes"
    );
    let validated = Command::new(ocsf_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf/validate.py"))
        .arg("--events")
        .arg(&setup.events)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "validate.py: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // The same tenant again: a second snapshot, each entity once in it, and no change.
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    let second = events_from(&setup.events, first.len());
    assert_eq!(entities_once(&second), truth_ids(&truth));
    assert!(changes(&second).is_empty(), "{:?}", changes(&second));

    // Mutations: a user disabled, a user deleted (one who holds no phone), a user joining a
    // group, an admin's role, an application renamed.
    let mut expected = BTreeSet::new();
    handle.mutate_inventory(None, |inv| {
        expected.insert(("users".to_string(), disable_an_active_user(inv)));
        let gone = inv
            .users
            .iter()
            .position(|u| u.phone_ids.is_empty())
            .unwrap();
        expected.insert(("users".to_string(), inv.users.remove(gone).user_id));
        let group = inv.groups[0].group_id.clone();
        let joiner = inv
            .users
            .iter_mut()
            .find(|u| !u.group_ids.contains(&group) && u.status == "active")
            .unwrap();
        joiner.group_ids.push(group);
        expected.insert(("users".to_string(), joiner.user_id.clone()));
        expected.insert(("admins".to_string(), change_the_first_admins_role(inv)));
        let app = &mut inv.integrations[0];
        app.name = format!("{} (renamed)", app.name);
        expected.insert(("integrations".to_string(), app.integration_key.clone()));
    });
    // The summary counts users: it changed too.
    expected.insert(("summary".to_string(), "summary".to_string()));
    let before = crate::common::count_lines(&setup.events);
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    let third = events_from(&setup.events, before);
    assert_eq!(
        entities_once(&third),
        truth_ids(&handle.inventory(None).unwrap())
    );
    assert_eq!(changed_ids(&third), expected, "{:#?}", changes(&third));
    let activities: Vec<(u64, u64)> = changes(&third)
        .into_iter()
        .filter_map(|c| match c {
            Emitted::Change {
                class_uid,
                activity_id,
                ..
            } => Some((class_uid, activity_id)),
            Emitted::Entity { .. } => None,
        })
        .collect();
    let count = |class_activity| activities.iter().filter(|a| **a == class_activity).count();
    assert_eq!(count((3001, 6)), 1, "one user deleted: {activities:?}");
    assert_eq!(
        count((3006, 3)),
        1,
        "the group join is Group Management Add User"
    );
    assert_eq!(
        count((3001, 5)),
        1,
        "the disabled user is Account Change Disable"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_failing_half_way_emits_no_deletes_and_the_next_diffs_against_the_last_complete()
{
    let sim = start_sim(sim_cfg(700)).await;
    let handle = sim.handle();
    let setup = ocsf_setup(&sim.base_url(), r#"inventory = ["users"]"#);
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    let first = crate::common::count_lines(&setup.events);

    let mut changed = BTreeSet::new();
    handle.mutate_inventory(None, |inv| {
        let u = inv.users.iter_mut().find(|u| u.status == "active").unwrap();
        u.status = "bypass".into();
        changed.insert(("users".to_string(), u.user_id.clone()));
        // The last user: listed on the third page, which the failing snapshot never reaches.
        let gone = inv.users.pop().unwrap();
        changed.insert(("users".to_string(), gone.user_id));
    });
    // The first users page passes; the second fails on every attempt (the client's four).
    let users = || Some("/admin/v1/users".to_string());
    let mut rules = vec![FaultRule {
        path_contains: users(),
        fault: Fault::Delay(std::time::Duration::from_millis(1)),
    }];
    rules.extend((0..4).map(|_| FaultRule {
        path_contains: users(),
        fault: Fault::Status(503),
    }));
    handle.inject_fault_rules(rules);
    let out = collect(&setup, "inventory").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAILED corp/inventory_users"),
        "{}",
        text(&out)
    );
    assert_eq!(handle.pending_faults(), 0);
    let failed = events_from(&setup.events, first);
    assert_eq!(failed.len(), 300, "the first page's users only");
    assert!(
        changes(&failed).is_empty(),
        "a failed snapshot emits no change (no Delete)"
    );
    let report = posture(&setup).await;
    let users = handle.inventory(None).unwrap().users.len();
    assert_eq!(
        report["integrations"][0]["counts"]["users"],
        users + 1,
        "the complete snapshot stays"
    );

    // The next complete snapshot diffs against the last complete one.
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    let next = events_from(&setup.events, first + failed.len());
    assert_eq!(changed_ids(&next), changed, "{:#?}", changes(&next));
    assert_eq!(
        posture(&setup).await["integrations"][0]["counts"]["users"],
        users
    );
    sim.shutdown().await;
}
