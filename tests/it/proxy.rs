//! HTTP(S) proxies through the real binary: `HTTPS_PROXY` / `NO_PROXY` in the child's
//! environment, the per-integration `proxy` key, and what `test-connectivity` reports.
//!
//! The Duo host name `api-test0001.duosecurity.com` does not resolve here, which is the case of
//! a proxy that resolves names: only a client that sends `CONNECT api-test0001…:443` to the
//! test proxy (which maps it to the simulator behind TLS) gets any data.

use std::net::SocketAddr;

use crate::common::*;
use crate::proxy_support::{basic, make_ca, start_tls_terminator, ConnectProxy, TestCa};

const DUO_TARGET: &str = "api-test0001.duosecurity.com:443";
const PROXY_USER: &str = "svc-duo";
const PROXY_PASSWORD: &str = "pr0xy-pa55w0rd-Zq81";

const PROXY_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
];

/// Runs the binary with exactly the proxy variables in `env` (none inherited from the test).
async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(bin());
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DUO_COLLECTOR_LOG")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY");
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().await.expect("binary runs")
}

/// The simulator behind TLS, with a config whose integration talks to the Duo host name
/// (no `connect_to`) and trusts the test CA.
struct World {
    sim: duo_collector::simulator::Simulator,
    ca: TestCa,
    tls: SocketAddr,
    setup: Setup,
}

impl World {
    async fn start(events: usize) -> World {
        let now = now_ms();
        let sim = start_sim(sim_config(events, now - 3_600_000, now - 60_000)).await;
        let ca = make_ca();
        let tls = start_tls_terminator(&ca, sim.local_addr()).await;
        let setup = Setup::new(&sim.base_url(), "");
        let ca_path = setup.dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.ca_pem).unwrap();
        let text = std::fs::read_to_string(&setup.config).unwrap().replace(
            &format!("connect_to = \"{}\"\n", sim.base_url()),
            &format!("ca_file = {:?}\n", ca_path.display().to_string()),
        );
        assert!(!text.contains("connect_to"), "{text}");
        std::fs::write(&setup.config, text).unwrap();
        World {
            sim,
            ca,
            tls,
            setup,
        }
    }

    /// Adds lines to the integration table.
    fn configure(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.setup.config)
            .unwrap()
            .replace(
                "sinks = [\"local\"]\n",
                &format!("sinks = [\"local\"]\n{lines}\n"),
            );
        std::fs::write(&self.setup.config, text).unwrap();
    }

    fn replace(&self, old: &str, new: &str) {
        let text = std::fs::read_to_string(&self.setup.config).unwrap();
        assert!(text.contains(old), "{old:?} not in {text}");
        std::fs::write(&self.setup.config, text.replace(old, new)).unwrap();
    }

    fn config(&self) -> &str {
        self.setup.config.to_str().unwrap()
    }

    fn expected_count(&self) -> usize {
        let handle = self.sim.handle();
        handle
            .expected_events(None, "authentication", now_ms(), last_maxtime(&handle))
            .len()
    }

    /// A proxy that tunnels the Duo host to the TLS simulator.
    async fn proxy(&self, required_auth: Option<String>) -> ConnectProxy {
        ConnectProxy::start(vec![(DUO_TARGET.to_string(), self.tls)], required_auth).await
    }
}

