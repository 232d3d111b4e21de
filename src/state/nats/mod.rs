//! The NATS JetStream key-value backend of [`super::StateStore`], for several collectors that
//! share their state. One bucket per concern under a prefix (`<prefix>-checkpoints`, `-runs`,
//! `-rates`, `-clock`, `-sinks`, `-files`, `-leases`, and for inventory snapshots `-inventory`
//! and `-entities`, laid out in `inventory.rs`), each keeping one revision per key (history 1),
//! with 1 or 3 replicas; keys are escaped parts (`keys.rs`), values JSON (`records.rs`).
//!
//! A checkpoint is written only by `create` (a stream's first commit) or `update` at the
//! revision the committer holds: a failed compare-and-set is [`StateError::Fenced`], and
//! nothing of that page is written after it. The file sinks' lengths are written *before* the
//! checkpoint (buckets have no transactions across keys): a crash between the two leaves a
//! length that covers a page whose checkpoint did not move, and that page is written again (the
//! file holds it twice) rather than cut while counted as committed (lost). The run's counters
//! follow the checkpoint and are only for `status`: once the checkpoint moved, the commit
//! stands even if they could not be written. A write the server stored but whose ack was lost
//! is recognised by reading the checkpoint back (it is ours only if it is exactly what was
//! written).

mod bucket;
mod dump;
mod inventory;
pub mod keys;
mod leases;
mod records;
mod status;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

pub use self::leases::{HeldLease, LeaseHolder, LeaseRecord, LeaseView};

use self::bucket::{Bucket, Conflict};
use self::records::{RunHistory, StoredCheckpoint, StoredFileMark};
use super::checkpoints::CHECKPOINT_FORMAT;
use super::{FileMark, PageCommit, Revision, StateError, Versioned};
use crate::checkpoint::Checkpoint;
use crate::event::StreamId;
use crate::nats_connection::NatsConnection;
use crate::pacing::PaceKey;

/// `[state] backend = "nats"`.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsStoreSettings {
    pub connection: NatsConnection,
    /// Bucket names start with it: `<prefix>-checkpoints`, ...
    pub bucket_prefix: String,
    /// 1, or 3 on a cluster of three or more servers.
    pub replicas: usize,
    /// How long a stream's lease lives unrenewed (the lease bucket's `max_age`).
    pub lease_ttl: Duration,
}

pub const DEFAULT_BUCKET_PREFIX: &str = "duo-collector";
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The buckets, by concern.
const CONCERNS: [&str; 9] = [
    "checkpoints",
    "runs",
    "rates",
    "clock",
    "sinks",
    "files",
    "leases",
    "inventory",
    "entities",
];

/// Cheap to clone: clones share the connection and the buckets.
#[derive(Debug, Clone)]
pub struct NatsStore(Arc<Buckets>);

#[derive(Debug)]
pub struct Buckets {
    checkpoints: Bucket,
    runs: Bucket,
    rates: Bucket,
    clock: Bucket,
    sinks: Bucket,
    files: Bucket,
    leases: Bucket,
    inventory: Bucket,
    entities: Bucket,
    /// What an inventory scan found, kept between the chunks read from it (`inventory.rs`).
    listings: inventory::Listings,
    /// This process, as run records and leases name it.
    instance: String,
    /// This host, as file marks are keyed.
    host: String,
    /// How long a lease lives unrenewed (the lease bucket's `max_age`).
    lease_ttl: Duration,
}

impl std::ops::Deref for NatsStore {
    type Target = Buckets;

    fn deref(&self) -> &Buckets {
        &self.0
    }
}

/// This process's id in the cluster: the host name and a random suffix, so two processes on
/// one host (or one restarted) never pass for each other.
pub fn instance_id() -> String {
    let suffix: u32 = rand::random();
    format!("{}-{suffix:08x}", host_name())
}

/// This host's name: file sinks' marks are kept per host (the file is on the host that writes
/// it; another host's collector has its own file by the same sink name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

/// A file sink's mark key: per host and sink.
pub(super) fn file_mark_key(host: &str, sink: &str) -> String {
    keys::key(&[host, sink])
}

