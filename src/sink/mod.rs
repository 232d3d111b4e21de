//! Sinks: where events go. A sink acknowledges a batch only once the destination really holds
//! it (file: written and fsynced; stdout: written and flushed). The collector moves a checkpoint
//! only after every sink of the integration acknowledged the page.

mod file;
mod stdout;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{SinkKind, SinkSettings};
use crate::event::Batch;
use crate::normalize::Formatter;

pub use file::FileSink;
pub use stdout::StdoutSink;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink:?}: {detail}")]
    Io { sink: String, detail: String },
    #[error("sink {sink:?}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        sink: String,
        attempts: u32,
        last: String,
    },
    #[error("sink delivery cancelled by shutdown")]
    Cancelled,
}

/// The closed set of sink implementations.
#[derive(Debug)]
enum Driver {
    File(FileSink),
    Stdout(StdoutSink),
}

/// One configured sink. Deliveries to it are serialized, which keeps its output in order.
#[derive(Debug)]
pub struct Sink {
    pub name: String,
    pub formatter: Formatter,
    driver: tokio::sync::Mutex<Driver>,
}

/// How a failing sink is retried before the page is given up for this run.
#[derive(Debug, Clone)]
pub struct SinkRetry {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for SinkRetry {
    fn default() -> Self {
        SinkRetry {
            attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl Sink {
    pub fn open(settings: &SinkSettings) -> Result<Sink, SinkError> {
        let driver = match &settings.kind {
            SinkKind::File { path } => {
                Driver::File(FileSink::open(path).map_err(|e| SinkError::Io {
                    sink: settings.name.clone(),
                    detail: format!("cannot open {}: {e}", path.display()),
                })?)
            }
            SinkKind::Stdout => Driver::Stdout(StdoutSink::new()),
        };
        Ok(Sink {
            name: settings.name.clone(),
            formatter: Formatter::new(settings.format, settings.exclude_fields.clone()),
            driver: tokio::sync::Mutex::new(driver),
        })
    }

    /// Writes one batch; returns once the destination has acknowledged it.
    pub async fn deliver(&self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(batch.events.len() * 1200);
        let lines = self.formatter.render_batch(batch, &mut buf);
        // One event per line: put the newlines in place.
        let mut out = Vec::with_capacity(buf.len() + lines.len());
        for range in lines {
            out.extend_from_slice(&buf[range]);
            out.push(b'\n');
        }
        let mut driver = self.driver.lock().await;
        let result = match &mut *driver {
            Driver::File(f) => f.write_durably(out).await,
            Driver::Stdout(s) => s.write_flushed(&out).await,
        };
        result.map_err(|e| SinkError::Io {
            sink: self.name.clone(),
            detail: e.to_string(),
        })
    }

    async fn deliver_with_retry(
        &self,
        batch: &Batch<'_>,
        retry: &SinkRetry,
        cancel: &CancellationToken,
    ) -> Result<(), SinkError> {
        let mut wait = retry.initial;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.deliver(batch).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= retry.attempts => {
                    return Err(SinkError::GaveUp {
                        sink: self.name.clone(),
                        attempts: attempt,
                        last: e.to_string(),
                    })
                }
                Err(e) => {
                    tracing::warn!(sink = %self.name, stream = %batch.stream, attempt, error = %e, "sink delivery failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(SinkError::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(retry.max);
                }
            }
        }
    }
}

/// Every configured sink, by name.
#[derive(Debug, Default, Clone)]
pub struct SinkSet {
    by_name: HashMap<String, Arc<Sink>>,
}

impl SinkSet {
    /// Opens every sink; all failures are reported together.
    pub fn open(settings: &[SinkSettings]) -> Result<SinkSet, Vec<SinkError>> {
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        for s in settings {
            match Sink::open(s) {
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
pub async fn deliver_all(
    sinks: &[Arc<Sink>],
    batch: &Batch<'_>,
    retry: &SinkRetry,
    cancel: &CancellationToken,
) -> Result<(), SinkError> {
    let results = futures::future::join_all(
        sinks
            .iter()
            .map(|s| s.deliver_with_retry(batch, retry, cancel)),
    )
    .await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(|_| ())
}
