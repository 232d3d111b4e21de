//! Chaos on the network sinks: the receiver — a real rsyslogd (TCP and TLS inputs) or a real
//! `nats-server -js` — is stopped mid-drain for 60 s (`CHAOS_OUTAGE_S`), then started again
//! on the same port. The collection (the service's retry policy: until delivered) waits for
//! it, and afterwards the receiver holds every event: 0 lost, and none twice.
//!
//! syslog has no application-level acknowledgement, so rsyslogd is stopped while no page is
//! on the wire (the next Duo response is held back by the simulator): what TCP cannot promise —
//! bytes a receiver took into its socket buffer and never read before dying — is not what this
//! measures (ARCHITECTURE.md, "Delivery after a crash"). JetStream acknowledges every event, so
//! nats-server is stopped at whatever moment the drain has reached.
//!
//! The two tests run in parallel (about 75 s together). Each prints its loss and duplicate
//! counts and `N passed, N failed`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::sink_support::*;
use duo_collector::simulator::{Fault, SimConfig};
use duo_collector::state::RunOutcome;

fn outage() -> Duration {
    let seconds = std::env::var("CHAOS_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// A backlog that takes several seconds to drain at the test pace.
fn backlog() -> SimConfig {
    let now = now_ms();
    let mut cfg = sim_config(4_000, now - 3 * 3_600_000, now - 60_000);
    cfg.response_delay_ms = 20;
    cfg
}

/// (lost, duplicated or unexpected) of `counts` against `expected`; prints them and
/// `N passed, N failed`.
fn report_losses(
    what: &str,
    counts: &HashMap<String, usize>,
    expected: &HashMap<String, i64>,
) -> (usize, usize) {
    let lost = expected
        .keys()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let duplicated: usize = counts.values().map(|c| c - 1).sum();
    let unexpected = counts
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .count();
    println!(
        "{what}: {} events expected, {lost} lost, {duplicated} duplicated, {unexpected} unexpected",
        expected.len()
    );
    let ok = lost == 0 && duplicated == 0 && unexpected == 0;
    println!("{} passed, {} failed", ok as u8, !ok as u8);
    (lost, duplicated + unexpected)
}

/// Waits until `count()` holds still for `quiet` (fails after `within`).
async fn until_still(mut count: impl FnMut() -> usize, quiet: Duration, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = count();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return;
        }
        assert!(Instant::now() < deadline, "the count never held still");
    }
}

async fn until_at_least(mut count: impl FnMut() -> usize, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: fewer than {n} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_and_tls_receiver_stopped_for_a_minute_mid_drain_loses_nothing() {
    let sim = start_sim(backlog()).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(peer_dir.path());
    let mut rsyslog = Rsyslog::start(peer_dir.path(), &certs).await;
    let ca = format!("ca_file = {:?}", certs.ca.display().to_string());
    let sinks = [
        syslog_sink("tcp", "tcp", rsyslog.tcp, ""),
        syslog_sink("tls", "tls", rsyslog.tls, &ca),
    ]
    .concat();
    let setup = SinkSetup::new(&sim.base_url(), &["tcp", "tls"], &sinks, "page_size = 200");
    let config = setup.config.clone();
    let run = tokio::spawn(async move { collect(&config, &options(None)).await });

    until_at_least(|| rsyslog.received("tls").len(), 400, "tls").await;
    // Hold the next Duo response back, so that rsyslogd stops with no page on the wire.
    handle.inject_faults(vec![Fault::Delay(Duration::from_secs(8))]);
    let both = || rsyslog.received("tcp").len() + rsyslog.received("tls").len();
    until_still(both, Duration::from_millis(1500), Duration::from_secs(20)).await;
    rsyslog.stop();
    let at_stop = (rsyslog.received("tcp").len(), rsyslog.received("tls").len());
    println!("syslog: rsyslogd stopped after {at_stop:?} (tcp, tls) messages");

    tokio::time::sleep(outage()).await;
    assert!(!run.is_finished(), "the drain waits for the receiver");
    rsyslog.restart().await;
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the drain finishes once rsyslogd is back")
        .unwrap();
    assert_eq!(
        report.outcome,
        RunOutcome::Ok,
        "{:?}\n{}",
        report.error,
        rsyslog.log()
    );

    let expected = expected_ids(&handle);
    assert!(expected.len() > at_stop.1, "the outage was mid-drain");
    let mut failed = Vec::new();
    for input in ["tcp", "tls"] {
        let received = rsyslog.wait_for(input, expected.len()).await;
        let events = syslog_events(input, &received);
        let (lost, extra) =
            report_losses(&format!("syslog {input}"), &count_ids(&events), &expected);
        if lost + extra > 0 {
            failed.push(input);
        }
    }
    assert!(failed.is_empty(), "lost or repeated events on {failed:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_stopped_for_a_minute_mid_drain_loses_nothing() {
    let sim = start_sim(backlog()).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let nats = NatsServer::start(peer_dir.path(), port).await;
    let url = nats.url();
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["bus"],
        &nats_sink(&url),
        "page_size = 200",
    );
    let config = setup.config.clone();
    let run = tokio::spawn(async move { collect(&config, &options(None)).await });

    // Mid-drain: some pages are in the stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = stream_messages(&url).await;
        if messages >= 400 {
            println!("nats: nats-server stopped after {messages} messages");
            break;
        }
        assert!(Instant::now() < deadline, "no progress into NATS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.stop();

    tokio::time::sleep(outage()).await;
    assert!(!run.is_finished(), "the drain waits for the server");
    let nats = NatsServer::start(peer_dir.path(), port).await;
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the drain finishes once nats-server is back")
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);

    let contents = stream_contents(&nats.url()).await;
    let events: Vec<serde_json::Value> = contents.into_iter().map(|(_, _, e)| e).collect();
    let expected = expected_ids(&handle);
    let (lost, extra) = report_losses("nats", &count_ids(&events), &expected);
    assert_eq!((lost, extra), (0, 0), "lost, repeated");
    sim.shutdown().await;
}
