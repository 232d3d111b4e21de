//! Inventory snapshots on the NATS state store end to end: the real binary
//! (`collect-now --only inventory` twice, `status`) against the strict simulator, with
//! `[state] backend = "nats"` in a real `nats-server -js`. The second snapshot, after a
//! mutation of the simulator's tenant, emits change events for exactly the mutated entities;
//! `status` lists the snapshots from NATS and `posture` counts from them; no `state.db` is made.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{count_lines, run_cli, start_sim, text};
use crate::inventory::{
    change_the_first_admins_role, changed_ids, collect, disable_an_active_user, entities_once,
    events_from, ocsf_setup, posture, sim_cfg, truth_ids,
};
use crate::sink_support::{free_port, NatsServer};

#[tokio::test(flavor = "multi_thread")]
async fn two_snapshots_on_the_nats_store_emit_exactly_the_changes_and_status_lists_them() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(nats_dir.path(), free_port()).await;
    let sim = start_sim(sim_cfg(420)).await;
    let handle = sim.handle();
    let setup = ocsf_setup(
        &sim.base_url(),
        r#"inventory = ["users", "admins", "summary"]"#,
    );
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str(&format!(
        "\n[state]\nbackend = \"nats\"\nurl = \"{}\"\nbucket_prefix = \"inv\"\n",
        nats.url()
    ));
    std::fs::write(&setup.config, config).unwrap();

    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!setup.state_db().exists(), "the state is in NATS");
    let first = events_from(&setup.events, 0);
    let mut truth = truth_ids(&handle.inventory(None).unwrap());
    truth.retain(|kind, _| ["users", "admins", "summary"].contains(&kind.as_str()));
    assert_eq!(entities_once(&first), truth);
    assert!(
        changed_ids(&first).is_empty(),
        "the first snapshot emits no changes"
    );

    // A user disabled, one deleted, an admin's role changed; the summary counts users.
    let mut expected = BTreeSet::new();
    handle.mutate_inventory(None, |inv| {
        expected.insert(("users".to_string(), disable_an_active_user(inv)));
        let gone = inv.users.len() - 1;
        expected.insert(("users".to_string(), inv.users.remove(gone).user_id));
        expected.insert(("admins".to_string(), change_the_first_admins_role(inv)));
    });
    expected.insert(("summary".to_string(), "summary".to_string()));

    let before = count_lines(&setup.events);
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    let second = events_from(&setup.events, before);
    let inv = handle.inventory(None).unwrap();
    let mut truth = truth_ids(&inv);
    truth.retain(|kind, _| ["users", "admins", "summary"].contains(&kind.as_str()));
    assert_eq!(entities_once(&second), truth);
    assert_eq!(changed_ids(&second), expected);
    let change_events = second
        .iter()
        .filter(|e| {
            e["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with("change:"))
        })
        .count();
    assert_eq!(change_events, 4, "one change event per changed entity here");

    let config = setup.config.to_str().unwrap();
    let status = run_cli(&["status", "--config", config, "--json"]).await;
    assert!(status.status.success(), "{}", text(&status));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let listed: Vec<(String, i64)> = status["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["entities"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("admins".to_string(), inv.admins.len() as i64),
            ("summary".to_string(), 1),
            ("users".to_string(), inv.users.len() as i64),
        ]
    );

    // `posture` reads the complete snapshot from NATS too.
    let posture = posture(&setup).await;
    let counts = &posture["integrations"][0]["counts"];
    assert_eq!(counts["users"], inv.users.len(), "{posture}");
    let disabled = inv.users.iter().filter(|u| u.status == "disabled").count();
    assert_eq!(counts["disabled"], disabled, "{posture}");
    sim.shutdown().await;
    nats.stop();
}
