//! The writes of the state store besides a page's commit, as values: each backend applies a
//! [`Write`] in one place (`SqliteStore::write`, `NatsStore::write`), and a caller hands over
//! what it owns (the SQLite write runs on the blocking pool, the NATS one in its own task).

use super::{FileMark, RunOutcome};
use crate::event::StreamId;
use crate::pacing::PaceKey;

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A run ended; the stream's history beyond what is kept is dropped.
    EndRun(RunEnd),
    /// The request rate pacing learned for (integration, account, endpoint).
    Rate(LearnedRate),
    /// "Rate limited, resuming at T" (or with `None` cleared) on a learned rate; a key
    /// without one is left alone.
    RateLimited(RateLimited),
    /// Duo's clock as measured for an integration.
    Clock(ClockReading),
    /// A sink delivered (`error: None`) or failed an attempt.
    Sink(SinkAttempt),
    /// A file sink's committed length outside a page (when it opens the file).
    FileMark { mark: FileMark, now_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub stream: StreamId,
    pub run_id: i64,
    pub outcome: RunOutcome,
    pub error: Option<String>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LearnedRate {
    pub integration: String,
    pub key: PaceKey,
    pub rate_per_minute: f64,
    pub ceiling_per_minute: f64,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    pub integration: String,
    pub key: PaceKey,
    pub until_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockReading {
    pub integration: String,
    /// Duo's clock minus this host's, ms.
    pub offset_ms: i64,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkAttempt {
    pub sink: String,
    pub now_ms: i64,
    /// `None`: the page was acknowledged.
    pub error: Option<String>,
}
