//! The JSON values of the state buckets. Each carries what the SQLite row of the same concern
//! holds; a value this build cannot read is reported as corrupt, never guessed at.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::state::{FileMark, RunOutcome, RunRecord, SinkStatus, RUNS_KEPT_PER_STREAM};

/// `<prefix>-checkpoints`, one per stream. `format` is the checkpoint encoding SQLite uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    pub format: i64,
    pub checkpoint: Checkpoint,
    pub events_total: i64,
    pub updated_ms: i64,
}

/// One run in a stream's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRun {
    pub id: i64,
    /// The collector instance that ran it.
    pub instance: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub pages: i64,
    pub events: i64,
    /// `None` while running.
    pub outcome: Option<String>,
    pub error: Option<String>,
}

impl StoredRun {
    pub fn record(&self) -> RunRecord {
        RunRecord {
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            pages: self.pages,
            events: self.events,
            outcome: self.outcome.as_deref().and_then(RunOutcome::from_stored),
            error: self.error.clone(),
        }
    }
}

/// `<prefix>-runs`, one per stream: its last [`RUNS_KEPT_PER_STREAM`] runs, oldest first. The
/// bucket keeps one revision per key (history 1), so the history is bounded by this list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunHistory {
    pub next_id: i64,
    pub runs: Vec<StoredRun>,
}

impl RunHistory {
    pub fn begin(&mut self, instance: &str, now_ms: i64) -> i64 {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        self.runs.push(StoredRun {
            id,
            instance: instance.to_string(),
            started_ms: now_ms,
            ended_ms: None,
            pages: 0,
            events: 0,
            outcome: None,
            error: None,
        });
        self.prune();
        id
    }

    pub fn run_mut(&mut self, id: i64) -> Option<&mut StoredRun> {
        self.runs.iter_mut().find(|r| r.id == id)
    }

    pub fn prune(&mut self) {
        let kept = RUNS_KEPT_PER_STREAM as usize;
        if self.runs.len() > kept {
            self.runs.drain(..self.runs.len() - kept);
        }
    }

    pub fn last(&self) -> Option<&StoredRun> {
        self.runs.last()
    }
}

/// `<prefix>-rates`, per (integration, account, endpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRate {
    pub rate_per_minute: f64,
    pub ceiling_per_minute: f64,
    pub updated_ms: i64,
    pub rate_limited_until_ms: Option<i64>,
}

/// `<prefix>-clock`, per integration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredClock {
    pub offset_ms: i64,
    pub measured_ms: i64,
}

/// `<prefix>-sinks`, per sink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredSink {
    pub last_success_ms: Option<i64>,
    pub failing_since_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub failed_attempts: i64,
}

impl StoredSink {
    pub fn status(self, sink: String) -> SinkStatus {
        SinkStatus {
            sink,
            last_success_ms: self.last_success_ms,
            failing_since_ms: self.failing_since_ms,
            last_error: self.last_error,
            last_error_ms: self.last_error_ms,
            failed_attempts: self.failed_attempts,
        }
    }
}

/// `<prefix>-files`, per file sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFileMark {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub updated_ms: i64,
}

impl StoredFileMark {
    pub fn of(mark: &FileMark, now_ms: i64) -> StoredFileMark {
        StoredFileMark {
            path: mark.path.clone(),
            dev: mark.dev,
            ino: mark.ino,
            len: mark.len,
            updated_ms: now_ms,
        }
    }

    pub fn mark(self, sink: &str) -> FileMark {
        FileMark {
            sink: sink.to_string(),
            path: self.path,
            dev: self.dev,
            ino: self.ino,
            len: self.len,
        }
    }
}

/// `<prefix>-inventory`, one per snapshot (integration, account, kind): which generation of
/// `<prefix>-entities` holds the complete snapshot and which the one being taken. Every write
/// of a snapshot is a compare-and-set of this head, which is what fences it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredSnapshotHead {
    pub next_generation: u64,
    pub pending: Option<u64>,
    pub complete: Option<CompleteGeneration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteGeneration {
    pub generation: u64,
    pub completed_ms: i64,
    pub entities: i64,
}

/// `<prefix>-entities`, one per entity of one generation of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredInventoryEntity {
    pub hash: String,
    pub state: String,
}

/// Only the hash of a [`StoredInventoryEntity`], read while comparing generations (the state
/// is skipped, not copied).
#[derive(Debug, Deserialize)]
pub struct EntityHash<'a> {
    #[serde(borrow)]
    pub hash: std::borrow::Cow<'a, str>,
}
