//! Leases on streams, pure: which streams an instance should claim or release given its view
//! of the cluster (fair share), and, for the leases it holds, when each is renewed and when it
//! must stop its stream because a renewal did not come through in time. The KV operations that
//! take (`create`), renew (`update` at the revision) and release a lease are the NATS store's
//! (`state::NatsStore::take_lease` ...); this module only decides, from what it is told and
//! the time handed in (tokio's clock, so tests run on paused time).
//!
//! Timing, with `ttl` the lease bucket's `max_age`: a lease is renewed every `ttl / 3`; the
//! server expires it `ttl` after the last write, which it stamps no earlier than the moment
//! this instance *sent* the write, so counting from the send is safe. A stream whose lease
//! was not renewed for `2 · ttl / 3` is stopped, a third of the ttl before another instance
//! can take it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// What to do with a stream's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<K> {
    /// Take it (`create`): nobody live holds it, and this instance is below its share.
    Claim(K),
    /// Give it up: this instance holds more than its share while another holds less.
    Release(K),
}

/// The most streams one instance should hold: `ceil(streams / instances)`.
pub fn fair_share(streams: usize, instances: usize) -> usize {
    streams.div_ceil(instances.max(1))
}

/// Whether an instance holding `held` of `streams` is below `floor(streams / instances)`, the
/// least its fair share gives it.
pub fn below_floor(held: usize, streams: usize, instances: usize) -> bool {
    held < streams / instances.max(1)
}

/// How long until an instance's next lease round: `ttl / 3`, or a quarter of that when the
/// round is wanted `soon` (a renewal failed, or the instance is [`below_floor`]), so that a
/// renewal is tried again several times before its stream has to stop at `2 · ttl / 3`, and a
/// joining instance takes the streams the others give up as they are released.
pub fn next_round_in(ttl: Duration, soon: bool) -> Duration {
    let every = ttl / 3;
    if soon {
        every / 4
    } else {
        every
    }
}

/// How much `instance` prefers `stream` (rendezvous hashing): instances rank the free streams
/// differently, so they seldom race for the same one, and a stream's preferred instance stays
/// the same while the others come and go.
fn preference<K: Hash>(instance: &str, stream: &K) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    instance.hash(&mut h);
    stream.hash(&mut h);
    h.finish()
}

/// The claims and releases that move `me` towards its fair share.
///
/// `streams`: every stream to collect (the same set on every instance); `live`: the instances
/// seen alive, `me` among them; `holders`: each leased stream's holder. A stream held by an
/// instance not in `live` counts as free only once its lease expired (the caller leaves it in
/// `holders` until then), so nothing here ever takes a lease that is still running.
pub fn assign<K: Ord + Clone + Hash>(
    me: &str,
    streams: &[K],
    live: &BTreeSet<String>,
    holders: &BTreeMap<K, String>,
) -> Vec<Action<K>> {
    let instances = live.len() + usize::from(!live.contains(me));
    let share = fair_share(streams.len(), instances);
    let mut mine: Vec<&K> = streams
        .iter()
        .filter(|s| holders.get(*s).map(String::as_str) == Some(me))
        .collect();
    let mut actions = Vec::new();
    if mine.len() > share {
        // Only give streams up when someone is below the share to take them.
        let mut counts: BTreeMap<&str, usize> = live.iter().map(|i| (i.as_str(), 0)).collect();
        for holder in holders.values() {
            if let Some(c) = counts.get_mut(holder.as_str()) {
                *c += 1;
            }
        }
        let floor = streams.len() / instances.max(1);
        let someone_short = counts.iter().any(|(i, c)| *i != me && *c < floor.max(1));
        if someone_short {
            mine.sort_by_key(|s| std::cmp::Reverse(preference(me, *s)));
            for stream in mine.drain(share..) {
                actions.push(Action::Release(stream.clone()));
            }
        }
        return actions;
    }
    let mut free: Vec<&K> = streams
        .iter()
        .filter(|s| !holders.contains_key(*s))
        .collect();
    free.sort_by_key(|s| std::cmp::Reverse(preference(me, *s)));
    for stream in free.into_iter().take(share - mine.len()) {
        actions.push(Action::Claim(stream.clone()));
    }
    actions
}

/// When each lease this instance holds was last written (taken or renewed): the clock its
/// renewals and its stop run on. (The lease itself, with the revision to renew it at, is the
/// caller's.)
#[derive(Debug, Clone)]
pub struct Leases<K> {
    ttl: Duration,
    written_at: BTreeMap<K, Instant>,
}

impl<K: Ord + Clone> Leases<K> {
    pub fn new(ttl: Duration) -> Leases<K> {
        Leases {
            ttl,
            written_at: BTreeMap::new(),
        }
    }

    /// How often a lease is renewed: `ttl / 3`.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// How long after its last write a lease's stream keeps running: `2 · ttl / 3`.
    pub fn stop_after(&self) -> Duration {
        self.ttl - self.ttl / 3
    }

    pub fn streams(&self) -> impl Iterator<Item = &K> {
        self.written_at.keys()
    }

    pub fn holds(&self, stream: &K) -> bool {
        self.written_at.contains_key(stream)
    }

    /// Taken (or renewed) by a write sent at `sent_at` that the server accepted.
    pub fn written(&mut self, stream: K, sent_at: Instant) {
        self.written_at.insert(stream, sent_at);
    }

    /// The leases to renew now (last written `ttl / 3` ago or more), with when they were.
    pub fn due(&self, now: Instant) -> Vec<(K, Instant)> {
        self.written_at
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= self.renew_every())
            .map(|(k, at)| (k.clone(), *at))
            .collect()
    }

    /// The streams to stop now because their lease may be gone before the next renewal could
    /// land (not written for `2 · ttl / 3`); they are forgotten here. A renewal that failed
    /// leaves the lease in place until then; one refused (another instance holds it) is
    /// [`Leases::lost`] at once.
    pub fn expiring(&mut self, now: Instant) -> Vec<K> {
        let stop_after = self.stop_after();
        let expiring: Vec<K> = self
            .written_at
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= stop_after)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expiring {
            self.written_at.remove(k);
        }
        expiring
    }

    /// Gone: released, or refused on renewal (another instance moved it). The caller stops the
    /// stream at once. Whether it was held.
    pub fn lost(&mut self, stream: &K) -> bool {
        self.written_at.remove(stream).is_some()
    }

    /// When the first held lease reaches `2 · ttl / 3` without a write (see [`Leases::expiring`]).
    pub fn next_expiry(&self) -> Option<Instant> {
        let stop_after = self.stop_after();
        self.written_at.values().map(|at| *at + stop_after).min()
    }

    /// When the next thing is due: the earliest renewal.
    pub fn next_due(&self) -> Option<Instant> {
        self.written_at
            .values()
            .map(|at| *at + self.renew_every())
            .min()
    }
}

#[cfg(test)]
mod tests;
