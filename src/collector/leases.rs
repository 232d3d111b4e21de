//! Stream leases held between runs (`[state] backend = "nats"`). One keeper per process: every
//! `lease_ttl / 3` (a quarter of that after a failed renewal or below its floor) it says this
//! instance is alive, renews the leases it holds, stops the streams whose lease it lost or
//! could not renew in time, reads who holds what, and claims or gives up streams towards its
//! fair share (`crate::lease::assign`). A collection drains only the streams this instance
//! holds; a stream claimed while a collection runs joins it, and one claimed between
//! collections starts one (the integration's tick), so a stream whose holder died is
//! collected again within `lease_ttl` and a round.
//!
//! Architecture Invariant: a stream is drained only while this instance holds its lease, and
//! its run is stopped (between pages) as soon as the lease is lost, given up, or has gone
//! `2·lease_ttl / 3` without a renewal landing — a third of the ttl before another instance
//! can take it. A lease is given up only once its stream's run has ended, and a stream whose
//! run lost its lease is not claimed or entered again until that run has ended (one process
//! never runs a stream twice at once). Commits are fenced on the checkpoint's revision in any
//! case (`StateError::Fenced`), so even a run that missed all of this can never move a
//! checkpoint backwards. With SQLite there is no keeper: one process per state directory,
//! every stream runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::event::StreamId;
use crate::lease::{self, Leases};
use crate::lease_metrics::CasOn;
use crate::observe::Observer;
use crate::state::{HeldLease, NatsStore};

/// How many lease writes go out at once.
const CONCURRENT_WRITES: usize = 32;

/// How a run ended from the lease's side.
const RUNNING: u8 = 0;
const LOST: u8 = 1;
const HANDED_OVER: u8 = 2;

/// The streams this process may drain: all of them (SQLite), or those whose lease it holds.
#[derive(Debug, Clone, Default)]
pub struct StreamLeases(Option<Arc<Keeper>>);

#[derive(Debug)]
pub struct Keeper {
    nats: NatsStore,
    observer: Arc<Observer>,
    held: Mutex<Held>,
    /// One round at a time (the loop's and an `offer`'s).
    rounds: tokio::sync::Mutex<()>,
    /// Wakes the loop for a round now (a run ended whose lease is to be given up).
    wake: Notify,
    stop: CancellationToken,
    started: Instant,
    /// A service gives streams up to instances below their share; a one-shot collection
    /// (`collect-now`) keeps what it claimed until it has drained it.
    gives_up: std::sync::atomic::AtomicBool,
    /// Why the latest renewal failed, for the line that stops a stream at 2/3 of the ttl.
    last_renewal_error: Mutex<String>,
    /// Until the next round, as the last one left things (`lease::next_round_in`).
    round_in: Mutex<Duration>,
    /// Since when the lease bucket has not answered a read, and whether that was reported.
    outage: Mutex<Option<(Instant, bool)>>,
}

/// How long after its start an instance waits before its first claims, so that instances
/// started together see each other's presence (and each claims its share, not everything).
fn settle_time(lease_ttl: Duration) -> Duration {
    (lease_ttl / 10).min(Duration::from_secs(1))
}

#[derive(Debug)]
struct Held {
    /// Every stream to collect, by integration (as each collection last listed them).
    universe: BTreeMap<String, BTreeSet<StreamId>>,
    timing: Leases<StreamId>,
    streams: BTreeMap<StreamId, HeldStream>,
    /// Per integration: wakes the collection in flight to start a stream just claimed.
    claimed: HashMap<String, Arc<Notify>>,
    /// Per integration: starts a collection (the schedule's channel).
    ticks: HashMap<String, mpsc::Sender<()>>,
    /// Streams whose lease was lost while a run drained them, until that run has ended: none
    /// is claimed or entered again before, so one process never runs a stream twice at once.
    ending: BTreeSet<StreamId>,
}

#[derive(Debug)]
struct HeldStream {
    lease: HeldLease,
    /// While a run drains the stream: its stop token and how it is to end.
    run: Option<(CancellationToken, Arc<AtomicU8>)>,
    /// Given up for the fair share: released once the run ended.
    releasing: bool,
}

/// A stream's run, while this instance may drain it; dropping it ends the run.
pub(super) struct StreamRun {
    /// Cancelled when the run is to stop: shutdown, or the lease lost or given up.
    pub stop: CancellationToken,
    end: Arc<AtomicU8>,
    keeper: Option<(Arc<Keeper>, StreamId)>,
}

impl StreamRun {
    /// The lease was lost (taken over, or not renewed in time) during the run.
    pub fn lost_lease(&self) -> bool {
        self.end.load(Ordering::SeqCst) == LOST
    }

