//! The pure part of pacing: how fast to ask (AIMD), Duo's 429 backoff schedule, and the
//! once-a-minute summary of 429s.

use std::time::Duration;

/// The slowest pace the controller falls to: one request every two minutes.
pub const MIN_RATE_PER_MINUTE: f64 = 0.5;
/// Nor below this share of the ceiling (four halvings): a burst of 429s from a storm that
/// has nothing to do with our pace must not leave a fast account crawling for hours.
const FLOOR_SHARE: f64 = 1.0 / 16.0;
/// Multiplicative decrease on a 429.
const DECREASE: f64 = 0.5;
/// Additive increase per successful request, as a share of the ceiling: from half the ceiling
/// back to it in 25 successes.
const INCREASE_SHARE: f64 = 0.02;
/// Requests are spaced this much wider than the rate says, so that arrival jitter does not
/// land a request a few ms before the server's bucket refilled.
const SPACING_SLACK: f64 = 1.02;

/// Duo's 429 schedule (§3.3): waits of 1, 2, 4 … 32 s, 7 attempts in all.
pub const RATE_LIMIT_ATTEMPTS: u32 = 7;

/// The wait after the `n`-th consecutive 429 (1-based): 1, 2, 4, 8, 16, 32 s, then 32 s again
/// (past the schedule the stream keeps waiting its turn rather than failing).
pub fn rate_limit_backoff(n: u32, initial: Duration, max: Duration) -> Duration {
    let doubled = initial.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)));
    doubled.min(max)
}

/// Additive-increase, multiplicative-decrease request rate for one (account, endpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct RateController {
    ceiling: f64,
    floor: f64,
    rate: f64,
    /// When the rate was last halved (any monotonic time base).
    last_decrease: Option<Duration>,
}

impl RateController {
    /// Starts at `learned` (what an earlier run found, never above the ceiling) or the ceiling.
    /// A ceiling of 0 means unpaced (the simulator, benchmarks): only 429 backoffs wait.
    pub fn new(ceiling_per_minute: f64, learned: Option<f64>) -> RateController {
        if ceiling_per_minute <= 0.0 {
            return RateController {
                ceiling: f64::INFINITY,
                floor: f64::INFINITY,
                rate: f64::INFINITY,
                last_decrease: None,
            };
        }
        let ceiling = ceiling_per_minute.max(MIN_RATE_PER_MINUTE);
        let floor = (ceiling * FLOOR_SHARE).max(MIN_RATE_PER_MINUTE);
        let rate = learned
            .filter(|r| r.is_finite() && *r > 0.0)
            .unwrap_or(ceiling)
            .clamp(floor, ceiling);
        RateController {
            ceiling,
            floor,
            rate,
            last_decrease: None,
        }
    }

    pub fn rate_per_minute(&self) -> f64 {
        self.rate
    }

    pub fn ceiling_per_minute(&self) -> f64 {
        self.ceiling
    }

    /// The time between two requests at the current rate.
    pub fn interval(&self) -> Duration {
        if self.rate.is_infinite() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(60.0 / self.rate * SPACING_SLACK)
    }

    pub fn is_unpaced(&self) -> bool {
        self.ceiling.is_infinite()
    }

    /// A request succeeded: creep up, never past the ceiling.
    pub fn on_success(&mut self) {
        self.rate = (self.rate + self.ceiling * INCREASE_SHARE).min(self.ceiling);
    }

    /// Duo answered 429 at `now` (any monotonic time base): halve the rate, at most once per
    /// interval, so that the retries of one request (1, 2, 4 … s apart) do not compound the
    /// decrease faster than requests are actually paced.
    pub fn on_rate_limited(&mut self, now: Duration) {
        if self.is_unpaced() {
            return;
        }
        let recently = self
            .last_decrease
            .is_some_and(|t| now.saturating_sub(t) < self.interval());
        if !recently {
            self.rate = (self.rate * DECREASE).max(self.floor);
            self.last_decrease = Some(now);
        }
    }
}

/// Collapses 429s into one line per stream per minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitLog {
    unreported: u64,
    last_report_ms: Option<i64>,
}

/// What a summary line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSummary {
    /// 429s since the previous line.
    pub count: u64,
}

