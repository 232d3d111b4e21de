//! Exactly-once for the file sink across crashes.
//!
//! A page's write into the file and its checkpoint commit are one unit: the file's length after
//! the write ([`FileMark`]) is committed with the checkpoint (SQLite: in its transaction; NATS:
//! just before it, so a crash between the two repeats the page, never loses it), and between a
//! page's write and its commit (or failure) no other page is written into the same file (a
//! [`FileHold`]). So the file is always "committed prefix + at most one uncommitted page", and
//! that page is cut off:
//! - at start, after a crash: the file is cut back to its committed length (same device and
//!   inode only) and the page is fetched and written again;
//! - at the next write, when the page was not committed (another sink failed, the commit
//!   failed, shutdown): it is fetched and written again later.
//!
//! Not covered: a file rotated away between a page's write and its commit keeps that page (the
//! rotated file is never touched), and the page is written again into the new file.
//!
//! Every write of a page goes through `sink::deliver_all` (which takes the holds) and every
//! commit through `StateStore::commit_page`; a write outside that protocol would be cut
//! at the next start.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::state::{FileMark, FileMarks};

/// What the writer and the commit share about one file sink's file.
#[derive(Debug, Default)]
struct Tail {
    /// A [`FileHold`] is out: writes follow the write-then-commit protocol.
    held: bool,
    /// Where the last write that is not committed began; the next write cuts back to it.
    uncommitted_from: Option<u64>,
    /// The file and its length after the last write.
    written: Option<FileMark>,
}

/// One file sink's side of the protocol. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Commits {
    sink: String,
    path: String,
    /// Where committed lengths are read at start and recorded when a file is (re)opened;
    /// `None` (no state database): only the in-process part applies.
    state: Option<FileMarks>,
    tail: Arc<Mutex<Tail>>,
    /// One page at a time between its write and its commit.
    turn: Arc<tokio::sync::Mutex<()>>,
}

fn mark_of(sink: &str, path: &str, meta: &std::fs::Metadata) -> FileMark {
    FileMark {
        sink: sink.to_string(),
        path: path.to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
    }
}

impl Commits {
    pub(super) fn new(sink: &str, path: &std::path::Path, state: Option<FileMarks>) -> Commits {
        Commits {
            sink: sink.to_string(),
            path: path.display().to_string(),
            state,
            tail: Arc::default(),
            turn: Arc::default(),
        }
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        // The data is plain numbers, consistent after any panic.
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At open, before anything is written: cuts what was written after the last commit (a
    /// crash between a page's write and its commit), then records the file as committed as it
    /// now is (everything in it is either committed or not ours).
    pub(super) fn recover(&self, file: &File) -> std::io::Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let meta = file.metadata()?;
        let committed = state.file_mark(&self.sink).map_err(std::io::Error::other)?;
        match committed {
            Some(mark) if mark.path == self.path && mark.same_file(&meta) => {
                if meta.len() > mark.len {
                    tracing::warn!(sink = %self.sink, path = %self.path, bytes = meta.len() - mark.len, committed_len = mark.len,
                        "file sink: cutting what was written after the last commit (the collector stopped between a page's write and its checkpoint); those events are fetched and written again");
                    file.set_len(mark.len)?;
                    file.sync_all()?;
                } else if meta.len() < mark.len {
                    tracing::warn!(sink = %self.sink, path = %self.path, len = meta.len(), committed_len = mark.len,
                        "file sink: the file is shorter than what was committed (truncated by another program?); appending after what is there");
                }
            }
            Some(mark) => {
                tracing::info!(sink = %self.sink, path = %self.path, committed_path = %mark.path,
                    "file sink: the committed file was moved away or replaced since (rotation); the file at the path is left as it is");
            }
            None => {}
        }
        self.record(file)
    }

    /// The sink reopened its path after rotation: the new file holds nothing of ours yet.
    pub(super) fn reopened(&self, file: &File) -> std::io::Result<()> {
        self.tail().uncommitted_from = None;
        self.record(file)
    }

    fn record(&self, file: &File) -> std::io::Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let mark = mark_of(&self.sink, &self.path, &file.metadata()?);
        state
            .record_file_mark(&mark, crate::clock::now_ms())
            .map_err(std::io::Error::other)
    }

