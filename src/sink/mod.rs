//! Sinks: where events go. A sink acknowledges a batch only once the destination really holds
//! it: file = written and fsynced; stdout = written and flushed; HTTP = a 2xx response; NATS =
//! a JetStream PubAck for every event; TCP/TLS syslog = written and flushed to the socket (plain
//! syslog has no application-level ack); UDP syslog = sent (lossy). The collector moves a
//! checkpoint only after every sink of the integration acknowledged the page.
//!
//! A page is rendered once per sink, then cut into pieces by the sink's batch limits (one HTTP
//! request, one socket write, one round of PubAcks); the page is acknowledged when all of its
//! pieces are. A failed piece is retried (capped exponential backoff with jitter, honouring a
//! server's Retry-After) without resending the pieces already acknowledged.

pub mod config;
mod error;
mod file;
mod file_commit;
mod http;
mod nats;
mod probe;
mod stdout;
mod syslog;
pub mod syslog_frame;
mod tls;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::event::{Batch, StreamId};
use crate::normalize::Formatter;

pub use config::{Batching, SinkKind, SinkSettings};

pub use error::{DriverError, SinkError};
pub use file::FileSink;
pub use file_commit::PageReceipt;
pub use http::HttpSink;
pub use nats::NatsSink;
pub use probe::{probe, Probe};
pub use stdout::{closed as stdout_closed, is_closed as stdout_is_closed, StdoutSink};
pub use syslog::SyslogSink;

/// The closed set of sink implementations.
#[derive(Debug)]
pub(super) enum Driver {
    File(FileSink),
    Stdout(StdoutSink),
    Syslog(Box<SyslogSink>),
    Http(Box<HttpSink>),
    Nats(Box<NatsSink>),
}

/// One configured sink. Pieces are written one at a time, which keeps its output in order.
#[derive(Debug)]
pub struct Sink {
    pub name: String,
    pub formatter: Formatter,
    pub(super) driver: tokio::sync::Mutex<Driver>,
    /// The render buffer of the last page, kept for the next one: a page renders to megabytes,
    /// and a fresh buffer per page costs page faults (the allocator returns such blocks to the
    /// kernel on free) and reallocation copies.
    spare: std::sync::Mutex<Vec<u8>>,
    reporting: SinkReporting,
}

/// What a delivery reports as it goes. The sink only says what happened; its owner (the
/// collector's `SinkStatusRecorder`) decides what to record: the sink status `status` shows,
/// the error counter, and the watchdog's "waiting for a sink, not wedged".
pub trait DeliveryEvents: Send + Sync + std::fmt::Debug {
    fn attempt_failed<'a>(&'a self, failed: FailedAttempt<'a>) -> BoxFuture<'a, ()>;

    /// Every piece of a page was acknowledged by this sink (whatever the other sinks do).
    fn delivered<'a>(&'a self, sink: &'a str) -> BoxFuture<'a, ()>;
}

/// A piece of a page a sink could not deliver.
#[derive(Debug, Clone, Copy)]
pub struct FailedAttempt<'a> {
    pub sink: &'a str,
    pub stream: &'a StreamId,
    pub error: &'a DriverError,
    /// The pause before the piece is tried again; `None` when the page is given up
    /// (a permanent error, or out of attempts).
    pub retry_in: Option<Duration>,
}

/// Where a sink reports to while it delivers.
#[derive(Debug, Clone)]
pub struct SinkReporting {
    /// Where a file sink's committed length is kept (the write-then-commit protocol of
    /// `file_commit.rs` is part of its acknowledgement).
    pub state: crate::state::FileMarks,
    pub events: Arc<dyn DeliveryEvents>,
}

/// How a failing sink is retried before the page is given up for this run.
#[derive(Debug, Clone)]
pub struct SinkRetry {
    /// Failed attempts per page before giving up; `None`: until it succeeds or shutdown
    /// (the service), so collection waits for the sink (backpressure) and skips nothing.
    pub attempts: Option<u32>,
    pub initial: Duration,
    pub max: Duration,
    /// Randomize each wait between half and all of it, so sinks do not retry in lockstep.
    pub jitter: bool,
}

impl Default for SinkRetry {
    fn default() -> Self {
        SinkRetry {
            attempts: Some(5),
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            jitter: true,
        }
    }
}

