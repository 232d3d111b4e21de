//! Test support for the cluster tests: a real three-node JetStream cluster (three
//! `nats-server -js` processes routed to each other on 127.0.0.1, each with its own store dir),
//! nodes stopped and started again on the same store, and `duo-collector run` children whose
//! logs go to a file (JSON lines, read back by the tests).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sink_support::{require_binary, wait_for_tcp, Peer};

pub const NODES: usize = 3;
/// The JetStream stream the tests' NATS sinks deliver into (created with three replicas).
pub const EVENTS_STREAM: &str = "DUO";

struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    peer: Option<Peer>,
}

/// Three `nats-server -js` processes in one cluster; all killed on drop.
pub struct NatsCluster {
    pub dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// `count` distinct free ports: all bound at once, so none is handed out twice.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl NatsCluster {
    /// Starts the three nodes and waits until JetStream has a meta leader and can place a
    /// stream with three replicas.
    pub async fn start() -> NatsCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * NODES);
        let nodes = (0..NODES)
            .map(|i| Node {
                name: format!("node-{}", i + 1),
                client_port: ports[2 * i],
                route_port: ports[2 * i + 1],
                peer: None,
            })
            .collect();
        let mut cluster = NatsCluster { dir, nodes };
        for i in 0..NODES {
            cluster.spawn_node(i);
        }
        for node in &cluster.nodes {
            wait_for_tcp(node.client_port, "nats-server").await;
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    fn spawn_node(&mut self, i: usize) {
        let bin = require_binary("nats-server", "nats-server");
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let node = &self.nodes[i];
        let store = self.dir.path().join(&node.name);
        std::fs::create_dir_all(&store).unwrap();
        let starts = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(&format!("{}.", node.name))
            })
            .count();
        let log = self
            .dir
            .path()
            .join(format!("{}.{}.log", node.name, starts + 1));
        let peer = Peer::spawn(
            Command::new(bin)
                .args(["-js", "-a", "127.0.0.1", "-p"])
                .arg(node.client_port.to_string())
                .arg("-sd")
                .arg(&store)
                .args(["--server_name", &node.name, "--cluster_name", "duo-test"])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{}", node.route_port))
                .arg("--routes")
                .arg(routes.join(",")),
            log,
        );
        self.nodes[i].peer = Some(peer);
    }

    /// Every node's client URL, comma-separated (as `url` in the config takes them).
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    pub fn url_list(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// The node stops at once (SIGKILL: a host lost, nothing flushed or handed over).
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].peer = None;
    }

    /// The node starts again on its ports and its store.
    pub async fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].peer.is_none(), "node {i} is running");
        self.spawn_node(i);
        wait_for_tcp(self.nodes[i].client_port, "nats-server").await;
    }

    /// What the running nodes logged, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.peer
                    .as_ref()
                    .map(|p| format!("--- {} ---\n{}", n.name, p.output()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A client on the running nodes.
    pub async fn client(&self) -> async_nats::Client {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.peer.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect();
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(urls)
            .await
            .expect("a client connects to the cluster")
    }

    /// Waits (up to 60 s: elections on two busy cores take a while) until a stream with three
    /// replicas can be created: a meta leader is elected and all three nodes take part.
    pub async fn wait_for_jetstream(&self) {
        let js = async_nats::jetstream::new(self.client().await);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let config = async_nats::jetstream::stream::Config {
                name: "READY".into(),
                subjects: vec!["ready.probe".into()],
                num_replicas: NODES,
                ..Default::default()
            };
            let created =
                tokio::time::timeout(Duration::from_secs(3), js.create_stream(config)).await;
            if let Ok(Ok(_)) = created {
                let _ = js.delete_stream("READY").await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "JetStream did not become ready with {NODES} replicas: {created:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The events stream (subjects `duo.*.*`, as the sink's default subject), three replicas.
    pub async fn create_events_stream(&self) {
        let js = async_nats::jetstream::new(self.client().await);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: EVENTS_STREAM.into(),
            subjects: vec!["duo.*.*".into()],
            num_replicas: NODES,
            ..Default::default()
        })
        .await
        .expect("the events stream is created");
    }

    /// How many messages the events stream holds (0 while it cannot answer).
    pub async fn events_stored(&self) -> u64 {
        let js = async_nats::jetstream::new(self.client().await);
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), js.get_stream(EVENTS_STREAM)).await
        else {
            return 0;
        };
        match tokio::time::timeout(Duration::from_secs(2), stream.info()).await {
            Ok(Ok(info)) => info.state.messages,
            _ => 0,
        }
    }

    /// Every event in the events stream: how often each (account, event id) occurs.
    pub async fn delivered_ids(&self) -> HashMap<(String, String), usize> {
        let js = async_nats::jetstream::new(self.client().await);
        let mut stream = js.get_stream(EVENTS_STREAM).await.unwrap();
        let count = stream.info().await.unwrap().state.messages as usize;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap().take(count);
        let mut counts = HashMap::new();
        while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the stream's messages are read")
        {
            let message = message.unwrap();
            let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            let meta = &event["_duo_collector"];
            let id = meta["event_id"].as_str().expect("event_id").to_string();
            let header = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string());
            assert_eq!(
                header.as_deref(),
                Some(id.as_str()),
                "Nats-Msg-Id is the event id"
            );
            let account = meta["account_id"].as_str().unwrap_or("-").to_string();
            *counts.entry((account, id)).or_insert(0) += 1;
        }
        counts
    }
}

/// A `duo-collector run` child: JSON logs into a file, killed on drop.
pub struct Collector {
    pub name: String,
    pub config: PathBuf,
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl Collector {
    pub fn spawn(name: &str, config: &Path) -> Collector {
        let log = config.with_file_name(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(crate::common::bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("STATE_DIRECTORY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn duo-collector");
        Collector {
            name: name.to_string(),
            config: config.to_path_buf(),
            log,
            child,
        }
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("the collector runs");
        kill(Pid::from_raw(pid as i32), signal).unwrap();
    }

    /// SIGKILL, and reaped.
    pub async fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.child.wait().await.unwrap();
        assert!(!status.success());
    }

    /// SIGTERM, and reaped (at most 20 s).
    pub async fn stop(&mut self) {
        if self.child.id().is_none() {
            return;
        }
        self.signal(Signal::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Every complete JSON log line so far.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The instance id it logged at start (lease holders and runs name instances by it).
    pub async fn instance(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let id = self.log_lines().into_iter().find_map(|l| {
                l["instance"]
                    .as_str()
                    .filter(|_| {
                        l["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("this instance's id"))
                    })
                    .map(str::to_string)
            });
            if let Some(id) = id {
                return id;
            }
            assert!(!self.exited(), "{} exited: {}", self.name, self.log_text());
            assert!(
                Instant::now() < deadline,
                "{} logged no instance id: {}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every complete line of a file sink as JSON (a SIGKILL may leave the last line torn: a page
/// never acknowledged, fetched again by whoever resumes the stream).
pub fn complete_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Polls `reached` (async) until it holds, failing after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut reached: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !reached().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
