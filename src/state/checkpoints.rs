//! Checkpoints as stored: one typed [`Checkpoint`] per stream, the serde JSON of it in a
//! numbered encoding (`format`), and the reading of files written before it existed (schema 4:
//! one column per field, shared by every paging family), both for migration 5 and for
//! `status` opening an older file read-only.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{account_key, StateError};
use crate::checkpoint::{Checkpoint, Cursor, V1Checkpoint, WindowedCheckpoint};
use crate::event::StreamId;
use crate::log_kind::{LogKind, Paging};

/// The encoding of `checkpoints.checkpoint`: the serde JSON of [`Checkpoint`]. A change to its
/// shape gets a new number and a migration that rewrites the rows.
pub const CHECKPOINT_FORMAT: i64 = 1;

pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<String, StateError> {
    serde_json::to_string(checkpoint).map_err(|e| StateError::Corrupt {
        stream: String::new(),
        detail: format!("checkpoint not encodable: {e}"),
    })
}

/// The checkpoint stored as `text` in `format`, or why it cannot be read.
pub fn decode_checkpoint(format: i64, text: &str) -> Result<Checkpoint, String> {
    if format != CHECKPOINT_FORMAT {
        return Err(format!(
            "checkpoint format {format} (this build reads {CHECKPOINT_FORMAT})"
        ));
    }
    serde_json::from_str(text).map_err(|e| format!("checkpoint: {e}"))
}

/// How the file at hand stores checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Typed,
    /// Schema 4 and before (a read-only open of a file no newer build has migrated yet).
    Legacy,
}