impl RateLimitLog {
    const PERIOD_MS: i64 = 60_000;

    /// A 429 at `now_ms`: returns a summary when a line is due (the first 429, then at most
    /// once a minute).
    pub fn on_rate_limited(&mut self, now_ms: i64) -> Option<RateLimitSummary> {
        self.unreported += 1;
        let due = self
            .last_report_ms
            .is_none_or(|last| now_ms - last >= Self::PERIOD_MS);
        due.then(|| self.take(now_ms))
    }

    /// The 429s not yet reported (at the end of a run).
    pub fn flush(&mut self, now_ms: i64) -> Option<RateLimitSummary> {
        (self.unreported > 0).then(|| self.take(now_ms))
    }

    fn take(&mut self, now_ms: i64) -> RateLimitSummary {
        let count = std::mem::take(&mut self.unreported);
        self.last_report_ms = Some(now_ms);
        RateLimitSummary { count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_duos_schedule_and_stays_at_the_cap() {
        let s = |n| rate_limit_backoff(n, Duration::from_secs(1), Duration::from_secs(32));
        let waits: Vec<u64> = (1..=8).map(|n| s(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn aimd_halves_on_429_and_creeps_back_to_the_ceiling_only() {
        let mut c = RateController::new(6.0, None);
        assert_eq!(c.rate_per_minute(), 6.0);
        assert!(
            c.interval() >= Duration::from_secs(10),
            "{:?}",
            c.interval()
        );
        assert!(c.interval() < Duration::from_millis(10_300));
        c.on_rate_limited(Duration::from_secs(100));
        assert_eq!(c.rate_per_minute(), 3.0);
        c.on_rate_limited(Duration::from_secs(101));
        assert_eq!(
            c.rate_per_minute(),
            3.0,
            "a second 429 within one interval: once"
        );
        c.on_success();
        assert!((c.rate_per_minute() - 3.12).abs() < 1e-9);
        for _ in 0..100 {
            c.on_success();
        }
        assert_eq!(c.rate_per_minute(), 6.0, "never above the ceiling");
        for minute in 0..20 {
            c.on_rate_limited(Duration::from_secs(200 + 300 * minute));
        }
        assert_eq!(
            c.rate_per_minute(),
            MIN_RATE_PER_MINUTE,
            "6/16 is below the absolute floor"
        );
        let mut fast = RateController::new(600.0, None);
        for minute in 0..20 {
            fast.on_rate_limited(Duration::from_secs(300 * minute));
        }
        assert_eq!(
            fast.rate_per_minute(),
            37.5,
            "at most four halvings below the ceiling"
        );
    }

    #[test]
    fn a_zero_ceiling_is_unpaced() {
        let mut c = RateController::new(0.0, Some(3.0));
        assert_eq!(c.interval(), Duration::ZERO);
        c.on_rate_limited(Duration::ZERO);
        c.on_success();
        assert_eq!(c.interval(), Duration::ZERO);
    }

    #[test]
    fn a_learned_rate_is_resumed_but_capped_by_the_ceiling() {
        assert_eq!(RateController::new(6.0, Some(2.5)).rate_per_minute(), 2.5);
        assert_eq!(RateController::new(6.0, Some(60.0)).rate_per_minute(), 6.0);
        assert_eq!(
            RateController::new(6.0, Some(f64::NAN)).rate_per_minute(),
            6.0
        );
        assert_eq!(
            RateController::new(6.0, Some(0.0001)).rate_per_minute(),
            MIN_RATE_PER_MINUTE
        );
        assert_eq!(
            RateController::new(600.0, Some(1.0)).rate_per_minute(),
            37.5
        );
    }

    #[test]
    fn four_hundred_29s_make_one_line_a_minute() {
        let mut log = RateLimitLog::default();
        assert_eq!(
            log.on_rate_limited(0),
            Some(RateLimitSummary { count: 1 }),
            "the first is reported at once"
        );
        let lines: Vec<_> = (1..=119)
            .filter_map(|s| log.on_rate_limited(s * 1000))
            .collect();
        assert_eq!(lines, [RateLimitSummary { count: 60 }]);
        assert_eq!(log.flush(130_000), Some(RateLimitSummary { count: 59 }));
        assert_eq!(log.flush(131_000), None);
    }
}
