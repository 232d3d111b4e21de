//! SIGKILL aimed between a page's delivery and its checkpoint commit, with a real child.
//!
//! The test holds a write transaction on the child's state database, so the child's next
//! commit waits (SQLite's busy timeout); it then watches the destination receive a page that
//! cannot be committed, and kills the child right there. After a restart:
//! - file sink: no event is lost and none is written twice (the committed length is cut back);
//! - NATS: the stream holds every event once (JetStream drops the re-sent `Nats-Msg-Id`s);
//! - HTTP: the re-sent pieces carry the same idempotency key as before the crash;
//! - stdout and TCP syslog (no way to take back what was sent): nothing is lost, and exactly
//!   the page in flight appears twice.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::sink_support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DAY_MS: i64 = 86_400_000;

/// Waits until `measure` passes `at_least`, while the child runs.
async fn wait_until(
    what: &str,
    child: &mut tokio::process::Child,
    mut reached: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached().await {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            panic!("collector exited early ({what}), {status}:\n{stderr}");
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A write transaction on the state database: the collector's commits wait behind it.
fn hold_commits(db: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

fn sigkill(child: &tokio::process::Child) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn committed_len(db: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT committed_len FROM file_commits WHERE sink = 'local'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// Events committed so far, read inside the held transaction.
fn committed_events(conn: &rusqlite::Connection) -> u64 {
    conn.query_row(
        "SELECT COALESCE(SUM(events_total), 0) FROM checkpoints",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// Lets the child deliver until `delivered` (events at the destination) reaches `warm_up`,
/// then holds its commits, waits until the destination holds events that are not committed
/// (a page whose commit waits) and stops growing, and kills the child. Returns the events
/// committed and delivered at the kill.
async fn kill_between_delivery_and_commit(
    child: &mut tokio::process::Child,
    db: &std::path::Path,
    warm_up: u64,
    mut delivered: impl AsyncFnMut() -> u64,
) -> (u64, u64) {
    wait_until("first pages", child, async || delivered().await >= warm_up).await;
    let lock = hold_commits(db);
    let committed = committed_events(&lock);
    wait_until("a page after the lock", child, async || {
        delivered().await > committed
    })
    .await;
    let mut at_kill = delivered().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = delivered().await;
        if now == at_kill {
            break;
        }
        at_kill = now;
    }
    sigkill(child);
    assert!(!child.wait().await.unwrap().success());
    drop(lock);
    (committed, at_kill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_sigkill_between_write_and_commit_writes_nothing_twice() {
    let now = now_ms();
    let mut cfg = sim_config(12_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 40;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"3d\"");
    let config = setup.config.to_str().unwrap();

    let mut child = spawn_collector(&["collect-now", "--config", config]);
    let events = setup.events.clone();
    let (committed, written) =
        kill_between_delivery_and_commit(&mut child, &setup.state_db(), 2_000, async || {
            count_lines(&events) as u64
        })
        .await;
    assert!(written > committed, "killed between a write and its commit");
    assert!(
        file_len(&setup.events) > committed_len(&setup.state_db()),
        "the file is longer than its committed length"
    );

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected = expected_ids(&handle);
    assert_eq!(expected.len(), 12_000);
    let counts = id_counts(&read_events(&setup.events));
    assert_exactly_once("file", &counts, &expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sigkill_between_pubacks_and_commit_adds_no_duplicate_to_the_stream() {
    let now = now_ms();
    let mut cfg = sim_config(10_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 40;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(peer_dir.path(), free_port()).await;
    let url = nats.url();
    let sink = format!(
        "[[sink]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"{url}\"\nstream = \"DUO\"\ncreate_stream = true\nbatch_max_events = 200\nformat = \"raw\"\n"
    );
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["bus"],
        &sink,
        "initial_lookback = \"3d\"",
    );
    let config = setup.config.to_str().unwrap();

    let mut child = spawn_collector(&["collect-now", "--config", config]);
    let (committed, published) =
        kill_between_delivery_and_commit(&mut child, &setup.state_db(), 1_000, async || {
            stream_messages(&url).await
        })
        .await;
    assert!(
        published > committed,
        "a page was acknowledged, not committed"
    );

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("JetStream dropped re-sent events"),
        "the page was sent again: {}",
        text(&out)
    );
    let expected = expected_ids(&handle);
    assert_eq!(expected.len(), 10_000);
    let events: Vec<serde_json::Value> = stream_contents(&url)
        .await
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    assert_exactly_once("stream DUO", &count_ids(&events), &expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sigkill_between_response_and_commit_resends_with_the_same_idempotency_key() {
    let now = now_ms();
    let mut cfg = sim_config(10_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 40;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let hook = std::sync::Arc::new(crate::sink_support::hook::Hook::start(0, vec![]).await);
    let sink = format!(
        "[[sink]]\nname = \"web\"\ntype = \"http\"\nurl = \"{}\"\nbatch_max_events = 200\nformat = \"raw\"\nidempotency_header = \"X-Batch-Id\"\n",
        hook.url()
    );
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["web"],
        &sink,
        "initial_lookback = \"3d\"",
    );
    let config = setup.config.to_str().unwrap();

    let mut child = spawn_collector(&["collect-now", "--config", config]);
    let received = hook.clone();
    let (committed, sent) =
        kill_between_delivery_and_commit(&mut child, &setup.state_db(), 2_000, async || {
            received.accepted_lines().len() as u64
        })
        .await;
    assert!(sent > committed, "a page was acknowledged, not committed");
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));

    // A receiver that keeps the first request per key holds every event once.
    let mut first_by_key: std::collections::HashMap<String, (Vec<String>, Vec<serde_json::Value>)> =
        std::collections::HashMap::new();
    let mut repeated_keys = 0;
    for request in hook.requests() {
        let key = request.headers["x-batch-id"].to_str().unwrap().to_string();
        let lines: Vec<serde_json::Value> = String::from_utf8(request.body.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<String> = count_ids(&lines).into_keys().collect();
        match first_by_key.entry(key) {
            std::collections::hash_map::Entry::Occupied(seen) => {
                let (seen_ids, _) = seen.get();
                let mut now_ids = ids.clone();
                let mut before = seen_ids.clone();
                now_ids.sort();
                before.sort();
                assert!(before == now_ids, "a repeated key carries the same events");
                repeated_keys += 1;
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((ids, lines));
            }
        }
    }
    assert!(repeated_keys > 0, "the uncommitted page was sent again");
    let expected = expected_ids(&handle);
    assert_eq!(expected.len(), 10_000);
    let kept: Vec<serde_json::Value> = first_by_key
        .into_values()
        .flat_map(|(_, lines)| lines)
        .collect();
    assert_exactly_once(
        "receiver deduplicating by key",
        &count_ids(&kept),
        &expected,
    );
    sim.shutdown().await;
}

/// Every event line of `text` (the collector's stdout holds only events).
fn event_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Nothing lost; the events repeated are exactly the ones delivered but not committed.
fn assert_only_the_page_in_flight_twice(
    what: &str,
    counts: &std::collections::HashMap<String, usize>,
    expected: &std::collections::HashMap<String, i64>,
    in_flight: u64,
) {
    let missing = expected
        .keys()
        .filter(|id| !counts.contains_key(*id))
        .count();
    assert_eq!(missing, 0, "{what}: events lost");
    assert!(counts.values().all(|c| *c <= 2), "{what}: more than twice");
    let repeated = counts.values().filter(|c| **c == 2).count() as u64;
    assert_eq!(
        repeated, in_flight,
        "{what}: the page in flight, and only it, twice"
    );
    assert!(in_flight > 0 && in_flight <= 1000, "{what}: one page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_sigkill_between_flush_and_commit_repeats_only_the_page_in_flight() {
    let now = now_ms();
    let mut cfg = sim_config(10_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 40;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let sink = "[[sink]]\nname = \"out\"\ntype = \"stdout\"\nformat = \"raw\"\n";
    let setup = SinkSetup::new(&sim.base_url(), &["out"], sink, "initial_lookback = \"3d\"");
    let config = setup.config.to_str().unwrap();

    let mut child = tokio::process::Command::new(bin())
        .args(["collect-now", "--config", config])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink_printed = printed.clone();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink_printed.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let lines = printed.clone();
    let (committed, at_kill) =
        kill_between_delivery_and_commit(&mut child, &setup.state_db(), 2_000, async || {
            lines
                .lock()
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64
        })
        .await;
    reader.await.unwrap();
    let before = String::from_utf8(printed.lock().unwrap().clone()).unwrap();

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let mut events = event_lines(&before);
    events.extend(event_lines(&String::from_utf8(out.stdout).unwrap()));
    let expected = expected_ids(&handle);
    assert_eq!(expected.len(), 10_000);
    assert_only_the_page_in_flight_twice(
        "stdout",
        &count_ids(&events),
        &expected,
        at_kill - committed,
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_syslog_sigkill_between_flush_and_commit_repeats_only_the_page_in_flight() {
    let now = now_ms();
    let mut cfg = sim_config(10_000, now - 2 * DAY_MS, now - 60_000);
    cfg.response_delay_ms = 40;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    let peer_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(peer_dir.path());
    let rsyslog = std::sync::Arc::new(Rsyslog::start(peer_dir.path(), &certs).await);
    let sink = format!(
        "[[sink]]\nname = \"tcp\"\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{}\"\nformat = \"raw\"\nbatch_max_events = 250\n",
        rsyslog.tcp
    );
    let setup = SinkSetup::new(
        &sim.base_url(),
        &["tcp"],
        &sink,
        "initial_lookback = \"3d\"",
    );
    let config = setup.config.to_str().unwrap();

    let mut child = spawn_collector(&["collect-now", "--config", config]);
    let peer = rsyslog.clone();
    let (committed, at_kill) =
        kill_between_delivery_and_commit(&mut child, &setup.state_db(), 2_000, async || {
            peer.received("tcp").len() as u64
        })
        .await;
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected = expected_ids(&handle);
    assert_eq!(expected.len(), 10_000);
    let received = rsyslog
        .wait_for("tcp", expected.len() + (at_kill - committed) as usize)
        .await;
    let events: Vec<serde_json::Value> = received
        .iter()
        .map(|m| serde_json::from_str(m["msg"].as_str().unwrap().trim_start()).unwrap())
        .collect();
    assert_only_the_page_in_flight_twice(
        "tcp syslog",
        &count_ids(&events),
        &expected,
        at_kill - committed,
    );
    sim.shutdown().await;
}
