//! Several collectors on one state: a real three-node JetStream cluster (buckets with three
//! replicas), `duo-collector run` processes sharing it, an MSP parent with child accounts in
//! the strict simulator, events into a NATS sink (a stream with three replicas, deduplicated by
//! `Nats-Msg-Id`) and a file sink per instance. Failover after `kill -9`, fencing of a holder
//! paused past its lease, and the cluster losing and regaining its quorum: every event exactly
//! once in the NATS sink at the end.
//!
//! The assertions hold whether leases live for one run or are held between runs: what they
//! look at is delivered events, checkpoints and logs. The one that needs leases held between
//! runs (every stream held by exactly one instance, a fair share) is its own ignored test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::nats_cluster::{complete_events, wait_for, Collector, NatsCluster};
use duo_collector::simulator::{
    AccountsConfig, ChildAccount, Fault, FaultRule, KindCounts, Simulator,
};
use duo_collector::state::{NatsStore, StoreSettings};
use nix::sys::signal::Signal;

const DAY_MS: i64 = 86_400_000;
const LEASE_TTL: Duration = Duration::from_secs(6);
const PAGE_SIZE: usize = 100;

fn child(n: usize, events: usize) -> ChildAccount {
    ChildAccount {
        account_id: format!("DA{n:018}"),
        name: format!("Child {n}"),
        api_hostname: format!("api-child{n:03}.duosecurity.com"),
        counts: KindCounts {
            authentication: events,
            ..KindCounts::default()
        },
        seed: 500 + n as u64,
    }
}

/// The cluster, the strict simulator with an MSP parent and its children, and a directory for
/// the collectors' configs, states and file sinks.
struct Scenario {
    cluster: NatsCluster,
    sim: Simulator,
    dir: tempfile::TempDir,
    children: Vec<ChildAccount>,
}

impl Scenario {
    async fn start(children: usize, events_per_child: usize, response_delay_ms: u64) -> Scenario {
        let cluster = NatsCluster::start().await;
        cluster.create_events_stream().await;
        let now = now_ms();
        let mut cfg = sim_config(0, now - DAY_MS, now - 60_000);
        cfg.ikey = "DIADM1NKEYADM1NKEY00".into(); // the parent's own Admin API keys are not ours
        cfg.response_delay_ms = response_delay_ms;
        let children: Vec<_> = (1..=children).map(|n| child(n, events_per_child)).collect();
        cfg.accounts = Some(AccountsConfig {
            ikey: IKEY.into(),
            skey: SKEY.into(),
            children: children.clone(),
        });
        let sim = start_sim(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let skey = dir.path().join("corp.skey");
        std::fs::write(&skey, format!("{SKEY}\n")).unwrap();
        set_mode(&skey, 0o600);
        Scenario {
            cluster,
            sim,
            dir,
            children,
        }
    }

    fn file_sink(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("events.jsonl")
    }

    /// Instance `name`'s config: its own state dir (the lock) and file sink; the shared state
    /// buckets and NATS sink on every node; a run every second.
    fn config(&self, name: &str) -> PathBuf {
        let home = self.dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let urls = self.cluster.urls();
        let text = format!(
            r#"[collector]
state_dir = {state:?}

[state]
backend = "nats"
url = "{urls}"
bucket_prefix = "clu"
replicas = 3
lease_ttl = "{ttl}s"
timeout = "1s"

[[integration]]
name = "corp"
api_hostname = "{HOST}"
ikey = "{IKEY}"
skey_file = {skey:?}
connect_to = "{sim}"
accounts_api = true
logs = ["authentication"]
initial_lookback = "2d"
delay = "5s"
{TEST_PACE}
page_size = {PAGE_SIZE}
schedule = "* * * * * *"
sinks = ["bus", "file-{name}"]

[[sink]]
name = "bus"
type = "nats"
url = "{urls}"
stream = "DUO"
create_stream = false
batch_max_events = 100
format = "raw"

[[sink]]
name = "file-{name}"
type = "file"
path = {events:?}
format = "raw"
"#,
            state = home.join("state").display().to_string(),
            ttl = LEASE_TTL.as_secs(),
            skey = self.dir.path().join("corp.skey").display().to_string(),
            sim = self.sim.base_url(),
            events = self.file_sink(name).display().to_string(),
        );
        let path = home.join("config.toml");
        std::fs::write(&path, text).unwrap();
        set_mode(&path, 0o600);
        path
    }

    fn collector(&self, name: &str) -> Collector {
        Collector::spawn(name, &self.config(name))
    }

    /// The state as another instance sees it (the test's own connection to the buckets).
    async fn store(&self) -> NatsStore {
        let config = duo_collector::settings::Config::load(&self.config("observer")).unwrap();
        let StoreSettings::Nats(settings) = &config.state else {
            panic!("the NATS store")
        };
        NatsStore::open(settings).await.unwrap()
    }

    /// Every event the simulator holds, by (account, event id).
    fn expected(&self) -> HashSet<(String, String)> {
        let handle = self.sim.handle();
        self.children
            .iter()
            .flat_map(|c| {
                handle
                    .expected_events(Some(&c.account_id), "authentication", now_ms(), now_ms())
                    .into_iter()
                    .map(|e| (c.account_id.clone(), e.id))
            })
            .collect()
    }

    /// Waits until the NATS sink holds `expected` messages, then checks each arrived once.
    async fn assert_exactly_once_in_nats(
        &self,
        expected: &HashSet<(String, String)>,
        within: Duration,
    ) {
        let want = expected.len() as u64;
        wait_for("every event in the NATS sink", within, || async {
            self.cluster.events_stored().await >= want
        })
        .await;
        let delivered = self.cluster.delivered_ids().await;
        let missing = expected
            .iter()
            .filter(|k| !delivered.contains_key(*k))
            .count();
        let unexpected = delivered.keys().filter(|k| !expected.contains(*k)).count();
        let repeated = delivered.values().filter(|n| **n > 1).count();
        assert!(
            missing == 0 && unexpected == 0 && repeated == 0 && !expected.is_empty(),
            "NATS sink: {} expected, {} delivered: {missing} missing, {unexpected} unexpected, {repeated} repeated",
            expected.len(),
            delivered.len()
        );
    }
}

/// A stream's committed progress, as `status` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    events_total: i64,
    position_ms: i64,
    last_run_started_ms: Option<i64>,
}

