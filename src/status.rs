//! `duo-collector status`: per stream, the newest event, the checkpoint, the lag and the last run.

use serde::Serialize;

use crate::sink::SinkSettings;
use crate::state::{
    Checkpoint, ClockStatus, PaceStatus, RunOutcome, RunRecord, SinkStatus, SnapshotInfo, State,
    StateError, StateStore, StreamStatus,
};

/// What `status` reads from the state store.
#[derive(Debug, Default)]
pub struct Stored {
    pub streams: Vec<StreamStatus>,
    pub sinks: Vec<SinkStatus>,
    pub pacing: Vec<PaceStatus>,
    pub clocks: Vec<ClockStatus>,
    pub snapshots: Vec<SnapshotInfo>,
    /// NATS state store: who holds which stream's lease, and the live instances.
    pub leases: Option<crate::state::LeaseView>,
}

impl Stored {
    /// The SQLite file, opened read-only. A file from before pacing (or before migration 6,
    /// inventory) has no such tables yet: nothing of them to show.
    pub fn read_sqlite(state: &State) -> Result<Stored, StateError> {
        Ok(Stored {
            streams: state.status()?,
            sinks: state.sink_status()?,
            pacing: state.pacing_status().unwrap_or_default(),
            clocks: state.clock_offsets().unwrap_or_default(),
            snapshots: state.snapshots().unwrap_or_default(),
            leases: None,
        })
    }

