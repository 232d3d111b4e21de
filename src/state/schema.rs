//! Schema and migrations. Each migration runs once, in order, inside a transaction.

use rusqlite::{params, Connection, Transaction};

use super::StateError;
use crate::checkpoint::{Checkpoint, Cursor, V1Checkpoint, WindowedCheckpoint};
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

enum Migration {
    Sql(&'static str),
    /// A migration that needs the program's own types (it reads and rewrites rows).
    Code(fn(&Transaction<'_>) -> Result<(), StateError>),
}

const MIGRATIONS: &[Migration] = &[
    // 1: checkpoints and runs.
    Migration::Sql(
        "CREATE TABLE checkpoints(
        integration TEXT NOT NULL,
        account_id TEXT NOT NULL,
        log TEXT NOT NULL,
        mintime_ms INTEGER NOT NULL,
        window_max_ms INTEGER,
        cursor TEXT,
        seen TEXT NOT NULL DEFAULT '[]',
        newest_event_ms INTEGER,
        events_total INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY(integration, account_id, log)
     );
     CREATE TABLE runs(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        integration TEXT NOT NULL,
        account_id TEXT NOT NULL,
        log TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        pages INTEGER NOT NULL,
        events INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT
     );
     CREATE INDEX runs_by_stream ON runs(integration, account_id, log, id);",
    ),
    // 2: per-sink delivery state, for `status`.
    Migration::Sql(
        "CREATE TABLE sink_status(
        sink TEXT PRIMARY KEY,
        last_success_ms INTEGER,
        failing_since_ms INTEGER,
        last_error TEXT,
        last_error_ms INTEGER,
        failed_attempts INTEGER NOT NULL DEFAULT 0
     );",
    ),
    // 3: learned request rates per (account, endpoint), and Duo's measured clock offset.
    Migration::Sql(
        "CREATE TABLE pacing(
        integration TEXT NOT NULL,
        account_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        rate_per_minute REAL NOT NULL,
        ceiling_per_minute REAL NOT NULL,
        updated_ms INTEGER NOT NULL,
        rate_limited_until_ms INTEGER,
        PRIMARY KEY(integration, account_id, endpoint)
     );
     CREATE TABLE duo_clock(
        integration TEXT PRIMARY KEY,
        offset_ms INTEGER NOT NULL,
        measured_ms INTEGER NOT NULL
     );",
    ),
    // 4: each file sink's committed length, moved with the checkpoints (see `files.rs`).
    Migration::Sql(
        "CREATE TABLE file_commits(
        sink TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        committed_len INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
     );",
    ),
    // 5: one typed checkpoint per row, in a versioned encoding (`format`, `checkpoint`),
    // instead of columns shared by every paging family.
    Migration::Code(typed_checkpoints),
];

fn current_version(conn: &Connection) -> Result<i64, StateError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")?;
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?)
}

pub fn migrate(conn: &mut Connection) -> Result<(), StateError> {
    let found = current_version(conn)?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StateError::TooNew { found, known });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(run) => run(&tx)?,
        }
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version(version) VALUES (?1)",
            [i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// For read-only opens: the schema must be one this build understands.
pub fn check_version(conn: &Connection) -> Result<(), StateError> {
    let found: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StateError::TooNew { found, known });
    }
    Ok(())
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
fn typed_checkpoints(tx: &Transaction<'_>) -> Result<(), StateError> {
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
        let seen: Vec<String> = match seen.as_deref() {
            None | Some("") => Vec::new(),
            Some(text) => {
                serde_json::from_str(text).map_err(|e| corrupt(format!("seen list: {e}")))?
            }
        };
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
