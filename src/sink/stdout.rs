//! The stdout sink: JSON Lines, acknowledged once flushed.
//!
//! A closed stdout (the reader of a pipe went away: EPIPE) cannot come back, so it is not a
//! failure to retry: it is recorded process-wide and the commands stop (`closed()`).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

static CLOSED: AtomicBool = AtomicBool::new(false);
static CLOSED_NOTIFY: Notify = Notify::const_new();

/// Whether a write to stdout has failed with EPIPE.
pub fn is_closed() -> bool {
    CLOSED.load(Ordering::SeqCst)
}

/// Resolves once a write to stdout has failed with EPIPE.
pub async fn closed() {
    loop {
        // Created before the check: notify_waiters wakes it even if the flag flips in between.
        let notified = CLOSED_NOTIFY.notified();
        if is_closed() {
            return;
        }
        notified.await;
    }
}

fn mark_closed() {
    CLOSED.store(true, Ordering::SeqCst);
    CLOSED_NOTIFY.notify_waiters();
}

#[derive(Debug)]
pub struct StdoutSink {
    out: tokio::io::Stdout,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink {
            out: tokio::io::stdout(),
        }
    }

    pub async fn write_flushed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let result = match self.out.write_all(bytes).await {
            Ok(()) => self.out.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                mark_closed();
            }
        }
        result
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}
