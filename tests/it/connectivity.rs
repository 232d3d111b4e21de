//! `test-connectivity` through the real binary against the simulator.

use crate::common::*;

use std::sync::Arc;

const AUTH_IKEY: &str = "DIAUTHAP1KEYAUTHAP1K";
const AUTH_SKEY: &str = "authapisecretauthapisecretauthapisecret0";

async fn check(setup: &Setup) -> (Option<i32>, serde_json::Value, String) {
    let config = setup.config.to_str().unwrap();
    let json = run_cli(&["test-connectivity", "--config", config, "--json"]).await;
    let text_out = run_cli(&["test-connectivity", "--config", config]).await;
    assert_eq!(json.status.code(), text_out.status.code());
    let report: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json)));
    (
        json.status.code(),
        report,
        String::from_utf8_lossy(&text_out.stdout).into_owned(),
    )
}

fn verdict<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    crate::common::connectivity_check(report, check)
}

fn sim(
    mut f: impl FnMut(&mut duo_collector::simulator::SimConfig),
) -> duo_collector::simulator::SimConfig {
    let now = now_ms();
    let mut cfg = sim_config(100, now - 3_600_000, now - 60_000);
    cfg.auth_api_keys = Some((AUTH_IKEY.into(), AUTH_SKEY.into()));
    f(&mut cfg);
    cfg
}

