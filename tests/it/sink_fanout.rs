//! Fan-out to two sinks where one is down: the checkpoint does not move until both have the
//! events, and once the down sink returns both have everything. `status` shows each sink.

use std::time::Duration;

use crate::common::*;
use crate::sink_support::hook::Hook;
use crate::sink_support::*;
use duo_collector::state::RunOutcome;

fn sinks(events: &std::path::Path, port: u16) -> String {
    format!(
        r#"
[[sink]]
name = "archive"
type = "file"
path = {events:?}

[[sink]]
name = "web"
type = "http"
url = "http://127.0.0.1:{port}/in"
batch_max_events = 100
"#,
        events = events.display().to_string()
    )
}

async fn status_json(config: &std::path::Path) -> serde_json::Value {
    let out = run_cli(&["status", "--json", "--config", config.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sink<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sink_down_holds_the_checkpoint_and_both_get_everything_once_it_returns() {
    let now = now_ms();
    // Counts events per page: full pages, so the lenient simulator.
    let sim = start_sim(lenient_sim_config(900, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["archive", "web"],
        &sinks(&events, port),
        "page_size = 300",
    );

    // The service: unbounded retries. The file acknowledges page 1, the HTTP sink cannot.
    let config = setup.config.clone();
    let run = tokio::spawn(async move { collect(&config, &options(None)).await });
    wait_until("two failed deliveries", || {
        setup.sink_status().iter().any(|s| s.failed_attempts >= 2)
    })
    .await;
    assert!(!run.is_finished(), "collection waits for the down sink");
    assert!(
        setup.checkpoint().is_none(),
        "no checkpoint while one sink has not acknowledged"
    );
    assert_eq!(
        read_events(&events).len(),
        300,
        "the healthy sink got the first page, and only it"
    );

    let status = status_json(&setup.config).await;
    assert_eq!(sink(&status, "web")["state"], "failing", "{status:#}");
    assert!(sink(&status, "web")["failing_since"].is_string());
    assert!(
        sink(&status, "web")["last_error"]
            .as_str()
            .unwrap()
            .contains("POST 127.0.0.1"),
        "{status:#}"
    );
    assert_eq!(sink(&status, "archive")["state"], "ok");
    assert!(sink(&status, "archive")["last_success"].is_string());
    let text_status = run_cli(&["status", "--config", setup.config.to_str().unwrap()]).await;
    assert!(
        String::from_utf8_lossy(&text_status.stdout).contains("sink web (http): failing"),
        "{}",
        text(&text_status)
    );

    // The down sink returns: both end up with every event, exactly once (the file is not
    // written again while the other sink is retried).
    let hook = Hook::start(port, vec![]).await;
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    let expected = expected_ids(&handle);
    assert_exactly_once("file", &count_ids(&read_events(&events)), &expected);
    assert_exactly_once("http", &count_ids(&hook.accepted_lines()), &expected);
    assert!(setup.checkpoint().is_some());
    let status = status_json(&setup.config).await;
    assert_eq!(sink(&status, "web")["state"], "ok", "{status:#}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_that_gives_up_resends_only_the_failed_page_to_the_healthy_sink() {
    let now = now_ms();
    // Counts events per page: full pages, so the lenient simulator.
    let sim = start_sim(lenient_sim_config(900, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["archive", "web"],
        &sinks(&events, port),
        "page_size = 300",
    );

    // collect-now gives up on the down sink: the run fails, nothing is committed.
    let report = collect(&setup.config, &options(Some(2))).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert!(setup.checkpoint().is_none());
    assert_eq!(read_events(&events).len(), 300);

    // Next run with the sink back: everything in both, once; the file cut the page it wrote
    // but could not commit before writing it again.
    let hook = Hook::start(port, vec![]).await;
    let report = collect(&setup.config, &options(Some(2))).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    let expected = expected_ids(&handle);
    assert_exactly_once("http", &count_ids(&hook.accepted_lines()), &expected);
    let file = count_ids(&read_events(&events));
    assert_exactly_once("file", &file, &expected);
    sim.shutdown().await;
}