    /// Before a write, with the file locked: cuts the previous page if it was never committed.
    pub(super) fn before_write(&self, file: &File) -> std::io::Result<()> {
        let Some(start) = self.tail().uncommitted_from else {
            return Ok(());
        };
        tracing::info!(sink = %self.sink, path = %self.path, from = start,
            "file sink: cutting the previous page, which was not committed (it is fetched again)");
        file.set_len(start)?;
        file.sync_all()?;
        self.tail().uncommitted_from = None;
        Ok(())
    }

    /// After a durable write of `start..` into `file`.
    pub(super) fn after_write(&self, file: &File, start: u64) -> std::io::Result<()> {
        let mark = mark_of(&self.sink, &self.path, &file.metadata()?);
        let mut tail = self.tail();
        if tail.held {
            tail.uncommitted_from = Some(start);
        }
        tail.written = Some(mark);
        Ok(())
    }

    /// Waits for this file's turn: until the previous page written into it was committed or
    /// given up.
    pub(super) async fn hold(&self) -> FileHold {
        let turn = self.turn.clone().lock_owned().await;
        let mut tail = self.tail();
        tail.held = true;
        tail.written = None;
        drop(tail);
        FileHold {
            tail: self.tail.clone(),
            _turn: turn,
        }
    }
}

/// Delivers the page to the file sinks one by one, each in its turn. The turns are taken in
/// one order (by sink name), so two pages never wait for each other; each is kept until the
/// page is committed or given up.
pub(super) async fn deliver_in_turn(
    mut files: Vec<(&Arc<super::Sink>, Commits)>,
    batch: &crate::event::Batch<'_>,
    retry: &super::SinkRetry,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<FileHold>, super::SinkError> {
    files.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name));
    files.dedup_by(|(a, _), (b, _)| a.name == b.name);
    let mut holds = Vec::with_capacity(files.len());
    for (sink, commits) in files {
        tokio::select! {
            hold = commits.hold() => holds.push(hold),
            _ = cancel.cancelled() => return Err(super::SinkError::Cancelled),
        }
        sink.deliver(batch, retry, cancel).await?;
    }
    Ok(holds)
}

/// The right to write one page into a file sink's file, until the page is committed or given up.
#[derive(Debug)]
pub struct FileHold {
    tail: Arc<Mutex<Tail>>,
    _turn: OwnedMutexGuard<()>,
}

impl Drop for FileHold {
    fn drop(&mut self) {
        // An uncommitted write stays marked: the next write cuts it first.
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).held = false;
    }
}

/// What a page's delivery left to commit: the file sinks' lengths after it was written.
/// Commit them with the checkpoint (`StateStore::commit_page`), then call
/// [`PageReceipt::committed`]; dropping the receipt instead gives the page up.
#[derive(Debug, Default)]
pub struct PageReceipt {
    holds: Vec<FileHold>,
}

impl PageReceipt {
    pub(super) fn new(holds: Vec<FileHold>) -> PageReceipt {
        PageReceipt { holds }
    }

    /// The file sinks' files as this page left them.
    pub fn files(&self) -> Vec<FileMark> {
        self.holds
            .iter()
            .filter_map(|h| {
                let tail = h.tail.lock().unwrap_or_else(|p| p.into_inner());
                tail.written.clone()
            })
            .collect()
    }

