//! Durable state in SQLite: one checkpoint per stream and a short history of runs.
//!
//! A checkpoint is only written by [`State::commit_page`], which the collector calls after every
//! sink acknowledged the page; the checkpoint and the run's counters move in one transaction.

mod checkpoints;
mod diagnose;
mod dir_lock;
mod dump;
mod file_marks;
mod files;
mod inventory;
mod nats;
mod pacing;
mod schema;
mod sinks;
mod sqlite_dump;
mod sqlite_store;
mod store;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::event::StreamId;
use crate::logs::LogKind;

pub use crate::checkpoint::{Checkpoint, Cursor, V1Checkpoint, WindowedCheckpoint};

pub use dir_lock::try_lock_state_dir;
pub use dump::{CheckpointDump, FileMarkDump, RateDump, StateDump, StreamDump};
pub use file_marks::FileMarks;
pub use files::FileMark;
pub use inventory::{ChangedEntity, PendingSnapshot, SnapshotInfo, SnapshotKey, StoredEntity};
pub use nats::{
    instance_id, keys as nats_keys, HeldLease, LeaseHolder, LeaseRecord, LeaseView, NatsStore,
    NatsStoreSettings, DEFAULT_BUCKET_PREFIX, DEFAULT_LEASE_TTL,
};
pub use pacing::{ClockStatus, PaceStatus};
pub use sinks::SinkStatus;
pub use sqlite_store::SqliteStore;
pub use store::{PageCommit, Revision, StateStore, StoreSettings, Versioned};
pub use write::{ClockReading, LearnedRate, RateLimited, RunEnd, SinkAttempt, Write};

/// How many runs per stream are kept for `status`; older ones are pruned.
const RUNS_KEPT_PER_STREAM: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database {path} was written by a newer duo-collector (schema {found}, this build knows up to {known}): upgrade duo-collector (a downgrade cannot read it); the file is left as it is, so the newer version resumes from its checkpoints")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("state database: corrupt checkpoint for {stream}: {detail}")]
    Corrupt { stream: String, detail: String },
    #[error("state database: the blocking task stopped: {0}")]
    Blocking(String),
    #[error("state database {path} is locked by another process (waited {BUSY_WAIT_S} s): find it with `fuser -v {path}` (a sqlite3 shell, a backup or copy tool) and end it, or use `duo-collector status`, which only reads; nothing was committed past the last checkpoint, and the next run resumes from the last checkpoint")]
    Locked { path: String },
    #[error("state database {path} is read-only: make it, and its directory (SQLite writes {path}-wal and {path}-shm next to it), writable by the user duo-collector runs as (the package's user is duo-collector: `chown -R duo-collector: <state_dir>`), or remount the filesystem read-write; nothing was committed past the last checkpoint, and the next run resumes from the last checkpoint")]
    ReadOnly { path: String },
    #[error("state database {path}: the disk is full: free space on the filesystem that holds it (`df -h {path}`); nothing was committed past the last checkpoint, and the next run resumes from the last checkpoint")]
    DiskFull { path: String },
    #[error("state database {path} cannot be opened: check that its directory exists and is writable by the user duo-collector runs as; the next run resumes from the last checkpoint")]
    CannotOpen { path: String },
    /// A compare-and-set on the checkpoint failed: another writer moved the stream since this
    /// one last read or wrote it.
    #[error("the checkpoint of {stream} was moved by another collector since revision {revision}: this one stops the stream and commits nothing; the holder of the stream goes on from the checkpoint it wrote")]
    Fenced { stream: String, revision: u64 },
    /// An import (`migrate-state`) met a key the target holds, and was not told to replace it.
    #[error("{store} already holds {what} (written since migrate-state looked, or left by an earlier attempt): run migrate-state again with --force to replace what the target holds under the source's keys")]
    AlreadyHeld { store: String, what: String },
    #[error("state store {bucket} (NATS JetStream key-value): {detail}")]
    Kv { bucket: String, detail: String },
    #[error("state database {path} is not a usable SQLite database (corrupt, or another file): restore it from a backup and run again, which resumes from the last checkpoint it holds; or move it away, and the next run starts over from `initial_lookback` (delivering again what was delivered since then)")]
    NotADatabase { path: String },
}

/// How long a statement waits for another process's lock before it fails with `Locked`.
const BUSY_WAIT_S: u64 = 10;
/// After the file failed (locked, read-only, full), how long every call fails at once.
const BREAKER_HOLD: std::time::Duration = std::time::Duration::from_secs(BUSY_WAIT_S);