async fn connectivity_json(
    config: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, serde_json::Value, String) {
    let json = run_with_env(&["test-connectivity", "--config", config, "--json"], env).await;
    let text_out = run_with_env(&["test-connectivity", "--config", config], env).await;
    let report: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json)));
    (json.status.code(), report, text(&text_out))
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    crate::common::connectivity_check(report, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_from_the_environment_carries_the_collection() {
    let world = World::start(300).await;
    let proxy = world.proxy(None).await;

    // Without a proxy the Duo host is not reachable from here: nothing to collect.
    let direct = run_with_env(&["collect-now", "--config", world.config()], &[]).await;
    assert!(!direct.status.success(), "{}", text(&direct));
    assert_eq!(count_lines(&world.setup.events), 0);
    assert!(proxy.seen().is_empty());

    let out = run_with_env(
        &["collect-now", "--config", world.config()],
        &[("HTTPS_PROXY", &proxy.url())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = id_counts(&read_events(&world.setup.events));
    assert_eq!(delivered.len(), world.expected_count());
    assert!(delivered.len() > 100, "{}", delivered.len());
    let targets = proxy.targets();
    assert!(!targets.is_empty());
    assert!(
        targets
            .iter()
            .all(|t| t == &format!("CONNECT {DUO_TARGET}")),
        "{targets:?}"
    );

    // The lower-case form and ALL_PROXY are honoured as well (reqwest's rules).
    for variable in ["https_proxy", "ALL_PROXY"] {
        let before = proxy.seen().len();
        let out = run_with_env(
            &["collect-now", "--config", world.config()],
            &[(variable, &proxy.url())],
        )
        .await;
        assert!(out.status.success(), "{variable}: {}", text(&out));
        assert!(proxy.seen().len() > before, "{variable} was not used");
    }
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_matching_the_host_bypasses_the_environment_proxy() {
    let world = World::start(50).await;
    let proxy = world.proxy(None).await;
    // Direct to the TLS simulator, under a name that resolves here.
    world.configure(&format!(
        "connect_to = \"https://localhost:{}\"",
        world.tls.port()
    ));

    // Without NO_PROXY the request goes to the proxy, which refuses this target.
    let proxied = run_with_env(
        &["collect-now", "--config", world.config()],
        &[("HTTPS_PROXY", &proxy.url())],
    )
    .await;
    assert!(!proxied.status.success(), "{}", text(&proxied));
    let expected_target = format!("CONNECT localhost:{}", world.tls.port());
    assert!(
        proxy.targets().contains(&expected_target),
        "{:?}",
        proxy.targets()
    );

    let before = proxy.seen().len();
    let out = run_with_env(
        &["collect-now", "--config", world.config()],
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("NO_PROXY", "example.org, localhost"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(count_lines(&world.setup.events) > 0);
    assert_eq!(proxy.seen().len(), before, "NO_PROXY bypasses the proxy");
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_key_overrides_the_environment_and_sends_its_credentials() {
    let world = World::start(200).await;
    let wanted = basic(PROXY_USER, PROXY_PASSWORD);
    let configured = world.proxy(Some(wanted.clone())).await;
    let from_env = world.proxy(None).await;
    world.configure(&format!(
        "proxy = \"http://{PROXY_USER}:{PROXY_PASSWORD}@{}\"",
        configured.addr
    ));

    // NO_PROXY in the environment does not apply to the key either.
    let out = run_with_env(
        &["collect-now", "--config", world.config()],
        &[
            ("HTTPS_PROXY", &from_env.url()),
            ("NO_PROXY", ".duosecurity.com"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        id_counts(&read_events(&world.setup.events)).len(),
        world.expected_count()
    );
    assert!(from_env.seen().is_empty(), "{:?}", from_env.seen());
    let seen = configured.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(request.target, format!("CONNECT {DUO_TARGET}"));
        assert_eq!(
            request.proxy_authorization.as_deref(),
            Some(wanted.as_str())
        );
    }
    let all = text(&out);
    assert!(
        all.contains("Duo requests go through a proxy") && all.contains("http://***@127.0.0.1"),
        "the debug log names the proxy: {all}"
    );
    assert!(!all.contains(PROXY_PASSWORD), "{all}");

    // A wrong password: the proxy answers 407 and the run fails.
    world.replace(
        &format!("{PROXY_USER}:{PROXY_PASSWORD}@"),
        &format!("{PROXY_USER}:wrong-{PROXY_PASSWORD}@"),
    );
    let out = run_with_env(&["collect-now", "--config", world.config()], &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("proxy authorization required"),
        "the error names the cause: {}",
        text(&out)
    );
    assert!(!text(&out).contains(PROXY_PASSWORD), "{}", text(&out));
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_proxy_is_spoken_to_over_tls() {
    let world = World::start(50).await;
    let proxy = world.proxy(None).await;
    // TLS to the proxy, with the certificate of `localhost` from the same test CA (`ca_file`).
    let tls_to_proxy = start_tls_terminator(&world.ca, proxy.addr).await;
    world.configure(&format!(
        "proxy = \"https://localhost:{}\"",
        tls_to_proxy.port()
    ));
    let out = run_with_env(&["collect-now", "--config", world.config()], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(count_lines(&world.setup.events) > 0);
    assert!(proxy.targets().contains(&format!("CONNECT {DUO_TARGET}")));
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_none_ignores_the_environment() {
    let world = World::start(50).await;
    let proxy = world.proxy(None).await;
    world.configure(&format!(
        "proxy = \"none\"\nconnect_to = \"https://localhost:{}\"",
        world.tls.port()
    ));
    let out = run_with_env(
        &["collect-now", "--config", world.config()],
        &[("HTTPS_PROXY", &proxy.url()), ("ALL_PROXY", &proxy.url())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(count_lines(&world.setup.events) > 0);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connectivity_reports_the_proxy_and_lets_it_resolve_duo() {
    let world = World::start(20).await;
    let proxy = world.proxy(None).await;

    // Directly, the Duo host does not resolve (or is not this simulator): the check fails.
    let (code, report, out) = connectivity_json(world.config(), &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        check(&report, "Proxy")["detail"]
            .as_str()
            .unwrap()
            .starts_with("none, direct connection"),
        "{out}"
    );
    assert!(proxy.seen().is_empty());

    // NO_PROXY matching the Duo host: direct again, and the report says so.
    let (code, report, out) = connectivity_json(
        world.config(),
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("NO_PROXY", "duosecurity.com"),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        check(&report, "Proxy")["detail"]
            .as_str()
            .unwrap()
            .contains("NO_PROXY"),
        "{out}"
    );
    assert!(proxy.seen().is_empty());

    // Through the environment's proxy: every check passes, DNS included.
    let (code, report, out) =
        connectivity_json(world.config(), &[("HTTPS_PROXY", &proxy.url())]).await;
    assert_eq!(code, Some(0), "{out}");
    let shown = check(&report, "Proxy");
    assert_eq!(shown["verdict"], "PASS");
    assert_eq!(
        shown["detail"],
        format!(
            "{} (from the environment: HTTPS_PROXY or ALL_PROXY)",
            proxy.url()
        )
    );
    let dns = check(&report, "DNS");
    assert_eq!(dns["verdict"], "PASS", "{out}");
    assert!(
        dns["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("the proxy resolves {HOST}")),
        "{dns}"
    );
    for name in [
        "Connection and TLS",
        "Clock",
        "Admin API keys",
        "Log authentication",
    ] {
        assert_eq!(check(&report, name)["verdict"], "PASS", "{name}: {out}");
    }
    assert!(
        check(&report, "Connection and TLS")["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("through proxy {}", proxy.url())),
        "{out}"
    );
    assert!(out.contains("PASS  Proxy: http://127.0.0.1:"), "{out}");

    // Through the `proxy` key with credentials: shown redacted, never in clear.
    let authenticated = world.proxy(Some(basic(PROXY_USER, PROXY_PASSWORD))).await;
    world.configure(&format!(
        "proxy = \"http://{PROXY_USER}:{PROXY_PASSWORD}@{}\"",
        authenticated.addr
    ));
    let (code, report, out) =
        connectivity_json(world.config(), &[("HTTPS_PROXY", &proxy.url())]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        check(&report, "Proxy")["detail"],
        format!(
            "http://***@{} (from `proxy` in the config)",
            authenticated.addr
        )
    );
    assert!(
        !out.contains(PROXY_PASSWORD) && !out.contains(PROXY_USER),
        "{out}"
    );
    assert!(!report.to_string().contains(PROXY_PASSWORD));
    assert!(!authenticated.seen().is_empty());

    // A proxy whose name does not resolve fails the DNS check, naming the proxy.
    world.replace(&authenticated.addr.to_string(), "proxy.invalid:3128");
    let (code, report, out) = connectivity_json(world.config(), &[]).await;
    assert_eq!(code, Some(1), "{out}");
    let dns = check(&report, "DNS");
    assert_eq!(dns["verdict"], "FAIL", "{out}");
    assert!(
        dns["detail"]
            .as_str()
            .unwrap()
            .contains("proxy proxy.invalid"),
        "{dns}"
    );
    assert!(!out.contains(PROXY_PASSWORD), "{out}");
    world.sim.shutdown().await;
}
