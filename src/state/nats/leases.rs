//! Leases in `<prefix>-leases`: one key per stream (the stream's key), held by the instance
//! that wrote it, and one presence key per live instance (`instance.<id>`). The bucket's
//! `max_age` is the lease ttl (nats-server 2.9 has no per-key TTL), so a key nobody rewrites is
//! gone `lease_ttl` after its last write. A lease is taken with `create` (only one instance
//! can), renewed with `update` at the revision its holder last wrote (refused once it expired
//! or another instance took it), released with a delete at that revision. What to claim and
//! when to renew or stop is decided by `crate::lease`.

use std::collections::BTreeSet;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::bucket::Conflict;
use super::keys;
use super::NatsStore;
use crate::event::StreamId;
use crate::state::{Revision, StateError};

/// A lease key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub instance: String,
    /// When the holder took it (renewals keep it).
    pub since_ms: i64,
}

/// A lease as its holder keeps it: the revision to renew or release it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub stream: StreamId,
    pub since_ms: i64,
    pub revision: Revision,
}

/// Who holds a stream, for `status` and the assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub stream: StreamId,
    pub instance: String,
    pub since_ms: i64,
    /// The lease's revision, as read.
    pub revision: Revision,
}

/// The lease bucket as one read saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// Sorted by stream, one per stream.
    pub holders: Vec<LeaseHolder>,
    pub live: BTreeSet<String>,
}

/// A presence key's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Presence {
    seen_ms: i64,
}

const PRESENCE: &str = "instance";

fn presence_key(instance: &str) -> String {
    format!("{PRESENCE}.{}", keys::token(instance))
}

impl NatsStore {
    /// Takes the stream's lease if nobody holds it; `None` when another instance does.
    pub async fn take_lease(
        &self,
        stream: &StreamId,
        now_ms: i64,
    ) -> Result<Option<HeldLease>, StateError> {
        let record = LeaseRecord {
            instance: self.instance.clone(),
            since_ms: now_ms,
        };
        let taken = self
            .leases
            .create(&keys::stream_key(stream), &record)
            .await?;
        Ok(taken.ok().map(|revision| HeldLease {
            stream: stream.clone(),
            since_ms: now_ms,
            revision: Revision(revision),
        }))
    }

    /// Renews a lease this instance holds; `None` when it is lost (expired, or taken by another
    /// instance since): the caller stops the stream at once.
    pub async fn renew_lease(&self, held: &HeldLease) -> Result<Option<HeldLease>, StateError> {
        let record = LeaseRecord {
            instance: self.instance.clone(),
            since_ms: held.since_ms,
        };
        let key = keys::stream_key(&held.stream);
        match self.leases.update(&key, &record, held.revision.0).await? {
            Ok(revision) => Ok(Some(HeldLease {
                revision: Revision(revision),
                ..held.clone()
            })),
            Err(Conflict) => Ok(None),
        }
    }

    /// The lease bucket's name, for messages about the leases.
    pub fn lease_bucket(&self) -> &str {
        &self.leases.name
    }

    /// [`NatsStore::renew_lease`], given up after `within` (a renewal landing later could not
    /// keep the stream running): then an error naming the lease bucket.
    pub async fn renew_lease_within(
        &self,
        held: &HeldLease,
        within: std::time::Duration,
    ) -> Result<Option<HeldLease>, StateError> {
        match tokio::time::timeout(within, self.renew_lease(held)).await {
            Ok(renewed) => renewed,
            Err(_) => Err(self.leases.error(format!(
                "no answer to the renewal of the lease of {} within {}",
                held.stream,
                humantime::format_duration(std::time::Duration::from_millis(
                    within.as_millis() as u64
                ))
            ))),
        }
    }

    /// Gives a lease up (only if it is still the one this instance wrote).
    pub async fn release_lease(&self, held: &HeldLease) -> Result<(), StateError> {
        let key = keys::stream_key(&held.stream);
        match self
            .leases
            .kv
            .delete_expect_revision(&key, Some(held.revision.0))
            .await
        {
            Ok(()) => Ok(()),
            // Expired or taken meanwhile: nothing of ours to release.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(self.leases.error(e)),
        }
    }

    /// Every stream's holder, sorted by stream.
    pub async fn lease_holders(&self) -> Result<Vec<LeaseHolder>, StateError> {
        Ok(self.lease_view().await?.holders)
    }

    /// The lease bucket in one read: every stream's holder (sorted by stream) and the instances
    /// that announced themselves within `lease_ttl`.
    pub async fn lease_view(&self) -> Result<LeaseView, StateError> {
        let mut view = LeaseView::default();
        let mut entries = Vec::new();
        self.leases
            .scan(">", false, |key, revision, value| {
                entries.push((key.to_string(), revision, value.to_vec()));
                Ok(())
            })
            .await?;
        for (key, revision, value) in entries {
            if let Some((PRESENCE, token)) = key.split_once('.') {
                view.live.extend(keys::part(token));
                continue;
            }
            let Some(stream) = keys::stream_of(&key) else {
                continue;
            };
            let record: LeaseRecord =
                serde_json::from_slice(&value).map_err(|e| StateError::Corrupt {
                    stream: format!("{}/{key}", self.leases.name),
                    detail: e.to_string(),
                })?;
            view.holders.push(LeaseHolder {
                stream,
                instance: record.instance,
                since_ms: record.since_ms,
                revision: Revision(revision),
            });
        }
        view.holders.sort_by(|a, b| a.stream.cmp(&b.stream));
        // One holder per stream whatever the scan saw: the latest write of a key.
        view.holders.dedup_by(|later, earlier| {
            if later.stream != earlier.stream {
                return false;
            }
            if later.revision > earlier.revision {
                std::mem::swap(later, earlier);
            }
            true
        });
        Ok(view)
    }

    /// Says this instance is alive (until `lease_ttl` after this call); repeated with the
    /// renewals.
    pub async fn announce(&self, now_ms: i64) -> Result<(), StateError> {
        self.leases
            .put(&presence_key(&self.instance), &Presence { seen_ms: now_ms })
            .await?;
        Ok(())
    }

    /// The instances that announced themselves within `lease_ttl`.
    pub async fn live_instances(&self) -> Result<BTreeSet<String>, StateError> {
        Ok(self.lease_view().await?.live)
    }

    /// Says this instance is gone (a clean stop), so that the others count it out at once
    /// instead of after `lease_ttl`.
    pub async fn retire(&self) -> Result<(), StateError> {
        self.leases
            .kv
            .delete(presence_key(&self.instance))
            .await
            .map_err(|e| self.leases.error(e))
    }
}
