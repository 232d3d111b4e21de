//! Inventory snapshots end to end: the real binary (`collect-now --only inventory`, `posture`,
//! `test-connectivity`) against the strict simulator (rate limits per endpoint, Duo's clock),
//! a real SQLite state file and a file sink in OCSF. Truth is the simulator's own inventory
//! (`SimHandle::inventory`), counted here independently of `src/inventory/posture.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use duo_collector::simulator::inventory::{Inventory, InventoryCounts};
use duo_collector::simulator::{
    AccountsConfig, ChildAccount, Fault, FaultRule, KindCounts, SimHandle,
};
use serde_json::Value;

use crate::common::{
    connectivity_check, now_ms, run_cli, sim_config, start_sim, text, Setup, IKEY, SKEY,
};

const ALL_KINDS: &str =
    r#"inventory = ["users", "admins", "phones", "endpoints", "integrations", "summary"]"#;

fn counts(users: usize) -> InventoryCounts {
    InventoryCounts {
        users,
        ..InventoryCounts::default()
    }
}

fn sim_cfg(users: usize) -> duo_collector::simulator::SimConfig {
    let now = now_ms();
    let mut cfg = sim_config(0, now - 3_600_000, now);
    cfg.inventory = counts(users);
    cfg
}

/// A setup whose file sink writes OCSF.
fn ocsf_setup(base_url: &str, extra: &str) -> Setup {
    let setup = Setup::new(base_url, extra);
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace("format = \"raw\"", "format = \"ocsf\""),
    )
    .unwrap();
    setup
}

async fn collect(setup: &Setup, only: &str) -> Output {
    let config = setup.config.to_str().unwrap();
    run_cli(&["collect-now", "--config", config, "--only", only]).await
}

