//! Durable state in SQLite: one checkpoint per stream and a short history of runs.
//!
//! A checkpoint is only written by [`State::commit_page`], which the collector calls after every
//! sink acknowledged the page; the checkpoint and the run's counters move in one transaction.

mod diagnose;
mod files;
mod pacing;
mod schema;
mod sinks;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::event::StreamId;
use crate::logs::LogKind;

pub use files::FileMark;
pub use pacing::{ClockStatus, PaceStatus};
pub use sinks::SinkStatus;

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
    #[error("state database {path} is locked by another process (waited {BUSY_WAIT_S} s): find it with `fuser -v {path}` (a sqlite3 shell, a backup or copy tool) and end it, or use `duo-collector status`, which only reads; nothing was committed past the last checkpoint, and the next run resumes from the last checkpoint")]
    Locked { path: String },
    #[error("state database {path} is read-only: make it, and its directory (SQLite writes {path}-wal and {path}-shm next to it), writable by the user duo-collector runs as (the package's user is duo-collector: `chown -R duo-collector: <state_dir>`), or remount the filesystem read-write; nothing was committed past the last checkpoint, and the next run resumes from the last checkpoint")]
    ReadOnly { path: String },
    #[error("state database {path}: the disk is full: free space on the filesystem that holds it (`df -h {path}`); nothing was committed past the last checkpoint, and the next run resumes from the last checkpoint")]
    DiskFull { path: String },
    #[error("state database {path} cannot be opened: check that its directory exists and is writable by the user duo-collector runs as; the next run resumes from the last checkpoint")]
    CannotOpen { path: String },
    #[error("state database {path} is not a usable SQLite database (corrupt, or another file): restore it from a backup and run again, which resumes from the last checkpoint it holds; or move it away, and the next run starts over from `initial_lookback` (delivering again what was delivered since then)")]
    NotADatabase { path: String },
}

/// How long a statement waits for another process's lock before it fails with `Locked`.
const BUSY_WAIT_S: u64 = 10;
/// After the file failed (locked, read-only, full), how long every call fails at once.
const BREAKER_HOLD: std::time::Duration = std::time::Duration::from_secs(BUSY_WAIT_S);

/// Where a stream resumes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The start of the next window, epoch ms (v1 kinds: a whole second, in ms).
    pub mintime_ms: i64,
    /// The end of the window being paged through, if a window is open.
    pub window_max_ms: Option<i64>,
    /// The endpoint's own cursor inside the open window.
    pub cursor: Option<String>,
    /// v1 kinds: fingerprints of the events already delivered at `mintime_ms`'s second.
    pub seen: Vec<String>,
    /// The newest event time delivered so far.
    pub newest_event_ms: Option<i64>,
}

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

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub pages: i64,
    pub events: i64,
    pub outcome: String,
    pub error: Option<String>,
}