fn setup_with_auth_keys(base_url: &str) -> Setup {
    let setup = Setup::new(
        base_url,
        "logs = [\"authentication\", \"administrator\", \"trust_monitor\"]",
    );
    let auth = setup.dir.path().join("auth.skey");
    std::fs::write(&auth, AUTH_SKEY).unwrap();
    set_mode(&auth, 0o600);
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "sinks = [\"local\"]\n",
        &format!(
            "sinks = [\"local\"]\nauth_ikey = \"{AUTH_IKEY}\"\nauth_skey_file = {:?}\n",
            auth.display().to_string()
        ),
    );
    std::fs::write(&setup.config, text).unwrap();
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_pass_with_good_keys() {
    let sim = start_sim(sim(|_| {})).await;
    let setup = setup_with_auth_keys(&sim.base_url());
    let (code, report, text) = check(&setup).await;
    assert_eq!(code, Some(0), "{text}");
    for c in [
        "DNS",
        "Connection",
        "Clock",
        "Admin API keys",
        "Log authentication",
        "Log administrator",
        "Log trust_monitor",
        "Auth API keys",
        "file sink",
    ] {
        assert_eq!(verdict(&report, c)["verdict"], "PASS", "{c}: {text}");
    }
    assert!(
        text.contains("PASS  Log authentication: readable") && text.contains("0 failed"),
        "{text}"
    );
    // connect_to is http://: TLS was not tested, and the checklist says so.
    assert_eq!(verdict(&report, "TLS")["verdict"], "WARN", "{text}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_warnings_are_counted_in_the_summary() {
    let sim = start_sim(sim(|_| {})).await;
    let setup = setup_with_auth_keys(&sim.base_url());
    // A sink no integration uses validates with a warning.
    let text = std::fs::read_to_string(&setup.config).unwrap()
        + "\n[[sink]]\nname = \"unused\"\ntype = \"stdout\"\n";
    std::fs::write(&setup.config, text).unwrap();
    let (_code, report, text) = check(&setup).await;
    let config = verdict(&report, "Config");
    assert_eq!(config["verdict"], "WARN", "{text}");
    assert!(!text.contains(" 0 warning(s)"), "{text}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precise_failures() {
    // Wrong secret key: the signature is refused.
    let s = start_sim(sim(|_| {})).await;
    let setup = setup_with_auth_keys(&s.base_url());
    std::fs::write(
        setup.dir.path().join("corp.skey"),
        "wrongwrongwrongwrongwrongwrongwrongwrong",
    )
    .unwrap();
    let (code, report, text) = check(&setup).await;
    assert_eq!(code, Some(1), "{text}");
    let keys = verdict(&report, "Admin API keys");
    assert_eq!(keys["verdict"], "FAIL");
    assert!(
        keys["detail"].as_str().unwrap().contains("40103")
            && keys["hint"].as_str().unwrap().contains("secret key"),
        "{keys}"
    );
    assert!(
        !text.contains("wrongwrongwrong"),
        "the secret is not printed"
    );

    // Wrong integration key.
    let setup = setup_with_auth_keys(&s.base_url());
    let t = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(IKEY, "DIWRONGWRONGWRONGWRO");
    std::fs::write(&setup.config, t).unwrap();
    let (code, report, _) = check(&setup).await;
    assert_eq!(code, Some(1));
    assert!(verdict(&report, "Admin API keys")["hint"]
        .as_str()
        .unwrap()
        .contains("integration key"));

    // An unreachable sink.
    let setup = setup_with_auth_keys(&s.base_url());
    let t = std::fs::read_to_string(&setup.config).unwrap().replace(
        setup.events.to_str().unwrap(),
        "/dev/null/nowhere/events.jsonl",
    );
    std::fs::write(&setup.config, t).unwrap();
    let (code, report, _) = check(&setup).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdict(&report, "file sink")["verdict"], "FAIL");
    assert_eq!(verdict(&report, "Admin API keys")["verdict"], "PASS");
    s.shutdown().await;

    // Keys without log permission for one kind.
    let s = start_sim(sim(|c| c.forbidden_kinds = vec!["trust_monitor".into()])).await;
    let setup = setup_with_auth_keys(&s.base_url());
    let (code, report, _) = check(&setup).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdict(&report, "Log authentication")["verdict"], "PASS");
    let tm = verdict(&report, "Log trust_monitor");
    assert_eq!(tm["verdict"], "FAIL");
    assert!(
        tm["hint"].as_str().unwrap().contains("Grant read log"),
        "{tm}"
    );
    s.shutdown().await;

    // A host 45 s ahead of Duo: measured from the Date header, above the 30 s warning line.
    let s = start_sim(sim(|c| c.clock_offset_ms = -45_000)).await;
    let setup = setup_with_auth_keys(&s.base_url());
    let (code, report, _) = check(&setup).await;
    assert_eq!(code, Some(0));
    let clock = verdict(&report, "Clock");
    assert_eq!(clock["verdict"], "WARN", "{clock}");
    let detail = clock["detail"].as_str().unwrap();
    assert!(
        detail.contains("behind") && (detail.contains("44.") || detail.contains("45.")),
        "{clock}"
    );
    assert!(
        clock["hint"].as_str().unwrap().contains("chrony"),
        "{clock}"
    );
    s.shutdown().await;

    // A skewed clock: a warning at 2 minutes, a failure past Duo's tolerance.
    let s = start_sim(sim(|c| c.clock_offset_ms = 120_000)).await;
    let setup = setup_with_auth_keys(&s.base_url());
    let (code, report, _) = check(&setup).await;
    assert_eq!(code, Some(0));
    assert_eq!(verdict(&report, "Clock")["verdict"], "WARN");
    s.shutdown().await;
    let s = start_sim(sim(|c| c.clock_offset_ms = 900_000)).await;
    let setup = setup_with_auth_keys(&s.base_url());
    let (code, report, _) = check(&setup).await;
    assert_eq!(code, Some(1));
    assert_eq!(verdict(&report, "Clock")["verdict"], "WARN");
    let keys = verdict(&report, "Admin API keys");
    assert!(
        keys["detail"].as_str().unwrap().contains("40105")
            && keys["hint"].as_str().unwrap().contains("clock"),
        "{keys}"
    );
    s.shutdown().await;
}