async fn posture(setup: &Setup) -> Value {
    let config = setup.config.to_str().unwrap();
    let out = run_cli(&["posture", "--config", config, "--json", "--details"]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// The output lines from line `from` on.
fn events_from(path: &Path, from: usize) -> Vec<Value> {
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
fn truth_ids(inv: &Inventory) -> BTreeMap<String, BTreeSet<String>> {
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
fn entities_once(events: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
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

fn changed_ids(events: &[Value]) -> BTreeSet<(String, String)> {
    changes(events)
        .into_iter()
        .map(|c| match c {
            Emitted::Change { kind, id, .. } => (kind, id),
            Emitted::Entity { .. } => unreachable!(),
        })
        .collect()
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

fn log_requests(sim: &SimHandle) -> usize {
    sim.requests().iter().filter(|r| r.kind.is_some()).count()
}

fn listing_requests(sim: &SimHandle) -> usize {
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
        let disabled = inv.users.iter_mut().find(|u| u.status == "active").unwrap();
        disabled.status = "disabled".into();
        expected.insert(("users".to_string(), disabled.user_id.clone()));
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
        let admin = &mut inv.admins[0];
        admin.role = if admin.role == "Billing" {
            "Help Desk"
        } else {
            "Billing"
        }
        .into();
        expected.insert(("admins".to_string(), admin.admin_id.clone()));
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

/// The posture counts from the simulator's truth, as issue 11 §3 defines them.
fn truth_counts(inv: &Inventory, snapshot_s: i64, inactive_after_s: i64) -> Value {
    let cutoff = snapshot_s - inactive_after_s;
    let status = |s: &str| inv.users.iter().filter(|u| u.status == s).count();
    let phones: HashMap<&str, &duo_collector::simulator::inventory::Phone> = inv
        .phones
        .iter()
        .map(|p| (p.phone_id.as_str(), p))
        .collect();
    let weak_phone = |id: &String| {
        phones[id.as_str()]
            .capabilities
            .iter()
            .all(|c| c == "sms" || c == "phone" || c == "auto")
    };
    let mut holders: HashMap<&str, usize> = HashMap::new();
    for u in &inv.users {
        for p in &u.phone_ids {
            *holders.entry(p).or_default() += 1;
        }
    }
    let mut admins: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &inv.admins {
        *admins.entry(&a.role).or_default() += 1;
    }
    serde_json::json!({
        "users": inv.users.len(),
        "not_enrolled": inv.users.iter().filter(|u| !u.is_enrolled).count(),
        "bypass": status("bypass"),
        "locked_out": status("locked out"),
        "disabled": status("disabled"),
        "inactive": inv.users.iter().filter(|u| match u.last_login {
            Some(t) => t < cutoff,
            None => u.created < cutoff,
        }).count(),
        "shared_phones": holders.values().filter(|n| **n > 1).count(),
        "weak_mfa_only": inv.users.iter().filter(|u| {
            u.is_enrolled && u.tokens.is_empty() && u.webauthn.is_empty()
                && !u.phone_ids.is_empty() && u.phone_ids.iter().all(weak_phone)
        }).count(),
        "admins": admins,
        "telephony_credits_remaining": inv.telephony_credits_remaining,
    })
}

fn snapshot_s(entry: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(entry["snapshot_at"].as_str().unwrap())
        .unwrap()
        .timestamp()
}

fn child(n: u8) -> ChildAccount {
    ChildAccount {
        account_id: format!("DA{n:018}"),
        name: format!("Child {n}"),
        api_hostname: format!("api-child{n:03}.duosecurity.com"),
        counts: KindCounts::uniform(0),
        seed: 200 + u64::from(n),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn posture_counts_equal_the_simulators_truth_for_every_msp_child_and_only_logs_takes_no_snapshot(
) {
    let mut cfg = sim_cfg(150);
    cfg.ikey = "DIADM1NKEYADM1NKEY00".into(); // the parent's own Admin API keys are not ours
    cfg.accounts = Some(AccountsConfig {
        ikey: IKEY.into(),
        skey: SKEY.into(),
        children: vec![child(1), child(2)],
    });
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = ocsf_setup(
        &sim.base_url(),
        "accounts_api = true\ninventory = [\"users\", \"admins\", \"summary\"]\ninactive_after = \"30d\"",
    );

    let out = collect(&setup, "logs").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        listing_requests(&handle),
        0,
        "--only logs takes no snapshot"
    );
    assert!(log_requests(&handle) > 0);
    let none = posture(&setup).await;
    assert_eq!(none["integrations"], serde_json::json!([]));

    handle.clear_requests();
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        log_requests(&handle),
        0,
        "--only inventory polls no log endpoint"
    );
    let report = posture(&setup).await;
    let entries = report["integrations"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one snapshot per child: {report:#}");
    for (entry, c) in entries.iter().zip([child(1), child(2)]) {
        assert_eq!(entry["name"], "corp");
        assert_eq!(entry["account_id"], c.account_id.as_str());
        let truth = handle.inventory(Some(&c.account_id)).unwrap();
        let expected = truth_counts(&truth, snapshot_s(entry), 30 * 86_400);
        assert_eq!(entry["counts"], expected, "{}", c.account_id);
        let details = &entry["details"];
        assert_eq!(
            details["bypass"].as_array().unwrap().len(),
            expected["bypass"].as_u64().unwrap() as usize
        );
    }
    let config = setup.config.to_str().unwrap();
    let out = run_cli(&["posture", "--config", config, "--details"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("not enrolled") && shown.contains(&child(2).account_id),
        "{shown}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connectivity_fails_a_denied_inventory_permission_with_the_fix() {
    let mut cfg = sim_cfg(20);
    cfg.forbidden_kinds = vec!["admins".into()];
    let sim = start_sim(cfg).await;
    let setup = ocsf_setup(&sim.base_url(), r#"inventory = ["users", "admins"]"#);
    let config = setup.config.to_str().unwrap();
    let out = run_cli(&["test-connectivity", "--config", config, "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        connectivity_check(&report, "Inventory users")["verdict"],
        "PASS"
    );
    let admins = connectivity_check(&report, "Inventory admins");
    assert_eq!(admins["verdict"], "FAIL");
    assert!(
        admins["hint"]
            .as_str()
            .unwrap()
            .contains("Grant Administrators - Read"),
        "{admins}"
    );
    // Collection fails that kind alone, with the same fix; the users snapshot completes.
    let out = collect(&setup, "inventory").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("FAILED corp/inventory_admins")
            && said.contains("Grant Administrators - Read")
            && !said.contains("Grant read log"),
        "{said}"
    );
    assert!(said.contains("ok corp/inventory_users"), "{said}");
    sim.shutdown().await;
}

/// The metric line's value, if `/metrics` has it.
async fn gauge(base: &str, series: &str) -> Option<f64> {
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `/metrics` until `series` shows `value`, failing after 30 s.
async fn wait_for_gauge(base: &str, series: &str, value: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = gauge(base, series).await;
        if got == Some(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} is {got:?}, not {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_follows_inventory_schedule_and_sets_the_posture_gauges() {
    let sim = start_sim(sim_cfg(80)).await;
    let handle = sim.handle();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let setup = ocsf_setup(
        &sim.base_url(),
        "schedule = \"0 0 * * * *\"\ninventory = [\"users\", \"admins\", \"summary\"]\ninventory_schedule = \"*/2 * * * * *\"",
    );
    let config = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "[collector]\n",
        &format!("[collector]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
        1,
    );
    std::fs::write(&setup.config, config).unwrap();
    let mut child = crate::common::spawn_collector(&[
        "--log-level",
        "warn",
        "run",
        "--config",
        setup.config.to_str().unwrap(),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let series = |count: &str| {
        format!(
            "duo_collector_posture_users{{integration=\"corp\",account=\"\",count=\"{count}\"}}"
        )
    };
    wait_for_gauge(&base, &series("users"), 80.0).await;
    let report = posture(&setup).await;
    let counts = &report["integrations"][0]["counts"];
    for count in [
        "not_enrolled",
        "bypass",
        "locked_out",
        "disabled",
        "inactive",
        "shared_phones",
        "weak_mfa_only",
    ] {
        assert_eq!(
            gauge(&base, &series(count)).await,
            counts[count].as_f64(),
            "{count}: the gauge is the posture report's count"
        );
    }
    let credits = handle.inventory(None).unwrap().telephony_credits_remaining as f64;
    wait_for_gauge(
        &base,
        "duo_collector_posture_telephony_credits_remaining{integration=\"corp\",account=\"\"}",
        credits,
    )
    .await;

    // The next scheduled snapshot (every 2 s) sees a user fewer; the log schedule is hourly.
    handle.mutate_inventory(None, |inv| {
        inv.users.pop();
    });
    wait_for_gauge(&base, &series("users"), 79.0).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    sim.shutdown().await;
}
