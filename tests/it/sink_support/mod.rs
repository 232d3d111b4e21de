//! Helpers for the sink tests: real peers (rsyslogd, nats-server) started per test on free
//! ports and killed on drop, test certificates, configs with custom sinks, and collection.
#![allow(dead_code)]

pub mod hook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duo_collector::daemon::{collect_once, Runtime, RuntimeOptions};
use duo_collector::duo::RetryPolicy;
use duo_collector::event::StreamId;
use duo_collector::logs::LogKind;
use duo_collector::settings::Config;
use duo_collector::sink::SinkRetry;
use duo_collector::state::{Checkpoint, State};
use tokio_util::sync::CancellationToken;

use crate::common::{set_mode, HOST, IKEY, SKEY};

/// A port nobody listens on right now (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test (never skips) when a peer binary is missing.
pub fn require_binary(name: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: this test needs a real {name}. Install it with `apt-get install -y {package}` (.ci/run does this)");
}

pub async fn wait_for_tcp(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (and reaped) on drop.
pub struct Peer {
    child: Child,
    pub log: PathBuf,
}

impl Peer {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Peer {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Peer { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the peer as a service manager would (SIGTERM), and reaps it.
    pub fn stop(mut self) {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA with a server certificate (localhost, 127.0.0.1) and a client certificate.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "duo-collector test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key) = leaf(
        vec!["collector.test".into()],
        "collector.test",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        set_mode(&p, 0o600);
        p
    };
    Certs {
        ca: write("ca.pem", &ca_cert.pem()),
        server_cert: write("server.pem", &server_pem),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_pem),
        client_key: write("client.key", &client_key),
    }
}

/// rsyslogd with four inputs on free ports: UDP, TCP, TLS (server auth only) and mutual TLS;
/// each writes what it parsed, one JSON object per message, to `<input>.jsonl`.
pub struct Rsyslog {
    peer: Option<Peer>,
    /// How many times it was started (each start logs to its own file).
    starts: u32,
    pub dir: PathBuf,
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
    pub mtls: u16,
}

impl Rsyslog {
    pub async fn start(dir: &Path, certs: &Certs) -> Rsyslog {
        let (udp, tcp, tls, mtls) = (free_udp_port(), free_port(), free_port(), free_port());
        let d = dir.display();
        let template = r#"{\"pri\":\"%pri%\",\"facility\":\"%syslogfacility%\",\"severity\":\"%syslogseverity%\",\"version\":\"%protocol-version%\",\"timestamp\":\"%timereported:::date-rfc3339%\",\"hostname\":\"%hostname:::json%\",\"app\":\"%app-name:::json%\",\"procid\":\"%procid:::json%\",\"msgid\":\"%msgid:::json%\",\"sd\":\"%structured-data:::json%\",\"msg\":\"%msg:::json%\"}\n"#;
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="200")
template(name="fields" type="string" string="{template}")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp" rcvbufSize="8m")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{mtls}" ruleset="mtls" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.jsonl" template="fields") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.jsonl" template="fields") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.jsonl" template="fields") }}
ruleset(name="mtls") {{ action(type="omfile" file="{d}/mtls.jsonl" template="fields") }}
"#,
            ca = certs.ca.display(),
            cert = certs.server_cert.display(),
            key = certs.server_key.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut rsyslog = Rsyslog {
            peer: None,
            starts: 0,
            dir: dir.to_path_buf(),
            udp,
            tcp,
            tls,
            mtls,
        };
        rsyslog.restart().await;
        rsyslog
    }

    /// Stops rsyslogd (SIGTERM: it writes out what it has read first).
    pub fn stop(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.stop();
        }
    }

    /// Starts rsyslogd again on the same ports, appending to the same output files.
    pub async fn restart(&mut self) {
        self.stop();
        self.starts += 1;
        let bin = require_binary("rsyslogd", "rsyslog rsyslog-gnutls");
        let log = match self.starts {
            1 => self.dir.join("rsyslogd.log"),
            n => self.dir.join(format!("rsyslogd-{n}.log")),
        };
        self.peer = Some(Peer::spawn(
            Command::new(bin)
                .arg("-n")
                .arg("-f")
                .arg(self.dir.join("rsyslog.conf"))
                .arg("-i")
                .arg(self.dir.join("rsyslogd.pid")),
            log,
        ));
        for port in [self.tcp, self.tls, self.mtls] {
            wait_for_tcp(port, "rsyslogd").await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// What the input received, as rsyslog parsed it.
    pub fn received(&self, input: &str) -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{input}.jsonl"))).unwrap_or_default();
        // rsyslog may be writing the last line as we read: only complete lines count.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rsyslog wrote {l:?}: {e}")))
            .collect()
    }

    /// Waits until `input` has at least `count` messages (or 20 s).
    pub async fn wait_for(&self, input: &str, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received(input);
            if got.len() >= count || Instant::now() > deadline {
                // A little longer, so that extra (duplicate) messages would show up too.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.received(input);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        self.peer.as_ref().map(Peer::output).unwrap_or_default()
    }
}

/// `nats-server -js` on a port, with its store in `dir`.
pub struct NatsServer {
    _peer: Peer,
    pub port: u16,
}

impl NatsServer {
    /// Stops the server (SIGTERM); `start` again with the same `dir` and port restarts it
    /// with its JetStream store.
    pub fn stop(self) {
        self._peer.stop();
    }

    pub async fn start(dir: &Path, port: u16) -> NatsServer {
        NatsServer::start_with(dir, port, &[]).await
    }

    /// With more command-line options, e.g. `["--auth", TOKEN]`.
    pub async fn start_with(dir: &Path, port: u16, extra: &[&str]) -> NatsServer {
        let bin = require_binary("nats-server", "nats-server");
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store).unwrap();
        let peer = Peer::spawn(
            Command::new(bin)
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(&store)
                .args(extra),
            dir.join(format!("nats-{port}.log")),
        );
        wait_for_tcp(port, "nats-server").await;
        NatsServer { _peer: peer, port }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A temp dir with a config: one integration (authentication logs) sending to `sinks`.
pub struct SinkSetup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    head: String,
}

impl SinkSetup {
    pub fn new(
        base_url: &str,
        sink_names: &[&str],
        sinks_toml: &str,
        integration_extra: &str,
    ) -> SinkSetup {
        let dir = tempfile::tempdir().unwrap();
        let skey = dir.path().join("corp.skey");
        std::fs::write(&skey, format!("{SKEY}\n")).unwrap();
        set_mode(&skey, 0o600);
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
logs = ["authentication"]
sinks = {sinks:?}
{pace}
{integration_extra}

"#,
            state = dir.path().join("state").display().to_string(),
            skey = skey.display().to_string(),
            sinks = sink_names,
            pace = if integration_extra.contains("requests_per_minute") {
                ""
            } else {
                crate::common::TEST_PACE
            },
        );
        std::fs::write(&config, format!("{text}{sinks_toml}")).unwrap();
        set_mode(&config, 0o600);
        SinkSetup {
            dir,
            config,
            head: text,
        }
    }

    /// Rewrites the config with other `[[sink]]` tables (same names), keeping the state.
    pub fn config_with(&self, sinks_toml: &str) -> PathBuf {
        std::fs::write(&self.config, format!("{}{sinks_toml}", self.head)).unwrap();
        self.config.clone()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state_db(&self) -> PathBuf {
        self.dir.path().join("state/state.db")
    }

    /// The authentication stream's checkpoint, if one was ever committed.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        if !self.state_db().exists() {
            return None;
        }
        let state = State::open(&self.state_db()).unwrap();
        state
            .load_checkpoint(&StreamId::new("corp", None, LogKind::Authentication))
            .unwrap()
    }

    /// Every sink's recorded status (none before the collector created its state).
    pub fn sink_status(&self) -> Vec<duo_collector::state::SinkStatus> {
        if !self.state_db().exists() {
            return Vec::new();
        }
        State::open(&self.state_db())
            .unwrap()
            .sink_status()
            .unwrap()
    }
}