    /// The store `[state]` chose.
    pub async fn read(store: &StateStore) -> Result<Stored, StateError> {
        let nats = match store {
            StateStore::Sqlite(sqlite) => return Stored::read_sqlite(sqlite.state()),
            StateStore::Nats(nats) => nats,
        };
        Ok(Stored {
            streams: store.status().await?,
            sinks: store.sink_status().await?,
            pacing: store.pacing_status().await?,
            clocks: store.clock_offsets().await?,
            snapshots: store.snapshots().await?,
            leases: Some(nats.lease_view().await?),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct StatusRow {
    pub integration: String,
    pub account_id: Option<String>,
    pub log: String,
    /// Newest delivered event, RFC 3339.
    pub newest_event: Option<String>,
    /// Seconds since the newest delivered event (a quiet tenant's is large; that is no lag).
    pub newest_event_age_seconds: Option<i64>,
    /// Where the next run resumes, RFC 3339.
    pub checkpoint: Option<String>,
    /// Open window end and cursor, when a run stopped inside a window.
    pub window_end: Option<String>,
    pub cursor: Option<String>,
    /// How far the checkpoint is behind what could be collected now (`now − delay −
    /// position`, see [`lag_ms`]); 0 when caught up.
    pub lag_seconds: Option<i64>,
    pub events_total: i64,
    pub last_run_started: Option<String>,
    pub last_run_outcome: Option<String>,
    pub last_run_pages: Option<i64>,
    pub last_run_events: Option<i64>,
    pub last_error: Option<String>,
    /// NATS state store: the instance holding the stream's lease, and since when.
    pub held_by: Option<String>,
    pub held_since: Option<String>,
}

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

pub use crate::checkpoint::lag_ms;

/// The time up to which a stream has collected everything Duo could give: its checkpoint
/// position, or the start of its last successful run less the delay, whichever is later. A run
/// that ended `ok` drained its stream up to `started − delay`, even when no event came; a v1
/// checkpoint would otherwise stay at its newest event's second and a quiet, caught-up tenant
/// would look as if it were falling behind.
pub fn collected_until_ms(cp: &Checkpoint, last_run: Option<&RunRecord>, delay_ms: i64) -> i64 {
    let position = cp.position_ms();
    match last_run {
        Some(run) if run.outcome == Some(RunOutcome::Ok) => position.max(run.started_ms - delay_ms),
        _ => position,
    }
}

/// The honest lag of one stream, in whole seconds.
pub fn stream_lag_seconds(s: &StreamStatus, duo_now_ms: i64, delay_ms: i64) -> Option<i64> {
    let cp = s.checkpoint.as_ref()?;
    let until = collected_until_ms(cp, s.last_run.as_ref(), delay_ms);
    Some(lag_ms(duo_now_ms, delay_ms, until) / 1000)
}

/// Duo's time for an integration whose clock was measured `offset_ms` off this host's: the
/// earlier of the two, as the collector reads it.
pub fn duo_now_ms(local_now_ms: i64, offset_ms: Option<i64>) -> i64 {
    local_now_ms + offset_ms.unwrap_or(0).min(0)
}

/// Status rows; `delay_ms(integration)` is that integration's `delay` (0 if no longer
/// configured), `duo_offset_ms(integration)` its measured clock offset, if any.
pub fn rows(
    streams: &[StreamStatus],
    now_ms: i64,
    delay_ms: &dyn Fn(&str) -> i64,
    duo_offset_ms: &dyn Fn(&str) -> Option<i64>,
) -> Vec<StatusRow> {
    streams
        .iter()
        .map(|s| {
            let cp = s.checkpoint.as_ref();
            StatusRow {
                integration: s.integration.clone(),
                account_id: s.account_id.clone(),
                log: s.log.clone(),
                newest_event: cp.and_then(Checkpoint::newest_event_ms).map(iso),
                newest_event_age_seconds: cp
                    .and_then(Checkpoint::newest_event_ms)
                    .map(|t| ((now_ms - t) / 1000).max(0)),
                checkpoint: cp.map(|c| iso(c.mintime_ms())),
                window_end: cp.and_then(Checkpoint::window_max_ms).map(iso),
                cursor: cp.and_then(Checkpoint::cursor).map(ToString::to_string),
                lag_seconds: stream_lag_seconds(
                    s,
                    duo_now_ms(now_ms, duo_offset_ms(&s.integration)),
                    delay_ms(&s.integration),
                ),
                events_total: s.events_total,
                last_run_started: s.last_run.as_ref().map(|r| iso(r.started_ms)),
                last_run_outcome: s
                    .last_run
                    .as_ref()
                    .map(|r| r.outcome.map_or("running", RunOutcome::as_str).to_string()),
                last_run_pages: s.last_run.as_ref().map(|r| r.pages),
                last_run_events: s.last_run.as_ref().map(|r| r.events),
                last_error: s.last_run.as_ref().and_then(|r| r.error.clone()),
                held_by: None,
                held_since: None,
            }
        })
        .collect()
}

fn human_lag(seconds: i64) -> String {
    if seconds == 0 {
        "0s (caught up)".to_string()
    } else {
        format!("{} behind", crate::human::duration_secs(seconds))
    }
}

/// A plain-text table for terminals.
pub fn render_text(rows: &[StatusRow]) -> String {
    if rows.is_empty() {
        return "no collection has run yet (state database is empty)\n".to_string();
    }
    let mut out = String::new();
    for r in rows {
        let stream = match &r.account_id {
            Some(a) => format!("{}/{}/{}", r.integration, a, r.log),
            None => format!("{}/{}", r.integration, r.log),
        };
        out.push_str(&format!("{stream}\n"));
        let dash = || "-".to_string();
        out.push_str(&format!(
            "  newest event : {}{}\n",
            r.newest_event.clone().unwrap_or_else(dash),
            r.newest_event_age_seconds
                .map(|a| format!(" ({} ago)", crate::human::duration_secs(a)))
                .unwrap_or_default()
        ));
        out.push_str(&format!(
            "  checkpoint   : {}{}\n",
            r.checkpoint.clone().unwrap_or_else(dash),
            match (&r.window_end, &r.cursor) {
                (Some(end), Some(c)) => format!(" (window open until {end}, cursor {c})"),
                (Some(end), None) => format!(" (window open until {end})"),
                _ => String::new(),
            }
        ));
        out.push_str(&format!(
            "  lag          : {}\n",
            r.lag_seconds.map(human_lag).unwrap_or_else(dash)
        ));
        out.push_str(&format!("  events total : {}\n", r.events_total));
        out.push_str(&format!(
            "  last run     : {}\n",
            match (&r.last_run_started, &r.last_run_outcome) {
                (Some(t), Some(o)) => format!(
                    "{t} {o}, {}, {}",
                    crate::human::count(r.last_run_pages.unwrap_or(0) as u64, "page", "pages"),
                    crate::human::count(r.last_run_events.unwrap_or(0) as u64, "event", "events")
                ),
                _ => dash(),
            }
        ));
        if let Some(e) = &r.last_error {
            out.push_str(&format!("  last error   : {e}\n"));
        }
        if let Some(instance) = &r.held_by {
            let since = r.held_since.as_deref().unwrap_or("-");
            out.push_str(&format!("  held by      : {instance} since {since}\n"));
        }
    }
    out
}

/// One sink's delivery state in `status`.
#[derive(Debug, Serialize)]
pub struct SinkRow {
    pub name: String,
    /// The sink type, or `None` for a sink no longer in the config.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `ok`, `failing` or `never_delivered`.
    pub state: String,
    pub last_success: Option<String>,
    pub failing_since: Option<String>,
    pub failed_attempts: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// Every configured sink (and any recorded one no longer configured), by name.
pub fn sink_rows(configured: &[SinkSettings], recorded: &[SinkStatus]) -> Vec<SinkRow> {
    let mut names: Vec<&str> = configured.iter().map(|s| s.name.as_str()).collect();
    names.extend(recorded.iter().map(|r| r.sink.as_str()));
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let r = recorded.iter().find(|r| r.sink == name);
            let state = match r {
                Some(r) if r.failing_since_ms.is_some() => "failing",
                Some(r) if r.last_success_ms.is_some() => "ok",
                _ => "never_delivered",
            };
            SinkRow {
                name: name.to_string(),
                kind: configured
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.kind.type_name().to_string()),
                state: state.to_string(),
                last_success: r.and_then(|r| r.last_success_ms).map(iso),
                failing_since: r.and_then(|r| r.failing_since_ms).map(iso),
                failed_attempts: r.map_or(0, |r| r.failed_attempts),
                last_error: r.and_then(|r| r.last_error.clone()),
                last_error_at: r.and_then(|r| r.last_error_ms).map(iso),
            }
        })
        .collect()
}

/// The per-sink section of the text output.
pub fn render_sinks_text(rows: &[SinkRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let kind = r.kind.as_deref().unwrap_or("not configured");
        out.push_str(&format!("sink {} ({kind}): {}\n", r.name, r.state));
        let dash = || "-".to_string();
        out.push_str(&format!(
            "  last success : {}\n",
            r.last_success.clone().unwrap_or_else(dash)
        ));
        if let Some(since) = &r.failing_since {
            out.push_str(&format!(
                "  failing since: {since} ({} failed attempts)\n",
                r.failed_attempts
            ));
        }
        if let Some(e) = &r.last_error {
            out.push_str(&format!(
                "  last error   : {} {e}\n",
                r.last_error_at.clone().unwrap_or_else(dash)
            ));
        }
    }
    out
}

/// The latest complete inventory snapshot of each (integration, account, kind), for `status`.
#[derive(Debug, Serialize)]
pub struct InventoryRow {
    pub integration: String,
    pub account_id: Option<String>,
    pub kind: String,
    pub snapshot_at: String,
    pub age_seconds: i64,
    pub entities: i64,
}

pub fn inventory_rows(snapshots: &[crate::state::SnapshotInfo], now_ms: i64) -> Vec<InventoryRow> {
    snapshots
        .iter()
        .map(|s| InventoryRow {
            integration: s.integration.clone(),
            account_id: s.account_id.clone(),
            kind: s.kind.clone(),
            snapshot_at: iso(s.completed_ms),
            age_seconds: (now_ms - s.completed_ms).max(0) / 1000,
            entities: s.entities,
        })
        .collect()
}

pub fn render_inventory_text(rows: &[InventoryRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("inventory snapshots (latest complete)\n");
    for r in rows {
        let account = r
            .account_id
            .as_deref()
            .map(|a| format!(" account {a}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}{account} {}: {} entities at {} ({} ago)\n",
            r.integration,
            r.kind,
            r.entities,
            r.snapshot_at,
            crate::human::duration_secs(r.age_seconds)
        ));
    }
    out
}

/// Per integration: Duo's clock offset and the pace of each endpoint, for `status`.
#[derive(Debug, Serialize)]
pub struct PacingRow {
    pub integration: String,
    /// Duo's clock minus this host's, seconds, as last measured.
    pub duo_clock_offset_seconds: Option<f64>,
    pub duo_clock_measured: Option<String>,
    pub endpoints: Vec<EndpointPace>,
}

#[derive(Debug, Serialize)]
pub struct EndpointPace {
    pub account_id: Option<String>,
    pub endpoint: String,
    pub requests_per_minute: f64,
    pub ceiling_per_minute: f64,
    /// Set while the stream waits out a rate limit that outlasted Duo's retry schedule.
    pub rate_limited_until: Option<String>,
}

pub fn pacing_rows(
    clocks: &[crate::state::ClockStatus],
    paces: &[crate::state::PaceStatus],
) -> Vec<PacingRow> {
    let mut names: Vec<&str> = clocks.iter().map(|c| c.integration.as_str()).collect();
    names.extend(paces.iter().map(|p| p.integration.as_str()));
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let clock = clocks.iter().find(|c| c.integration == name);
            PacingRow {
                integration: name.to_string(),
                duo_clock_offset_seconds: clock.map(|c| c.offset_ms as f64 / 1000.0),
                duo_clock_measured: clock.map(|c| iso(c.measured_ms)),
                endpoints: paces
                    .iter()
                    .filter(|p| p.integration == name)
                    .map(|p| EndpointPace {
                        account_id: p.account_id.clone(),
                        endpoint: p.endpoint.clone(),
                        requests_per_minute: p.rate_per_minute,
                        ceiling_per_minute: p.ceiling_per_minute,
                        rate_limited_until: p.rate_limited_until_ms.map(iso),
                    })
                    .collect(),
            }
        })
        .collect()
}

pub fn render_pacing_text(rows: &[PacingRow]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!("integration {}\n", r.integration));
        match (r.duo_clock_offset_seconds, &r.duo_clock_measured) {
            (Some(s), Some(at)) => {
                let what = if s >= 0.0 { "ahead of" } else { "behind" };
                let warn = if s.abs() * 1000.0 > crate::duo::clock::WARN_OFFSET_MS as f64 {
                    " — synchronize this host's clock (chrony or systemd-timesyncd)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  Duo's clock  : {:.1} s {what} this host's (measured {at}){warn}\n",
                    s.abs()
                ));
            }
            _ => out.push_str("  Duo's clock  : not measured yet\n"),
        }
        for e in &r.endpoints {
            let target = match &e.account_id {
                Some(a) => format!("{a} {}", e.endpoint),
                None => e.endpoint.clone(),
            };
            let state = match &e.rate_limited_until {
                Some(t) => format!("rate limited, resuming at {t}"),
                None => format!(
                    "{:.2} requests/min (ceiling {:.2})",
                    e.requests_per_minute, e.ceiling_per_minute
                ),
            };
            out.push_str(&format!("  {target}: {state}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Cursor, V1Checkpoint, WindowedCheckpoint};
    use crate::log_kind::Paging;

    const MIN: i64 = 60_000;

    fn v1_stream(newest_ms: i64, last_run: Option<(i64, RunOutcome)>) -> StreamStatus {
        StreamStatus {
            integration: "corp".into(),
            account_id: None,
            log: "administrator".into(),
            // A v1 checkpoint resumes at the newest delivered second.
            checkpoint: Some(Checkpoint::V1(V1Checkpoint {
                mintime_ms: newest_ms / 1000 * 1000,
                seen: vec![],
                newest_event_ms: Some(newest_ms),
            })),
            events_total: 10,
            checkpoint_updated_ms: None,
            last_run: last_run.map(|(started_ms, outcome)| RunRecord {
                started_ms,
                ended_ms: Some(started_ms + 1000),
                pages: 1,
                events: 0,
                outcome: Some(outcome),
                error: None,
            }),
        }
    }

    #[test]
    fn lag_is_what_could_be_collected_but_is_not() {
        assert_eq!(lag_ms(100 * MIN, 2 * MIN, 98 * MIN), 0);
        assert_eq!(
            duo_now_ms(100 * MIN, Some(-MIN)),
            99 * MIN,
            "Duo behind: Duo's time"
        );
        assert_eq!(
            duo_now_ms(100 * MIN, Some(MIN)),
            100 * MIN,
            "Duo ahead: the earlier clock"
        );
        assert_eq!(lag_ms(100 * MIN, 2 * MIN, 99 * MIN), 0);
        assert_eq!(lag_ms(100 * MIN, 2 * MIN, 90 * MIN), 8 * MIN);
    }

    #[test]
    fn a_quiet_caught_up_v1_stream_has_no_lag_and_an_old_newest_event() {
        let now = 1_000 * MIN;
        // Newest administrator event 80 minutes ago; the run a moment ago drained everything.
        let s = v1_stream(now - 80 * MIN, Some((now - 2_000, RunOutcome::Ok)));
        let rows = rows(&[s], now, &|_| 2 * MIN, &|_| None);
        assert_eq!(rows[0].lag_seconds, Some(2));
        assert_eq!(rows[0].newest_event_age_seconds, Some(80 * 60));
        let text = render_text(&rows);
        assert!(text.contains("lag          : 2s behind"), "{text}");
        assert!(text.contains("(1h 20m ago)"), "{text}");
    }

    #[test]
    fn a_failing_stream_lags_from_its_checkpoint() {
        let now = 1_000 * MIN;
        let s = v1_stream(now - 80 * MIN, Some((now - 2_000, RunOutcome::Failed)));
        let rows = rows(&[s], now, &|_| 2 * MIN, &|_| None);
        assert_eq!(rows[0].lag_seconds, Some(78 * 60));
    }

    /// A Trust Monitor stream stopped inside its window at Duo's positional offset "31229".
    fn trust_monitor_in_window(mintime_ms: i64, window_end_ms: i64) -> StreamStatus {
        StreamStatus {
            integration: "corp".into(),
            account_id: None,
            log: "trust_monitor".into(),
            checkpoint: Some(Checkpoint::Windowed(WindowedCheckpoint {
                mintime_ms,
                window_max_ms: Some(window_end_ms),
                cursor: Some(Cursor::parse(Paging::TrustMonitor, "31229")),
                newest_event_ms: Some(mintime_ms + MIN),
            })),
            events_total: 31_229,
            checkpoint_updated_ms: None,
            last_run: None,
        }
    }

    #[test]
    fn a_trust_monitor_offset_is_a_position_not_a_time() {
        let now = 1_796_114_840_000; // 2026-12-01T08:47:20Z
        let mintime = now - 90 * MIN;
        let s = trust_monitor_in_window(mintime, now - 10 * MIN);
        let rows = rows(&[s], now, &|_| 2 * MIN, &|_| None);
        // The lag counts from the window's start, not from 31229 ms after 1970 (55 years).
        assert_eq!(rows[0].lag_seconds, Some(88 * 60));
        assert_eq!(rows[0].cursor.as_deref(), Some("31229"));

        let text = render_text(&rows);
        assert!(text.contains("lag          : 1h 28m behind"), "{text}");
        assert!(!text.contains("y "), "no lag in years: {text}");

        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["lag_seconds"], 88 * 60, "{json}");
        assert_eq!(json[0]["cursor"], "31229", "{json}");
    }
}
