//! syslog into a real rsyslogd (started by the test): UDP, TCP and TLS deliver every event
//! once with the RFC 5424 header fields rsyslog parsed matching what was sent; mutual TLS
//! refuses a client without a certificate (and the checkpoint stays).

use crate::common::*;
use crate::sink_support::*;
use duo_collector::state::RunOutcome;

/// Checks what rsyslog parsed against the events sent.
fn check_received(
    input: &str,
    received: &[serde_json::Value],
    expected: &std::collections::HashMap<String, i64>,
) {
    let events = syslog_events(input, received);
    assert_exactly_once(input, &count_ids(&events), expected);
    for (m, event) in received.iter().zip(&events) {
        let id = event["_duo_collector"]["event_id"].as_str().unwrap();
        let severity: u8 = m["severity"].as_str().unwrap().parse().unwrap();
        let expected_severity = if event["result"] == "denied" || event["result"] == "fraud" {
            4
        } else {
            6
        };
        assert_eq!(severity, expected_severity, "{input}: severity of {event}");
        assert_eq!(m["facility"], "19", "{input}: local3");
        assert_eq!(
            m["pri"],
            (19 * 8 + u32::from(severity)).to_string(),
            "{input}"
        );
        assert_eq!(m["version"], "1", "{input}: parsed as RFC 5424");
        assert_eq!(m["hostname"], "collector-test", "{input}");
        assert_eq!(m["app"], "duo-collector", "{input}");
        assert_eq!(m["procid"], std::process::id().to_string(), "{input}");
        assert_eq!(m["msgid"], "authentication", "{input}");
        let ts = chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(
            ts.timestamp_millis(),
            expected[id],
            "{input}: TIMESTAMP is the event time"
        );
        let sd = m["sd"].as_str().unwrap();
        assert!(
            sd.starts_with("[duo@32473 ")
                && sd.contains(&format!("event_id=\"{id}\""))
                && sd.contains("integration=\"corp\""),
            "{input}: structured data {sd}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_tcp_and_tls_deliver_every_event_once_with_parsed_headers() {
    let now = now_ms();
    let sim = start_sim(sim_config(400, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(peer_dir.path());
    let rsyslog = Rsyslog::start(peer_dir.path(), &certs).await;

    let sinks = [
        syslog_sink("udp", "udp", rsyslog.udp, "max_message_size = 8192"),
        syslog_sink("tcp", "tcp", rsyslog.tcp, ""),
        syslog_sink(
            "tls",
            "tls",
            rsyslog.tls,
            &format!("ca_file = {:?}", certs.ca.display().to_string()),
        ),
    ]
    .concat();
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["udp", "tcp", "tls"],
        &sinks,
        "page_size = 250",
    );
    let report = collect(&setup.config, &options(Some(3))).await;
    assert_eq!(
        report.outcome,
        RunOutcome::Ok,
        "{:?}\n{}",
        report.error,
        rsyslog.log()
    );
    let expected = expected_ids(&handle);
    assert!(
        expected.len() > 300,
        "enough events to span pages and pieces"
    );
    for input in ["udp", "tcp", "tls"] {
        let received = rsyslog.wait_for(input, expected.len()).await;
        check_received(input, &received, &expected);
    }
    assert!(setup.checkpoint().is_some());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let now = now_ms();
    let sim = start_sim(sim_config(60, now - 3_600_000, now - 60_000)).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(peer_dir.path());
    let rsyslog = Rsyslog::start(peer_dir.path(), &certs).await;
    let ca = format!("ca_file = {:?}", certs.ca.display().to_string());

    // No client certificate: the server ends the session, the page is not acknowledged.
    let anonymous = SinkSetup::new(
        &sim.base_url(),
        &["mtls"],
        &syslog_sink("mtls", "tls", rsyslog.mtls, &ca),
        "",
    );
    let report = collect(&anonymous.config, &options(Some(2))).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("refused the TLS session") || error.contains("TLS handshake"),
        "{error}"
    );
    assert!(
        anonymous.checkpoint().is_none(),
        "the checkpoint did not move"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        rsyslog.received("mtls").is_empty(),
        "nothing was accepted without a certificate"
    );

    // Without the test CA, the server's certificate is not trusted.
    let untrusted = SinkSetup::new(
        &sim.base_url(),
        &["tls"],
        &syslog_sink("tls", "tls", rsyslog.tls, ""),
        "",
    );
    let report = collect(&untrusted.config, &options(Some(1))).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("certificate"),
        "{:?}",
        report.error
    );

    // A server name that is no host name cannot work on any retry: the run fails at once,
    // with the fix.
    let misnamed = SinkSetup::new(
        &sim.base_url(),
        &["tls"],
        &syslog_sink(
            "tls",
            "tls",
            rsyslog.tls,
            &format!("{ca}\nserver_name = \"not a host name\""),
        ),
        "",
    );
    let report = collect(&misnamed.config, &options(Some(5))).await;
    let error = report.error.as_deref().unwrap_or_default();
    assert!(
        report.outcome == RunOutcome::Failed
            && error.contains("permanent failure, not retried")
            && error.contains("set the sink's `server_name`"),
        "{error}"
    );

    // With the client certificate, everything arrives.
    let mutual = format!(
        "{ca}\ncert_file = {:?}\nkey_file = {:?}",
        certs.client_cert.display().to_string(),
        certs.client_key.display().to_string()
    );
    let report = collect(
        &anonymous.config_with(&syslog_sink("mtls", "tls", rsyslog.mtls, &mutual)),
        &options(Some(2)),
    )
    .await;
    assert_eq!(
        report.outcome,
        RunOutcome::Ok,
        "{:?}\n{}",
        report.error,
        rsyslog.log()
    );
    let expected = expected_ids(&handle);
    let received = rsyslog.wait_for("mtls", expected.len()).await;
    check_received("mtls", &received, &expected);
    sim.shutdown().await;
}
