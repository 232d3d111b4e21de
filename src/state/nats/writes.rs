//! The NATS store's writes besides a page's commit ([`Write`]): each a read-modify-write of one
//! key where it keeps something of the value (the rate limit under a new rate, a sink's
//! failing-since), a plain put where it does not.

use super::keys;
use super::records::{RunHistory, StoredClock, StoredRate, StoredSink};
use super::{rate_key, NatsStore};
use crate::state::{
    ClockReading, LearnedRate, RateLimited, RunEnd, SinkAttempt, StateError, Write,
};

impl NatsStore {
    pub async fn write(&self, write: Write) -> Result<(), StateError> {
        match write {
            Write::EndRun(end) => self.end_run(end).await,
            Write::Rate(rate) => self.save_rate(rate).await,
            Write::RateLimited(limited) => self.set_rate_limited(limited).await,
            Write::Clock(clock) => self.save_clock(clock).await,
            Write::Sink(attempt) => self.record_sink(attempt).await,
            Write::FileMark { mark, now_ms } => {
                self.write_file_marks(std::slice::from_ref(&mark), now_ms)
                    .await
            }
        }
    }

    async fn end_run(&self, end: RunEnd) -> Result<(), StateError> {
        let key = keys::stream_key(&end.stream);
        self.runs
            .modify::<RunHistory, ()>(&key, |history| {
                let mut history = history?;
                let run = history.run_mut(end.run_id)?;
                run.ended_ms = Some(end.now_ms);
                run.outcome = Some(end.outcome.as_str().to_string());
                run.error = end.error.clone();
                history.prune();
                Some((history, ()))
            })
            .await?;
        Ok(())
    }

    async fn save_rate(&self, learned: LearnedRate) -> Result<(), StateError> {
        let key = rate_key(&learned.integration, &learned.key);
        self.rates
            .modify::<StoredRate, ()>(&key, |current| {
                let rate = StoredRate {
                    rate_per_minute: learned.rate_per_minute,
                    ceiling_per_minute: learned.ceiling_per_minute,
                    updated_ms: learned.now_ms,
                    rate_limited_until_ms: current.and_then(|c| c.rate_limited_until_ms),
                };
                Some((rate, ()))
            })
            .await?;
        Ok(())
    }

    async fn set_rate_limited(&self, limited: RateLimited) -> Result<(), StateError> {
        let key = rate_key(&limited.integration, &limited.key);
        self.rates
            .modify::<StoredRate, ()>(&key, |current| {
                let mut rate = current?;
                rate.rate_limited_until_ms = limited.until_ms;
                Some((rate, ()))
            })
            .await?;
        Ok(())
    }

    async fn save_clock(&self, clock: ClockReading) -> Result<(), StateError> {
        let stored = StoredClock {
            offset_ms: clock.offset_ms,
            measured_ms: clock.now_ms,
        };
        self.clock
            .put(&keys::token(&clock.integration), &stored)
            .await?;
        Ok(())
    }

    async fn record_sink(&self, attempt: SinkAttempt) -> Result<(), StateError> {
        self.sinks
            .modify::<StoredSink, ()>(&keys::token(&attempt.sink), |current| {
                let mut status = current.unwrap_or_default();
                match &attempt.error {
                    None => {
                        status.last_success_ms = Some(attempt.now_ms);
                        status.failing_since_ms = None;
                        status.failed_attempts = 0;
                    }
                    Some(error) => {
                        status.failing_since_ms = status.failing_since_ms.or(Some(attempt.now_ms));
                        status.last_error = Some(error.clone());
                        status.last_error_ms = Some(attempt.now_ms);
                        status.failed_attempts += 1;
                    }
                }
                Some((status, ()))
            })
            .await?;
        Ok(())
    }
}
