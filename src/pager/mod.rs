//! The pagers, as pure state machines (the shape of ntpd-rs's `ntp-proto`): given the
//! checkpoint, the settings and **Duo's** current time, a pager says which request to make
//! next; given the parsed page (or Duo's refusal), it says what to deliver, what the new
//! checkpoint is, and whether the stream goes on, is done, or restarts its window. It does no
//! I/O and reads no clock; the async driver in `collector::drive` only fetches, delivers and
//! commits what it is told.
//!
//! Two families:
//! - [`windowed::WindowedPager`]: v2 logs (authentication, telephony, activity) and Trust
//!   Monitor. A window `[mintime, maxtime]` is fixed when it opens and paged with Duo's cursor
//!   until a page carries no cursor, or is empty (Duo's stopping rule, §2.8).
//! - [`v1::V1Pager`]: administrator and offline enrollment (seconds, the 1000 earliest events,
//!   no cursor).

pub mod v1;
pub mod windowed;

#[cfg(test)]
mod tests;

use crate::checkpoint::Checkpoint;
use crate::event::Event;
use crate::logs::page::Page;
use crate::logs::{LogKind, Paging};

/// Duo refuses a `mintime` older than 180 days (by Duo's clock).
pub const RETENTION_MS: i64 = 180 * 86_400 * 1000;
/// Stay this far inside the limit, so that a window opened at the edge stays valid for a day of
/// paging, and so that a small clock difference does not matter.
pub const RETENTION_MARGIN_MS: i64 = 86_400 * 1000;

/// The oldest `mintime` to open a window with at Duo time `now`.
pub fn retention_floor_ms(now_ms: i64) -> i64 {
    now_ms - RETENTION_MS + RETENTION_MARGIN_MS
}

/// What a pager needs from the integration's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagerSettings {
    /// Duo publishes events up to this long after they happen (`delay`).
    pub delay_ms: i64,
    /// Records asked for per page; capped per endpoint.
    pub page_size: u32,
    /// Where a stream without a checkpoint starts, back from now.
    pub initial_lookback_ms: i64,
}

/// One request to make: the query parameters (without `account_id`, which the driver adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub params: Vec<(String, String)>,
    /// The saved cursor this request carries, if any.
    pub cursor: Option<String>,
}

/// The pager's answer to "what next?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Fetch(Request),
    Done(Done),
}

/// Why a run of the stream ends here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Everything up to Duo's `now − delay` is delivered.
    CaughtUp,
    /// The open window ends later than Duo's `now − delay` (the clock stepped back since it
    /// opened): it is resumed by a later run rather than asked for unpublished events.
    WindowNotSettled { window_end_ms: i64, settled_ms: i64 },
}

/// Something worth a log line; the pager decides, the driver writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `mintime` was older than Duo keeps; the window starts at `to_ms` instead.
    Clamped { from_ms: i64, to_ms: i64 },
    /// Duo refused a saved cursor: the window restarts from its `mintime` (repeats possible).
    CursorDropped { cursor: String },
    /// One v1 second held 1000 or more events; the rest of it cannot be fetched.
    OversizedSecond { second: i64 },
}

/// What to do with a page: deliver `events`, then commit `checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub events: Vec<Event>,
    pub checkpoint: Checkpoint,
    /// This page closed the window (windowed) or ended the run's paging (v1).
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagerError {
    #[error("Duo returned the same cursor it was sent ({cursor}); stopping instead of looping")]
    CursorRepeated { cursor: String },
    #[error("Duo refused the request: {detail}")]
    Refused { detail: String },
    #[error("a page arrived with no request outstanding")]
    NoRequest,
}

/// A pager of either family.
pub trait Pager: Send {
    /// The next request at Duo time `duo_now_ms`, or why the run is over.
    fn next(&mut self, duo_now_ms: i64) -> Next;
    /// The answer to the last request.
    fn on_page(&mut self, page: Page, duo_now_ms: i64) -> Result<Delivery, PagerError>;
    /// Duo refused the last request (HTTP 400). `Ok` is the checkpoint to commit before going
    /// on (the window restarted); `Err` ends the stream's run.
    fn on_refused(&mut self, detail: &str, duo_now_ms: i64) -> Result<Checkpoint, PagerError>;
    /// Notices since the last call.
    fn take_notices(&mut self) -> Vec<Notice>;
    /// The checkpoint as it stands (what the last delivery or restart said to commit).
    fn checkpoint(&self) -> Checkpoint;
}

/// The pager for `kind`, resuming `checkpoint` (or starting `initial_lookback` before Duo's
/// `now`).
pub fn for_kind(
    kind: LogKind,
    settings: PagerSettings,
    checkpoint: Option<Checkpoint>,
    duo_now_ms: i64,
) -> Box<dyn Pager> {
    // `state` refuses a stored checkpoint of the other family, so a mismatch cannot come from
    // the database; a caller handing one in starts the stream afresh rather than misreading it.
    match (kind.paging(), checkpoint) {
        (Paging::V1, Some(Checkpoint::V1(cp))) => {
            Box::new(v1::V1Pager::new(settings, Some(cp), duo_now_ms))
        }
        (Paging::V1, _) => Box::new(v1::V1Pager::new(settings, None, duo_now_ms)),
        (Paging::V2 | Paging::TrustMonitor, Some(Checkpoint::Windowed(cp))) => Box::new(
            windowed::WindowedPager::new(kind, settings, Some(cp), duo_now_ms),
        ),
        (Paging::V2 | Paging::TrustMonitor, _) => Box::new(windowed::WindowedPager::new(
            kind, settings, None, duo_now_ms,
        )),
    }
}

/// The newest event time among `events` and `previous`.
fn newest(previous: Option<i64>, events: &[Event]) -> Option<i64> {
    previous.max(events.iter().map(|e| e.ts_ms).max())
}
