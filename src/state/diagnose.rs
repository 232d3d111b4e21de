//! SQLite's failures that an operator fixes — another process holding the lock, a read-only
//! file or directory, a full disk — told apart from the rest, so that the error names the file
//! and the fix instead of SQLite's bare "database is locked"; and a short hold after one, so
//! that the streams of a run stop at once instead of each waiting out the lock in turn.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

use super::StateError;

/// A failure of the database file that no retry inside this run fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    Locked,
    ReadOnly,
    DiskFull,
    CannotOpen,
    NotADatabase,
}

impl Cause {
    fn of(err: &StateError) -> Option<Cause> {
        let source = match err {
            StateError::Sql(source) | StateError::Open { source, .. } => source,
            StateError::Locked { .. } => return Some(Cause::Locked),
            StateError::ReadOnly { .. } => return Some(Cause::ReadOnly),
            StateError::DiskFull { .. } => return Some(Cause::DiskFull),
            StateError::CannotOpen { .. } => return Some(Cause::CannotOpen),
            StateError::NotADatabase { .. } => return Some(Cause::NotADatabase),
            _ => return None,
        };
        match source.sqlite_error_code()? {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some(Cause::Locked),
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => Some(Cause::ReadOnly),
            // SQLite maps ENOSPC on a write to SQLITE_FULL itself.
            ErrorCode::DiskFull => Some(Cause::DiskFull),
            ErrorCode::CannotOpen => Some(Cause::CannotOpen),
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => Some(Cause::NotADatabase),
            _ => None,
        }
    }

    fn error(self, path: &Path) -> StateError {
        let path = path.display().to_string();
        match self {
            Cause::Locked => StateError::Locked { path },
            Cause::ReadOnly => StateError::ReadOnly { path },
            Cause::DiskFull => StateError::DiskFull { path },
            Cause::CannotOpen => StateError::CannotOpen { path },
            Cause::NotADatabase => StateError::NotADatabase { path },
        }
    }
}

impl StateError {
    /// The database file itself failed (locked, read-only, disk full, cannot be opened): no
    /// stream can commit until an operator fixes it, so the run should stop.
    /// A NATS store that does not answer (down, no quorum) is the same for every stream.
    pub fn needs_operator(&self) -> bool {
        Cause::of(self).is_some() || matches!(self, StateError::Kv { .. })
    }
}

/// Replaces a bare SQLite error by one that names `path` and the fix, where there is one.
pub(super) fn explain(path: &Path, err: StateError) -> StateError {
    match Cause::of(&err) {
        Some(cause) => cause.error(path),
        None => err,
    }
}

/// After a [`Cause`], every call fails at once with it for `hold` (without it, each stream's
/// call would wait out SQLite's busy timeout in turn behind the connection's mutex).
#[derive(Debug)]
pub(super) struct Breaker {
    hold: Duration,
    tripped: Mutex<Option<(Instant, Cause)>>,
}

impl Breaker {
    pub(super) fn new(hold: Duration) -> Breaker {
        Breaker {
            hold,
            tripped: Mutex::new(None),
        }
    }

    pub(super) fn check(&self, path: &Path) -> Result<(), StateError> {
        let tripped = self.tripped.lock().unwrap_or_else(|p| p.into_inner());
        match *tripped {
            Some((at, cause)) if at.elapsed() < self.hold => Err(cause.error(path)),
            _ => Ok(()),
        }
    }

    pub(super) fn record(&self, err: &StateError) {
        if let Some(cause) = Cause::of(err) {
            *self.tripped.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), cause));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32) -> StateError {
        StateError::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn an_operators_cause_names_the_file_and_the_fix() {
        let path = Path::new("/var/lib/duo-collector/state.db");
        let cases = [
            (rusqlite::ffi::SQLITE_BUSY, "locked by another process"),
            (rusqlite::ffi::SQLITE_READONLY, "read-only"),
            (rusqlite::ffi::SQLITE_FULL, "the disk is full"),
            (rusqlite::ffi::SQLITE_CANTOPEN, "cannot be opened"),
            (rusqlite::ffi::SQLITE_NOTADB, "restore it from a backup"),
        ];
        for (code, cause) in cases {
            let err = explain(path, sqlite_error(code));
            assert!(err.needs_operator());
            let text = err.to_string();
            assert!(text.contains("/var/lib/duo-collector/state.db"), "{text}");
            assert!(text.contains(cause), "{text}");
            assert!(text.contains("resumes from the last checkpoint"), "{text}");
        }
    }

    #[test]
    fn other_errors_are_left_as_they_are() {
        let path = Path::new("/x/state.db");
        let constraint = explain(path, sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert!(!constraint.needs_operator());
        assert!(!constraint.to_string().contains("resumes"), "{constraint}");
        let too_new = explain(
            path,
            StateError::TooNew {
                path: "/x/state.db".into(),
                found: 9,
                known: 4,
            },
        );
        assert!(matches!(too_new, StateError::TooNew { .. }));
    }

    #[test]
    fn the_breaker_holds_a_cause_for_its_time_only() {
        let path = Path::new("/x/state.db");
        let breaker = Breaker::new(Duration::from_millis(200));
        breaker.record(&sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert!(breaker.check(path).is_ok(), "not an operator's cause");
        breaker.record(&explain(path, sqlite_error(rusqlite::ffi::SQLITE_BUSY)));
        assert!(matches!(
            breaker.check(path),
            Err(StateError::Locked { .. })
        ));
        std::thread::sleep(Duration::from_millis(250));
        assert!(breaker.check(path).is_ok());
    }
}
