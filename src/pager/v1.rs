//! The v1 pager: administrator and offline enrollment logs.
//!
//! The API takes only `mintime` in seconds (inclusive) and returns the 1000 earliest events,
//! with no cursor, and many events share a second. So: resume at the newest second already
//! delivered, drop the events of that second whose fingerprints were delivered (kept in the
//! checkpoint), and deliver only events older than Duo's `now − delay` ("settled"), so events
//! Duo publishes late are still collected by a later request.

use std::collections::HashSet;

use super::{
    newest, retention_floor_ms, Delivery, Done, Next, Notice, Pager, PagerError, PagerSettings,
    Request,
};
use crate::checkpoint::{Checkpoint, V1Checkpoint};
use crate::logs::page::Page;

/// Duo returns at most this many v1 events per call.
pub const V1_PAGE: usize = 1000;

fn floor_to_second(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

#[derive(Debug, Clone)]
pub struct V1Pager {
    delay_ms: i64,
    cp: V1Checkpoint,
    /// The last page ended the run's paging.
    finished: bool,
    in_flight: bool,
    notices: Vec<Notice>,
}

impl V1Pager {
    pub fn new(
        settings: PagerSettings,
        checkpoint: Option<V1Checkpoint>,
        duo_now_ms: i64,
    ) -> V1Pager {
        let cp = checkpoint.unwrap_or(V1Checkpoint {
            mintime_ms: floor_to_second(duo_now_ms - settings.initial_lookback_ms),
            seen: Vec::new(),
            newest_event_ms: None,
        });
        V1Pager {
            delay_ms: settings.delay_ms,
            cp,
            finished: false,
            in_flight: false,
            notices: Vec::new(),
        }
    }
}

impl Pager for V1Pager {
    fn next(&mut self, now: i64) -> Next {
        if self.finished {
            return Next::Done(Done::CaughtUp);
        }
        // v1 requests carry no cursor, so clamping between requests invalidates nothing.
        let floor = floor_to_second(retention_floor_ms(now)) + 1000;
        if self.cp.mintime_ms < floor {
            self.notices.push(Notice::Clamped {
                from_ms: self.cp.mintime_ms,
                to_ms: floor,
            });
            self.cp.mintime_ms = floor;
            self.cp.seen.clear();
        }
        if self.cp.mintime_ms > now - self.delay_ms {
            return Next::Done(Done::CaughtUp);
        }
        self.in_flight = true;
        Next::Fetch(Request {
            params: vec![(
                "mintime".to_string(),
                (self.cp.mintime_ms / 1000).to_string(),
            )],
            cursor: None,
        })
    }

    fn on_page(&mut self, mut page: Page, now: i64) -> Result<Delivery, PagerError> {
        if !std::mem::take(&mut self.in_flight) {
            return Err(PagerError::NoRequest);
        }
        let settled_until = now - self.delay_ms;
        // "The 1000 earliest events": order them by time (stable) whatever order Duo used.
        page.events.sort_by_key(|e| e.ts_ms);
        let full = page.events.len() >= V1_PAGE;
        let first_ts = page.events.first().map(|e| e.ts_ms);
        let one_second = full && first_ts == page.events.last().map(|e| e.ts_ms);

        let before = (self.cp.mintime_ms, self.cp.seen.len());
        let seen: HashSet<&str> = self.cp.seen.iter().map(String::as_str).collect();
        let mut reached_unsettled = false;
        let mut deliver = Vec::with_capacity(page.events.len());
        for event in page.events {
            if event.ts_ms > settled_until {
                reached_unsettled = true;
            } else if !(event.ts_ms == self.cp.mintime_ms && seen.contains(event.event_id.as_str()))
            {
                deliver.push(event);
            }
        }
        drop(seen);
        if let Some(newest_second) = deliver.last().map(|e| e.ts_ms) {
            if newest_second != self.cp.mintime_ms {
                self.cp.mintime_ms = newest_second;
                self.cp.seen.clear();
            }
            self.cp.seen.extend(
                deliver
                    .iter()
                    .filter(|e| e.ts_ms == newest_second)
                    .map(|e| e.event_id.clone()),
            );
        }
        let stuck_second = one_second && !reached_unsettled;
        if stuck_second {
            // Duo returns only the 1000 earliest events from a second and has no cursor, so
            // the rest of that second cannot be fetched: step past it.
            let second = first_ts.unwrap_or(self.cp.mintime_ms);
            self.notices.push(Notice::OversizedSecond {
                second: second / 1000,
            });
            self.cp.mintime_ms = floor_to_second(second) + 1000;
            self.cp.seen.clear();
        }
        self.cp.newest_event_ms = newest(self.cp.newest_event_ms, &deliver);
        let progressed = stuck_second || (self.cp.mintime_ms, self.cp.seen.len()) != before;
        self.finished = !full || reached_unsettled || !progressed;
        Ok(Delivery {
            events: deliver,
            checkpoint: self.checkpoint(),
            finished: self.finished,
        })
    }

    fn on_refused(&mut self, detail: &str, _now: i64) -> Result<Checkpoint, PagerError> {
        self.in_flight = false;
        Err(PagerError::Refused {
            detail: detail.to_string(),
        })
    }

    fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::V1(self.cp.clone())
    }
}