    /// The checkpoint and [`PageReceipt::files`] are committed: the page stays in the files.
    pub fn committed(self) {
        for hold in &self.holds {
            hold.tail
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .uncommitted_from = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::event::{Batch, Event, StreamId};
    use crate::logs::LogKind;
    use crate::normalize::Format;
    use crate::sink::test_support::RecordedDeliveries;
    use crate::sink::{deliver_all, Sink, SinkReporting, SinkRetry};
    use crate::sink::{SinkKind, SinkSettings};
    use crate::state::{Checkpoint, State};

    struct Fixture {
        dir: tempfile::TempDir,
        state: State,
        stream: StreamId,
        run: i64,
        events: Arc<RecordedDeliveries>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let state = State::open(&dir.path().join("state.db")).unwrap();
            let stream = StreamId::new("corp", None, LogKind::Authentication);
            let run = state.begin_run(&stream, 1).unwrap();
            Fixture {
                dir,
                state,
                stream,
                run,
                events: Arc::default(),
            }
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }

        /// Opens the sink as the service does, with the state database.
        fn open(&self, name: &str) -> Arc<Sink> {
            let settings = SinkSettings {
                name: name.into(),
                format: Format::Raw,
                exclude_fields: Vec::new(),
                kind: SinkKind::File {
                    path: self.path(&format!("{name}.jsonl")),
                    mode: None,
                },
            };
            Arc::new(Sink::open(&settings, self.reporting()).unwrap())
        }

        fn reporting(&self) -> SinkReporting {
            SinkReporting {
                state: self.state.clone().into(),
                events: self.events.clone(),
            }
        }

        /// Delivers events `ids` to `sinks`; commits the checkpoint (with the files) if asked.
        async fn page(&self, sinks: &[Arc<Sink>], ids: &[&str], commit: bool) {
            let events: Vec<Event> = ids
                .iter()
                .map(|id| Event {
                    raw: format!("{{\"txid\":\"{id}\"}}"),
                    event_id: id.to_string(),
                    ts_ms: 1,
                })
                .collect();
            let batch = Batch {
                stream: &self.stream,
                account_name: None,
                collected_at: "2026-01-01T00:00:00.000Z",
                events: &events,
                inventory: None,
            };
            let receipt = deliver_all(
                sinks,
                &batch,
                &SinkRetry::default(),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
            if commit {
                self.state
                    .commit_page(
                        &self.stream,
                        self.run,
                        &Checkpoint::start(self.stream.log, 0),
                        ids.len(),
                        2,
                        &receipt.files(),
                    )
                    .unwrap();
                receipt.committed();
            }
        }
    }

    fn txids(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["txid"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_page_written_but_not_committed_is_cut_when_the_sink_opens_again() {
        let fx = Fixture::new();
        let sink = fx.open("local");
        fx.page(std::slice::from_ref(&sink), &["a", "b"], true)
            .await;
        // The process dies after the write, before the commit.
        fx.page(std::slice::from_ref(&sink), &["c"], false).await;
        assert_eq!(txids(&fx.path("local.jsonl")), ["a", "b", "c"]);
        drop(sink);
        let sink = fx.open("local");
        assert_eq!(txids(&fx.path("local.jsonl")), ["a", "b"]);
        // The page is fetched and written again: once.
        fx.page(std::slice::from_ref(&sink), &["c"], true).await;
        assert_eq!(txids(&fx.path("local.jsonl")), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn each_sink_reports_its_own_delivery_and_records_nothing_itself() {
        let fx = Fixture::new();
        let sinks = [fx.open("one"), fx.open("two")];
        fx.page(&sinks, &["a"], true).await;
        fx.page(&sinks, &["b"], true).await;
        assert_eq!(
            fx.events.reports(),
            [
                "one delivered",
                "two delivered",
                "one delivered",
                "two delivered"
            ]
        );
        // The sink status is the collector's to record, from these reports.
        assert_eq!(fx.state.sink_status().unwrap(), Vec::new());
    }

    #[tokio::test]
    async fn a_page_given_up_is_cut_before_the_next_write() {
        let fx = Fixture::new();
        let sink = fx.open("local");
        fx.page(std::slice::from_ref(&sink), &["a"], true).await;
        // Another sink failed, or the commit did: the page is not committed.
        fx.page(std::slice::from_ref(&sink), &["b"], false).await;
        fx.page(std::slice::from_ref(&sink), &["b", "c"], true)
            .await;
        assert_eq!(txids(&fx.path("local.jsonl")), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_file_rotated_before_the_commit_is_left_alone() {
        let fx = Fixture::new();
        let sink = fx.open("local");
        fx.page(std::slice::from_ref(&sink), &["a"], true).await;
        fx.page(std::slice::from_ref(&sink), &["b"], false).await;
        // logrotate moves the file between the write and the commit; then the crash.
        std::fs::rename(fx.path("local.jsonl"), fx.path("local.jsonl.1")).unwrap();
        drop(sink);
        let sink = fx.open("local");
        assert_eq!(txids(&fx.path("local.jsonl.1")), ["a", "b"], "untouched");
        fx.page(std::slice::from_ref(&sink), &["b"], true).await;
        // The documented limit: the page is in both files.
        assert_eq!(txids(&fx.path("local.jsonl")), ["b"]);
    }

    #[tokio::test]
    async fn a_page_written_into_the_new_file_after_rotation_is_cut_after_a_crash() {
        let fx = Fixture::new();
        let sink = fx.open("local");
        fx.page(std::slice::from_ref(&sink), &["a"], true).await;
        std::fs::rename(fx.path("local.jsonl"), fx.path("local.jsonl.1")).unwrap();
        // Rotated after the commit: the sink reopens the path, then the crash.
        fx.page(std::slice::from_ref(&sink), &["b"], false).await;
        assert_eq!(txids(&fx.path("local.jsonl")), ["b"]);
        drop(sink);
        let _sink = fx.open("local");
        assert_eq!(txids(&fx.path("local.jsonl")), Vec::<String>::new());
        assert_eq!(txids(&fx.path("local.jsonl.1")), ["a"]);
    }

    #[tokio::test]
    async fn a_file_without_a_committed_length_is_only_repaired() {
        let fx = Fixture::new();
        std::fs::write(fx.path("local.jsonl"), "{\"txid\":\"old\"}\n{\"txid\":").unwrap();
        let sink = fx.open("local");
        assert_eq!(txids(&fx.path("local.jsonl")), ["old"]);
        fx.page(std::slice::from_ref(&sink), &["a"], true).await;
        assert_eq!(txids(&fx.path("local.jsonl")), ["old", "a"]);
    }

    #[tokio::test]
    async fn a_page_waits_for_the_previous_one_to_commit() {
        let fx = Fixture::new();
        let sink = fx.open("local");
        let first = match &*sink.driver.lock().await {
            crate::sink::Driver::File(f) => f.commits().clone(),
            _ => unreachable!(),
        };
        let held = first.hold().await;
        let second = tokio::time::timeout(Duration::from_millis(100), first.hold()).await;
        assert!(second.is_err(), "no second page while one is uncommitted");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), first.hold())
            .await
            .expect("the turn passes on");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_to_the_same_files_in_different_orders_do_not_wait_for_each_other() {
        let fx = Arc::new(Fixture::new());
        let (a, b) = (fx.open("a"), fx.open("b"));
        let orders = [vec![a.clone(), b.clone()], vec![b, a]];
        let tasks = orders.map(|sinks| {
            let fx = fx.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    fx.page(&sinks, &[&format!("{i}")], true).await;
                }
            })
        });
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("no deadlock")
                .unwrap();
        }
        assert_eq!(txids(&fx.path("a.jsonl")).len(), 100);
        assert_eq!(txids(&fx.path("b.jsonl")).len(), 100);
    }

    /// A listener that accepts connections and never answers; counts them.
    async fn silent_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                open.push(conn);
            }
        });
        (url, accepted)
    }

    fn http_sink(fx: &Fixture, name: &str, url: &str) -> Arc<Sink> {
        use crate::sink::config::{HttpAuth, HttpFlavor, HttpSettings};
        use crate::sink::Batching;
        let settings = SinkSettings {
            name: name.into(),
            format: Format::Raw,
            exclude_fields: Vec::new(),
            kind: SinkKind::Http(HttpSettings {
                url: url.parse().unwrap(),
                flavor: HttpFlavor::Ndjson,
                auth: HttpAuth::None,
                headers: Vec::new(),
                gzip: false,
                timeout: Duration::from_secs(30),
                ca_file: None,
                index: None,
                source: None,
                idempotency_header: None,
                batch: Batching {
                    max_events: 500,
                    max_bytes: 1 << 20,
                },
            }),
        };
        Arc::new(Sink::open(&settings, fx.reporting()).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn network_sinks_do_not_wait_for_a_file_turn() {
        let fx = Arc::new(Fixture::new());
        let file = fx.open("local");
        let (slow_url, slow_accepted) = silent_server().await;
        let (other_url, other_accepted) = silent_server().await;
        // Page 1 holds the file's turn while its network sink does not answer.
        let first = {
            let (fx, sinks) = (
                fx.clone(),
                vec![file.clone(), http_sink(&fx, "slow", &slow_url)],
            );
            tokio::spawn(async move { fx.page(&sinks, &["a"], true).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while slow_accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "page 1 reached its sink"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Page 2 (another stream, another network sink) starts its network delivery now.
        let second = {
            let (fx, sinks) = (
                fx.clone(),
                vec![file.clone(), http_sink(&fx, "other", &other_url)],
            );
            tokio::spawn(async move { fx.page(&sinks, &["b"], true).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while other_accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "page 2's network sink waited for the file's turn"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        first.abort();
        second.abort();
    }
}
