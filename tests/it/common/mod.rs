//! Shared helpers: an in-process simulator, config files, and the real binary as a child.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use duo_collector::simulator::{KindCounts, SimConfig, Simulator};

pub const IKEY: &str = "DIS1MULAT0R0ADM1NKEY";
pub const SKEY: &str = "testsecretkeytestsecretkeytestsecret0042";
pub const HOST: &str = "api-test0001.duosecurity.com";
/// The pace the tests' collectors keep (the simulator's strict preset allows 600/min per
/// endpoint); tests of tight rate limits set their own.
pub const TEST_PACE: &str = "requests_per_minute = 600";

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A simulator config for tests: authentication only unless changed, and as strict as Duo
/// (rate limits per endpoint, short pages with cursors, a cursor on the last page).
pub fn sim_config(auth_events: usize, start_ms: i64, end_ms: i64) -> SimConfig {
    lenient_sim_config(auth_events, start_ms, end_ms).strict()
}

/// The same without the strict modes, for tests about something else that count requests.
pub fn lenient_sim_config(auth_events: usize, start_ms: i64, end_ms: i64) -> SimConfig {
    SimConfig {
        api_hostname: HOST.into(),
        ikey: IKEY.into(),
        skey: SKEY.into(),
        seed: 7,
        start_ms,
        end_ms,
        counts: KindCounts {
            authentication: auth_events,
            ..KindCounts::default()
        },
        max_visibility_delay_ms: 2_000,
        ..SimConfig::default()
    }
}

pub async fn start_sim(cfg: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("simulator starts")
}

/// A temp dir holding config.toml, a 0600 skey file, state and the sink file.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub events: PathBuf,
}

impl Setup {
    pub fn new(base_url: &str, integration_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let skey = dir.path().join("corp.skey");
        std::fs::write(&skey, format!("{SKEY}\n")).unwrap();
        set_mode(&skey, 0o600);
        let events = dir.path().join("out/events.jsonl");
        let config = dir.path().join("config.toml");
        let text = format!(
            r#"[collector]
state_dir = {state:?}

[[integration]]
name = "corp"
api_hostname = "{HOST}"
ikey = "{IKEY}"
skey_file = {skey:?}
connect_to = "{base_url}"
delay = "5s"
sinks = ["local"]
{integration_extra}

[[sink]]
name = "local"
type = "file"
path = {events:?}
format = "raw"
"#,
            state = dir.path().join("state").display().to_string(),
            skey = skey.display().to_string(),
            events = events.display().to_string(),
        );
        let text = if integration_extra.contains("requests_per_minute") {
            text
        } else {
            text.replace(
                "delay = \"5s\"\n",
                &format!("delay = \"5s\"\n{TEST_PACE}\n"),
            )
        };
        let text = if integration_extra.contains("logs =") {
            text
        } else {
            text.replace(
                "sinks = [\"local\"]\n",
                "sinks = [\"local\"]\nlogs = [\"authentication\"]\n",
            )
        };
        std::fs::write(&config, text).unwrap();
        set_mode(&config, 0o600);
        Setup {
            dir,
            config,
            events,
        }
    }

