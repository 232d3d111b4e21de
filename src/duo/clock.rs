//! Duo's clock, as measured from the `Date` header of every response.
//!
//! Duo decides what is "two minutes old" by its own clock, so `maxtime` and "settled" must be
//! computed from Duo's time: a host clock running X s ahead would otherwise ask X s inside the
//! delay window and miss events published late in that gap. The `Date` header has a resolution
//! of one second, so each response gives Duo's time to within ±0.5 s plus half the round trip;
//! a smoothed offset over many responses is what the collector uses, and it always takes the
//! earlier of Duo's and the local clock (see [`DuoClock::now_ms`]).

use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// Above this offset, the operator is told to fix the host's clock.
pub const WARN_OFFSET_MS: i64 = 30_000;
/// Weight of a new sample in the smoothed offset.
const SMOOTHING: f64 = 0.25;
/// A sample this far from the smoothed value is a clock step (NTP, a VM resumed): start over.
const STEP_MS: f64 = 5_000.0;
/// Half the resolution of the `Date` header: Duo's time may be this much earlier than the
/// midpoint estimate.
const RESOLUTION_SLACK_MS: i64 = 500;

/// The pure estimator: feed it samples, read the offset (Duo − local, ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetEstimator {
    offset_ms: Option<f64>,
    samples: u64,
}

impl OffsetEstimator {
    /// One response: Duo's `Date` (whole seconds, in ms) and the local send and receive times.
    pub fn observe(&mut self, duo_date_ms: i64, sent_local_ms: i64, received_local_ms: i64) {
        // Duo stamped the response somewhere in [sent, received] local time, at a Duo time in
        // [date, date + 1 s): take the middle of both.
        let local_mid = (sent_local_ms as f64 + received_local_ms as f64) / 2.0;
        let sample = duo_date_ms as f64 + 500.0 - local_mid;
        self.offset_ms = Some(match self.offset_ms {
            Some(prev) if (sample - prev).abs() <= STEP_MS => prev + SMOOTHING * (sample - prev),
            _ => sample,
        });
        self.samples += 1;
    }

    /// The smoothed offset, Duo's clock minus the local clock, once measured.
    pub fn offset_ms(&self) -> Option<i64> {
        self.offset_ms.map(|o| o.round() as i64)
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Duo's time at local time `local_ms`, never later than the local clock: when in doubt,
    /// the earlier of the two, so that `now − delay` is never inside Duo's delay window.
    pub fn duo_now_ms(&self, local_ms: i64) -> i64 {
        match self.offset_ms() {
            Some(offset) => local_ms + (offset - RESOLUTION_SLACK_MS).min(0),
            None => local_ms,
        }
    }
}

/// Parses an HTTP `Date` header (IMF-fixdate, RFC 7231; RFC 2822 also accepted) to epoch ms.
pub fn parse_http_date(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Duo's clock for one integration: the host's [`Clock`] plus the measured offset. Shared by
/// the integration's client (which feeds it) and its streams (which read it).
#[derive(Debug, Clone)]
pub struct DuoClock {
    local: Arc<dyn Clock>,
    estimate: Arc<Mutex<OffsetEstimator>>,
}

impl DuoClock {
    pub fn new(local: Arc<dyn Clock>) -> DuoClock {
        DuoClock {
            local,
            estimate: Arc::new(Mutex::new(OffsetEstimator::default())),
        }
    }

    fn estimate(&self) -> std::sync::MutexGuard<'_, OffsetEstimator> {
        self.estimate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host's own time.
    pub fn local_now_ms(&self) -> i64 {
        self.local.now_ms()
    }

    /// Records a response's `Date` header; unparseable values are ignored.
    pub fn observe_date_header(&self, date: &str, sent_local_ms: i64, received_local_ms: i64) {
        if let Some(duo_ms) = parse_http_date(date) {
            self.estimate()
                .observe(duo_ms, sent_local_ms, received_local_ms);
        }
    }

    /// See [`OffsetEstimator::duo_now_ms`].
    pub fn now_ms(&self) -> i64 {
        let local = self.local.now_ms();
        self.estimate().duo_now_ms(local)
    }

    pub fn offset_ms(&self) -> Option<i64> {
        self.estimate().offset_ms()
    }

    pub fn is_measured(&self) -> bool {
        self.estimate().samples() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn date_headers_parse() {
        assert_eq!(
            parse_http_date("Tue, 01 Dec 2026 08:47:20 GMT"),
            Some(1_796_114_840_000)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn a_host_ahead_of_duo_uses_duo_time() {
        let mut e = OffsetEstimator::default();
        // Duo is 45 s behind: its Date says 955 000 when we sent at 1 000 000 and got it at
        // 1 000 100.
        for i in 0..10 {
            let t = 1_000_000 + i * 1000;
            e.observe(t - 45_000 - 500, t, t + 100);
        }
        let offset = e.offset_ms().unwrap();
        assert!((-45_100..=-44_900).contains(&offset), "{offset}");
        let now = e.duo_now_ms(2_000_000);
        assert!(now <= 2_000_000 - 45_000, "{now}");
    }

    #[test]
    fn a_duo_clock_ahead_of_the_host_never_moves_now_later() {
        let mut e = OffsetEstimator::default();
        e.observe(1_030_000, 1_000_000, 1_000_050);
        assert!(e.offset_ms().unwrap() > 29_000);
        assert_eq!(e.duo_now_ms(5_000_000), 5_000_000, "the earlier clock wins");
        assert_eq!(
            OffsetEstimator::default().duo_now_ms(7),
            7,
            "unmeasured: local"
        );
    }

    #[test]
    fn jitter_is_smoothed_and_a_step_is_followed_at_once() {
        let mut e = OffsetEstimator::default();
        e.observe(1_000_000, 1_000_000, 1_000_000); // +500
        e.observe(1_001_000, 1_001_900, 1_001_900); // -400: jitter within a second
        let smoothed = e.offset_ms().unwrap();
        assert!((200..=300).contains(&smoothed), "{smoothed}");
        e.observe(1_002_000, 1_062_000, 1_062_000); // the host stepped 60 s ahead
        assert_eq!(e.offset_ms(), Some(-59_500));
    }

    #[test]
    fn duo_clock_reads_the_local_clock_through_the_trait() {
        let local = ManualClock::new(10_000_000);
        let clock = DuoClock::new(Arc::new(local.clone()));
        assert!(!clock.is_measured());
        assert_eq!(clock.now_ms(), 10_000_000);
        clock.observe_date_header("Thu, 01 Jan 1970 02:46:20 GMT", 10_000_000, 10_000_000);
        assert_eq!(clock.offset_ms(), Some(-19_500));
        local.advance(1000);
        assert_eq!(clock.now_ms(), 10_001_000 - 20_000);
    }
}
