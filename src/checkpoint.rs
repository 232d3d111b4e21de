//! Where a stream resumes, one shape per paging family, and Duo's cursors as types. Pure: the
//! pagers move checkpoints, `state` stores them, `status` and the metrics read how far a
//! stream has got from them, and none of that needs to know how a cursor is spelled.

use std::fmt;

use crate::log_kind::{LogKind, Paging};

/// Where a stream resumes. Each paging family keeps only what it uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Checkpoint {
    /// v2 logs and Trust Monitor: a window paged with Duo's cursor.
    Windowed(WindowedCheckpoint),
    /// Administrator and offline enrollment: whole seconds and fingerprints.
    V1(V1Checkpoint),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowedCheckpoint {
    /// The start of the next window (or of the open one), epoch ms.
    pub mintime_ms: i64,
    /// The end of the window being paged through, if a window is open.
    pub window_max_ms: Option<i64>,
    /// Duo's cursor inside the open window (never set without `window_max_ms`).
    pub cursor: Option<Cursor>,
    /// The newest event time delivered so far.
    pub newest_event_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct V1Checkpoint {
    /// The second to ask from next, in ms (a whole second).
    pub mintime_ms: i64,
    /// Fingerprints of the events already delivered at `mintime_ms`'s second.
    pub seen: Vec<String>,
    /// The newest event time delivered so far.
    pub newest_event_ms: Option<i64>,
}

/// Duo's cursor inside a window, read once from the page and sent back as it came.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cursor {
    /// v2 logs' `next_offset` pair: the time of the last event of the page and its id.
    V2Pair { ms: i64, id: String },
    /// A v2 `next_offset` that is not a `(ms, id)` pair: sent back verbatim, read as nothing.
    V2Opaque { text: String },
    /// Trust Monitor's `offset`: a position inside the exact window it came from, no time.
    TrustMonitorOffset { offset: String },
}

impl Cursor {
    /// Duo's cursor text (`"ms,id"` for the v2 pair, as the page parser joins it) for `paging`.
    pub fn parse(paging: Paging, text: &str) -> Cursor {
        if paging == Paging::TrustMonitor {
            return Cursor::TrustMonitorOffset {
                offset: text.to_string(),
            };
        }
        let pair = text
            .split_once(',')
            .and_then(|(ms, id)| Some((ms.trim().parse::<i64>().ok()?, id)));
        match pair {
            Some((ms, id)) => Cursor::V2Pair {
                ms,
                id: id.to_string(),
            },
            None => Cursor::V2Opaque {
                text: text.to_string(),
            },
        }
    }

    /// The event time this cursor stands at, where it carries one (the v2 pair only).
    pub fn position_ms(&self) -> Option<i64> {
        match self {
            Cursor::V2Pair { ms, .. } => Some(*ms),
            Cursor::V2Opaque { .. } | Cursor::TrustMonitorOffset { .. } => None,
        }
    }
}

/// The text Duo is sent back (`next_offset` or `offset`).
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::V2Pair { ms, id } => write!(f, "{ms},{id}"),
            Cursor::V2Opaque { text } => f.write_str(text),
            Cursor::TrustMonitorOffset { offset } => f.write_str(offset),
        }
    }
}

impl Checkpoint {
    /// A stream of `kind` with nothing delivered yet, starting at `mintime_ms`.
    pub fn start(kind: LogKind, mintime_ms: i64) -> Checkpoint {
        match kind.paging() {
            Paging::V2 | Paging::TrustMonitor => Checkpoint::Windowed(WindowedCheckpoint {
                mintime_ms,
                window_max_ms: None,
                cursor: None,
                newest_event_ms: None,
            }),
            Paging::V1 => Checkpoint::V1(V1Checkpoint {
                mintime_ms,
                seen: Vec::new(),
                newest_event_ms: None,
            }),
        }
    }

    /// Whether this checkpoint has the shape `kind` pages with.
    pub fn fits(&self, kind: LogKind) -> bool {
        matches!(
            (self, kind.paging()),
            (Checkpoint::Windowed(_), Paging::V2 | Paging::TrustMonitor)
                | (Checkpoint::V1(_), Paging::V1)
        )
    }

