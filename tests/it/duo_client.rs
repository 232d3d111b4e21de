//! The simulator checked with Duo's own Python client (`duo-client` from PyPI): every inventory
//! and log endpoint paged with duo_client's methods returns every entity and event exactly once,
//! and the Auth API push flow answers `preauth`/`auth`/`auth_status` as duo_client expects.
//!
//! The virtual environment lives in `target/duo-client-venv` and is reused; the version is
//! pinned. The test needs `python3` with `venv` and, the first time, PyPI.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use duo_collector::simulator::inventory::InventoryCounts;
use duo_collector::simulator::{KindCounts, SimConfig};
use serde_json::Value;

use crate::common::{now_ms, sim_config, start_sim, IKEY, SKEY};

/// The duo_client release this test was written against.
const DUO_CLIENT_VERSION: &str = "5.7.0";
const AUTH_IKEY: &str = "DIAUTHAP1KEYAUTHAP1X";
const AUTH_SKEY: &str = "authapisecretauthapisecretauthapisecret0";

fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join("duo-client-venv");
    let python = venv.join("bin").join("python");
    let pinned = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('duo-client'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == DUO_CLIENT_VERSION)
        .unwrap_or(false);
    if !pinned {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv {}", venv.display());
        let installed = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet"])
            .arg(format!("duo-client=={DUO_CLIENT_VERSION}"))
            .status()
            .expect("pip runs");
        assert!(
            installed.success(),
            "pip install duo-client=={DUO_CLIENT_VERSION}"
        );
    }
    python
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list, got {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("a string, got {x}"))
                .to_string()
        })
        .collect()
}

