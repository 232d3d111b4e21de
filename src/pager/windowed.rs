//! The windowed pager: v2 logs and Trust Monitor.
//!
//! Rules (duo-api.md §2.8):
//! - A window `[mintime, maxtime]` is chosen when it opens, with `maxtime = duo_now − delay`,
//!   and persisted with the cursor after every acknowledged page, so a restart resumes it.
//! - It ends only on a page with no `next_offset` or an empty page; a short page that carries a
//!   cursor is followed.
//! - The 180-day clamp is decided when a window opens or is resumed from the checkpoint, never
//!   between its pages: Trust Monitor's `offset` is positional, valid only for the exact
//!   `mintime`/`maxtime` it came from.
//! - A refused cursor is dropped and the window restarts from its `mintime` (repeats, no loss).
//! - One run drains the window it opened; later events wait for the next run.

use super::{
    newest, retention_floor_ms, Delivery, Done, Next, Notice, Pager, PagerError, PagerSettings,
    Request,
};
use crate::checkpoint::{Checkpoint, Cursor, WindowedCheckpoint};
use crate::logs::page::Page;
use crate::logs::{LogKind, Paging};

/// How far Duo's now, estimated from `Date` headers with one-second resolution, may wander
/// back between two estimates without the clock having stepped.
const DUO_NOW_JITTER_MS: i64 = 2_000;

/// The request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    maxtime: i64,
    cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct WindowedPager {
    paging: Paging,
    trust_monitor: bool,
    limit: u32,
    delay_ms: i64,
    cp: WindowedCheckpoint,
    /// This run opened a window (and so stops once it is drained).
    opened_this_run: bool,
    /// A window resumed from the checkpoint was checked against the retention floor.
    resume_checked: bool,
    /// This window was re-clamped after Duo refused its `mintime` (done at most once).
    reclamped: bool,
    in_flight: Option<InFlight>,
    notices: Vec<Notice>,
}

impl WindowedPager {
    pub fn new(
        kind: LogKind,
        settings: PagerSettings,
        checkpoint: Option<WindowedCheckpoint>,
        duo_now_ms: i64,
    ) -> WindowedPager {
        let cp = checkpoint.unwrap_or(WindowedCheckpoint {
            mintime_ms: duo_now_ms - settings.initial_lookback_ms,
            window_max_ms: None,
            cursor: None,
            newest_event_ms: None,
        });
        WindowedPager {
            paging: kind.paging(),
            trust_monitor: kind.paging() == Paging::TrustMonitor,
            limit: settings.page_size.clamp(1, kind.max_page_size()),
            delay_ms: settings.delay_ms,
            cp,
            opened_this_run: false,
            resume_checked: false,
            reclamped: false,
            in_flight: None,
            notices: Vec::new(),
        }
    }

    /// Clamps `mintime` to the floor at `now`; true when it moved.
    fn clamp(&mut self, now: i64) -> bool {
        let floor = retention_floor_ms(now);
        if self.cp.mintime_ms >= floor {
            return false;
        }
        self.notices.push(Notice::Clamped {
            from_ms: self.cp.mintime_ms,
            to_ms: floor,
        });
        self.cp.mintime_ms = floor;
        true
    }

    /// A window resumed from the checkpoint, checked once: if its `mintime` fell behind the
    /// floor since it was opened, clamp it and keep the cursor only where it is still valid
    /// (a v2 cursor at or after the new `mintime`; never Trust Monitor's positional offset).
    fn check_resumed_window(&mut self, now: i64, maxtime: i64) {
        self.resume_checked = true;
        if !self.clamp(now) {
            return;
        }
        let keep = self
            .cp
            .cursor
            .as_ref()
            .and_then(Cursor::position_ms)
            .is_some_and(|ms| ms >= self.cp.mintime_ms);
        if !keep {
            self.cp.cursor = None;
        }
        if self.cp.mintime_ms >= maxtime {
            self.close_window(self.cp.mintime_ms);
        }
    }

    fn close_window(&mut self, next_mintime: i64) {
        self.cp.mintime_ms = next_mintime;
        self.cp.window_max_ms = None;
        self.cp.cursor = None;
    }