impl SinkRetry {
    /// The service's policy: retry until the sink is back, waiting at most a minute.
    pub fn until_delivered() -> Self {
        SinkRetry {
            attempts: None,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: true,
        }
    }

    fn wait(&self, base: Duration) -> Duration {
        if !self.jitter || base.is_zero() {
            return base;
        }
        let half = base / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// A page rendered in a sink's format: one line per event.
pub struct Rendered<'a> {
    pub batch: &'a Batch<'a>,
    buf: Vec<u8>,
    lines: Vec<Range<usize>>,
}

impl Rendered<'_> {
    pub fn line(&self, i: usize) -> &[u8] {
        &self.buf[self.lines[i].clone()]
    }

    /// The events' lines, each followed by a newline (JSON Lines).
    pub fn newline_joined(&self, events: Range<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_lines(events, &mut out);
        out
    }

    /// Appends the events' lines to `out`, each followed by a newline (JSON Lines).
    pub fn append_lines(&self, events: Range<usize>, out: &mut Vec<u8>) {
        let bytes: usize = self.lines[events.clone()].iter().map(|l| l.len() + 1).sum();
        out.reserve(bytes);
        for i in events {
            out.extend_from_slice(self.line(i));
            out.push(b'\n');
        }
    }
}

/// Cuts `lines` into consecutive index ranges within the limits (each line costs its length
/// plus `overhead`); a single line over `max_bytes` goes alone.
pub fn pieces(lines: &[Range<usize>], overhead: usize, limits: Batching) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, line) in lines.iter().enumerate() {
        let size = line.len() + overhead;
        if i > start && (i - start >= limits.max_events || bytes + size > limits.max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < lines.len() {
        out.push(start..lines.len());
    }
    out
}

fn open_error(sink: &str) -> impl Fn(DriverError) -> SinkError + '_ {
    move |error| SinkError::Open {
        sink: sink.to_string(),
        error,
    }
}

impl Sink {
    /// Opens the sink; it records its delivery state (and a file's committed length) and
    /// counts its failures where `reporting` says.
    pub fn open(settings: &SinkSettings, reporting: SinkReporting) -> Result<Sink, SinkError> {
        Sink::open_with(settings, reporting, false)
    }

    /// Opens the sink while another process may be collecting into it (`verify-user` beside
    /// the service): a file sink's file is appended to as it is ([`FileSink::open_beside`]),
    /// never cut, since what follows its committed length may be the other process's page in
    /// flight. The caller records the file's length after its write ([`PageReceipt::files`]).
    pub fn open_beside(
        settings: &SinkSettings,
        reporting: SinkReporting,
    ) -> Result<Sink, SinkError> {
        Sink::open_with(settings, reporting, true)
    }

    fn open_with(
        settings: &SinkSettings,
        reporting: SinkReporting,
        beside: bool,
    ) -> Result<Sink, SinkError> {
        let name = &settings.name;
        let driver = match &settings.kind {
            SinkKind::File { path, mode } => Driver::File(
                if beside {
                    FileSink::open_beside(name, path, *mode)
                } else {
                    FileSink::open_committed(name, path, *mode, Some(reporting.state.clone()))
                }
                .map_err(|e| {
                    open_error(name)(DriverError::permanent(
                        format!("cannot open {}: {e}", path.display()),
                        "create its directory and give the service user write access (systemd: LogsDirectory= or ReadWritePaths=)",
                    ))
                })?,
            ),
            SinkKind::Stdout => Driver::Stdout(StdoutSink::new()),
            SinkKind::Syslog(s) => Driver::Syslog(Box::new(
                SyslogSink::open(name, s).map_err(open_error(name))?,
            )),
            SinkKind::Http(s) => Driver::Http(Box::new(HttpSink::open(s).map_err(open_error(name))?)),
            SinkKind::Nats(s) => Driver::Nats(Box::new(NatsSink::open(s).map_err(open_error(name))?)),
        };
        Ok(Sink {
            name: settings.name.clone(),
            formatter: Formatter::new(settings.format, settings.exclude_fields.clone()),
            driver: tokio::sync::Mutex::new(driver),
            spare: std::sync::Mutex::new(Vec::new()),
            reporting,
        })
    }

