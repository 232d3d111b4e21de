//! What pacing learns and what `status` shows of it: the request rate per (account, endpoint),
//! whether a stream is waiting out Duo's rate limit, and Duo's clock offset per integration.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{State, StateError};
use crate::pacing::PaceKey;

/// One (account, endpoint) as `status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaceStatus {
    pub integration: String,
    pub account_id: Option<String>,
    pub endpoint: String,
    pub rate_per_minute: f64,
    pub ceiling_per_minute: f64,
    /// Set while the stream is waiting out a 429 that outlasted Duo's retry schedule.
    pub rate_limited_until_ms: Option<i64>,
}

/// Duo's clock as last measured for an integration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClockStatus {
    pub integration: String,
    /// Duo's clock minus this host's, ms.
    pub offset_ms: i64,
    pub measured_ms: i64,
}

/// Whether a rate learned under `ceiling_then` is where to start under `ceiling_now`.
pub(super) fn rate_still_applies(rate: f64, ceiling_then: f64, ceiling_now: f64) -> bool {
    let held_back = rate < ceiling_then;
    held_back || ceiling_then == ceiling_now
}

impl State {
    /// The rates earlier runs learned for `integration`, to start from instead of the ceiling.
    /// A rate learned under another ceiling is kept only if it was below that ceiling (Duo
    /// pushed back); one that simply sat at the old ceiling gives way to the new one.
    pub fn learned_rates(
        &self,
        integration: &str,
        ceiling_per_minute: f64,
    ) -> Result<HashMap<PaceKey, f64>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT account_id, endpoint, rate_per_minute, ceiling_per_minute FROM pacing WHERE integration = ?1",
            )?;
            let rows = stmt.query_map(params![integration], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, f64>(3)?,
                ))
            })?;
            let mut out = HashMap::new();
            for row in rows {
                let (account, endpoint, rate, ceiling) = row?;
                if rate_still_applies(rate, ceiling, ceiling_per_minute) {
                    out.insert(PaceKey { account, endpoint }, rate);
                }
            }
            Ok(out)
        })
    }

    pub fn save_rate(
        &self,
        integration: &str,
        key: &PaceKey,
        rate_per_minute: f64,
        ceiling_per_minute: f64,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO pacing(integration, account_id, endpoint, rate_per_minute, ceiling_per_minute, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(integration, account_id, endpoint) DO UPDATE SET
                   rate_per_minute = excluded.rate_per_minute,
                   ceiling_per_minute = excluded.ceiling_per_minute,
                   updated_ms = excluded.updated_ms",
                params![integration, key.account, key.endpoint, rate_per_minute, ceiling_per_minute, now_ms],
            )?;
            Ok(())
        })
    }

    /// Records (or with `None` clears) "rate limited, resuming at T".
    pub fn set_rate_limited_until(
        &self,
        integration: &str,
        key: &PaceKey,
        until_ms: Option<i64>,
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "UPDATE pacing SET rate_limited_until_ms = ?4 WHERE integration = ?1 AND account_id = ?2 AND endpoint = ?3",
                params![integration, key.account, key.endpoint, until_ms],
            )?;
            Ok(())
        })
    }

    pub fn pacing_status(&self) -> Result<Vec<PaceStatus>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT integration, account_id, endpoint, rate_per_minute, ceiling_per_minute, rate_limited_until_ms
                 FROM pacing ORDER BY 1, 2, 3",
            )?;
            let rows = stmt.query_map([], |r| {
                let account: String = r.get(1)?;
                Ok(PaceStatus {
                    integration: r.get(0)?,
                    account_id: (!account.is_empty()).then_some(account),
                    endpoint: r.get(2)?,
                    rate_per_minute: r.get(3)?,
                    ceiling_per_minute: r.get(4)?,
                    rate_limited_until_ms: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub fn save_clock_offset(
        &self,
        integration: &str,
        offset_ms: i64,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO duo_clock(integration, offset_ms, measured_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(integration) DO UPDATE SET offset_ms = excluded.offset_ms, measured_ms = excluded.measured_ms",
                params![integration, offset_ms, now_ms],
            )?;
            Ok(())
        })
    }

    pub fn clock_offset(&self, integration: &str) -> Result<Option<ClockStatus>, StateError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT integration, offset_ms, measured_ms FROM duo_clock WHERE integration = ?1",
                params![integration],
                |r| {
                    Ok(ClockStatus {
                        integration: r.get(0)?,
                        offset_ms: r.get(1)?,
                        measured_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    pub fn clock_offsets(&self) -> Result<Vec<ClockStatus>, StateError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT integration, offset_ms, measured_ms FROM duo_clock ORDER BY 1")?;
            let rows = stmt.query_map([], |r| {
                Ok(ClockStatus {
                    integration: r.get(0)?,
                    offset_ms: r.get(1)?,
                    measured_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(e: &str) -> PaceKey {
        PaceKey {
            account: String::new(),
            endpoint: e.into(),
        }
    }

    #[test]
    fn learned_rates_survive_a_reopen_and_respect_a_new_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap();
        state.save_rate("corp", &key("/a"), 3.0, 6.0, 1).unwrap();
        state.save_rate("corp", &key("/b"), 6.0, 6.0, 1).unwrap();
        state
            .set_rate_limited_until("corp", &key("/a"), Some(99))
            .unwrap();
        drop(state);
        let state = State::open(&path).unwrap();
        let same = state.learned_rates("corp", 6.0).unwrap();
        assert_eq!(same.get(&key("/a")), Some(&3.0));
        assert_eq!(same.get(&key("/b")), Some(&6.0));
        let raised = state.learned_rates("corp", 12.0).unwrap();
        assert_eq!(raised.get(&key("/a")), Some(&3.0), "Duo pushed back: kept");
        assert_eq!(
            raised.get(&key("/b")),
            None,
            "sat at the old ceiling: the new one wins"
        );
        let status = state.pacing_status().unwrap();
        assert_eq!(status[0].rate_limited_until_ms, Some(99));
        assert!(state.learned_rates("other", 6.0).unwrap().is_empty());
    }

    #[test]
    fn clock_offsets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(state.clock_offset("corp").unwrap(), None);
        state.save_clock_offset("corp", -45_000, 7).unwrap();
        state.save_clock_offset("corp", -44_000, 8).unwrap();
        assert_eq!(
            state.clock_offsets().unwrap(),
            vec![ClockStatus {
                integration: "corp".into(),
                offset_ms: -44_000,
                measured_ms: 8
            }]
        );
    }
}