/// An HTTPS server with a certificate from the test's private CA: answers every request 200.
async fn https_server(certs: &crate::sink_support::Certs) -> u16 {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let chain = CertificateDer::pem_file_iter(&certs.server_cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// The HTTP sink is probed by its own driver, so its `ca_file` counts: a receiver whose
/// certificate comes from a private CA passes (and fails without the `ca_file`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_sink_is_probed_with_its_own_ca_file() {
    let sim = start_sim(sim(|_| {})).await;
    let setup = Setup::new(&sim.base_url(), "");
    let certs = crate::sink_support::make_certs(setup.dir.path());
    let port = https_server(&certs).await;
    let base = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("sinks = [\"local\"]\n", "sinks = [\"local\", \"web\"]\n");
    let web = |ca: &str| {
        format!(
            "{base}\n[[sink]]\nname = \"web\"\ntype = \"http\"\nurl = \"https://localhost:{port}/ingest\"\nformat = \"raw\"\n{ca}"
        )
    };

    let ca_line = format!("ca_file = {:?}\n", certs.ca.display().to_string());
    std::fs::write(&setup.config, web(&ca_line)).unwrap();
    let (code, report, text) = check(&setup).await;
    let http = verdict(&report, "http sink");
    assert_eq!(http["verdict"], "PASS", "{text}");
    assert!(
        http["detail"]
            .as_str()
            .unwrap()
            .contains("answered (HTTP 200)"),
        "{http}"
    );
    assert_eq!(code, Some(0), "{text}");

    // The same receiver without the private CA: its certificate is not trusted.
    std::fs::write(&setup.config, web("")).unwrap();
    let (code, report, text) = check(&setup).await;
    assert_eq!(verdict(&report, "http sink")["verdict"], "FAIL", "{text}");
    assert_eq!(code, Some(1));
    sim.shutdown().await;
}

/// A FAIL line carries one hint: Duo's message on the line, the fix for its code below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_key_check_carries_one_hint() {
    let sim = start_sim(sim(|_| {})).await;
    let setup = Setup::new(&sim.base_url(), "");
    std::fs::write(
        setup.dir.path().join("corp.skey"),
        "wrongwrongwrongwrongwrongwrongwrongwrong",
    )
    .unwrap();
    let (code, report, text) = check(&setup).await;
    assert_eq!(code, Some(1), "{text}");
    let keys = verdict(&report, "Admin API keys");
    let detail = keys["detail"].as_str().unwrap();
    let hint = keys["hint"].as_str().unwrap();
    assert!(
        detail.contains("40103") && hint.contains("secret key"),
        "{keys}"
    );
    assert!(
        !detail.contains("secret key") && !detail.contains(" — "),
        "the hint is not repeated in the detail: {detail}"
    );
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("FAIL") {
            let fixes = lines[i + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with(['P', 'W', 'F']))
                .filter(|l| l.trim_start().starts_with("fix:"))
                .count();
            assert_eq!(fixes, 1, "one fix line per FAIL: {text}");
            assert!(!line.contains(" — "), "one hint per FAIL line: {line}");
        }
    }
    sim.shutdown().await;
}

/// The NATS sink is probed by logging in and looking up its stream, as a delivery would: a
/// server that only accepts connections is not enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_sink_is_probed_with_its_credentials_and_stream() {
    const TOKEN: &str = "nats-probe-token-71";
    let sim = start_sim(sim(|_| {})).await;
    let setup = Setup::new(&sim.base_url(), "");
    let nats = crate::sink_support::NatsServer::start_with(
        setup.dir.path(),
        crate::sink_support::free_port(),
        &["--auth", TOKEN],
    )
    .await;
    let token_file = setup.dir.path().join("nats.token");
    let base = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("sinks = [\"local\"]\n", "sinks = [\"local\", \"bus\"]\n");
    let probe = |token: &str, stream_line: &str| {
        std::fs::write(&token_file, token).unwrap();
        set_mode(&token_file, 0o600);
        let sink = format!(
            "\n[[sink]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"{}\"\ntoken_file = {:?}\n{stream_line}\n",
            nats.url(),
            token_file.display().to_string()
        );
        std::fs::write(&setup.config, format!("{base}{sink}")).unwrap();
        check(&setup)
    };

    let (code, report, text) = probe("wrong", "stream = \"DUO\"\ncreate_stream = true").await;
    let bus = verdict(&report, "nats sink");
    assert_eq!(bus["verdict"], "FAIL", "{text}");
    assert!(
        bus["hint"]
            .as_str()
            .unwrap()
            .contains("refused the credentials"),
        "{bus}"
    );
    assert_eq!(code, Some(1));

    let (_, report, text) = probe(TOKEN, "stream = \"DUO\"").await;
    let bus = verdict(&report, "nats sink");
    assert_eq!(bus["verdict"], "FAIL", "{text}");
    assert!(
        bus["hint"]
            .as_str()
            .unwrap()
            .contains("create_stream = true"),
        "{bus}"
    );

    let (code, report, text) = probe(TOKEN, "stream = \"DUO\"\ncreate_stream = true").await;
    let bus = verdict(&report, "nats sink");
    assert_eq!(bus["verdict"], "PASS", "{text}");
    assert!(
        bus["detail"]
            .as_str()
            .unwrap()
            .contains("created at the first delivery"),
        "{bus}"
    );
    assert_eq!(code, Some(0), "{text}");
    sim.shutdown().await;
}