    /// A file sink's side of the write-then-commit protocol (`file_commit.rs`).
    async fn file_commits(&self) -> Option<file_commit::Commits> {
        match &*self.driver.lock().await {
            Driver::File(f) => Some(f.commits().clone()),
            _ => None,
        }
    }

    fn render<'a>(&self, batch: &'a Batch<'a>) -> Rendered<'a> {
        let mut buf = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|p| p.into_inner()));
        buf.clear();
        buf.reserve(batch.events.len() * 1200);
        let lines = self.formatter.render_batch(batch, &mut buf);
        Rendered { batch, buf, lines }
    }

    /// Keeps a page's buffer for the next page (unless it is unusually large).
    fn recycle(&self, mut buf: Vec<u8>) {
        const KEEP_AT_MOST: usize = 16 << 20;
        if buf.capacity() <= KEEP_AT_MOST {
            buf.clear();
            *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = buf;
        }
    }

    /// How this sink's driver cuts a page: `None` means the whole page at once.
    async fn limits(&self) -> Option<(Batching, usize)> {
        match &*self.driver.lock().await {
            Driver::File(_) | Driver::Stdout(_) => None,
            Driver::Syslog(s) => Some(s.limits()),
            Driver::Http(s) => Some(s.limits()),
            Driver::Nats(s) => Some(s.limits()),
        }
    }

    /// Writes one piece of a page; returns once the destination has acknowledged it.
    async fn send(&self, page: &Rendered<'_>, events: Range<usize>) -> Result<(), DriverError> {
        let mut driver = self.driver.lock().await;
        match &mut *driver {
            Driver::File(f) => {
                let mut bytes = f.take_buffer();
                page.append_lines(events, &mut bytes);
                f.write_durably(bytes)
                    .await
                    .map_err(|e| DriverError::transient(e.to_string()))
            }
            Driver::Stdout(s) => s
                .write_flushed(&page.newline_joined(events))
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::BrokenPipe => DriverError::permanent(
                        "standard output was closed (EPIPE): its reader went away",
                        "keep the reader of standard output running (or use a file sink)",
                    ),
                    _ => DriverError::transient(e.to_string()),
                }),
            Driver::Syslog(s) => s.send(page, events).await,
            Driver::Http(s) => s.send(page, events).await,
            Driver::Nats(s) => s.send(page, events).await,
        }
    }

    /// Delivers one batch (retrying within `retry`) and returns once it is acknowledged.
    pub async fn deliver(
        &self,
        batch: &Batch<'_>,
        retry: &SinkRetry,
        cancel: &CancellationToken,
    ) -> Result<(), SinkError> {
        let page = self.render(batch);
        let result = self.deliver_rendered(batch, &page, retry, cancel).await;
        self.recycle(page.buf);
        result
    }

    async fn deliver_rendered(
        &self,
        batch: &Batch<'_>,
        page: &Rendered<'_>,
        retry: &SinkRetry,
        cancel: &CancellationToken,
    ) -> Result<(), SinkError> {
        let parts = match self.limits().await {
            None => std::iter::once(0..page.lines.len()).collect(),
            Some((limits, overhead)) => pieces(&page.lines, overhead, limits),
        };
        let mut wait = retry.initial;
        let mut failed = 0;
        let mut next = 0;
        while next < parts.len() {
            let failure = match self.send(page, parts[next].clone()).await {
                Ok(()) => {
                    next += 1;
                    continue;
                }
                Err(f) => f,
            };
            failed += 1;
            let out_of_attempts = retry.attempts.is_some_and(|max| failed >= max);
            let retry_in = match failure.retry_after() {
                _ if failure.is_permanent() || out_of_attempts => None,
                Some(after) => Some(after.min(Duration::from_secs(300))),
                None => Some(retry.wait(wait)),
            };
            self.reporting
                .events
                .attempt_failed(FailedAttempt {
                    sink: &self.name,
                    stream: batch.stream,
                    error: &failure,
                    retry_in,
                })
                .await;
            let Some(pause) = retry_in else {
                if failure.is_permanent() {
                    tracing::error!(sink = %self.name, stream = %batch.stream, error = %failure, "sink refused the batch permanently; the checkpoint stays before it");
                    return Err(SinkError::Permanent {
                        sink: self.name.clone(),
                        error: failure,
                    });
                }
                return Err(SinkError::GaveUp {
                    sink: self.name.clone(),
                    attempts: failed,
                    last: failure,
                });
            };
            tracing::warn!(sink = %self.name, stream = %batch.stream, attempt = failed, retry_in = ?pause, error = %failure, "sink delivery failed; retrying (collection of this stream waits)");
            tokio::select! {
                _ = cancel.cancelled() => return Err(SinkError::Cancelled),
                _ = tokio::time::sleep(pause) => {}
            }
            wait = (wait * 2).min(retry.max);
        }
        self.reporting.events.delivered(&self.name).await;
        Ok(())
    }
}

