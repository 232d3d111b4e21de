//! The posture report, its gauges and the inventory permission checks end to end: `posture
//! --json` against counts taken from the simulator's truth (independently of
//! `src/inventory/posture.rs`), for an MSP's children; `run` on `inventory_schedule` with the
//! gauges on `/metrics`; `test-connectivity` and collection with a denied inventory kind.

use std::collections::{BTreeMap, HashMap};

use duo_collector::simulator::inventory::Inventory;
use duo_collector::simulator::{AccountsConfig, ChildAccount, KindCounts};
use serde_json::Value;

use crate::common::{connectivity_check, run_cli, start_sim, text, IKEY, SKEY};
use crate::inventory::{collect, listing_requests, log_requests, ocsf_setup, posture, sim_cfg};

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
    // `status` shows each child's latest complete snapshot per kind, with its size.
    let out = run_cli(&["status", "--config", config, "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshots = status["inventory"].as_array().unwrap();
    assert_eq!(snapshots.len(), 6, "3 kinds x 2 children: {status:#}");
    for c in [child(1), child(2)] {
        let users = snapshots
            .iter()
            .find(|s| s["account_id"] == c.account_id.as_str() && s["kind"] == "users")
            .unwrap();
        let truth = handle.inventory(Some(&c.account_id)).unwrap();
        assert_eq!(users["entities"], truth.users.len(), "{}", c.account_id);
    }
    let out = run_cli(&["status", "--config", config]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inventory snapshots (latest complete)"),
        "{}",
        text(&out)
    );
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
