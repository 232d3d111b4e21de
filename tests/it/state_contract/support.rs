//! The state-store contract's backends and helpers: a [`Backend`] opens its store (again) on
//! the same data; the `Write` and checkpoint builders keep the contracts short.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::sink_support::{free_port, NatsServer};
use duo_collector::event::StreamId;
use duo_collector::log_kind::LogKind;
use duo_collector::nats_connection::{NatsAuth, NatsConnection};
use duo_collector::pacing::PaceKey;
use duo_collector::state::{
    Checkpoint, ClockReading, Cursor, FileMark, LearnedRate, NatsStore, NatsStoreSettings,
    PageCommit, RateLimited, Revision, RunEnd, RunOutcome, SinkAttempt, State, StateStore,
    V1Checkpoint, WindowedCheckpoint, Write,
};
use duo_collector::tls::TlsFiles;

/// A store that can be opened (again) on the same data.
pub trait Backend: Sync {
    fn open(&self) -> BoxFuture<'_, StateStore>;
    /// Stops and starts the server behind the store, if there is one (its data stays).
    fn restart(&self) -> BoxFuture<'_, ()>;
}

pub struct Sqlite(tempfile::TempDir);

impl Sqlite {
    pub async fn new() -> Sqlite {
        Sqlite(tempfile::tempdir().unwrap())
    }
}

impl Backend for Sqlite {
    fn open(&self) -> BoxFuture<'_, StateStore> {
        Box::pin(async move {
            StateStore::sqlite(State::open(&self.0.path().join("state.db")).unwrap())
        })
    }

    fn restart(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

pub struct Nats {
    dir: tempfile::TempDir,
    port: u16,
    server: tokio::sync::Mutex<Option<NatsServer>>,
}

impl Nats {
    pub async fn new() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = NatsServer::start(dir.path(), port).await;
        Nats {
            dir,
            port,
            server: tokio::sync::Mutex::new(Some(server)),
        }
    }

    fn settings(&self) -> NatsStoreSettings {
        nats_settings(&self.url())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

pub fn nats_settings(url: &str) -> NatsStoreSettings {
    NatsStoreSettings {
        connection: NatsConnection {
            url: url.to_string(),
            auth: NatsAuth::None,
            tls: TlsFiles::default(),
            tls_required: false,
            timeout: Duration::from_secs(5),
        },
        bucket_prefix: "contract".into(),
        replicas: 1,
        lease_ttl: Duration::from_secs(30),
    }
}

impl Backend for Nats {
    fn open(&self) -> BoxFuture<'_, StateStore> {
        Box::pin(async move { StateStore::Nats(NatsStore::open(&self.settings()).await.unwrap()) })
    }

    fn restart(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut server = self.server.lock().await;
            if let Some(running) = server.take() {
                running.stop();
            }
            *server = Some(NatsServer::start(self.dir.path(), self.port).await);
        })
    }
}

pub fn ended(
    stream: &StreamId,
    run_id: i64,
    outcome: RunOutcome,
    error: Option<&str>,
    now_ms: i64,
) -> Write {
    Write::EndRun(RunEnd {
        stream: stream.clone(),
        run_id,
        outcome,
        error: error.map(str::to_string),
        now_ms,
    })
}

pub fn rate(
    integration: &str,
    key: &PaceKey,
    rate_per_minute: f64,
    ceiling: f64,
    now_ms: i64,
) -> Write {
    Write::Rate(LearnedRate {
        integration: integration.into(),
        key: key.clone(),
        rate_per_minute,
        ceiling_per_minute: ceiling,
        now_ms,
    })
}

pub fn limited(integration: &str, key: &PaceKey, until_ms: Option<i64>) -> Write {
    Write::RateLimited(RateLimited {
        integration: integration.into(),
        key: key.clone(),
        until_ms,
    })
}

pub fn clock(integration: &str, offset_ms: i64, now_ms: i64) -> Write {
    Write::Clock(ClockReading {
        integration: integration.into(),
        offset_ms,
        now_ms,
    })
}

pub fn sink_ok(sink: &str, now_ms: i64) -> Write {
    Write::Sink(SinkAttempt {
        sink: sink.into(),
        now_ms,
        error: None,
    })
}

pub fn sink_failed(sink: &str, now_ms: i64, error: &str) -> Write {
    Write::Sink(SinkAttempt {
        sink: sink.into(),
        now_ms,
        error: Some(error.into()),
    })
}

pub fn file_mark_at(mark: &FileMark, now_ms: i64) -> Write {
    Write::FileMark {
        mark: mark.clone(),
        now_ms,
    }
}

pub fn windowed(mintime_ms: i64, cursor: Option<Cursor>) -> Checkpoint {
    Checkpoint::Windowed(WindowedCheckpoint {
        mintime_ms,
        window_max_ms: Some(mintime_ms + 60_000),
        cursor,
        newest_event_ms: Some(mintime_ms + 5),
    })
}

pub fn v1(mintime_ms: i64, seen: &[&str]) -> Checkpoint {
    Checkpoint::V1(V1Checkpoint {
        mintime_ms,
        seen: seen.iter().map(|s| s.to_string()).collect(),
        newest_event_ms: Some(mintime_ms),
    })
}

pub fn commit(
    stream: &StreamId,
    run_id: i64,
    cp: &Checkpoint,
    events: usize,
    revision: Revision,
) -> PageCommit {
    PageCommit {
        stream: stream.clone(),
        run_id,
        checkpoint: cp.clone(),
        events,
        now_ms: 1_000 + events as i64,
        files: Vec::new(),
        revision,
    }
}

/// Loads the stream, commits `cp` at the revision read; returns the new revision.
pub async fn commit_next(
    store: &StateStore,
    stream: &StreamId,
    run_id: i64,
    cp: &Checkpoint,
    events: usize,
) -> Revision {
    let loaded = store.load_checkpoint(stream).await.unwrap();
    store
        .commit_page(commit(stream, run_id, cp, events, loaded.revision), || {})
        .await
        .unwrap()
}

pub fn the_streams() -> Vec<(StreamId, Checkpoint, Checkpoint)> {
    vec![
        (
            StreamId::new("corp", None, LogKind::Authentication),
            windowed(
                1_000,
                Some(Cursor::V2Pair {
                    ms: 1_500,
                    id: "af0b".into(),
                }),
            ),
            windowed(61_001, None),
        ),
        (
            StreamId::new("corp", Some("DA1".into()), LogKind::TrustMonitor),
            windowed(
                2_000,
                Some(Cursor::TrustMonitorOffset {
                    offset: "31229".into(),
                }),
            ),
            windowed(
                2_000,
                Some(Cursor::TrustMonitorOffset {
                    offset: "31230".into(),
                }),
            ),
        ),
        (
            StreamId::new("corp", None, LogKind::Administrator),
            v1(5_000, &["f1", "f2"]),
            v1(6_000, &["f3"]),
        ),
        (
            StreamId::new("corp", None, LogKind::Telephony),
            windowed(
                3_000,
                Some(Cursor::V2Opaque {
                    text: "opaque".into(),
                }),
            ),
            windowed(63_001, None),
        ),
    ]
}

pub fn pace(account: &str, endpoint: &str) -> PaceKey {
    PaceKey {
        account: account.into(),
        endpoint: endpoint.into(),
    }
}

/// A file sink's mark; device and inode numbers above i64::MAX must come back intact.
pub fn mark(sink: &str, len: u64) -> FileMark {
    FileMark {
        sink: sink.into(),
        path: format!("/var/log/duo/{sink}.jsonl"),
        dev: u64::MAX - 1,
        ino: 1 << 63,
        len,
    }
}