/// Short waits everywhere; `attempts` failed sink attempts per page (`None`: until delivered).
pub fn options(attempts: Option<u32>) -> RuntimeOptions {
    RuntimeOptions {
        retry: RetryPolicy {
            rate_limit_initial: Duration::from_millis(10),
            rate_limit_max: Duration::from_millis(100),
            transient_attempts: 3,
            transient_initial: Duration::from_millis(10),
            jitter: Duration::ZERO,
        },
        sink_retry: SinkRetry {
            attempts,
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            jitter: true,
        },
        ..RuntimeOptions::default()
    }
}

/// One `collect-now` in-process; returns the authentication stream's report.
pub async fn collect(
    config: &Path,
    options: &RuntimeOptions,
) -> duo_collector::collector::StreamReport {
    let config = Config::load(config).expect("valid config");
    let runtime = Runtime::build(&config, options).expect("runtime");
    let mut reports: Vec<_> = collect_once(&runtime, None, &CancellationToken::new())
        .await
        .into_iter()
        .flat_map(|r| r.streams)
        .collect();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

/// The events Duo (the simulator) holds up to the last request's maxtime, by id.
pub fn expected_ids(handle: &duo_collector::simulator::SimHandle) -> HashMap<String, i64> {
    handle
        .expected_events(
            None,
            "authentication",
            crate::common::now_ms(),
            crate::common::last_maxtime(handle),
        )
        .into_iter()
        .map(|e| (e.id, e.ts_ms))
        .collect()
}

/// How often each `_duo_collector.event_id` occurs in these JSON events.
pub fn count_ids<'a>(
    events: impl IntoIterator<Item = &'a serde_json::Value>,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events {
        // raw events carry `_duo_collector.event_id`; OCSF (the default) `metadata.uid`.
        let id = e["_duo_collector"]["event_id"]
            .as_str()
            .or_else(|| e["metadata"]["uid"].as_str())
            .unwrap_or_else(|| panic!("no event_id in {e}"));
        *counts.entry(id.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Asserts every expected event arrived exactly once.
pub fn assert_exactly_once(
    what: &str,
    counts: &HashMap<String, usize>,
    expected: &HashMap<String, i64>,
) {
    let missing = expected
        .keys()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let extra = counts
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .count();
    let repeated = counts.values().filter(|c| **c > 1).count();
    assert!(
        missing == 0 && extra == 0 && repeated == 0,
        "{what}: {} expected, {} received: {missing} missing, {extra} unexpected, {repeated} repeated",
        expected.len(),
        counts.len()
    );
}

/// A `[[sink]]` table: syslog over `transport` to rsyslog's port, raw events.
pub fn syslog_sink(name: &str, transport: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
[[sink]]
name = "{name}"
type = "syslog"
transport = "{transport}"
address = "127.0.0.1:{port}"
facility = "local3"
hostname = "collector-test"
format = "raw"
batch_max_events = 150
{extra}
"#
    )
}

/// A `[[sink]]` table: JetStream stream DUO at `url`.
pub fn nats_sink(url: &str) -> String {
    format!(
        r#"
[[sink]]
name = "bus"
type = "nats"
url = "{url}"
stream = "DUO"
create_stream = true
batch_max_events = 100
format = "raw"
"#
    )
}

/// Every message in the stream: (subject, Nats-Msg-Id, event).
pub async fn stream_contents(url: &str) -> Vec<(String, String, serde_json::Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("DUO").await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    let mut out = Vec::new();
    for seq in 1..=count {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

/// How many messages stream DUO holds (0 while the server or the stream is not there).
pub async fn stream_messages(url: &str) -> u64 {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let js = async_nats::jetstream::new(client);
    match js.get_stream("DUO").await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The events rsyslog received on `input`: each message's MSG is the event JSON.
pub fn syslog_events(input: &str, received: &[serde_json::Value]) -> Vec<serde_json::Value> {
    received
        .iter()
        .map(|m| {
            let msg = m["msg"].as_str().unwrap();
            serde_json::from_str(msg.trim_start())
                .unwrap_or_else(|e| panic!("{input}: MSG is not the event JSON ({e}): {msg:?}"))
        })
        .collect()
}