    /// Where the next request starts (the open window's start, for a window).
    pub fn mintime_ms(&self) -> i64 {
        match self {
            Checkpoint::Windowed(w) => w.mintime_ms,
            Checkpoint::V1(v) => v.mintime_ms,
        }
    }

    pub fn newest_event_ms(&self) -> Option<i64> {
        match self {
            Checkpoint::Windowed(w) => w.newest_event_ms,
            Checkpoint::V1(v) => v.newest_event_ms,
        }
    }

    pub fn window_max_ms(&self) -> Option<i64> {
        match self {
            Checkpoint::Windowed(w) => w.window_max_ms,
            Checkpoint::V1(_) => None,
        }
    }

    pub fn cursor(&self) -> Option<&Cursor> {
        match self {
            Checkpoint::Windowed(w) => w.cursor.as_ref(),
            Checkpoint::V1(_) => None,
        }
    }

    /// The time up to which the stream has delivered everything: a v2 cursor's event time
    /// inside an open window, else the start of the next (or open) window. A Trust Monitor
    /// offset is a position, not a time, so it counts as the window's start.
    pub fn position_ms(&self) -> i64 {
        self.cursor()
            .and_then(Cursor::position_ms)
            .unwrap_or_else(|| self.mintime_ms())
    }
}

/// How far a stream's position is behind what could be collected: Duo publishes an event up to
/// `delay` late, so at `duo_now_ms` everything before `duo_now_ms − delay_ms` is collectable.
/// 0 when the position is there (caught up). `duo_now_ms` is Duo's clock where it is known.
pub fn lag_ms(duo_now_ms: i64, delay_ms: i64, position_ms: i64) -> i64 {
    (duo_now_ms - delay_ms - position_ms).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_by_family_and_written_back_as_they_came() {
        let pair = Cursor::parse(Paging::V2, "1597671839000,af0ba235");
        assert_eq!(
            pair,
            Cursor::V2Pair {
                ms: 1_597_671_839_000,
                id: "af0ba235".into()
            }
        );
        assert_eq!(pair.to_string(), "1597671839000,af0ba235");
        assert_eq!(pair.position_ms(), Some(1_597_671_839_000));

        let opaque = Cursor::parse(Paging::V2, "bogus");
        assert_eq!(opaque.to_string(), "bogus");
        assert_eq!(opaque.position_ms(), None);

        // A positional Trust Monitor offset looks like a number of milliseconds; it is not.
        let offset = Cursor::parse(Paging::TrustMonitor, "31229");
        assert_eq!(
            offset,
            Cursor::TrustMonitorOffset {
                offset: "31229".into()
            }
        );
        assert_eq!(offset.to_string(), "31229");
        assert_eq!(offset.position_ms(), None);
        // Even one with a comma.
        assert_eq!(
            Cursor::parse(Paging::TrustMonitor, "5,x").position_ms(),
            None
        );
    }

    #[test]
    fn position_is_the_v2_cursor_time_or_the_window_start() {
        let window = |cursor: Option<Cursor>| {
            Checkpoint::Windowed(WindowedCheckpoint {
                mintime_ms: 1_000_000,
                window_max_ms: Some(2_000_000),
                cursor,
                newest_event_ms: None,
            })
        };
        assert_eq!(window(None).position_ms(), 1_000_000);
        assert_eq!(
            window(Some(Cursor::parse(Paging::V2, "1500000,t"))).position_ms(),
            1_500_000
        );
        assert_eq!(
            window(Some(Cursor::parse(Paging::TrustMonitor, "31229"))).position_ms(),
            1_000_000
        );
        let v1 = Checkpoint::start(LogKind::Administrator, 7_000);
        assert_eq!(v1.position_ms(), 7_000);
        assert!(v1.fits(LogKind::OfflineEnrollment) && !v1.fits(LogKind::TrustMonitor));
    }

    #[test]
    fn lag_counts_from_now_less_the_delay() {
        assert_eq!(lag_ms(100_000, 10_000, 50_000), 40_000);
        assert_eq!(lag_ms(100_000, 10_000, 95_000), 0, "caught up");
    }
}