    /// The stream was given up to another instance (fair share) during the run.
    pub fn handed_over(&self) -> bool {
        self.end.load(Ordering::SeqCst) == HANDED_OVER
    }
}

impl Drop for StreamRun {
    fn drop(&mut self) {
        let Some((keeper, stream)) = &self.keeper else {
            return;
        };
        let mut held = keeper.lock();
        if held.ending.remove(stream) {
            // The run of a lease lost: the stream may be claimed again from the next round.
            keeper.wake.notify_one();
            return;
        }
        if let Some(h) = held.streams.get_mut(stream) {
            h.run = None;
            if h.releasing {
                keeper.wake.notify_one();
            }
        }
    }
}

impl StreamLeases {
    /// Starts the keeper of this process's leases on the NATS store; it runs until
    /// [`StreamLeases::shutdown`] or until `drop_guard`'s token is dropped.
    pub fn start(nats: NatsStore, observer: Arc<Observer>) -> StreamLeases {
        let keeper = Arc::new(Keeper {
            held: Mutex::new(Held {
                universe: BTreeMap::new(),
                timing: Leases::new(nats.lease_ttl()),
                streams: BTreeMap::new(),
                claimed: HashMap::new(),
                ticks: HashMap::new(),
                ending: BTreeSet::new(),
            }),
            round_in: Mutex::new(nats.lease_ttl() / 3),
            outage: Mutex::new(None),
            nats,
            observer,
            rounds: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            stop: CancellationToken::new(),
            started: Instant::now(),
            gives_up: std::sync::atomic::AtomicBool::new(false),
            last_renewal_error: Mutex::new(String::new()),
        });
        tracing::info!(instance = keeper.nats.instance(), lease_ttl = %humantime::format_duration(keeper.nats.lease_ttl()), "sharing streams with the other collectors on the NATS state store");
        tokio::spawn(keeper.clone().run());
        tokio::spawn(keeper.clone().stop_at_expiry());
        StreamLeases(Some(keeper))
    }

    /// For a service: streams above this instance's share are given up to instances below
    /// theirs. (A one-shot collection never gives a stream up: it would end without it.)
    pub fn share_with_others(&self) {
        if let Some(k) = &self.0 {
            k.gives_up.store(true, Ordering::SeqCst);
        }
    }

    /// A token whose drop stops the keeper (leases then expire after `lease_ttl`).
    pub fn drop_guard(&self) -> Option<tokio_util::sync::DropGuard> {
        self.0.as_ref().map(|k| k.stop.clone().drop_guard())
    }

    /// `tick` starts a collection of `integration` (for a stream claimed between collections).
    pub fn on_claim_start(&self, integration: &str, tick: mpsc::Sender<()>) {
        if let Some(k) = &self.0 {
            k.lock().ticks.insert(integration.to_string(), tick);
        }
    }

    /// The streams `integration` has now (its MSP children may come and go); runs a round, so
    /// the free ones this instance should take are claimed before the collection starts.
    pub(super) async fn offer(&self, integration: &str, streams: BTreeSet<StreamId>) {
        let Some(k) = &self.0 else { return };
        k.lock().universe.insert(integration.to_string(), streams);
        k.round().await;
    }

    /// Wakes the collection in flight of `integration` when a stream was claimed for it.
    pub(super) fn claimed(&self, integration: &str) -> Option<Arc<Notify>> {
        let k = self.0.as_ref()?;
        Some(
            k.lock()
                .claimed
                .entry(integration.to_string())
                .or_default()
                .clone(),
        )
    }

    /// The run of `stream`, if this instance may drain it now: always on SQLite; on NATS while
    /// it holds the lease, is not giving it up, and no other run of it is in flight.
    pub(super) fn enter(&self, stream: &StreamId, cancel: &CancellationToken) -> Option<StreamRun> {
        let end = Arc::new(AtomicU8::new(RUNNING));
        let Some(k) = &self.0 else {
            return Some(StreamRun {
                stop: cancel.child_token(),
                end,
                keeper: None,
            });
        };
        let mut held = k.lock();
        if held.ending.contains(stream) {
            return None;
        }
        let h = held.streams.get_mut(stream)?;
        if h.releasing || h.run.is_some() {
            return None;
        }
        let stop = cancel.child_token();
        h.run = Some((stop.clone(), end.clone()));
        Some(StreamRun {
            stop,
            end,
            keeper: Some((k.clone(), stream.clone())),
        })
    }

