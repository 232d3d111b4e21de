//! NATS JetStream into a real `nats-server -js` (started by the test): every event lands once;
//! re-sending a page after a crash adds no duplicate (Nats-Msg-Id); an unreachable server
//! blocks the checkpoint, and recovery delivers everything.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use crate::sink_support::*;
use duo_collector::state::RunOutcome;

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
    wait_until("two failed deliveries", || {
        setup.sink_status().iter().any(|s| s.failed_attempts >= 2)
    })
    .await;
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

/// The service's policy (retry until delivered) with a bound: a permanent error must end the
/// run long before it.
async fn collect_until_delivered(
    config: &std::path::Path,
) -> duo_collector::collector::StreamReport {
    tokio::time::timeout(Duration::from_secs(30), collect(config, &options(None)))
        .await
        .expect("a permanent sink error ends the run instead of being retried forever")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_the_run_at_once_with_the_fix() {
    const TOKEN: &str = "right-token-4f1c";
    let now = now_ms();
    let sim = start_sim(sim_config(600, now - 3_600_000, now - 60_000)).await;
    let peer_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(peer_dir.path(), free_port(), &["--auth", TOKEN]).await;
    let token_file = peer_dir.path().join("token");
    let sink = |token: &str| {
        std::fs::write(&token_file, token).unwrap();
        set_mode(&token_file, 0o600);
        format!(
            "{}token_file = {:?}\n",
            nats_sink(&nats.url()),
            token_file.display().to_string()
        )
    };

    let wrong = SinkSetup::new(&sim.base_url(), &["bus"], &sink("wrong-token"), "");
    let report = collect_until_delivered(&wrong.config).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.unwrap_or_default();
    assert!(
        error.contains("permanent") && error.contains("authorization violation"),
        "{error}"
    );
    assert!(
        error.contains("fix: the server refused the credentials"),
        "{error}"
    );
    assert!(!error.contains("wrong-token"), "{error}");
    assert!(
        wrong.checkpoint().is_none(),
        "nothing delivered, nothing committed"
    );

    // The same server with its token: delivered, so the failure above was the credentials.
    let right = SinkSetup::new(&sim.base_url(), &["bus"], &sink(TOKEN), "");
    let report = collect_until_delivered(&right.config).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_does_not_exist_fails_the_run_at_once_with_the_fix() {
    let now = now_ms();
    let sim = start_sim(sim_config(600, now - 3_600_000, now - 60_000)).await;
    let peer_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(peer_dir.path(), free_port()).await;
    let sink = nats_sink(&nats.url()).replace("create_stream = true", "create_stream = false");
    let setup = SinkSetup::new(&sim.base_url(), &["bus"], &sink, "");
    let report = collect_until_delivered(&setup.config).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.unwrap_or_default();
    assert!(
        error.contains("permanent") && error.contains("JetStream stream \"DUO\" is not available"),
        "{error}"
    );
    assert!(
        error.contains("fix: create it with subjects") && error.contains("create_stream = true"),
        "{error}"
    );
    assert!(setup.checkpoint().is_none());
    sim.shutdown().await;
}