    pub fn state_db(&self) -> PathBuf {
        self.dir.path().join("state/state.db")
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_duo-collector")
}

/// Runs the binary to completion.
pub async fn run_cli(args: &[&str]) -> Output {
    tokio::process::Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .await
        .expect("binary runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every line of the sink file as JSON (all lines must parse).
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let Ok(data) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    data.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// How often each event id was delivered.
pub fn id_counts(events: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events {
        let id = e["_duo_collector"]["event_id"]
            .as_str()
            .expect("event_id")
            .to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|d| d.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0)
}

/// The `maxtime` of the last log request, which bounds what a run could collect.
pub fn last_maxtime(sim: &duo_collector::simulator::SimHandle) -> i64 {
    sim.requests()
        .iter()
        .rev()
        .find_map(|r| {
            r.params
                .iter()
                .find(|(k, _)| k == "maxtime")
                .and_then(|(_, v)| v.parse().ok())
        })
        .expect("a log request was made")
}

/// Waits until more than `count` events of `kind` are published and older than `lag_ms`
/// (the simulated data has random gaps, so new events arrive irregularly).
pub async fn wait_for_published(
    handle: &duo_collector::simulator::SimHandle,
    kind: &str,
    lag_ms: i64,
    count: usize,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while handle
        .expected_events(None, kind, now_ms(), now_ms() - lag_ms)
        .len()
        <= count
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no new {kind} events appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The requests the simulator received for log kind `kind`, in order.
pub fn log_requests<'a>(
    handle: &'a duo_collector::simulator::SimHandle,
    kind: &'a str,
) -> impl Iterator<Item = duo_collector::simulator::RecordedRequest> + 'a {
    handle
        .requests()
        .into_iter()
        .filter(move |r| r.kind.as_deref() == Some(kind))
}

/// Starts the binary as a child (stderr captured, killed on drop), for crash tests.
pub fn spawn_collector(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn duo-collector")
}

/// Polls `reached` until it holds, failing after 30 s: a condition instead of a fixed sleep.
pub async fn wait_until(what: &str, mut reached: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reached() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every log kind, as the config's `logs` spells them.
pub const ALL_KINDS: [&str; 6] = [
    "authentication",
    "administrator",
    "telephony",
    "activity",
    "trust_monitor",
    "offline_enrollment",
];

/// What a sink file holds against what the simulator published: per event, by log kind and
/// record content (v1 event ids are our fingerprints, not the simulator's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub expected: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub unexpected: usize,
}

impl Tally {
    pub fn exactly_once(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0 && self.expected > 0
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events expected, {} lost, {} duplicated, {} unexpected",
            self.expected, self.lost, self.duplicated, self.unexpected
        )
    }
}

/// Counts `delivered` (raw-format events, `_duo_collector` inside) against every event of
/// `kinds` the simulator holds with a time up to `up_to_ms`.
pub fn tally(
    handle: &duo_collector::simulator::SimHandle,
    delivered: &[serde_json::Value],
    kinds: &[&str],
    up_to_ms: i64,
) -> Tally {
    tally_accounts(handle, delivered, &[None], kinds, up_to_ms)
}

/// [`tally`] over the given accounts (`None`: the integration's own; MSP children by id),
/// each event counted under the account the collector says it came from.
pub fn tally_accounts(
    handle: &duo_collector::simulator::SimHandle,
    delivered: &[serde_json::Value],
    accounts: &[Option<&str>],
    kinds: &[&str],
    up_to_ms: i64,
) -> Tally {
    type Key = (Option<String>, String, String);
    let mut expected: HashMap<Key, usize> = HashMap::new();
    for account in accounts {
        for kind in kinds {
            for e in handle.expected_events(*account, kind, now_ms(), up_to_ms) {
                let key = (
                    account.map(str::to_string),
                    kind.to_string(),
                    e.record.to_string(),
                );
                *expected.entry(key).or_default() += 1;
            }
        }
    }
    let mut got: HashMap<Key, usize> = HashMap::new();
    for event in delivered {
        let mut record = event.clone();
        let meta = record
            .as_object_mut()
            .and_then(|o| o.remove("_duo_collector"))
            .expect("a raw event carries _duo_collector");
        let log = meta["log"].as_str().expect("log").to_string();
        let account = meta["account_id"].as_str().map(str::to_string);
        *got.entry((account, log, record.to_string())).or_default() += 1;
    }
    let mut tally = Tally {
        expected: expected.values().sum(),
        lost: 0,
        duplicated: 0,
        unexpected: 0,
    };
    for (key, want) in &expected {
        let have = got.get(key).copied().unwrap_or(0);
        tally.lost += want.saturating_sub(have);
        tally.duplicated += have.saturating_sub(*want);
    }
    tally.unexpected = got
        .iter()
        .filter(|(key, _)| !expected.contains_key(*key))
        .map(|(_, n)| n)
        .sum();
    tally
}

/// The `logs = [...]` line for every kind.
pub fn all_logs_line() -> String {
    format!(
        "logs = [{}]",
        ALL_KINDS
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// (events committed over every stream, the largest committed file length) from the state
/// database, read without blocking a writer for long.
pub fn committed_progress(db: &Path) -> (u64, u64) {
    if !db.exists() {
        return (0, 0);
    }
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    let one = |sql: &str| -> u64 {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or(0)
            .max(0) as u64
    };
    (
        one("SELECT COALESCE(SUM(events_total), 0) FROM checkpoints"),
        one("SELECT COALESCE(MAX(committed_len), 0) FROM file_commits"),
    )
}

/// Waits (up to `within`) until the state database shows committed events.
pub async fn wait_for_commits(db: &Path, within: std::time::Duration) -> u64 {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (events, _) = committed_progress(db);
        if events > 0 {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no page was committed within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The check named `name` in a `test-connectivity --json` report.
pub fn connectivity_check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["checks"].as_array().unwrap())
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}