/// One row of `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    pub integration: String,
    pub account_id: Option<String>,
    pub log: String,
    pub checkpoint: Option<Checkpoint>,
    pub events_total: i64,
    pub checkpoint_updated_ms: Option<i64>,
    pub last_run: Option<RunRecord>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub pages: i64,
    pub events: i64,
    /// `None` while the run has not ended (or its process died before ending it: see
    /// [`State::close_abandoned_runs`]).
    pub outcome: Option<RunOutcome>,
    pub error: Option<String>,
}

/// What `runs.outcome` holds for a run that has not ended.
const RUNNING: &str = "running";

/// Outcome of a run, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Ok,
    Failed,
    Interrupted,
    /// The keys may not read this log kind (403), and the config did not ask for it by name.
    NotPermitted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::NotPermitted => "not_permitted",
        }
    }

    const ALL: [RunOutcome; 4] = [
        RunOutcome::Ok,
        RunOutcome::Failed,
        RunOutcome::Interrupted,
        RunOutcome::NotPermitted,
    ];

    /// The stored text back; `None` for text no build of this program writes.
    pub fn from_stored(text: &str) -> Option<RunOutcome> {
        RunOutcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

impl rusqlite::types::ToSql for RunOutcome {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for RunOutcome {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        RunOutcome::from_stored(text).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown run outcome {text:?}").into())
        })
    }
}

/// The state database. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct State {
    conn: Arc<Mutex<Connection>>,
    layout: checkpoints::Layout,
    path: Arc<PathBuf>,
    breaker: Arc<diagnose::Breaker>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("State")
    }
}

fn account_key(stream: &StreamId) -> &str {
    stream.account_id.as_deref().unwrap_or("")
}

/// A `runs` row of (started_ms, ended_ms, pages, events, outcome, error).
fn run_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        started_ms: r.get(0)?,
        ended_ms: r.get(1)?,
        pages: r.get(2)?,
        events: r.get(3)?,
        outcome: match r.get_ref(4)?.as_str()? {
            RUNNING => None,
            _ => Some(r.get(4)?),
        },
        error: r.get(5)?,
    })
}

