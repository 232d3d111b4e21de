//! With the NATS store, a stream is drained only while this instance holds its lease: taken
//! (`create`) before the run, so a stream another instance holds is left to it this run;
//! renewed every `lease_ttl / 3` while the stream drains; released at the run's end. A refused
//! renewal, or none landed for `2·lease_ttl / 3` (a third of the ttl before the server can
//! expire the lease), stops the stream between pages. Its commits are fenced on the
//! checkpoint's revision in any case, so a late page can never move the checkpoint back.
//!
//! Not yet the per-instance fair share of issue 12 (`lease::assign`): an instance takes every
//! free stream it is configured for.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::event::StreamId;
use crate::lease::Leases;
use crate::state::{HeldLease, NatsStore, StateError, StateStore};

pub(super) enum Lease {
    /// SQLite: one process per state directory, no lease.
    NotNeeded,
    Held(NatsStore, HeldLease),
    /// Another instance holds the stream.
    Elsewhere,
}

pub(super) async fn take(store: &StateStore, stream: &StreamId) -> Result<Lease, StateError> {
    let StateStore::Nats(nats) = store else {
        return Ok(Lease::NotNeeded);
    };
    Ok(
        match nats.take_lease(stream, crate::clock::now_ms()).await? {
            Some(held) => Lease::Held(nats.clone(), held),
            None => Lease::Elsewhere,
        },
    )
}

/// Renews `held` until `done` fires (then releases it and returns true), or until the lease is
/// lost: then `stop` is cancelled and it returns false.
pub(super) async fn keep(
    nats: &NatsStore,
    mut held: HeldLease,
    done: &CancellationToken,
    stop: &CancellationToken,
) -> bool {
    let timing: Leases<()> = Leases::new(nats.lease_ttl());
    let mut written = tokio::time::Instant::now();
    let stream = held.stream.clone();
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(timing.renew_every()) => {}
        }
        let left = timing.stop_after().saturating_sub(written.elapsed());
        let renewed =
            tokio::time::timeout(left.max(Duration::from_millis(1)), nats.renew_lease(&held)).await;
        match renewed {
            Ok(Ok(Some(next))) => {
                held = next;
                written = tokio::time::Instant::now();
            }
            Ok(Ok(None)) => {
                tracing::error!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log,
                    "the stream's lease was taken by another instance or expired; this stream stops");
                stop.cancel();
                return false;
            }
            Ok(Err(e)) if written.elapsed() < timing.stop_after() => {
                tracing::warn!(integration = %stream.integration, log = %stream.log, error = %e, "cannot renew the stream's lease; trying again");
            }
            _ => {
                tracing::error!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log,
                    "no lease renewal landed for 2/3 of lease_ttl; this stream stops before its lease can expire");
                stop.cancel();
                return false;
            }
        }
    }
    if let Err(e) = nats.release_lease(&held).await {
        tracing::warn!(integration = %stream.integration, log = %stream.log, error = %e, "cannot release the stream's lease; it expires after lease_ttl");
    }
    true
}
