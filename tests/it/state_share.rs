//! Several `duo-collector run` processes sharing one NATS state store: the streams of an MSP
//! parent are shared fairly (each held by exactly one instance, none above its share while
//! another has none), a joining instance gets work within one `lease_ttl`, a clean stop hands
//! its streams over at once, and across all of it every event reaches the sinks exactly once.
//! `status` shows who holds what, and the metrics count leases per instance.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::*;
use crate::sink_support::{free_port, NatsServer};
use duo_collector::simulator::{AccountsConfig, ChildAccount, KindCounts, Simulator};
use duo_collector::state::{LeaseView, NatsStore, StoreSettings};

const DAY_MS: i64 = 86_400_000;
const LEASE_TTL: Duration = Duration::from_secs(6);
const CHILDREN: u8 = 4;
const LOGS: [&str; 2] = ["authentication", "administrator"];

fn child(n: u8) -> ChildAccount {
    ChildAccount {
        account_id: format!("DA{n:018}"),
        name: format!("Child {n}"),
        api_hostname: format!("api-child{n:03}.duosecurity.com"),
        counts: KindCounts {
            authentication: 900,
            administrator: 300,
            ..KindCounts::default()
        },
        seed: 300 + u64::from(n),
    }
}

async fn msp_sim() -> Simulator {
    let now = now_ms();
    let mut cfg = sim_config(0, now - DAY_MS, now - 60_000);
    cfg.ikey = "DIADM1NKEYADM1NKEY00".into();
    cfg.accounts = Some(AccountsConfig {
        ikey: IKEY.into(),
        skey: SKEY.into(),
        children: (1..=CHILDREN).map(child).collect(),
    });
    start_sim(cfg).await
}

/// One collector process with its own state dir, file sink and log file.
struct Instance {
    setup: Setup,
    metrics_port: u16,
    child: tokio::process::Child,
}

/// The integration settings of the MSP parent the instances share.
const MSP: &str = "accounts_api = true\naccount_refresh = \"0s\"\ninitial_lookback = \"2d\"\npage_size = 300\nschedule = \"*/2 * * * * *\"\nlogs = [\"authentication\", \"administrator\"]";

impl Instance {
    fn config(sim: &Simulator, nats: &NatsServer, n: usize, settings: &str) -> (Setup, u16) {
        let setup = Setup::new(&sim.base_url(), settings);
        let metrics_port = free_port();
        let text = std::fs::read_to_string(&setup.config).unwrap();
        // One file sink per instance, named apart: file marks are kept per host and sink.
        let text = text
            .replace("\"local\"", &format!("\"local-{n}\""))
            .replace(
                "[collector]\n",
                &format!("[collector]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"),
            );
        let text = format!(
            "{text}\n[state]\nbackend = \"nats\"\nurl = \"{}\"\nbucket_prefix = \"share\"\nlease_ttl = \"{}s\"\ntimeout = \"1s\"\n",
            nats.url(),
            LEASE_TTL.as_secs()
        );
        std::fs::write(&setup.config, text).unwrap();
        (setup, metrics_port)
    }

    fn start(sim: &Simulator, nats: &NatsServer, n: usize) -> Instance {
        Instance::start_with(sim, nats, n, MSP)
    }