/// `got` holds exactly `want`, each once; the message names what is missing or repeated.
fn assert_exactly_once(what: &str, got: &[String], want: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in got {
        *counts.entry(id).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    let wanted: HashSet<&str> = want.iter().map(String::as_str).collect();
    let missing: Vec<_> = wanted.iter().filter(|w| !counts.contains_key(*w)).collect();
    let extra: Vec<_> = counts.keys().filter(|g| !wanted.contains(*g)).collect();
    assert!(
        repeated.is_empty() && missing.is_empty() && extra.is_empty() && got.len() == want.len(),
        "{what}: {} returned, {} expected; repeated {repeated:?}, missing {missing:?}, extra {extra:?}",
        got.len(),
        want.len()
    );
}

/// Whole records, compared as multisets of their canonical text (v1 records have no id).
fn assert_records_exactly_once(what: &str, got: &Value, want: &[Value]) {
    let canon = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let got: Vec<String> = got
        .as_array()
        .unwrap_or_else(|| panic!("{what}: a list"))
        .iter()
        .map(canon)
        .collect();
    let want: Vec<String> = want.iter().map(canon).collect();
    assert_exactly_once(what, &got, &want);
}

#[tokio::test]
async fn duo_client_pages_every_endpoint_and_sees_each_entity_and_event_once() {
    let python = venv_python();
    let end_ms = now_ms() - 5 * 60_000;
    let start_ms = end_ms - 86_400_000;
    let cfg = SimConfig {
        counts: KindCounts {
            authentication: 2500,
            administrator: 700,
            telephony: 1300,
            activity: 1200,
            trust_monitor: 260,
            offline_enrollment: 600,
        },
        inventory: InventoryCounts {
            users: 650,
            admins: 130,
            groups: 7,
            endpoints: 240,
            integrations: 12,
        },
        auth_api_keys: Some((AUTH_IKEY.into(), AUTH_SKEY.into())),
        // Strict paging, but no rate limit: duo_client sleeps its own backoff on a 429, which
        // makes the test slow without checking anything the collector's tests do not.
        rate_limit_per_minute: None,
        // duo_client connects to the host it signs for, so the simulator answers for the
        // address it listens on.
        api_hostname: "127.0.0.1".into(),
        ..sim_config(0, start_ms, end_ms)
    };
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let inv = handle.inventory(None).expect("the account's inventory");
    let phones = inv.phone_index();
    let push_user = inv
        .users
        .iter()
        .find(|u| {
            u.status == "active"
                && u.is_enrolled
                && u.phone_ids
                    .iter()
                    .any(|p| inv.phones[phones[p.as_str()]].can_push())
        })
        .expect("a user who can take a push");
    let hostport = sim.local_addr().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/duo_client/page_all.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&hostport)
        .env("DUO_IKEY", IKEY)
        .env("DUO_SKEY", SKEY)
        .env("AUTH_IKEY", AUTH_IKEY)
        .env("AUTH_SKEY", AUTH_SKEY)
        .env("PUSH_USERNAME", &push_user.username)
        .env("MINTIME_MS", start_ms.to_string())
        .env("MAXTIME_MS", end_ms.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    assert!(
        run.status.success(),
        "page_all.py failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: Value = serde_json::from_slice(&run.stdout).expect("page_all.py prints JSON");

    let ids = |xs: Vec<&String>| xs.into_iter().cloned().collect::<Vec<_>>();
    assert_exactly_once(
        "users",
        &strings(&got["users"]),
        &ids(inv.users.iter().map(|u| &u.user_id).collect()),
    );
    for u in &inv.users {
        let mut want = u.phone_ids.clone();
        want.sort();
        assert_eq!(
            strings(&got["user_phones"][&u.user_id]),
            want,
            "{}'s phones",
            u.username
        );
        let mut want = u.group_ids.clone();
        want.sort();
        assert_eq!(
            strings(&got["user_groups"][&u.user_id]),
            want,
            "{}'s groups",
            u.username
        );
    }
    assert_exactly_once(
        "admins",
        &strings(&got["admins"]),
        &ids(inv.admins.iter().map(|a| &a.admin_id).collect()),
    );
    assert_exactly_once(
        "phones",
        &strings(&got["phones"]),
        &ids(inv.phones.iter().map(|p| &p.phone_id).collect()),
    );
    assert_exactly_once(
        "endpoints",
        &strings(&got["endpoints"]),
        &ids(inv.endpoints.iter().map(|e| &e.epkey).collect()),
    );
    assert_exactly_once(
        "integrations",
        &strings(&got["integrations"]),
        &ids(inv
            .integrations
            .iter()
            .map(|i| &i.integration_key)
            .collect()),
    );
    assert_exactly_once(
        "groups",
        &strings(&got["groups"]),
        &ids(inv.groups.iter().map(|g| &g.group_id).collect()),
    );
    let summary = &got["summary"];
    assert_eq!(summary["user_count"], inv.users.len());
    assert_eq!(summary["admin_count"], inv.admins.len());
    assert_eq!(summary["integration_count"], inv.integrations.len());
    assert_eq!(
        summary["telephony_credits_remaining"],
        inv.telephony_credits_remaining
    );

    let visible_at = handle.duo_now_ms();
    for (kind, key) in [
        ("authentication", "authentication"),
        ("telephony", "telephony"),
        ("activity", "activity"),
        ("trust_monitor", "trust_monitor"),
    ] {
        let want: Vec<String> = handle
            .expected_events(None, kind, visible_at, end_ms)
            .into_iter()
            .filter(|e| e.ts_ms >= start_ms)
            .map(|e| e.id)
            .collect();
        assert!(!want.is_empty(), "{kind}: the window holds events");
        assert_exactly_once(kind, &strings(&got[key]), &want);
    }
    assert!(
        got["authentication_pages"].as_u64().unwrap_or(0) > 2,
        "authentication was paged with next_offset: {}",
        got["authentication_pages"]
    );
    for kind in ["administrator", "offline_enrollment"] {
        // duo_client's v1 calls have no maxtime: everything published from mintime on.
        let want: Vec<Value> = handle
            .expected_events(None, kind, visible_at, i64::MAX)
            .into_iter()
            .filter(|e| e.ts_ms >= start_ms / 1000 * 1000)
            .map(|e| e.record)
            .collect();
        assert!(!want.is_empty(), "{kind}: the window holds events");
        assert_records_exactly_once(kind, &got[kind], &want);
    }

    let push = &got["push"];
    assert_eq!(push["preauth_result"], "auth", "{push}");
    assert_eq!(push["success"], true, "{push}");
    assert_eq!(push["status"], "allow", "{push}");
    let pushes = handle.pushes();
    assert_eq!(pushes.len(), 1, "one push sent");
    assert_eq!(pushes[0].username, push_user.username);
    assert_eq!(pushes[0].txid, push["txid"].as_str().unwrap_or_default());
    assert!(
        pushes[0]
            .pushinfo
            .contains(&("from".to_string(), "duo_client".to_string())),
        "pushinfo decoded: {:?}",
        pushes[0].pushinfo
    );
    sim.shutdown().await;
}