    /// A one-shot collection about to end: claims every stream of `integration` nobody holds
    /// (whatever the share: the others may have ended too, or lost a claim race), so that one
    /// drain leaves no stream undrained; returns how many it took. A service leaves this to
    /// its rounds.
    pub(super) async fn claim_unheld(&self, integration: &str) -> usize {
        let Some(k) = &self.0 else { return 0 };
        if k.gives_up.load(Ordering::SeqCst) {
            return 0;
        }
        let _serial = k.rounds.lock().await;
        let view = match k.nats.lease_view().await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(instance = k.instance(), error = %e, "cannot read the stream leases");
                return 0;
            }
        };
        let unheld: Vec<StreamId> = {
            let held = k.lock();
            held.universe
                .get(integration)
                .into_iter()
                .flatten()
                .filter(|s| !held.streams.contains_key(*s) && !held.ending.contains(*s))
                // The view's holders are sorted by stream.
                .filter(|s| view.holders.binary_search_by(|h| h.stream.cmp(s)).is_err())
                .cloned()
                .collect()
        };
        k.claim(unheld, Vec::new()).await
    }

    /// A commit of a stream was fenced: another instance moved its checkpoint.
    pub(super) fn fenced(&self) {
        if let Some(k) = &self.0 {
            k.observer
                .leases()
                .conflict(k.nats.instance(), CasOn::Checkpoint);
        }
    }

    /// Stops the keeper once the runs ended: gives every lease up and says this instance is
    /// gone, so the others take its streams at once rather than after `lease_ttl`.
    pub async fn shutdown(&self) {
        let Some(k) = &self.0 else { return };
        k.stop.cancel();
        let _serial = k.rounds.lock().await;
        let leases: Vec<HeldLease> = {
            let mut held = k.lock();
            held.timing = Leases::new(k.nats.lease_ttl());
            std::mem::take(&mut held.streams)
                .into_values()
                .map(|h| h.lease)
                .collect()
        };
        let released = futures::stream::iter(leases)
            .map(|lease| async move { k.nats.release_lease(&lease).await })
            .buffer_unordered(CONCURRENT_WRITES)
            .filter(|r| futures::future::ready(r.is_err()))
            .count()
            .await;
        if released > 0 {
            tracing::warn!(
                leases = released,
                "cannot release some stream leases; they expire after lease_ttl"
            );
        }
        if let Err(e) = k.nats.retire().await {
            tracing::warn!(error = %e, "cannot withdraw this instance's presence; the others count it out after lease_ttl");
        }
        k.observer.leases().set_held(k.nats.instance(), 0);
    }
}