    fn start_with(sim: &Simulator, nats: &NatsServer, n: usize, settings: &str) -> Instance {
        let (setup, metrics_port) = Instance::config(sim, nats, n, settings);
        let log = std::fs::File::create(setup.dir.path().join("collector.log")).unwrap();
        let child = tokio::process::Command::new(bin())
            .args(["run", "--config", setup.config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .env_remove("STATE_DIRECTORY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn duo-collector run");
        Instance {
            setup,
            metrics_port,
            child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.setup.dir.path().join("collector.log")).unwrap_or_default()
    }

    fn events_path(&self) -> PathBuf {
        self.setup.events.clone()
    }

    async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// SIGTERM, and wait for the process to end (its files stay until it is dropped).
    async fn stop(&mut self) -> String {
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        kill(pid, Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("stops within 30 s")
            .unwrap();
        assert!(status.success(), "clean exit: {status:?}\n{}", self.log());
        self.log()
    }
}

/// The lease bucket as the test reads it (a handle of its own, never announced).
async fn observer_store(instance: &Instance) -> NatsStore {
    let config = duo_collector::settings::Config::load(&instance.setup.config).unwrap();
    let StoreSettings::Nats(settings) = &config.state else {
        panic!("the NATS store")
    };
    NatsStore::open(settings).await.unwrap()
}

/// How many streams each live instance holds.
fn shares(view: &LeaseView) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = view.live.iter().map(|i| (i.clone(), 0)).collect();
    for h in &view.holders {
        *out.entry(h.instance.clone()).or_default() += 1;
    }
    out
}

async fn wait_for_view(
    store: &NatsStore,
    what: &str,
    within: Duration,
    reached: impl Fn(&LeaseView) -> bool,
) -> (LeaseView, Duration) {
    let started = Instant::now();
    loop {
        // A read that times out on a loaded machine is tried again, within `within`.
        let view = match store.lease_view().await {
            Ok(view) => view,
            Err(e) => {
                assert!(started.elapsed() < within, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if reached(&view) {
            return (view, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}: {:?}",
            shares(&view)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn delivered(instances: &[PathBuf]) -> Vec<serde_json::Value> {
    instances.iter().flat_map(|p| read_events(p)).collect()
}

fn accounts() -> Vec<String> {
    (1..=CHILDREN).map(|n| child(n).account_id).collect()
}

fn everything_once(sim: &Simulator, files: &[PathBuf]) -> Tally {
    let ids = accounts();
    let accounts: Vec<Option<&str>> = ids.iter().map(|a| Some(a.as_str())).collect();
    tally_accounts(
        &sim.handle(),
        &delivered(files),
        &accounts,
        &LOGS,
        now_ms() - 60_000,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_streams_fairly_a_joiner_gets_work_within_a_lease_ttl_and_a_clean_stop_hands_over_at_once(
) {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path(), free_port()).await;
    let sim = msp_sim().await;
    let streams = usize::from(CHILDREN) * LOGS.len();

    let mut a = Instance::start(&sim, &nats, 1);
    let mut b = Instance::start(&sim, &nats, 2);
    let store = observer_store(&a).await;
    let (view, _) = wait_for_view(
        &store,
        "two instances holding every stream, half each",
        Duration::from_secs(30),
        |v| {
            v.live.len() == 2
                && v.holders.len() == streams
                && shares(v).values().all(|n| *n == streams / 2)
        },
    )
    .await;
    let ab: Vec<String> = view.live.iter().cloned().collect();

    // A third instance joins: it gets work within one lease_ttl of announcing itself, and
    // then its share.
    let mut c = Instance::start(&sim, &nats, 3);
    let (view, _) = wait_for_view(
        &store,
        "the third instance announced",
        Duration::from_secs(30),
        |v| v.live.len() == 3,
    )
    .await;
    let joiner = view.live.iter().find(|i| !ab.contains(i)).cloned().unwrap();
    let floor = streams / 3;
    let share = streams.div_ceil(3);
    let (view, took) = wait_for_view(
        &store,
        "the joiner holding a stream",
        Duration::from_secs(30),
        |v| shares(v).get(&joiner).is_some_and(|n| *n > 0),
    )
    .await;
    assert!(
        took <= LEASE_TTL,
        "the joiner got work {took:?} after it announced itself (lease_ttl {LEASE_TTL:?}): {:?}",
        shares(&view)
    );
    let (view, _) = wait_for_view(
        &store,
        "the joiner holding its share",
        Duration::from_secs(30),
        |v| {
            let s = shares(v);
            v.holders.len() == streams && s.values().all(|n| (floor..=share).contains(n))
        },
    )
    .await;
    assert!(shares(&view)[&joiner] >= floor);

    // `status` shows each stream's holder and the instances.
    let out = run_cli(&[
        "status",
        "--json",
        "--config",
        a.setup.config.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let instances = status["instances"].as_array().expect("instances");
    assert_eq!(
        instances.iter().filter(|i| i["live"] == true).count(),
        3,
        "{instances:?}"
    );
    let held: usize = instances
        .iter()
        .map(|i| i["streams_held"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(
        held, streams,
        "every stream held by exactly one instance: {instances:?}"
    );
    let rows = status["streams"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["held_by"].as_str().is_some() && r["held_since"].as_str().is_some()),
        "{rows:?}"
    );
    let plain = run_cli(&["status", "--config", a.setup.config.to_str().unwrap()]).await;
    assert!(text(&plain).contains("held by      : "), "{}", text(&plain));
    assert!(
        text(&plain).contains(&format!("{joiner} : live")),
        "{}",
        text(&plain)
    );

    // The metrics count the leases per instance.
    let metrics = c.metrics().await;
    assert!(
        metrics.contains(&format!(
            "duo_collector_streams_held{{instance=\"{joiner}\"}} "
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("duo_collector_lease_renewals_total{instance="),
        "{metrics}"
    );

    // A clean stop gives its streams up and withdraws: the others hold them well before the
    // leases could have expired.
    let stopped_at = Instant::now();
    let files: Vec<PathBuf> = [&a, &b, &c].iter().map(|i| i.events_path()).collect();
    let c_log = c.stop().await;
    let (view, _) = wait_for_view(
        &store,
        "the two left holding every stream",
        Duration::from_secs(30),
        |v| v.live.len() == 2 && v.holders.len() == streams && !shares(v).contains_key(&joiner),
    )
    .await;
    assert!(
        stopped_at.elapsed() < LEASE_TTL,
        "handed over {:?} after the stop (its leases would expire after {LEASE_TTL:?}): {:?}",
        stopped_at.elapsed(),
        shares(&view)
    );
    assert!(c_log.contains("took the stream's lease"), "{c_log}");

    let expected = everything_once(&sim, &files);
    assert!(expected.expected > 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tally = everything_once(&sim, &files);
        if tally.exactly_once() {
            break;
        }
        assert!(
            tally.duplicated == 0 && tally.unexpected == 0,
            "nothing twice, across the handovers: {tally}"
        );
        assert!(
            Instant::now() < deadline,
            "backfill did not complete: {tally}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = a.stop().await;
    let _ = b.stop().await;
    sim.shutdown().await;
}

/// An instance that holds no stream (one stream, two instances) says so at ERROR when the
/// state store stops answering, naming it (a warning per round would be all it logged
/// otherwise), and that the store answers again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_holding_nothing_reports_a_state_store_that_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let nats = NatsServer::start(dir.path(), port).await;
    let now = now_ms();
    let sim = start_sim(sim_config(50, now - DAY_MS, now - 60_000)).await;
    let one_stream =
        "initial_lookback = \"2d\"\nschedule = \"*/2 * * * * *\"\nlogs = [\"authentication\"]";
    let mut a = Instance::start_with(&sim, &nats, 1, one_stream);
    let mut b = Instance::start_with(&sim, &nats, 2, one_stream);
    let store = observer_store(&a).await;
    let (view, _) = wait_for_view(
        &store,
        "two instances, one holding the stream",
        Duration::from_secs(30),
        |v| v.live.len() == 2 && v.holders.len() == 1,
    )
    .await;
    let holder = view.holders[0].instance.clone();
    let idle_id = view.live.iter().find(|i| **i != holder).cloned().unwrap();
    let idle = [&a, &b]
        .into_iter()
        .find(|i| i.log().contains(&idle_id))
        .expect("the idle instance's log names it");

    nats.stop();
    let stopped = Instant::now();
    let reported = |log: &str| {
        log.lines().any(|l| {
            l.contains("ERROR")
                && l.contains("the state store does not answer")
                && l.contains("state store share-leases")
        })
    };
    while !reported(&idle.log()) {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "the idle instance logged no error naming the state store:\n{}",
            idle.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        stopped.elapsed() >= LEASE_TTL * 2 / 3,
        "not before the streams held would stop ({:?})",
        stopped.elapsed()
    );

    let _nats = NatsServer::start(dir.path(), port).await;
    let back = Instant::now();
    while !idle.log().contains("the state store answers again") {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no line that the store is back:\n{}",
            idle.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = a.stop().await;
    let _ = b.stop().await;
    sim.shutdown().await;
}

/// `url` lists a cluster's servers comma-separated: the store opens through whichever answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_store_opens_through_any_server_of_a_comma_separated_url() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path(), free_port()).await;
    let nobody = format!("nats://127.0.0.1:{}", free_port());
    let text = format!(
        "[collector]\nstate_dir = {:?}\n[[integration]]\nname = \"corp\"\napi_hostname = \"{HOST}\"\nikey = \"{IKEY}\"\nskey = \"{SKEY}\"\nsinks = [\"out\"]\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n[state]\nbackend = \"nats\"\nurl = \"{nobody}, {}\"\n",
        dir.path().join("state").display().to_string(),
        nats.url()
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    set_mode(&path, 0o600);
    let config = duo_collector::settings::Config::load(&path).unwrap();
    let StoreSettings::Nats(settings) = &config.state else {
        panic!("the NATS store")
    };
    let store = NatsStore::open(settings)
        .await
        .expect("opens through the second server");
    assert!(store.lease_view().await.unwrap().holders.is_empty());
}
