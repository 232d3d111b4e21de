//! The cluster tests' scenario: the three-node cluster, the strict simulator with an MSP
//! parent and its children, each collector instance's config, and what the tests read back
//! (committed progress per stream, lease holders, error log lines).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use crate::nats_cluster::{wait_for, Collector, NatsCluster};
use duo_collector::simulator::{AccountsConfig, ChildAccount, KindCounts, Simulator};
use duo_collector::state::{NatsStore, StoreSettings};

pub const DAY_MS: i64 = 86_400_000;
pub const LEASE_TTL: Duration = Duration::from_secs(6);
pub const PAGE_SIZE: usize = 100;

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
pub struct Scenario {
    pub cluster: NatsCluster,
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub children: Vec<ChildAccount>,
}

impl Scenario {
    pub async fn start(
        children: usize,
        events_per_child: usize,
        response_delay_ms: u64,
    ) -> Scenario {
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

    pub fn file_sink(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("events.jsonl")
    }

    /// Instance `name`'s config: its own state dir (the lock) and file sink; the shared state
    /// buckets and NATS sink on every node; a run every second. Each file sink has a name of
    /// its own: the `-files` bucket keys a file's committed length by sink name alone, so
    /// instances sharing one name would overwrite each other's marks.
    pub fn config(&self, name: &str) -> PathBuf {
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

    pub fn collector(&self, name: &str) -> Collector {
        Collector::spawn(name, &self.config(name))
    }

    /// The state as another instance sees it (the test's own connection to the buckets).
    pub async fn store(&self) -> NatsStore {
        let config = duo_collector::settings::Config::load(&self.config("observer")).unwrap();
        let StoreSettings::Nats(settings) = &config.state else {
            panic!("the NATS store")
        };
        NatsStore::open(settings).await.unwrap()
    }

    /// Every event the simulator holds, by (account, event id).
    pub fn expected(&self) -> HashSet<(String, String)> {
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
    pub async fn assert_exactly_once_in_nats(
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
pub struct Progress {
    pub events_total: i64,
    pub position_ms: i64,
    pub last_run_started_ms: Option<i64>,
}

/// Every stream's progress by account (an error while the cluster cannot answer).
pub async fn progress(store: &NatsStore) -> Result<BTreeMap<String, Progress>, String> {
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

pub async fn committed_events(store: &NatsStore) -> Option<i64> {
    progress(store)
        .await
        .ok()
        .map(|p| p.values().map(|s| s.events_total).sum())
}

/// The accounts whose stream each instance holds a lease on.
pub async fn leases_by_instance(store: &NatsStore) -> HashMap<String, HashSet<String>> {
    let mut held: HashMap<String, HashSet<String>> = HashMap::new();
    for lease in store.lease_holders().await.unwrap_or_default() {
        if let Some(account) = lease.stream.account_id {
            held.entry(lease.instance).or_default().insert(account);
        }
    }
    held
}

/// The error lines of a collector's log (level ERROR), message and error together.
pub fn error_lines(collector: &Collector) -> Vec<String> {
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

/// The last `n` lines a collector logged, for a failure message.
pub fn last_lines(collector: &Collector, n: usize) -> String {
    let text = collector.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
