//! Pacing: one scheduler per (account, endpoint) — the unit Duo rate-limits — that spaces
//! requests at an adaptive rate so that a backfill uses what Duo allows without provoking 429s.
//!
//! The decisions (rate, backoff schedule, log summaries) are pure, in [`rate`]; this module only
//! hands out slots on tokio's clock, so tests run it on paused time. A caller waits for its slot
//! *before* it takes a page permit, so no permit is ever held while a stream sleeps.

pub mod rate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use rate::{rate_limit_backoff, RateController, RateLimitLog, RATE_LIMIT_ATTEMPTS};

/// What Duo rate-limits: one endpoint of one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaceKey {
    /// The MSP child account id, or `""` for the integration's own account.
    pub account: String,
    /// The endpoint path, e.g. `/admin/v2/logs/authentication`.
    pub endpoint: String,
}

#[derive(Debug)]
struct Slots {
    controller: RateController,
    last_sent: Option<Instant>,
    not_before: Option<Instant>,
}

/// The scheduler of one (account, endpoint).
#[derive(Debug)]
pub struct Pacer {
    key: PaceKey,
    slots: Mutex<Slots>,
    created: Instant,
}

/// Shutdown interrupted a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl Pacer {
    pub fn new(key: PaceKey, controller: RateController) -> Pacer {
        Pacer {
            key,
            slots: Mutex::new(Slots {
                controller,
                last_sent: None,
                not_before: None,
            }),
            created: Instant::now(),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn key(&self) -> &PaceKey {
        &self.key
    }

    pub fn rate_per_minute(&self) -> f64 {
        self.slots().controller.rate_per_minute()
    }

    /// When the next request may go, if one were asked for now.
    pub fn next_slot(&self) -> Instant {
        let s = self.slots();
        next_slot(&s, Instant::now())
    }

    /// Reserves the next slot and sleeps until it; returns how long it waited.
    pub async fn wait_turn(&self, cancel: &CancellationToken) -> Result<Duration, Cancelled> {
        let now = Instant::now();
        let slot = {
            let mut s = self.slots();
            let slot = next_slot(&s, now);
            s.last_sent = Some(slot);
            slot
        };
        if slot > now {
            tokio::select! {
                _ = cancel.cancelled() => return Err(Cancelled),
                _ = tokio::time::sleep_until(slot) => {}
            }
        }
        Ok(slot - now)
    }

    /// The answer to the request arrived: the next slot counts from now. Spacing from the
    /// answer rather than from the send means Duo sees requests at least one interval apart
    /// whatever the latency of each (Duo's bucket counts arrivals, and the previous request
    /// arrived before its answer left).
    pub fn answered(&self) {
        let mut s = self.slots();
        let now = Instant::now();
        s.last_sent = Some(s.last_sent.map_or(now, |t| t.max(now)));
    }

    /// The request succeeded; returns the new rate when it changed.
    pub fn on_success(&self) -> Option<f64> {
        let mut s = self.slots();
        let before = s.controller.rate_per_minute();
        s.controller.on_success();
        let after = s.controller.rate_per_minute();
        (after != before).then_some(after)
    }

    /// Duo answered 429: slow down, and send nothing before `backoff` has passed. Returns the
    /// new rate.
    pub fn on_rate_limited(&self, backoff: Duration) -> f64 {
        let mut s = self.slots();
        let now = Instant::now();
        s.controller.on_rate_limited(now - self.created);
        let until = now + backoff;
        s.not_before = Some(s.not_before.map_or(until, |t| t.max(until)));
        s.controller.rate_per_minute()
    }
}

fn next_slot(s: &Slots, now: Instant) -> Instant {
    let paced = s.last_sent.map(|t| t + s.controller.interval());
    [Some(now), paced, s.not_before]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(now)
}

/// The pacers of one integration, created on first use at the learned or configured rate.
#[derive(Debug)]
pub struct Pacers {
    ceiling_per_minute: f64,
    learned: HashMap<PaceKey, f64>,
    pacers: Mutex<HashMap<PaceKey, Arc<Pacer>>>,
}

impl Pacers {
    /// `learned`: rates an earlier run found (persisted), used instead of the ceiling.
    pub fn new(ceiling_per_minute: f64, learned: HashMap<PaceKey, f64>) -> Pacers {
        Pacers {
            ceiling_per_minute,
            learned,
            pacers: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: PaceKey) -> Arc<Pacer> {
        let mut pacers = self.pacers.lock().unwrap_or_else(|p| p.into_inner());
        pacers
            .entry(key.clone())
            .or_insert_with(|| {
                let learned = self.learned.get(&key).copied();
                Arc::new(Pacer::new(
                    key,
                    RateController::new(self.ceiling_per_minute, learned),
                ))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(endpoint: &str) -> PaceKey {
        PaceKey {
            account: String::new(),
            endpoint: endpoint.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_at_the_rate_and_the_first_goes_at_once() {
        let pacer = Pacer::new(key("/a"), RateController::new(6.0, None));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..4 {
            pacer.wait_turn(&cancel).await.unwrap();
            sent.push((Instant::now() - start).as_millis());
        }
        assert_eq!(sent, [0, 10_200, 20_400, 30_600]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_slot_counts_from_the_answer_of_a_slow_request() {
        let pacer = Pacer::new(key("/a"), RateController::new(6.0, None));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        pacer.wait_turn(&cancel).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await; // the request takes 3 s
        pacer.answered();
        pacer.wait_turn(&cancel).await.unwrap();
        assert_eq!((Instant::now() - start).as_millis(), 13_200);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pushes_the_next_slot_past_the_backoff_and_halves_the_rate() {
        let pacer = Pacer::new(key("/a"), RateController::new(60.0, None));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        pacer.wait_turn(&cancel).await.unwrap();
        assert_eq!(pacer.on_rate_limited(Duration::from_secs(4)), 30.0);
        pacer.wait_turn(&cancel).await.unwrap();
        assert_eq!((Instant::now() - start).as_millis(), 4_000);
        // The next one is paced at the halved rate (2 s, with slack).
        pacer.wait_turn(&cancel).await.unwrap();
        assert_eq!((Instant::now() - start).as_millis(), 6_040);
    }

    #[tokio::test(start_paused = true)]
    async fn streams_sharing_an_endpoint_share_its_slots() {
        let pacers = Arc::new(Pacers::new(30.0, HashMap::new()));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (pacers, cancel) = (pacers.clone(), cancel.clone());
            tasks.push(tokio::spawn(async move {
                pacers.get(key("/a")).wait_turn(&cancel).await.unwrap();
                (Instant::now() - start).as_millis()
            }));
        }
        let other = pacers.get(key("/b"));
        other.wait_turn(&cancel).await.unwrap();
        assert_eq!(
            (Instant::now() - start).as_millis(),
            0,
            "another endpoint: own slots"
        );
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        assert_eq!(times, [0, 2_040, 4_080]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_shutdown() {
        let pacer = Pacer::new(key("/a"), RateController::new(1.0, None));
        let cancel = CancellationToken::new();
        pacer.wait_turn(&cancel).await.unwrap();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.cancel();
        });
        assert_eq!(pacer.wait_turn(&cancel).await, Err(Cancelled));
    }

    #[test]
    fn learned_rates_seed_new_pacers() {
        let mut learned = HashMap::new();
        learned.insert(key("/a"), 2.0);
        let pacers = Pacers::new(6.0, learned);
        assert_eq!(pacers.get(key("/a")).rate_per_minute(), 2.0);
        assert_eq!(pacers.get(key("/b")).rate_per_minute(), 6.0);
    }
}
