//! Duo's retry rules, as a decision apart from the waiting: 429 is retried on the 1, 2, 4 … 32 s
//! schedule (plus jitter) that Duo's own clients use; 5xx, 408, timeouts, connection errors and
//! malformed bodies a few times with doubling waits; everything else not at all.

use std::time::Duration;

use rand::Rng;

use super::error::DuoError;

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First wait after a 429; doubled after each further 429.
    pub rate_limit_initial: Duration,
    /// Give up on 429 once the next wait would exceed this (Duo's clients: 32 s).
    pub rate_limit_max: Duration,
    /// Attempts in all for transient failures (5xx, timeouts, connection errors).
    pub transient_attempts: u32,
    pub transient_initial: Duration,
    /// Upper bound of the random extra added to each wait.
    pub jitter: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            rate_limit_initial: Duration::from_secs(1),
            rate_limit_max: Duration::from_secs(32),
            transient_attempts: 4,
            transient_initial: Duration::from_secs(1),
            jitter: Duration::from_secs(1),
        }
    }
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send it again after this wait (jitter not included).
    Retry(Duration),
    GiveUp,
}

/// The retry state of one request: rate limits and transient failures are counted apart, as
/// a 429 says nothing about the server's health.
#[derive(Debug)]
pub struct Backoff<'p> {
    policy: &'p RetryPolicy,
    rate_limit_wait: Duration,
    transient_failures: u32,
}

impl<'p> Backoff<'p> {
    pub fn new(policy: &'p RetryPolicy) -> Backoff<'p> {
        Backoff {
            policy,
            rate_limit_wait: policy.rate_limit_initial,
            transient_failures: 0,
        }
    }

    pub fn after(&mut self, error: &DuoError) -> Next {
        if error.is_rate_limited() {
            if self.rate_limit_wait > self.policy.rate_limit_max {
                return Next::GiveUp;
            }
            let wait = self.rate_limit_wait;
            self.rate_limit_wait *= 2;
            return Next::Retry(wait);
        }
        if !error.is_transient() {
            return Next::GiveUp;
        }
        self.transient_failures += 1;
        if self.transient_failures >= self.policy.transient_attempts {
            return Next::GiveUp;
        }
        Next::Retry(
            self.policy.transient_initial * 2u32.saturating_pow(self.transient_failures - 1),
        )
    }
}

/// A random extra wait in `0..=max`, so that retries of many streams do not line up.
pub fn jitter(max: Duration) -> Duration {
    let max = max.as_millis() as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duo::error::from_response;

    fn limited() -> DuoError {
        from_response(
            429,
            br#"{"stat":"FAIL","code":42901,"message":"Too Many Requests"}"#,
        )
    }

    fn unavailable() -> DuoError {
        from_response(503, b"Service Unavailable")
    }

    fn waits(errors: impl IntoIterator<Item = DuoError>) -> Vec<Next> {
        let policy = RetryPolicy::default();
        let mut backoff = Backoff::new(&policy);
        errors.into_iter().map(|e| backoff.after(&e)).collect()
    }

    fn secs(s: u64) -> Next {
        Next::Retry(Duration::from_secs(s))
    }

    #[test]
    fn rate_limits_follow_duo_s_schedule_up_to_32_s_then_give_up() {
        assert_eq!(
            waits((0..7).map(|_| limited())),
            [
                secs(1),
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(32),
                Next::GiveUp
            ]
        );
    }

    #[test]
    fn transient_failures_double_and_give_up_after_the_attempts_in_all() {
        assert_eq!(
            waits((0..4).map(|_| unavailable())),
            [secs(1), secs(2), secs(4), Next::GiveUp]
        );
    }

    #[test]
    fn a_rate_limit_does_not_use_up_the_transient_attempts() {
        let mixed = [
            unavailable(),
            limited(),
            unavailable(),
            limited(),
            unavailable(),
            unavailable(),
        ];
        assert_eq!(
            waits(mixed),
            [secs(1), secs(1), secs(2), secs(2), secs(4), Next::GiveUp]
        );
    }

    #[test]
    fn a_refused_or_forbidden_request_is_not_retried() {
        let refused = from_response(
            400,
            br#"{"stat":"FAIL","code":40002,"message":"Invalid request parameters"}"#,
        );
        let forbidden = from_response(
            403,
            br#"{"stat":"FAIL","code":40301,"message":"Access forbidden"}"#,
        );
        assert_eq!(waits([refused, forbidden]), [Next::GiveUp, Next::GiveUp]);
    }
}