    fn request(&mut self, maxtime: i64) -> Next {
        let mut params = vec![
            ("mintime".to_string(), self.cp.mintime_ms.to_string()),
            ("maxtime".to_string(), maxtime.to_string()),
            ("limit".to_string(), self.limit.to_string()),
        ];
        if !self.trust_monitor {
            params.push(("sort".to_string(), "ts:asc".to_string()));
        }
        let cursor = self.cp.cursor.clone();
        if let Some(c) = &cursor {
            let name = if self.trust_monitor {
                "offset"
            } else {
                "next_offset"
            };
            params.push((name.to_string(), c.to_string()));
        }
        let sent = cursor.as_ref().map(Cursor::to_string);
        self.in_flight = Some(InFlight { maxtime, cursor });
        Next::Fetch(Request {
            params,
            cursor: sent,
        })
    }
}

impl Pager for WindowedPager {
    fn next(&mut self, now: i64) -> Next {
        let settled = now - self.delay_ms;
        if let Some(max) = self.cp.window_max_ms {
            if !self.resume_checked {
                self.check_resumed_window(now, max);
            }
        }
        match self.cp.window_max_ms {
            // Only a window resumed from an earlier run can be ahead of Duo's now: one opened
            // this run was settled when it opened, and Duo's now as estimated from 1-second
            // `Date` headers may dip a little between pages without the window being any less
            // settled. A resumed one gets the same allowance: a restart within a second or two
            // of the window opening is no clock step.
            Some(max) if max > settled + DUO_NOW_JITTER_MS && !self.opened_this_run => {
                Next::Done(Done::WindowNotSettled {
                    window_end_ms: max,
                    settled_ms: settled,
                })
            }
            Some(max) => self.request(max),
            None if self.opened_this_run => Next::Done(Done::CaughtUp),
            None => {
                self.resume_checked = true;
                self.clamp(now);
                if self.cp.mintime_ms >= settled {
                    return Next::Done(Done::CaughtUp);
                }
                self.opened_this_run = true;
                self.reclamped = false;
                self.cp.window_max_ms = Some(settled);
                self.cp.cursor = None;
                self.request(settled)
            }
        }
    }

    fn on_page(&mut self, page: Page, _now: i64) -> Result<Delivery, PagerError> {
        let sent = self.in_flight.take().ok_or(PagerError::NoRequest)?;
        let next = page
            .next_offset
            .as_deref()
            .map(|text| Cursor::parse(self.paging, text));
        let drained = page.events.is_empty() || next.is_none();
        if !drained && next == sent.cursor {
            return Err(PagerError::CursorRepeated {
                cursor: sent.cursor.map(|c| c.to_string()).unwrap_or_default(),
            });
        }
        self.cp.newest_event_ms = newest(self.cp.newest_event_ms, &page.events);
        if drained {
            self.close_window(sent.maxtime + 1);
        } else {
            self.cp.cursor = next;
        }
        Ok(Delivery {
            events: page.events,
            checkpoint: self.checkpoint(),
            finished: drained,
        })
    }

    fn on_refused(&mut self, detail: &str, now: i64) -> Result<Checkpoint, PagerError> {
        let sent = self.in_flight.take().ok_or(PagerError::NoRequest)?;
        if let Some(cursor) = sent.cursor {
            self.cp.cursor = None;
            self.notices.push(Notice::CursorDropped {
                cursor: cursor.to_string(),
            });
            return Ok(self.checkpoint());
        }
        // Refused without a cursor: the only thing to fix is a `mintime` that aged past Duo's
        // retention while the window was open for more than the margin. Re-clamp once.
        if !self.reclamped && self.clamp(now) {
            self.reclamped = true;
            if self.cp.mintime_ms >= sent.maxtime {
                self.close_window(self.cp.mintime_ms);
            }
            return Ok(self.checkpoint());
        }
        Err(PagerError::Refused {
            detail: detail.to_string(),
        })
    }

    fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::Windowed(self.cp.clone())
    }
}