/// Outcome of a run, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// The state database. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct State {
    conn: Arc<Mutex<Connection>>,
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
        schema::check_version(&conn)?;
        Ok(State {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_path_buf()),
            breaker: Arc::new(diagnose::Breaker::new(BREAKER_HOLD)),
        })
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
        self.with(|c| load_checkpoint(c, stream))
    }

    /// Starts a run record and returns its id.
    pub fn begin_run(&self, stream: &StreamId, now_ms: i64) -> Result<i64, StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs(integration, account_id, log, started_ms, pages, events, outcome) VALUES (?1, ?2, ?3, ?4, 0, 0, 'running')",
                params![stream.integration, account_key(stream), stream.log.as_str(), now_ms],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Moves the checkpoint and counts the page, atomically. Call only after every sink acked.
    pub fn commit_page(
        &self,
        stream: &StreamId,
        run_id: i64,
        checkpoint: &Checkpoint,
        events: usize,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.commit_page_and_files(stream, run_id, checkpoint, events, now_ms, &[])
    }

    /// [`State::commit_page`], and the file sinks' lengths after the page was written into
    /// them, in the same transaction.
    pub fn commit_page_and_files(
        &self,
        stream: &StreamId,
        run_id: i64,
        checkpoint: &Checkpoint,
        events: usize,
        now_ms: i64,
        files: &[FileMark],
    ) -> Result<(), StateError> {
        let seen = serde_json::to_string(&checkpoint.seen).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO checkpoints(integration, account_id, log, mintime_ms, window_max_ms, cursor, seen, newest_event_ms, events_total, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(integration, account_id, log) DO UPDATE SET
                   mintime_ms = excluded.mintime_ms, window_max_ms = excluded.window_max_ms,
                   cursor = excluded.cursor, seen = excluded.seen,
                   newest_event_ms = excluded.newest_event_ms,
                   events_total = checkpoints.events_total + excluded.events_total,
                   updated_ms = excluded.updated_ms",
                params![
                    stream.integration,
                    account_key(stream),
                    stream.log.as_str(),
                    checkpoint.mintime_ms,
                    checkpoint.window_max_ms,
                    checkpoint.cursor,
                    seen,
                    checkpoint.newest_event_ms,
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
                params![run_id, now_ms, outcome.as_str(), error],
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
                        let cp = load_checkpoint(c, &stream)?;
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
                        |r| {
                            Ok(RunRecord {
                                started_ms: r.get(0)?,
                                ended_ms: r.get(1)?,
                                pages: r.get(2)?,
                                events: r.get(3)?,
                                outcome: r.get(4)?,
                                error: r.get(5)?,
                            })
                        },
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

    /// Marks runs left `running` by a process that died as interrupted.
    pub fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE runs SET outcome = 'interrupted', ended_ms = ?1, error = 'the collector stopped during this run (crash or kill); the next run resumed from the last checkpoint' WHERE outcome = 'running'",
                params![now_ms],
            )?)
        })
    }
}

fn load_checkpoint(c: &Connection, stream: &StreamId) -> Result<Option<Checkpoint>, StateError> {
    let row = c
        .query_row(
            "SELECT mintime_ms, window_max_ms, cursor, seen, newest_event_ms FROM checkpoints WHERE integration=?1 AND account_id=?2 AND log=?3",
            params![stream.integration, account_key(stream), stream.log.as_str()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((mintime_ms, window_max_ms, cursor, seen, newest_event_ms)) = row else {
        return Ok(None);
    };
    let seen: Vec<String> = match seen.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| StateError::Corrupt {
            stream: stream.to_string(),
            detail: format!("seen list: {e}"),
        })?,
    };
    Ok(Some(Checkpoint {
        mintime_ms,
        window_max_ms,
        cursor,
        seen,
        newest_event_ms,
    }))
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
        let cp = Checkpoint {
            mintime_ms: 10,
            window_max_ms: Some(20),
            cursor: Some("15,abc".into()),
            seen: vec!["f1".into()],
            newest_event_ms: Some(15),
        };
        state.commit_page(&stream, run, &cp, 7, 2).unwrap();
        state.commit_page(&stream, run, &cp, 3, 3).unwrap();
        state
            .end_run(&stream, run, RunOutcome::Ok, None, 4)
            .unwrap();
        assert_eq!(state.load_checkpoint(&stream).unwrap(), Some(cp.clone()));
        let status = state.status().unwrap();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].events_total, 10);
        let last = status[0].last_run.as_ref().unwrap();
        assert_eq!(
            (last.pages, last.events, last.outcome.as_str()),
            (2, 10, "ok")
        );

        // Reopening keeps everything (and migrations are idempotent).
        drop(state);
        let state = State::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(state.load_checkpoint(&stream).unwrap(), Some(cp));
        let other = StreamId::new("corp", Some("DA1".into()), LogKind::Authentication);
        assert_eq!(state.load_checkpoint(&other).unwrap(), None);
    }

    #[test]
    fn abandoned_runs_are_closed_and_history_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        let run = state.begin_run(&stream, 1).unwrap();
        assert_eq!(state.close_abandoned_runs(5).unwrap(), 1);
        let status = state.status().unwrap();
        assert_eq!(status[0].last_run.as_ref().unwrap().outcome, "interrupted");
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
}
