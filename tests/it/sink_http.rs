//! HTTP sink into a local test server: batching, gzip, auth header, Splunk HEC envelope,
//! Retry-After on 429, retry on 503, no checkpoint movement on a permanent 400, and recovery
//! once the server is back.

use std::time::Duration;

use crate::common::*;
use crate::sink_support::hook::Hook;
use crate::sink_support::*;
use duo_collector::state::RunOutcome;

const TOKEN: &str = "0c6f7e2a-hec-token-5d1b";

fn http_sink(setup_dir: &std::path::Path, url: &str, extra: &str) -> String {
    let token = setup_dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    set_mode(&token, 0o600);
    format!(
        r#"
[[sink]]
name = "web"
type = "http"
url = "{url}"
token_file = {token:?}
format = "raw"
{extra}
"#,
        token = token.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_batches_gzip_and_authorization() {
    let now = now_ms();
    let sim = start_sim(sim_config(1_200, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let hook = Hook::start(0, vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = http_sink(
        dir.path(),
        &hook.url(),
        "flavor = \"splunk_hec\"\ngzip = true\nbatch_max_events = 200\nindex = \"duo\"",
    );
    let setup = SinkSetup::new(&sim.base_url(), &["web"], &sinks, "page_size = 500");
    let report = collect(&setup.config, &options(Some(3))).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);

    let expected = expected_ids(&handle);
    let requests = hook.requests();
    // Pages of 500 are cut into requests of at most 200 events.
    let pages = expected.len().div_ceil(500);
    assert!(
        requests.len() >= pages * 2,
        "{} requests for {} events",
        requests.len(),
        expected.len()
    );
    let mut events = Vec::new();
    for r in &requests {
        assert!(r.gzipped, "Content-Encoding: gzip");
        assert_eq!(r.headers["authorization"], format!("Splunk {TOKEN}"));
        assert_eq!(r.headers["content-type"], "application/json");
        let lines: Vec<serde_json::Value> = String::from_utf8(r.body.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            !lines.is_empty() && lines.len() <= 200,
            "{} events in one request",
            lines.len()
        );
        for envelope in lines {
            let keys: Vec<&str> = envelope
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys.len(), 6, "{keys:?}");
            assert_eq!(envelope["sourcetype"], "cisco:duo:authentication");
            assert_eq!(envelope["source"], "duo-collector:corp");
            assert_eq!(envelope["index"], "duo");
            assert!(envelope["host"].is_string());
            let event = envelope["event"].clone();
            let id = event["_duo_collector"]["event_id"].as_str().unwrap();
            let time = envelope["time"].as_f64().unwrap();
            assert_eq!(
                (time * 1000.0).round() as i64,
                expected[id],
                "HEC time is the event time in seconds"
            );
            events.push(event);
        }
    }
    assert_exactly_once("hec", &count_ids(&events), &expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_retry_on_503() {
    let now = now_ms();
    let sim = start_sim(sim_config(300, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let hook = Hook::start(
        0,
        vec![
            (429, vec![("retry-after", "2".into())], "slow down".into()),
            (503, vec![], "maintenance".into()),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["web"],
        &http_sink(dir.path(), &hook.url(), ""),
        "",
    );
    let report = collect(&setup.config, &options(Some(4))).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    let r = hook.requests();
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>()[..3],
        [429, 503, 200]
    );
    // Our own backoff is 50 ms: the two-second wait is the server's Retry-After.
    assert!(
        r[1].at - r[0].at >= Duration::from_secs(2),
        "waited {:?} after the 429",
        r[1].at - r[0].at
    );
    assert!(
        r[2].at - r[1].at < Duration::from_secs(2),
        "503 retried on the backoff schedule"
    );
    assert_eq!(r[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(r[0].headers["content-type"], "application/x-ndjson");
    assert_exactly_once(
        "ndjson",
        &count_ids(&hook.accepted_lines()),
        &expected_ids(&handle),
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_400_keeps_the_checkpoint_and_delivery_recovers_when_the_server_is_back() {
    let now = now_ms();
    let sim = start_sim(sim_config(300, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let hook = Hook::start(
        0,
        vec![(
            400,
            vec![],
            r#"{"text":"Invalid data format","code":6}"#.into(),
        )],
    )
    .await;
    let port = hook.port;
    let dir = tempfile::tempdir().unwrap();
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["web"],
        &http_sink(dir.path(), &hook.url(), "flavor = \"splunk_hec\""),
        "",
    );

    // 400: not retried, the run fails, the checkpoint stays, status says why.
    let report = collect(&setup.config, &options(Some(5))).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("HEC code 6: Invalid data format"),
        "{error}"
    );
    assert!(!error.contains(TOKEN));
    assert_eq!(
        hook.requests().len(),
        1,
        "a permanent failure is not retried"
    );
    assert!(setup.checkpoint().is_none(), "checkpoint unmoved");
    let status = &setup.sink_status()[0];
    assert!(status.failing_since_ms.is_some() && status.last_success_ms.is_none());
    assert!(status.last_error.as_deref().unwrap().contains("HTTP 400"));

    // The server goes away; the service keeps retrying (no attempt limit) without moving the
    // checkpoint, and delivers everything once the server is back.
    hook.stop().await;
    let config = setup.config.clone();
    let run = tokio::spawn(async move { collect(&config, &options(None)).await });
    wait_until("two failed deliveries", || {
        setup.sink_status().iter().any(|s| s.failed_attempts >= 2)
    })
    .await;
    assert!(!run.is_finished(), "collection waits for the sink");
    assert!(
        setup.checkpoint().is_none(),
        "checkpoint unmoved while the sink is down"
    );
    let failing = &setup.sink_status()[0];
    assert!(failing.failed_attempts >= 2, "{failing:?}");
    let hook = Hook::start(port, vec![]).await;
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    let events: Vec<serde_json::Value> = hook
        .accepted_lines()
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_exactly_once("recovered", &count_ids(&events), &expected_ids(&handle));
    assert!(setup.checkpoint().is_some());
    let healthy = &setup.sink_status()[0];
    assert!(healthy.failing_since_ms.is_none() && healthy.last_success_ms.is_some());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_sink_is_retried_commits_nothing() {
    let now = now_ms();
    let sim = start_sim(sim_config(100, now - 3_600_000, now - 60_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/in", free_port());
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["web"],
        &http_sink(dir.path(), &url, ""),
        "",
    );
    let config = duo_collector::settings::Config::load(&setup.config).unwrap();
    let runtime = duo_collector::daemon::Runtime::build(&config, &options(None)).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
    });
    let reports = tokio::time::timeout(
        Duration::from_secs(20),
        duo_collector::daemon::collect_once(&runtime, None, &cancel),
    )
    .await
    .expect("shutdown ends the wait for the sink");
    assert_eq!(reports[0].streams[0].outcome, RunOutcome::Interrupted);
    assert!(
        setup.checkpoint().is_none(),
        "a cancelled delivery commits nothing"
    );
    sim.shutdown().await;
}

/// Under the service's policy (retry until delivered): 401, 403 and 400 end the run at the
/// first answer, with what to fix; 503, 429 and 408 are retried until the receiver takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_permanent_with_the_fix_and_408_429_503_are_retried() {
    let now = now_ms();
    let sim = start_sim(sim_config(50, now - 3_600_000, now - 60_000)).await;
    let until_delivered = |config: std::path::PathBuf| async move {
        tokio::time::timeout(Duration::from_secs(30), collect(&config, &options(None)))
            .await
            .expect("the run ends: a permanent error is not retried forever")
    };
    for (status, fix) in [
        (401, "fix: the receiver refused the credentials"),
        (403, "fix: the credentials are valid but not allowed"),
        (400, "fix: the receiver refused the events as sent"),
    ] {
        let hook = Hook::start(0, vec![(status, vec![], "no".into())]).await;
        let dir = tempfile::tempdir().unwrap();
        let sink = http_sink(dir.path(), &hook.url(), "");
        let setup = SinkSetup::new(&sim.base_url(), &["web"], &sink, "");
        let report = until_delivered(setup.config.clone()).await;
        assert_eq!(report.outcome, RunOutcome::Failed, "HTTP {status}");
        let error = report.error.unwrap_or_default();
        assert!(
            error.contains(&format!("HTTP {status}")) && error.contains(fix),
            "HTTP {status}: {error}"
        );
        assert_eq!(hook.requests().len(), 1, "HTTP {status} is not retried");
        assert!(
            setup.checkpoint().is_none(),
            "HTTP {status}: checkpoint unmoved"
        );
        hook.stop().await;
    }
    for status in [503, 429, 408] {
        let hook = Hook::start(0, vec![(status, vec![], "later".into())]).await;
        let dir = tempfile::tempdir().unwrap();
        let sink = http_sink(dir.path(), &hook.url(), "");
        let setup = SinkSetup::new(&sim.base_url(), &["web"], &sink, "");
        let report = until_delivered(setup.config.clone()).await;
        assert_eq!(
            report.outcome,
            RunOutcome::Ok,
            "HTTP {status}: {:?}",
            report.error
        );
        let statuses: Vec<u16> = hook.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses[..2], [status, 200], "HTTP {status} is retried");
        assert!(
            setup.checkpoint().is_some(),
            "HTTP {status}: delivered and committed"
        );
        hook.stop().await;
    }
    sim.shutdown().await;
}
