//! Schema and migrations. Each migration runs once, in order, inside a transaction.

use rusqlite::{Connection, Transaction};

use super::checkpoints::typed_checkpoints;
use super::StateError;

/// The first schema with typed checkpoints (see `checkpoints.rs`); older files are read as
/// they were written.
pub const TYPED_CHECKPOINTS: i64 = 5;

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
    // 6: inventory snapshots (`inventory.rs`): per (integration, account, kind) the entities
    // of the last complete snapshot and of the one being taken, and when each completed.
    Migration::Sql(
        "CREATE TABLE inventory_entities(
        integration TEXT NOT NULL,
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        complete INTEGER NOT NULL,
        entity_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY(integration, account_id, kind, complete, entity_id)
     ) WITHOUT ROWID;
     CREATE TABLE inventory_snapshots(
        integration TEXT NOT NULL,
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        completed_ms INTEGER NOT NULL,
        entities INTEGER NOT NULL,
        PRIMARY KEY(integration, account_id, kind)
     );",
    ),
];

fn current_version(conn: &Connection) -> Result<i64, StateError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")?;
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?)
}

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn migrate(conn: &mut Connection) -> Result<(), StateError> {
    migrate_to(conn, latest_version())
}

/// Runs the migrations up to and including `target` (tests write older files with it).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StateError> {
    let found = current_version(conn)?;
    refuse_newer(conn, found)?;
    let pending = MIGRATIONS.iter().enumerate().take(target as usize);
    for (i, migration) in pending.skip(found as usize) {
        // IMMEDIATE: take the write lock before reading the version, so that two processes
        // opening a new file at once (the service and `status` or `verify-user`) migrate one
        // after the other instead of both creating the same tables.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?;
        if applied > i as i64 {
            continue;
        }
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

/// For read-only opens: the schema must be one this build understands. Returns its version.
pub fn check_version(conn: &Connection) -> Result<i64, StateError> {
    let found: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    refuse_newer(conn, found)?;
    Ok(found)
}

/// A file written by a newer build is left alone: its rows may mean what this build can't read.
fn refuse_newer(conn: &Connection, found: i64) -> Result<(), StateError> {
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StateError::TooNew {
            path: conn.path().unwrap_or("state.db").to_string(),
            found,
            known,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_file_at_once_migrate_one_after_the_other() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        let mut conn = Connection::open(&path)?;
                        conn.busy_timeout(std::time::Duration::from_secs(10))?;
                        migrate(&mut conn)
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
            let conn = Connection::open(&path).unwrap();
            assert_eq!(check_version(&conn).unwrap(), MIGRATIONS.len() as i64);
        }
    }
}