/// Every configured sink, by name.
#[derive(Debug, Default, Clone)]
pub struct SinkSet {
    by_name: HashMap<String, Arc<Sink>>,
}

impl SinkSet {
    /// Opens every sink; all failures are reported together.
    pub fn open(
        settings: &[SinkSettings],
        reporting: &SinkReporting,
    ) -> Result<SinkSet, Vec<SinkError>> {
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        for s in settings {
            match Sink::open(s, reporting.clone()) {
                Ok(sink) => {
                    by_name.insert(s.name.clone(), Arc::new(sink));
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(SinkSet { by_name })
        } else {
            Err(errors)
        }
    }

    /// Keeps the sinks named in `keep` (still open, same instances) and adds `opened`.
    pub fn retain_and_merge(&self, keep: &[String], opened: SinkSet) -> SinkSet {
        let mut by_name: HashMap<String, Arc<Sink>> = self
            .by_name
            .iter()
            .filter(|(name, _)| keep.contains(name))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        by_name.extend(opened.by_name);
        SinkSet { by_name }
    }

    /// The sinks with these names (names were validated against the config).
    pub fn select(&self, names: &[String]) -> Vec<Arc<Sink>> {
        names
            .iter()
            .filter_map(|n| self.by_name.get(n).cloned())
            .collect()
    }
}

/// Delivers a batch to every sink concurrently; Ok only if every sink acknowledged it.
/// A sink that already acknowledged is not asked again while another one is retried; if the
/// page fails as a whole, the next run sends it to every sink again (duplicates only there,
/// file sinks excepted: an uncommitted page is cut from the file).
/// The receipt goes to the checkpoint's commit ([`PageReceipt`]).
pub async fn deliver_all(
    sinks: &[Arc<Sink>],
    batch: &Batch<'_>,
    retry: &SinkRetry,
    cancel: &CancellationToken,
) -> Result<PageReceipt, SinkError> {
    let mut files = Vec::new();
    let mut others = Vec::new();
    for sink in sinks {
        match sink.file_commits().await {
            Some(commits) => files.push((sink, commits)),
            None => others.push(sink),
        }
    }
    // Network sinks do not wait for a file's turn; files take theirs one by one, in order.
    let (files, others) = futures::join!(
        file_commit::deliver_in_turn(files, batch, retry, cancel),
        futures::future::join_all(others.iter().map(|s| s.deliver(batch, retry, cancel))),
    );
    others.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(PageReceipt::new(files?))
}

#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_cut_by_count_and_bytes() {
        let lines: Vec<Range<usize>> = (0..10).map(|i| i * 10..i * 10 + 10).collect();
        let by_count = Batching {
            max_events: 4,
            max_bytes: 1 << 20,
        };
        assert_eq!(pieces(&lines, 0, by_count), vec![0..4, 4..8, 8..10]);
        let by_bytes = Batching {
            max_events: 100,
            max_bytes: 35,
        };
        // 10 bytes + 2 overhead each: two fit in 35 bytes, a third would not.
        assert_eq!(
            pieces(&lines, 2, by_bytes),
            vec![0..2, 2..4, 4..6, 6..8, 8..10]
        );
        let huge = vec![0..100, 100..101];
        assert_eq!(pieces(&huge, 0, by_bytes), vec![0..1, 1..2]);
        assert!(pieces(&[], 0, by_count).is_empty());
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let retry = SinkRetry::default();
        for _ in 0..100 {
            let w = retry.wait(Duration::from_millis(1000));
            assert!(w >= Duration::from_millis(500) && w <= Duration::from_millis(1000));
        }
    }
}
