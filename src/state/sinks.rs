//! Per-sink delivery state: last success, failing since, last error. Written by the collector
//! from the sinks' delivery reports, read by `status` (possibly from another process).

use rusqlite::{params, OptionalExtension};

use super::{State, StateError};

/// One sink's delivery state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub last_success_ms: Option<i64>,
    /// Set while the sink is failing: when its first failure since the last success happened.
    pub failing_since_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Failed attempts since the last success.
    pub failed_attempts: i64,
}

impl State {
    /// A page was acknowledged: the sink is healthy again.
    pub fn record_sink_success(&self, sink: &str, now_ms: i64) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sink_status(sink, last_success_ms, failing_since_ms, failed_attempts) VALUES (?1, ?2, NULL, 0)
                 ON CONFLICT(sink) DO UPDATE SET last_success_ms = ?2, failing_since_ms = NULL, failed_attempts = 0",
                params![sink, now_ms],
            )?;
            Ok(())
        })
    }

    /// An attempt failed; `failing_since` keeps the first failure after the last success.
    pub fn record_sink_failure(
        &self,
        sink: &str,
        now_ms: i64,
        error: &str,
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sink_status(sink, failing_since_ms, last_error, last_error_ms, failed_attempts) VALUES (?1, ?2, ?3, ?2, 1)
                 ON CONFLICT(sink) DO UPDATE SET failing_since_ms = COALESCE(failing_since_ms, ?2),
                   last_error = ?3, last_error_ms = ?2, failed_attempts = failed_attempts + 1",
                params![sink, now_ms, error],
            )?;
            Ok(())
        })
    }

    /// Every sink that has delivered or failed, by name. Empty for a database from before
    /// sink states were recorded.
    pub fn sink_status(&self) -> Result<Vec<SinkStatus>, StateError> {
        self.with(|c| {
            let exists = c
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sink_status'",
                    [],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !exists {
                return Ok(Vec::new());
            }
            let mut stmt = c.prepare(
                "SELECT sink, last_success_ms, failing_since_ms, last_error, last_error_ms, failed_attempts FROM sink_status ORDER BY sink",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(SinkStatus {
                        sink: r.get(0)?,
                        last_success_ms: r.get(1)?,
                        failing_since_ms: r.get(2)?,
                        last_error: r.get(3)?,
                        last_error_ms: r.get(4)?,
                        failed_attempts: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_since_holds_until_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        assert!(state.sink_status().unwrap().is_empty());
        state.record_sink_success("siem", 10).unwrap();
        state.record_sink_failure("siem", 20, "refused").unwrap();
        state.record_sink_failure("siem", 30, "timed out").unwrap();
        let s = &state.sink_status().unwrap()[0];
        assert_eq!(
            (
                s.last_success_ms,
                s.failing_since_ms,
                s.last_error.as_deref(),
                s.last_error_ms,
                s.failed_attempts
            ),
            (Some(10), Some(20), Some("timed out"), Some(30), 2)
        );
        state.record_sink_success("siem", 40).unwrap();
        let s = &state.sink_status().unwrap()[0];
        assert_eq!(
            (s.last_success_ms, s.failing_since_ms, s.failed_attempts),
            (Some(40), None, 0)
        );
        // The last error stays visible after recovery.
        assert_eq!(s.last_error.as_deref(), Some("timed out"));
    }
}