/// Every stream's progress by account (an error while the cluster cannot answer).
async fn progress(store: &NatsStore) -> Result<BTreeMap<String, Progress>, String> {
    let status = tokio::time::timeout(Duration::from_secs(5), store.status())
        .await
        .map_err(|_| "status timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(status
        .into_iter()
        .map(|s| {
            (
                s.account_id.unwrap_or_default(),
                Progress {
                    events_total: s.events_total,
                    position_ms: s.checkpoint.map_or(0, |c| c.position_ms()),
                    last_run_started_ms: s.last_run.map(|r| r.started_ms),
                },
            )
        })
        .collect())
}

async fn committed_events(store: &NatsStore) -> Option<i64> {
    progress(store)
        .await
        .ok()
        .map(|p| p.values().map(|s| s.events_total).sum())
}

/// The accounts whose stream each instance holds a lease on.
async fn leases_by_instance(store: &NatsStore) -> HashMap<String, HashSet<String>> {
    let mut held: HashMap<String, HashSet<String>> = HashMap::new();
    for lease in store.lease_holders().await.unwrap_or_default() {
        if let Some(account) = lease.stream.account_id {
            held.entry(lease.instance).or_default().insert(account);
        }
    }
    held
}

/// The error lines of a collector's log (level ERROR), message and error together.
fn error_lines(collector: &Collector) -> Vec<String> {
    collector
        .log_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .map(|l| {
            format!(
                "{} {}",
                l["message"].as_str().unwrap_or(""),
                l["error"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Three instances, the first alone at first so that it holds the backfill; `kill -9` the one
/// holding the most streams mid-backfill: each of its streams moves again within
/// `lease_ttl + 10 s`, every event reaches the NATS sink exactly once, and the file sinks
/// together hold each event, a failed-over stream's at most one page twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_busiest_instance_fails_its_streams_over_within_the_lease_ttl() {
    let s = Scenario::start(30, 500, 100).await;
    let expected = s.expected();
    assert_eq!(expected.len(), 30 * 500);
    let store = s.store().await;
    let mut a = s.collector("a");
    let a_id = a.instance().await;
    wait_for("a holding leases", Duration::from_secs(30), || async {
        leases_by_instance(&store).await.contains_key(&a_id)
    })
    .await;
    let mut others = vec![s.collector("b"), s.collector("c")];
    let mut instances = HashMap::from([(a_id.clone(), 0usize)]);
    for (i, c) in others.iter_mut().enumerate() {
        instances.insert(c.instance().await, i + 1);
    }
    let total = expected.len() as i64;
    wait_for(
        "the backfill under way",
        Duration::from_secs(60),
        || async { committed_events(&store).await.unwrap_or(0) >= total / 10 },
    )
    .await;

    let held = leases_by_instance(&store).await;
    let (victim_id, victim_streams) = held
        .iter()
        .max_by_key(|(_, streams)| streams.len())
        .map(|(id, streams)| (id.clone(), streams.clone()))
        .expect("streams are held");
    let mut collectors = vec![a];
    collectors.extend(others);
    let victim = instances[&victim_id];
    eprintln!(
        "leases before the kill: {:?}; killing {} ({} streams)",
        held.iter().map(|(i, s)| (i, s.len())).collect::<Vec<_>>(),
        collectors[victim].name,
        victim_streams.len()
    );
    collectors[victim].kill9().await;
    let killed = Instant::now();
    let killed_ms = now_ms();
    let at_kill = progress(&store).await.unwrap();
    let committed_at_kill: i64 = at_kill.values().map(|p| p.events_total).sum();
    assert!(committed_at_kill < total, "killed mid-backfill");

    // Resumed: the checkpoint moved again, or (nothing left to collect) a run started since.
    let mut resumed_after: HashMap<String, Duration> = HashMap::new();
    let deadline = killed + LEASE_TTL + Duration::from_secs(30);
    while resumed_after.len() < victim_streams.len() && Instant::now() < deadline {
        if let Ok(now) = progress(&store).await {
            for account in &victim_streams {
                let (before, after) = (at_kill.get(account), now.get(account));
                let moved = match (before, after) {
                    (Some(b), Some(n)) => {
                        n.events_total > b.events_total
                            || n.last_run_started_ms.is_some_and(|t| t > killed_ms)
                    }
                    (None, Some(_)) => true,
                    _ => false,
                };
                if moved {
                    resumed_after
                        .entry(account.clone())
                        .or_insert(killed.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slowest = resumed_after.values().max().copied();
    eprintln!(
        "{} of {} failed-over streams resumed; the slowest after {slowest:?}",
        resumed_after.len(),
        victim_streams.len()
    );
    assert_eq!(
        resumed_after.len(),
        victim_streams.len(),
        "every stream of the killed instance resumed"
    );
    assert!(
        slowest.is_some_and(|t| t <= LEASE_TTL + Duration::from_secs(10)),
        "resumed within lease_ttl + 10 s: {slowest:?}"
    );

    s.assert_exactly_once_in_nats(&expected, Duration::from_secs(120))
        .await;

    // The file sinks together: nothing lost; a failed-over stream repeats at most the page in
    // flight, any other stream nothing.
    let mut in_files: HashMap<(String, String), usize> = HashMap::new();
    for c in &collectors {
        for e in complete_events(&s.file_sink(&c.name)) {
            let meta = &e["_duo_collector"];
            let key = (
                meta["account_id"].as_str().unwrap_or("-").to_string(),
                meta["event_id"].as_str().unwrap().to_string(),
            );
            *in_files.entry(key).or_default() += 1;
        }
    }
    let lost = expected
        .iter()
        .filter(|k| !in_files.contains_key(*k))
        .count();
    assert_eq!(lost, 0, "every event is in a file sink");
    let mut repeated: HashMap<&str, usize> = HashMap::new();
    for ((account, _), n) in &in_files {
        *repeated.entry(account.as_str()).or_default() += n - 1;
    }
    for (account, n) in &repeated {
        let allowed = if victim_streams.contains(*account) {
            PAGE_SIZE
        } else {
            0
        };
        assert!(
            *n <= allowed,
            "{account}: {n} events twice in the file sinks (at most {allowed})"
        );
    }
    for (i, c) in collectors.iter_mut().enumerate() {
        if i != victim {
            c.stop().await;
        }
    }
    s.sim.shutdown().await;
}