impl State {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        Self::open_read_write(path).map_err(|e| diagnose::explain(path, e))
    }

    fn open_read_write(path: &Path) -> Result<State, StateError> {
        let open_err = |source| StateError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(BUSY_WAIT_S))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // FULL: a checkpoint that was acknowledged survives power loss too.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;
        Ok(State {
            conn: Arc::new(Mutex::new(conn)),
            layout: checkpoints::Layout::Typed,
            path: Arc::new(path.to_path_buf()),
            breaker: Arc::new(diagnose::Breaker::new(BREAKER_HOLD)),
        })
    }

    /// Opens an existing database read-only, for `status` while the daemon runs.
    pub fn open_read_only(path: &Path) -> Result<State, StateError> {
        Self::open_for_reading(path).map_err(|e| diagnose::explain(path, e))
    }

    fn open_for_reading(path: &Path) -> Result<State, StateError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StateError::Open {
                path: path.display().to_string(),
                source,
            })?;
        conn.busy_timeout(std::time::Duration::from_secs(BUSY_WAIT_S))?;
        let version = schema::check_version(&conn)?;
        Ok(State {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_path_buf()),
            breaker: Arc::new(diagnose::Breaker::new(BREAKER_HOLD)),
            // `status` may read a file no build with typed checkpoints has opened yet.
            layout: if version < schema::TYPED_CHECKPOINTS {
                checkpoints::Layout::Legacy
            } else {
                checkpoints::Layout::Typed
            },
        })
    }

    /// Runs `work` on tokio's blocking pool, off the async workers: a commit fsyncs
    /// (`synchronous=FULL`) and would otherwise stall every stream scheduled on the same
    /// worker. The work runs to its end even if the caller stops waiting, so what it does after
    /// a commit (marking the file sinks' pages committed) is never cut off from the commit.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || work(&state))
            .await
            .map_err(|e| StateError::Blocking(e.to_string()))?
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's own
        // transactions keep the data consistent, so carry on with the connection.
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.breaker.check(&self.path)?;
        let result = f(&mut guard).map_err(|e| diagnose::explain(&self.path, e));
        if let Err(e) = &result {
            self.breaker.record(e);
        }
        result
    }

    pub fn load_checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>, StateError> {
        self.with(|c| checkpoints::load(c, stream, self.layout))
    }

    /// Starts a run record and returns its id.
    pub fn begin_run(&self, stream: &StreamId, now_ms: i64) -> Result<i64, StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs(integration, account_id, log, started_ms, pages, events, outcome) VALUES (?1, ?2, ?3, ?4, 0, 0, ?5)",
                params![stream.integration, account_key(stream), stream.log.as_str(), now_ms, RUNNING],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Moves the checkpoint, counts the page and records the file sinks' lengths after the page
    /// was written into them (none for a page no file sink took), in one transaction. Call
    /// only after every sink acked.
    pub fn commit_page(
        &self,
        stream: &StreamId,
        run_id: i64,
        checkpoint: &Checkpoint,
        events: usize,
        now_ms: i64,
        files: &[FileMark],
    ) -> Result<(), StateError> {
        let stored = checkpoints::encode_checkpoint(checkpoint);
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO checkpoints(integration, account_id, log, format, checkpoint, events_total, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(integration, account_id, log) DO UPDATE SET
                   format = excluded.format, checkpoint = excluded.checkpoint,
                   events_total = checkpoints.events_total + excluded.events_total,
                   updated_ms = excluded.updated_ms",
                params![
                    stream.integration,
                    account_key(stream),
                    stream.log.as_str(),
                    checkpoints::CHECKPOINT_FORMAT,
                    stored?,
                    events as i64,
                    now_ms
                ],
            )?;
            tx.execute(
                "UPDATE runs SET pages = pages + 1, events = events + ?2 WHERE id = ?1",
                params![run_id, events as i64],
            )?;
            files::write_marks(&tx, files, now_ms)?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn end_run(
        &self,
        stream: &StreamId,
        run_id: i64,
        outcome: RunOutcome,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE runs SET ended_ms = ?2, outcome = ?3, error = ?4 WHERE id = ?1",
                params![run_id, now_ms, outcome, error],
            )?;
            tx.execute(
                "DELETE FROM runs WHERE integration = ?1 AND account_id = ?2 AND log = ?3 AND id NOT IN
                   (SELECT id FROM runs WHERE integration = ?1 AND account_id = ?2 AND log = ?3 ORDER BY id DESC LIMIT ?4)",
                params![stream.integration, account_key(stream), stream.log.as_str(), RUNS_KEPT_PER_STREAM],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Every stream that has a checkpoint or a run, sorted.
    pub fn status(&self) -> Result<Vec<StreamStatus>, StateError> {
        self.with(|c| {
            let mut keys = c.prepare(
                "SELECT integration, account_id, log FROM checkpoints
                 UNION SELECT integration, account_id, log FROM runs ORDER BY 1, 2, 3",
            )?;
            let rows: Vec<(String, String, String)> = keys
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (integration, account, log) in rows {
                let account_id = (!account.is_empty()).then_some(account);
                let kind = log.parse::<LogKind>().ok();
                let (checkpoint, events_total, updated) = match kind {
                    Some(k) => {
                        let stream = StreamId::new(&integration, account_id.clone(), k);
                        let cp = checkpoints::load(c, &stream, self.layout)?;
                        let (total, updated): (i64, Option<i64>) = c
                            .query_row(
                                "SELECT events_total, updated_ms FROM checkpoints WHERE integration=?1 AND account_id=?2 AND log=?3",
                                params![integration, account_key(&stream), log],
                                |r| Ok((r.get(0)?, r.get(1)?)),
                            )
                            .optional()?
                            .unwrap_or((0, None));
                        (cp, total, updated)
                    }
                    None => (None, 0, None),
                };
                let last_run = c
                    .query_row(
                        "SELECT started_ms, ended_ms, pages, events, outcome, error FROM runs
                         WHERE integration=?1 AND account_id=?2 AND log=?3 ORDER BY id DESC LIMIT 1",
                        params![integration, account_id.as_deref().unwrap_or(""), log],
                        run_record,
                    )
                    .optional()?;
                out.push(StreamStatus {
                    integration,
                    account_id,
                    log,
                    checkpoint,
                    events_total,
                    checkpoint_updated_ms: updated,
                    last_run,
                });
            }
            Ok(out)
        })
    }

    /// The stream's kept runs, newest first.
    pub fn runs(&self, stream: &StreamId) -> Result<Vec<RunRecord>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT started_ms, ended_ms, pages, events, outcome, error FROM runs
                 WHERE integration=?1 AND account_id=?2 AND log=?3 ORDER BY id DESC",
            )?;
            let rows = stmt.query_map(
                params![stream.integration, account_key(stream), stream.log.as_str()],
                run_record,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Marks runs left `running` by a process that died as interrupted.
    pub fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE runs SET outcome = ?2, ended_ms = ?1, error = 'the collector stopped during this run (crash or kill); the next run resumed from the last checkpoint' WHERE outcome = ?3",
                params![now_ms, RunOutcome::Interrupted, RUNNING],
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        assert_eq!(state.load_checkpoint(&stream).unwrap(), None);
        let run = state.begin_run(&stream, 1).unwrap();
        let cp = Checkpoint::Windowed(WindowedCheckpoint {
            mintime_ms: 10,
            window_max_ms: Some(20),
            cursor: Some(Cursor::V2Pair {
                ms: 15,
                id: "abc".into(),
            }),
            newest_event_ms: Some(15),
        });
        state.commit_page(&stream, run, &cp, 7, 2, &[]).unwrap();
        state.commit_page(&stream, run, &cp, 3, 3, &[]).unwrap();
        state
            .end_run(&stream, run, RunOutcome::Ok, None, 4)
            .unwrap();
        assert_eq!(state.load_checkpoint(&stream).unwrap(), Some(cp.clone()));
        let status = state.status().unwrap();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].events_total, 10);
        let last = status[0].last_run.as_ref().unwrap();
        assert_eq!(
            (last.pages, last.events, last.outcome),
            (2, 10, Some(RunOutcome::Ok))
        );

        // Reopening keeps everything (and migrations are idempotent).
        drop(state);
        let state = State::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(state.load_checkpoint(&stream).unwrap(), Some(cp));
        let other = StreamId::new("corp", Some("DA1".into()), LogKind::Authentication);
        assert_eq!(state.load_checkpoint(&other).unwrap(), None);

        let admin = StreamId::new("corp", None, LogKind::Administrator);
        let v1 = Checkpoint::V1(V1Checkpoint {
            mintime_ms: 5_000,
            seen: vec!["f1".into(), "f2".into()],
            newest_event_ms: Some(5_000),
        });
        state.commit_page(&admin, run, &v1, 2, 5, &[]).unwrap();
        assert_eq!(state.load_checkpoint(&admin).unwrap(), Some(v1));
    }

    #[test]
    fn a_checkpoint_of_the_wrong_family_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        let stream = StreamId::new("corp", None, LogKind::Administrator);
        let run = state.begin_run(&stream, 1).unwrap();
        let windowed = Checkpoint::start(LogKind::TrustMonitor, 10);
        state
            .commit_page(&stream, run, &windowed, 0, 2, &[])
            .unwrap();
        assert!(matches!(
            state.load_checkpoint(&stream),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn abandoned_runs_are_closed_and_history_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        let run = state.begin_run(&stream, 1).unwrap();
        assert_eq!(state.close_abandoned_runs(5).unwrap(), 1);
        let status = state.status().unwrap();
        assert_eq!(
            status[0].last_run.as_ref().unwrap().outcome,
            Some(RunOutcome::Interrupted)
        );
        for i in 0..(RUNS_KEPT_PER_STREAM + 10) {
            let r = state.begin_run(&stream, i).unwrap();
            state
                .end_run(&stream, r, RunOutcome::Failed, Some("x"), i)
                .unwrap();
        }
        let count: i64 = state
            .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, RUNS_KEPT_PER_STREAM);
        let _ = run;
    }

    /// A commit waiting for the database (here: another connection holds the write lock, as a
    /// slow disk would hold an fsync) leaves the async runtime free; and a commit whose caller
    /// stopped waiting still lands.
    #[tokio::test(flavor = "current_thread")]
    async fn commits_wait_off_the_runtime_and_finish_when_the_caller_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap();
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        let run = state.begin_run(&stream, 1).unwrap();
        let cp = Checkpoint::start(LogKind::Authentication, 10);

        let blocker = Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let commit = {
            let (stream, cp) = (stream.clone(), cp.clone());
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .blocking(move |s| s.commit_page(&stream, run, &cp, 1, 2, &[]))
                    .await
            })
        };
        // One thread: this timer fires only if the waiting commit does not hold it.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!commit.is_finished(), "the commit waits for the lock");
        commit.abort();
        blocker.execute_batch("COMMIT").unwrap();

        // Queued behind the aborted caller's commit on the one connection.
        let loaded = {
            let stream = stream.clone();
            state
                .blocking(move |s| s.load_checkpoint(&stream))
                .await
                .unwrap()
        };
        assert_eq!(loaded, Some(cp));
    }
}