impl NatsStore {
    /// Logs in and opens the buckets, creating those that do not exist yet.
    pub async fn open(settings: &NatsStoreSettings) -> Result<NatsStore, StateError> {
        let client = settings
            .connection
            .connect("duo-collector state")
            .await
            .map_err(|failure| StateError::Kv {
                bucket: settings.bucket_prefix.clone(),
                detail: match failure.fix {
                    Some(fix) => format!("{}: {fix}", failure.detail),
                    None => failure.detail,
                },
            })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.connection.timeout)
            .build(client);
        let mut opened = Vec::with_capacity(CONCERNS.len());
        for concern in CONCERNS {
            opened.push(open_bucket(&js, settings, concern).await?);
        }
        let [checkpoints, runs, rates, clock, sinks, files, leases, inventory, entities]: [Bucket;
            9] = opened.try_into().map_err(|_| StateError::Kv {
            bucket: settings.bucket_prefix.clone(),
            detail: "not every bucket opened".into(),
        })?;
        Ok(NatsStore(Arc::new(Buckets {
            checkpoints,
            runs,
            rates,
            clock,
            sinks,
            files,
            leases,
            inventory,
            entities,
            listings: inventory::Listings::default(),
            instance: instance_id(),
            host: host_name(),
            lease_ttl: settings.lease_ttl,
        })))
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    pub async fn load_checkpoint(
        &self,
        stream: &StreamId,
    ) -> Result<Versioned<Option<Checkpoint>>, StateError> {
        let Some((stored, revision)) = self.stored_checkpoint(stream).await? else {
            return Ok(Versioned {
                value: None,
                revision: Revision::NONE,
            });
        };
        Ok(Versioned {
            value: Some(stored.checkpoint),
            revision: Revision(revision),
        })
    }

    async fn stored_checkpoint(
        &self,
        stream: &StreamId,
    ) -> Result<Option<(StoredCheckpoint, u64)>, StateError> {
        let key = keys::stream_key(stream);
        let Some((stored, revision)) = self.checkpoints.get::<StoredCheckpoint>(&key).await? else {
            return Ok(None);
        };
        let corrupt = |detail: String| StateError::Corrupt {
            stream: stream.to_string(),
            detail,
        };
        if stored.format != CHECKPOINT_FORMAT {
            return Err(corrupt(format!(
                "checkpoint format {} (this build reads {CHECKPOINT_FORMAT})",
                stored.format
            )));
        }
        if !stored.checkpoint.fits(stream.log) {
            return Err(corrupt(format!(
                "a checkpoint of another paging family than {}",
                stream.log
            )));
        }
        Ok(Some((stored, revision)))
    }

    pub async fn commit_page(
        &self,
        commit: PageCommit,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<Revision, StateError> {
        let store = self.clone();
        // Spawned: a commit that was handed over finishes (and runs `then`) even if its
        // caller is dropped meanwhile, as the SQLite commit does on the blocking pool.
        tokio::spawn(async move {
            let revision = store.commit(&commit).await?;
            then();
            Ok(revision)
        })
        .await
        .map_err(|e| StateError::Blocking(e.to_string()))?
    }

    async fn commit(&self, commit: &PageCommit) -> Result<Revision, StateError> {
        let stream = &commit.stream;
        let fenced = || StateError::Fenced {
            stream: stream.to_string(),
            revision: commit.revision.0,
        };
        let key = keys::stream_key(stream);
        let previous = self.stored_checkpoint(stream).await?;
        let held = previous.as_ref().map_or(0, |(_, r)| *r);
        if held != commit.revision.0 {
            return Err(fenced());
        }
        self.write_file_marks(&commit.files, commit.now_ms).await?;
        let stored = StoredCheckpoint {
            format: CHECKPOINT_FORMAT,
            checkpoint: commit.checkpoint.clone(),
            events_total: previous.map_or(0, |(p, _)| p.events_total) + commit.events as i64,
            updated_ms: commit.now_ms,
        };
        let revision = match self
            .checkpoints
            .write_at(&key, &stored, commit.revision.0)
            .await
        {
            Ok(Ok(revision)) => revision,
            Ok(Err(Conflict)) => return Err(fenced()),
            // No answer does not mean not written: the server may have stored it and the ack
            // been lost. Read once: what is there now is ours only if it is exactly what this
            // commit wrote; anything else leaves the commit failed.
            Err(e) => match self.stored_checkpoint(stream).await {
                Ok(Some((now, revision))) if now == stored => revision,
                _ => return Err(e),
            },
        };
        // The checkpoint moved: the commit is done, whatever happens to the run's counters
        // (they are for `status`; failing the commit now would leave a delivered page counted
        // as not committed).
        let events = commit.events as i64;
        let counted = self
            .runs
            .modify::<RunHistory, ()>(&key, |history| {
                let mut history = history?;
                let run = history.run_mut(commit.run_id)?;
                run.pages += 1;
                run.events += events;
                Some((history, ()))
            })
            .await;
        if let Err(e) = counted {
            tracing::warn!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %stream.log, error = %e, "the page is committed; its run's counters were not updated");
        }
        Ok(Revision(revision))
    }

