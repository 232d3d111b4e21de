//! NATS JetStream into a real `nats-server -js` (started by the test): every event lands once;
//! re-sending a page after a crash adds no duplicate (Nats-Msg-Id); an unreachable server
//! blocks the checkpoint, and recovery delivers everything.

mod common;
mod sink_support;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use duo_collector::state::RunOutcome;
use sink_support::*;

fn check_stream(contents: &[(String, String, serde_json::Value)], expected: &HashMap<String, i64>) {
    for (subject, id, event) in contents {
        assert_eq!(subject, "duo.corp.authentication");
        assert_eq!(
            event["_duo_collector"]["event_id"].as_str(),
            Some(id.as_str()),
            "Nats-Msg-Id is the event id"
        );
    }
    let events: Vec<_> = contents.iter().map(|(_, _, e)| e.clone()).collect();
    assert_exactly_once("stream DUO", &count_ids(&events), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_once_and_a_resent_page_adds_no_duplicate() {
    let now = now_ms();
    let sim = start_sim(sim_config(600, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(peer_dir.path(), free_port()).await;
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["bus"],
        &nats_sink(&nats.url()),
        "page_size = 250",
    );
    let report = collect(&setup.config, &options(Some(3))).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    let expected = expected_ids(&handle);
    check_stream(&stream_contents(&nats.url()).await, &expected);

    // A crash after the PubAcks but before the checkpoint commit: the pages are sent again.
    // Simulate it by dropping the checkpoint; JetStream drops every re-sent event.
    let db = rusqlite_delete_checkpoints(&setup.state_db());
    assert!(db > 0);
    let report = collect(&setup.config, &options(Some(3))).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    assert!(
        report.events as usize >= expected.len(),
        "the pages were really sent again"
    );
    check_stream(&stream_contents(&nats.url()).await, &expected);
    sim.shutdown().await;
}

fn rusqlite_delete_checkpoints(db: &std::path::Path) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute("DELETE FROM checkpoints", []).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_blocks_the_checkpoint_then_recovery_delivers_everything() {
    let now = now_ms();
    let sim = start_sim(sim_config(300, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let setup = SinkSetup::new(&sim.base_url(), &["bus"], &nats_sink(&url), "");

    // collect-now with a bounded number of attempts: fails, checkpoint unmoved.
    let report = collect(&setup.config, &options(Some(2))).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("cannot connect to NATS"),
        "{:?}",
        report.error
    );
    assert!(setup.checkpoint().is_none());

    // The service retries without a limit: it waits, then delivers once the server is up.
    let config = setup.config.clone();
    let run = tokio::spawn(async move { collect(&config, &options(None)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!run.is_finished(), "collection waits for the sink");
    assert!(
        setup.checkpoint().is_none(),
        "checkpoint unmoved while NATS is down"
    );
    let status = &setup.sink_status()[0];
    assert!(status.failing_since_ms.is_some(), "{status:?}");
    let nats = NatsServer::start(peer_dir.path(), port).await;
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    assert!(setup.checkpoint().is_some());
    check_stream(&stream_contents(&nats.url()).await, &expected_ids(&handle));
    sim.shutdown().await;
}
