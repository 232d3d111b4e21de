//! Moving streams towards the fair share: claiming free streams, giving streams up to
//! instances below their floor, and releasing a given-up lease once its run has ended.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use futures::StreamExt;
use tokio::time::Instant;

use super::{HeldStream, Keeper, CONCURRENT_WRITES, HANDED_OVER};
use crate::clock::now_ms;
use crate::event::StreamId;
use crate::lease::{self, Action};
use crate::lease_metrics::CasOn;
use crate::state::HeldLease;

impl Keeper {
    /// Gives up the leases marked for release whose run has ended.
    pub(super) async fn release_given_up(&self) {
        let done: Vec<HeldLease> = {
            let mut held = self.lock();
            let ready: Vec<StreamId> = held
                .streams
                .iter()
                .filter(|(_, h)| h.releasing && h.run.is_none())
                .map(|(s, _)| s.clone())
                .collect();
            ready
                .iter()
                .filter_map(|s| {
                    held.timing.lost(s);
                    held.streams.remove(s).map(|h| h.lease)
                })
                .collect()
        };
        for lease in done {
            let stream = &lease.stream;
            self.observer.forget_stream(stream);
            match self.nats.release_lease(&lease).await {
                Ok(()) => {
                    tracing::info!(instance = self.instance(), integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log,
                        "gave the stream up to another instance (fair share)")
                }
                Err(e) => {
                    tracing::warn!(instance = self.instance(), integration = %stream.integration, log = %stream.log, error = %e,
                        "cannot release the stream's lease; it expires after lease_ttl")
                }
            }
        }
    }

    /// Claims and gives up streams towards this instance's fair share; whether it is still
    /// below its floor.
    pub(super) async fn rebalance(&self, view: crate::state::LeaseView) -> bool {
        let me = self.instance().to_string();
        let (actions, mine_elsewhere, stale, streams, instances) = {
            let held = self.lock();
            let streams: Vec<StreamId> = held
                .universe
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // Leases the store says are this instance's but it does not hold: their stream
            // stopped while the store did not answer. Nobody else can hold them, so they are
            // taken back (at their revision) rather than waited out until they expire.
            let stale: Vec<HeldLease> = view
                .holders
                .iter()
                .filter(|h| h.instance == me && !held.streams.contains_key(&h.stream))
                .filter(|h| streams.binary_search(&h.stream).is_ok())
                .filter(|h| !held.ending.contains(&h.stream))
                .map(|h| HeldLease {
                    stream: h.stream.clone(),
                    since_ms: h.since_ms,
                    revision: h.revision,
                })
                .collect();
            let mut holders: BTreeMap<StreamId, String> = view
                .holders
                .into_iter()
                .map(|h| (h.stream, h.instance))
                .collect();
            // What this instance holds is its own until a renewal says otherwise.
            for s in held.streams.keys() {
                holders.insert(s.clone(), me.clone());
            }
            let mut live = view.live;
            live.insert(me.clone());
            // Held streams no collection lists any more (a child account removed) go too.
            let unlisted: Vec<StreamId> = held
                .streams
                .keys()
                .filter(|s| streams.binary_search(s).is_err())
                .cloned()
                .collect();
            let actions = lease::assign(&me, &streams, &live, &holders);
            (actions, unlisted, stale, streams.len(), live.len())
        };
        let mut claims = Vec::new();
        for action in actions {
            match action {
                // Not while a run of it that lost its lease is still ending.
                Action::Claim(stream) if self.lock().ending.contains(&stream) => {}
                Action::Claim(stream) => claims.push(stream),
                Action::Release(stream) if self.gives_up.load(Ordering::SeqCst) => {
                    self.give_up(&stream)
                }
                Action::Release(_) => {}
            }
        }
        for stream in &mine_elsewhere {
            self.give_up(stream);
        }
        self.release_given_up().await;
        self.claim(claims, stale).await;
        lease::below_floor(self.lock().streams.len(), streams, instances)
    }

    /// Takes the leases of `claims` that are still free, and back the `stale` ones of this
    /// instance still at their revision; starts their streams (the collection in flight, or a
    /// new one); returns how many it took.
    pub(super) async fn claim(&self, claims: Vec<StreamId>, stale: Vec<HeldLease>) -> usize {
        let me = self.instance().to_string();
        let wants = claims.into_iter().map(|stream| (stream, None)).chain(
            stale
                .into_iter()
                .map(|lease| (lease.stream.clone(), Some(lease))),
        );
        let taken: Vec<_> = futures::stream::iter(wants)
            .map(|(stream, stale)| async move {
                let sent = Instant::now();
                let taken = match &stale {
                    None => self.nats.take_lease(&stream, now_ms()).await,
                    Some(lease) => self.nats.renew_lease(lease).await,
                };
                (stream, sent, taken)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut started: BTreeSet<String> = BTreeSet::new();
        let mut count = 0;
        for (stream, sent, taken) in taken {
            match taken {
                Ok(Some(lease)) => {
                    tracing::info!(instance = %me, integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, "took the stream's lease");
                    let mut held = self.lock();
                    held.timing.written(stream.clone(), sent);
                    held.streams.insert(
                        stream.clone(),
                        HeldStream {
                            lease,
                            run: None,
                            releasing: false,
                        },
                    );
                    started.insert(stream.integration.clone());
                    count += 1;
                }
                // Another instance took it first (or the stale lease expired meanwhile).
                Ok(None) => self.observer.leases().conflict(&me, CasOn::Lease),
                Err(e) => {
                    tracing::warn!(instance = %me, integration = %stream.integration, log = %stream.log, error = %e, "cannot take the stream's lease")
                }
            }
        }
        let held = self.lock();
        for integration in started {
            if let Some(claimed) = held.claimed.get(&integration) {
                claimed.notify_one();
            }
            if let Some(tick) = held.ticks.get(&integration) {
                // A full channel already has a collection coming.
                let _ = tick.try_send(());
            }
        }
        count
    }

    /// Marks a stream to give up: its run stops between pages, then the lease is released.
    pub(super) fn give_up(&self, stream: &StreamId) {
        let mut held = self.lock();
        if let Some(h) = held.streams.get_mut(stream) {
            h.releasing = true;
            if let Some((stop, end)) = &h.run {
                end.store(HANDED_OVER, Ordering::SeqCst);
                stop.cancel();
            }
        }
    }
}