pub fn load(
    c: &Connection,
    stream: &StreamId,
    layout: Layout,
) -> Result<Option<Checkpoint>, StateError> {
    let corrupt = |detail: String| StateError::Corrupt {
        stream: stream.to_string(),
        detail,
    };
    let key = params![stream.integration, account_key(stream), stream.log.as_str()];
    let checkpoint = match layout {
        Layout::Typed => {
            let row = c
                .query_row(
                    "SELECT format, checkpoint FROM checkpoints WHERE integration=?1 AND account_id=?2 AND log=?3",
                    key,
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            let Some((format, text)) = row else {
                return Ok(None);
            };
            decode_checkpoint(format, &text).map_err(corrupt)?
        }
        Layout::Legacy => {
            let row = c
                .query_row(
                    "SELECT mintime_ms, window_max_ms, cursor, seen, newest_event_ms FROM checkpoints WHERE integration=?1 AND account_id=?2 AND log=?3",
                    key,
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<String>>(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((mintime, window_max, cursor, seen, newest)) = row else {
                return Ok(None);
            };
            let seen = legacy_seen(seen.as_deref()).map_err(corrupt)?;
            legacy_checkpoint(
                stream.log.paging(),
                mintime,
                window_max,
                cursor,
                seen,
                newest,
            )
        }
    };
    if !checkpoint.fits(stream.log) {
        return Err(corrupt(format!(
            "a checkpoint of another paging family than {}",
            stream.log
        )));
    }
    Ok(Some(checkpoint))
}

/// Schema 4's `seen` column: a JSON list of fingerprints.
fn legacy_seen(text: Option<&str>) -> Result<Vec<String>, String> {
    match text {
        None | Some("") => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("seen list: {e}")),
    }
}

/// The checkpoint a row of schema 4 meant, read by its log kind's paging family: `seen` only
/// for v1, the window and cursor only for the windowed kinds.
fn legacy_checkpoint(
    paging: Paging,
    mintime_ms: i64,
    window_max_ms: Option<i64>,
    cursor: Option<String>,
    seen: Vec<String>,
    newest_event_ms: Option<i64>,
) -> Checkpoint {
    match paging {
        Paging::V1 => Checkpoint::V1(V1Checkpoint {
            mintime_ms,
            seen,
            newest_event_ms,
        }),
        Paging::V2 | Paging::TrustMonitor => Checkpoint::Windowed(WindowedCheckpoint {
            mintime_ms,
            // A cursor is only meaningful inside its window.
            cursor: window_max_ms.and(cursor).map(|c| Cursor::parse(paging, &c)),
            window_max_ms,
            newest_event_ms,
        }),
    }
}

/// Migration 5: rewrites every checkpoint row into the typed encoding.
pub fn typed_checkpoints(tx: &Transaction<'_>) -> Result<(), StateError> {
    tx.execute_batch(
        "CREATE TABLE checkpoints_typed(
            integration TEXT NOT NULL,
            account_id TEXT NOT NULL,
            log TEXT NOT NULL,
            format INTEGER NOT NULL,
            checkpoint TEXT NOT NULL,
            events_total INTEGER NOT NULL DEFAULT 0,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY(integration, account_id, log)
         );",
    )?;
    type LegacyRow = (
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
        i64,
    );
    let rows: Vec<LegacyRow> = tx
        .prepare(
            "SELECT integration, account_id, log, mintime_ms, window_max_ms, cursor, seen,
                    newest_event_ms, events_total, updated_ms FROM checkpoints",
        )?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (integration, account, log, mintime, window_max, cursor, seen, newest, total, updated) in
        rows
    {
        let corrupt = |detail: String| StateError::Corrupt {
            stream: format!("{integration}/{account}/{log}"),
            detail,
        };
        let kind: LogKind = log
            .parse()
            .map_err(|_| corrupt(format!("unknown log kind {log:?}")))?;
        let seen = legacy_seen(seen.as_deref()).map_err(corrupt)?;
        let checkpoint =
            legacy_checkpoint(kind.paging(), mintime, window_max, cursor, seen, newest);
        tx.execute(
            "INSERT INTO checkpoints_typed VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                integration,
                account,
                log,
                CHECKPOINT_FORMAT,
                encode_checkpoint(&checkpoint)?,
                total,
                updated
            ],
        )?;
    }
    tx.execute_batch(
        "DROP TABLE checkpoints; ALTER TABLE checkpoints_typed RENAME TO checkpoints;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{schema, RunOutcome, State};
    use super::*;

    /// A state.db file as a build with schema 4 left it (rows in the columns
    /// `commit_page` wrote then): a v2 window with a cursor, a Trust Monitor window
    /// with its positional offset, a v1 second with fingerprints, a closed window, and a
    /// finished run.
    fn write_schema_4_file(path: &std::path::Path) {
        let mut conn = Connection::open(path).unwrap();
        schema::migrate_to(&mut conn, 4).unwrap();
        conn.execute_batch(
            r#"INSERT INTO checkpoints(integration, account_id, log, mintime_ms, window_max_ms, cursor, seen, newest_event_ms, events_total, updated_ms) VALUES
                ('corp', '', 'authentication', 1000, 9000, '1597671839000,af0b', '[]', 1500, 7, 42),
                ('corp', 'DA1', 'trust_monitor', 2000, 8000, '31229', '[]', NULL, 3, 42),
                ('corp', '', 'administrator', 5000, NULL, NULL, '["f1","f2"]', 5000, 2, 42),
                ('corp', '', 'telephony', 6001, NULL, NULL, '[]', 6000, 1, 42);"#,
        )
        .unwrap();
        conn.execute(
            "INSERT INTO runs(integration, account_id, log, started_ms, ended_ms, pages, events, outcome) VALUES ('corp', '', 'authentication', 10, 20, 1, 7, 'ok')",
            [],
        )
        .unwrap();
    }

    fn expected() -> Vec<(StreamId, Checkpoint)> {
        let stream =
            |account: Option<&str>, log| StreamId::new("corp", account.map(str::to_string), log);
        vec![
            (
                stream(None, LogKind::Authentication),
                Checkpoint::Windowed(WindowedCheckpoint {
                    mintime_ms: 1_000,
                    window_max_ms: Some(9_000),
                    cursor: Some(Cursor::V2Pair {
                        ms: 1_597_671_839_000,
                        id: "af0b".into(),
                    }),
                    newest_event_ms: Some(1_500),
                }),
            ),
            (
                stream(Some("DA1"), LogKind::TrustMonitor),
                Checkpoint::Windowed(WindowedCheckpoint {
                    mintime_ms: 2_000,
                    window_max_ms: Some(8_000),
                    cursor: Some(Cursor::TrustMonitorOffset {
                        offset: "31229".into(),
                    }),
                    newest_event_ms: None,
                }),
            ),
            (
                stream(None, LogKind::Administrator),
                Checkpoint::V1(V1Checkpoint {
                    mintime_ms: 5_000,
                    seen: vec!["f1".into(), "f2".into()],
                    newest_event_ms: Some(5_000),
                }),
            ),
            (
                stream(None, LogKind::Telephony),
                Checkpoint::Windowed(WindowedCheckpoint {
                    mintime_ms: 6_001,
                    window_max_ms: None,
                    cursor: None,
                    newest_event_ms: Some(6_000),
                }),
            ),
        ]
    }

    fn assert_holds_the_schema_4_checkpoints(state: &State) {
        for (stream, checkpoint) in expected() {
            assert_eq!(
                state.load_checkpoint(&stream).unwrap(),
                Some(checkpoint),
                "{stream}"
            );
        }
    }

    #[test]
    fn migration_5_types_the_checkpoints_of_a_schema_4_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        write_schema_4_file(&path);

        let state = State::open(&path).unwrap();
        assert_holds_the_schema_4_checkpoints(&state);
        let status = state.status().unwrap();
        let totals: Vec<(String, i64)> = status
            .iter()
            .map(|s| (s.log.clone(), s.events_total))
            .collect();
        assert_eq!(
            totals,
            [
                ("administrator".to_string(), 2),
                ("authentication".to_string(), 7),
                ("telephony".to_string(), 1),
                ("trust_monitor".to_string(), 3),
            ]
        );
        let run = status[1].last_run.as_ref().unwrap();
        assert_eq!(run.outcome, Some(RunOutcome::Ok));
        drop(state);

        let conn = Connection::open(&path).unwrap();
        let (version, formats): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT MAX(version) FROM schema_version), (SELECT COUNT(*) FROM checkpoints WHERE format = ?1)",
                [CHECKPOINT_FORMAT],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // Migrated through 5 (typed checkpoints) to the latest schema.
        assert!(schema::latest_version() >= schema::TYPED_CHECKPOINTS);
        assert_eq!((version, formats), (schema::latest_version(), 4));
    }

    #[test]
    fn status_reads_a_schema_4_file_it_may_not_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        write_schema_4_file(&path);

        let state = State::open_read_only(&path).unwrap();
        assert_holds_the_schema_4_checkpoints(&state);
        drop(state);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 4, "a read-only open changes nothing");
    }

    #[test]
    fn a_row_of_an_unknown_format_is_refused() {
        assert!(decode_checkpoint(CHECKPOINT_FORMAT + 1, "{}").is_err());
        let cp = Checkpoint::start(LogKind::Activity, 3);
        let text = encode_checkpoint(&cp).unwrap();
        assert_eq!(decode_checkpoint(CHECKPOINT_FORMAT, &text), Ok(cp));
    }
}
