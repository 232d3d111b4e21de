//! The SQLite side of [`super::StateDump`]: what `status` does not read in full (learned rates
//! with their times, every file mark), and the import, in one transaction: a key the file
//! holds is refused (nothing is written) unless the import overwrites.

use rusqlite::{params, Params, Transaction};

use super::checkpoints::{encode_checkpoint, CHECKPOINT_FORMAT};
use super::{
    account_key, FileMark, FileMarkDump, RateDump, State, StateDump, StateError, StreamDump,
    RUNNING,
};
use crate::pacing::PaceKey;

/// Whether `sql` (a `SELECT 1 ...`) finds a row.
fn holds(tx: &Transaction<'_>, sql: &str, key: impl Params) -> Result<bool, StateError> {
    Ok(tx.prepare(sql)?.exists(key)?)
}

impl State {
    pub(super) fn export_rates(&self) -> Result<Vec<RateDump>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT integration, account_id, endpoint, rate_per_minute, ceiling_per_minute, updated_ms, rate_limited_until_ms
                 FROM pacing ORDER BY 1, 2, 3",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(RateDump {
                    integration: r.get(0)?,
                    key: PaceKey {
                        account: r.get(1)?,
                        endpoint: r.get(2)?,
                    },
                    rate_per_minute: r.get(3)?,
                    ceiling_per_minute: r.get(4)?,
                    updated_ms: r.get(5)?,
                    rate_limited_until_ms: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub(super) fn export_file_marks(&self) -> Result<Vec<FileMarkDump>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT sink, path, dev, ino, committed_len, updated_ms FROM file_commits ORDER BY sink",
            )?;
            let rows = stmt.query_map([], |r| {
                // Device and inode numbers are stored by their bits (`files.rs`).
                Ok(FileMarkDump {
                    mark: FileMark {
                        sink: r.get(0)?,
                        path: r.get(1)?,
                        dev: r.get::<_, i64>(2)? as u64,
                        ino: r.get::<_, i64>(3)? as u64,
                        len: r.get::<_, i64>(4)? as u64,
                    },
                    updated_ms: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub(super) fn import(&self, dump: &StateDump, overwrite: bool) -> Result<(), StateError> {
        let store = format!("state database {}", self.path.display());
        let refuse = |what: String| StateError::AlreadyHeld {
            store: store.clone(),
            what,
        };
        self.with(|c| {
            let tx = c.transaction()?;
            for stream in &dump.streams {
                import_stream(&tx, stream, overwrite, &refuse)?;
            }
            for rate in &dump.rates {
                let key = params![rate.integration, rate.key.account, rate.key.endpoint];
                if !overwrite && holds(&tx, "SELECT 1 FROM pacing WHERE integration = ?1 AND account_id = ?2 AND endpoint = ?3", key)? {
                    return Err(refuse(format!("a learned rate for {} {}", rate.integration, rate.key.endpoint)));
                }
                tx.execute(
                    "INSERT OR REPLACE INTO pacing(integration, account_id, endpoint, rate_per_minute, ceiling_per_minute, updated_ms, rate_limited_until_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![rate.integration, rate.key.account, rate.key.endpoint, rate.rate_per_minute, rate.ceiling_per_minute, rate.updated_ms, rate.rate_limited_until_ms],
                )?;
            }
            for clock in &dump.clocks {
                if !overwrite && holds(&tx, "SELECT 1 FROM duo_clock WHERE integration = ?1", [&clock.integration])? {
                    return Err(refuse(format!("Duo's clock for {}", clock.integration)));
                }
                tx.execute(
                    "INSERT OR REPLACE INTO duo_clock(integration, offset_ms, measured_ms) VALUES (?1, ?2, ?3)",
                    params![clock.integration, clock.offset_ms, clock.measured_ms],
                )?;
            }
            for sink in &dump.sinks {
                if !overwrite && holds(&tx, "SELECT 1 FROM sink_status WHERE sink = ?1", [&sink.sink])? {
                    return Err(refuse(format!("the status of sink {}", sink.sink)));
                }
                tx.execute(
                    "INSERT OR REPLACE INTO sink_status(sink, last_success_ms, failing_since_ms, last_error, last_error_ms, failed_attempts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![sink.sink, sink.last_success_ms, sink.failing_since_ms, sink.last_error, sink.last_error_ms, sink.failed_attempts],
                )?;
            }
            for file in &dump.files {
                if !overwrite && holds(&tx, "SELECT 1 FROM file_commits WHERE sink = ?1", [&file.mark.sink])? {
                    return Err(refuse(format!("the committed length of file sink {}", file.mark.sink)));
                }
                super::files::write_marks(&tx, std::slice::from_ref(&file.mark), file.updated_ms)?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// A stream's checkpoint and runs; with `overwrite`, its runs in the file are replaced too (the
/// history belongs to the checkpoint it led to).
fn import_stream(
    tx: &Transaction<'_>,
    dump: &StreamDump,
    overwrite: bool,
    refuse: &impl Fn(String) -> StateError,
) -> Result<(), StateError> {
    let stream = &dump.stream;
    let key = params![stream.integration, account_key(stream), stream.log.as_str()];
    let held = holds(
        tx,
        "SELECT 1 FROM checkpoints WHERE integration = ?1 AND account_id = ?2 AND log = ?3
         UNION ALL SELECT 1 FROM runs WHERE integration = ?1 AND account_id = ?2 AND log = ?3",
        key,
    )?;
    if held && !overwrite {
        return Err(refuse(format!("the stream {stream}")));
    }
    tx.execute(
        "DELETE FROM runs WHERE integration = ?1 AND account_id = ?2 AND log = ?3",
        key,
    )?;
    match &dump.checkpoint {
        Some(cp) => tx.execute(
            "INSERT OR REPLACE INTO checkpoints(integration, account_id, log, format, checkpoint, events_total, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                stream.integration,
                account_key(stream),
                stream.log.as_str(),
                CHECKPOINT_FORMAT,
                encode_checkpoint(&cp.checkpoint)?,
                cp.events_total,
                cp.updated_ms
            ],
        )?,
        None => tx.execute(
            "DELETE FROM checkpoints WHERE integration = ?1 AND account_id = ?2 AND log = ?3",
            key,
        )?,
    };
    for run in &dump.runs {
        tx.execute(
            "INSERT INTO runs(integration, account_id, log, started_ms, ended_ms, pages, events, outcome, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                stream.integration,
                account_key(stream),
                stream.log.as_str(),
                run.started_ms,
                run.ended_ms,
                run.pages,
                run.events,
                run.outcome.map_or(RUNNING, |o| o.as_str()),
                run.error
            ],
        )?;
    }
    Ok(())
}