impl Keeper {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // A panic while holding the lock leaves plain data; the next round repairs it.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn instance(&self) -> &str {
        self.nats.instance()
    }

    async fn run(self: Arc<Self>) {
        // Announce first and let instances started at the same time see each other before
        // anyone claims (a collection's `offer` runs the first round).
        if let Err(e) = self.nats.announce(now_ms()).await {
            tracing::warn!(instance = self.instance(), error = %e, "cannot announce this instance on the NATS state store");
        }
        loop {
            let every = *self.round_in.lock().unwrap_or_else(|p| p.into_inner());
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                _ = self.wake.notified() => {}
            }
            self.round().await;
        }
    }

    /// Stops each stream when its lease reaches `2·lease_ttl / 3` without a renewal, on its own
    /// clock: a round held up by a store that does not answer must not delay it.
    async fn stop_at_expiry(self: Arc<Self>) {
        let idle = self.nats.lease_ttl() / 3;
        loop {
            let next = self.lock().timing.next_expiry();
            let wake = next.unwrap_or_else(|| Instant::now() + idle);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
                // A lease taken or renewed moves the next expiry.
                _ = tokio::time::sleep(idle) => {}
            }
            self.stop_expiring();
        }
    }

    /// One round: presence, renewals, stops, releases, then claims towards the fair share.
    async fn round(&self) {
        let _serial = self.rounds.lock().await;
        if self.stop.is_cancelled() {
            return;
        }
        if let Err(e) = self.nats.announce(now_ms()).await {
            tracing::warn!(instance = self.instance(), error = %e, "cannot announce this instance on the NATS state store");
        }
        let renewal_failed = self.renew().await;
        self.stop_expiring();
        self.release_given_up().await;
        tokio::time::sleep_until(self.started + settle_time(self.nats.lease_ttl())).await;
        let below_floor = match self.nats.lease_view().await {
            Ok(view) => {
                self.store_answered();
                self.rebalance(view).await
            }
            Err(e) => {
                self.store_failed(&e);
                true
            }
        };
        *self.round_in.lock().unwrap_or_else(|p| p.into_inner()) =
            lease::next_round_in(self.nats.lease_ttl(), renewal_failed || below_floor);
        let held = self.lock().streams.len();
        self.observer.leases().set_held(self.instance(), held);
    }

    /// Renews the leases due; whether a renewal failed (to be tried again soon).
    async fn renew(&self) -> bool {
        let (due, stop_after): (Vec<(HeldLease, Instant)>, Duration) = {
            let held = self.lock();
            let now = Instant::now();
            let due = held
                .timing
                .due(now)
                .into_iter()
                .filter_map(|(stream, written_at)| {
                    Some((held.streams.get(&stream)?.lease.clone(), written_at))
                })
                .collect();
            (due, held.timing.stop_after())
        };
        let results: Vec<_> = futures::stream::iter(due)
            .map(|(lease, written)| async move {
                let sent = Instant::now();
                let left = stop_after.saturating_sub(sent.duration_since(written));
                let renewed = self
                    .nats
                    .renew_lease_within(&lease, left.max(Duration::from_millis(1)))
                    .await;
                (lease, sent, renewed)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let (mut renewed, mut failed) = (0, false);
        for (lease, sent, result) in results {
            let stream = &lease.stream;
            match result {
                Ok(Some(next)) => {
                    let mut held = self.lock();
                    if let Some(h) = held.streams.get_mut(stream) {
                        h.lease = next.clone();
                        held.timing.written(stream.clone(), sent);
                        renewed += 1;
                    }
                }
                Ok(None) => {
                    tracing::error!(instance = self.instance(), integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log,
                        "the stream's lease was taken by another instance or expired; this stream stops between pages");
                    self.observer
                        .leases()
                        .conflict(self.instance(), CasOn::Lease);
                    self.lose(stream);
                }
                Err(e) => {
                    failed = true;
                    self.renewal_failed(e.to_string());
                    tracing::warn!(instance = self.instance(), integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, error = %e,
                        "cannot renew the stream's lease; trying again");
                }
            }
        }
        if renewed > 0 && !failed {
            // An old failure must not explain a later stop.
            self.renewal_failed(String::new());
        }
        self.observer.leases().renewed(self.instance(), renewed);
        failed
    }

    /// A lease read failed. Once the store has not answered for `2·lease_ttl / 3` (when the
    /// streams held stop, see `stop_expiring`), an error says that this instance collects
    /// nothing until it does: with no stream held, nothing else would say so above a warning.
    fn store_failed(&self, e: &crate::state::StateError) {
        let stop_after = self.lock().timing.stop_after();
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let (since, reported) = outage.get_or_insert((Instant::now(), false));
        if !*reported && since.elapsed() >= stop_after {
            *reported = true;
            tracing::error!(instance = self.instance(), error = %e, failing_for = %crate::human::duration_secs(since.elapsed().as_secs() as i64),
                "the state store does not answer (is the NATS cluster reachable, with quorum?); this instance collects nothing until it does, then claims its streams again");
        } else {
            tracing::warn!(instance = self.instance(), error = %e, "cannot read the stream leases; no stream claimed or given up this round");
        }
    }

    fn store_answered(&self) {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((since, true)) = outage {
            tracing::info!(instance = self.instance(), failed_for = %crate::human::duration_secs(since.elapsed().as_secs() as i64),
                "the state store answers again; claiming streams");
        }
    }

    fn renewal_failed(&self, why: String) {
        *self
            .last_renewal_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Stops the streams no renewal landed for in `2·lease_ttl / 3`.
    fn stop_expiring(&self) {
        let expiring = self.lock().timing.expiring(Instant::now());
        let why = self
            .last_renewal_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let why = if why.is_empty() {
            format!("state store {}: no renewal was sent in time (the previous round is still waiting on the state store)", self.nats.lease_bucket())
        } else {
            why
        };
        for stream in &expiring {
            tracing::error!(instance = self.instance(), integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, error = %why,
                "no lease renewal landed for 2/3 of lease_ttl (is the NATS cluster reachable, with quorum?); this stream stops before its lease can expire, and is claimed again once the state store answers");
            self.lose(stream);
        }
    }

    /// Forgets a lease this instance no longer holds and stops its run.
    fn lose(&self, stream: &StreamId) {
        let mut held = self.lock();
        held.timing.lost(stream);
        let idle = match held.streams.remove(stream).and_then(|h| h.run) {
            Some((stop, end)) => {
                end.store(LOST, Ordering::SeqCst);
                stop.cancel();
                held.ending.insert(stream.clone());
                false
            }
            None => true,
        };
        drop(held);
        // A run that stops reports itself; an idle stream leaves the gauges here.
        if idle {
            self.observer.forget_stream(stream);
        }
        self.observer.leases().lost(self.instance());
    }
}

mod share;