    async fn write_file_marks(&self, marks: &[FileMark], now_ms: i64) -> Result<(), StateError> {
        for mark in marks {
            let key = file_mark_key(&self.host, &mark.sink);
            self.files
                .put(&key, &StoredFileMark::of(mark, now_ms))
                .await?;
        }
        Ok(())
    }

    pub async fn begin_run(&self, stream: &StreamId, now_ms: i64) -> Result<i64, StateError> {
        let key = keys::stream_key(stream);
        let instance = self.instance.clone();
        let id = self
            .runs
            .modify::<RunHistory, i64>(&key, |history| {
                let mut history = history.unwrap_or_default();
                let id = history.begin(&instance, now_ms);
                Some((history, id))
            })
            .await?;
        id.ok_or_else(|| self.runs.error("the run was not recorded"))
    }

    pub async fn runs(&self, stream: &StreamId) -> Result<Vec<super::RunRecord>, StateError> {
        let history = self
            .runs
            .get::<RunHistory>(&keys::stream_key(stream))
            .await?;
        Ok(history.map_or_else(Vec::new, |(h, _)| {
            h.runs.iter().rev().map(|r| r.record()).collect()
        }))
    }

    pub async fn learned_rates(
        &self,
        integration: &str,
        ceiling_per_minute: f64,
    ) -> Result<std::collections::HashMap<PaceKey, f64>, StateError> {
        let mut out = std::collections::HashMap::new();
        for (owner, key, rate) in self.rates_stored().await? {
            if owner == integration
                && super::pacing::rate_still_applies(
                    rate.rate_per_minute,
                    rate.ceiling_per_minute,
                    ceiling_per_minute,
                )
            {
                out.insert(key, rate.rate_per_minute);
            }
        }
        Ok(out)
    }

    pub async fn file_mark(&self, sink: &str) -> Result<Option<FileMark>, StateError> {
        let key = file_mark_key(&self.host, sink);
        let stored = self.files.get::<StoredFileMark>(&key).await?;
        Ok(stored.map(|(mark, _)| mark.mark(sink)))
    }
}

pub(super) fn rate_key(integration: &str, key: &PaceKey) -> String {
    keys::key(&[integration, &key.account, &key.endpoint])
}

/// The bucket `<prefix>-<concern>`, created if missing; an existing one must have the
/// configured replicas (and, for leases, `max_age = lease_ttl`). The lease bucket's `max_age`
/// is the lease's time to live: nats-server 2.9 has no per-key TTL, so a lease nobody renews
/// is removed by the bucket's age limit.
async fn open_bucket(
    js: &jetstream::Context,
    settings: &NatsStoreSettings,
    concern: &str,
) -> Result<Bucket, StateError> {
    let name = format!("{}-{concern}", settings.bucket_prefix);
    let error = |detail: String| StateError::Kv {
        bucket: name.clone(),
        detail,
    };
    let max_age = if concern == "leases" {
        settings.lease_ttl
    } else {
        Duration::ZERO
    };
    match js.get_stream(format!("KV_{name}")).await {
        Ok(stream) => {
            let found = &stream.cached_info().config;
            if found.num_replicas != settings.replicas {
                return Err(error(format!(
                    "the bucket has {} replica(s), [state] has replicas = {}: set replicas = {}, or change the bucket (nats stream edit KV_{name} --replicas {})",
                    found.num_replicas, settings.replicas, found.num_replicas, settings.replicas
                )));
            }
            if found.max_age != max_age {
                return Err(error(format!(
                    "the bucket expires leases after {}, [state] has lease_ttl = {}: every collector that shares these buckets needs the same lease_ttl; set it to {}, or use another bucket_prefix",
                    humantime::format_duration(found.max_age),
                    humantime::format_duration(settings.lease_ttl),
                    humantime::format_duration(found.max_age)
                )));
            }
        }
        Err(e) if stream_missing(&e) => {
            // The bucket's stream as `create_key_value` would make it: that call first reads
            // the account's info, which async-nats 0.51 cannot parse from nats-server 2.9.
            let config = jetstream::stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age,
                num_replicas: settings.replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            };
            // Another collector may create it at the same time: the same config is no conflict.
            js.get_or_create_stream(config).await.map_err(|e| {
                error(format!(
                    "cannot create the bucket ({e}): check that this user may create streams, and that {} servers are there for replicas = {}",
                    settings.replicas, settings.replicas
                ))
            })?;
        }
        Err(e) => {
            return Err(error(format!(
                "no answer from JetStream ({e}): check that the server runs with JetStream (-js) and that this user may use it"
            )))
        }
    }
    let kv = js
        .get_key_value(name.as_str())
        .await
        .map_err(|e| error(format!("cannot open the bucket: {e}")))?;
    Ok(Bucket {
        name,
        kv,
        timeout: settings.connection.timeout,
    })
}

fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}
