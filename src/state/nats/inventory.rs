//! Inventory snapshots in the NATS store.
//!
//! Layout: `<prefix>-inventory` holds one head per snapshot, keyed `integration.account.kind`
//! ([`StoredSnapshotHead`]: the generation being taken, the complete one with its time and
//! size, the next generation number); `<prefix>-entities` holds the entities, keyed
//! `integration.account.kind.<generation>.<entity id>` (every part escaped by `keys.rs`) →
//! `{hash, state}`. A snapshot writes a fresh generation; completing it is one compare-and-set
//! of the head that names it complete, after which the generations before it are purged (one
//! subject-filtered purge of the bucket's stream per generation).
//!
//! Fencing: `begin_snapshot` moves the head (a new pending generation) by compare-and-set and
//! hands out its revision; every page and the completion check the head is still at the
//! revision this writer holds and move it by compare-and-set again. A writer another instance
//! overtook gets [`StateError::Fenced`]: its generation is never named by the head, so what it
//! wrote is never read, and it purges that generation itself.
//!
//! Changes: KV keys come back unsorted and the bucket has no range reads, so comparing two
//! generations in id order needs one of them in memory. The pending generation is read once
//! (one consumer, not a request per key) into a map of entity id → SHA-256 of its hash (about
//! 100 bytes an entity: some 10 MB for 100,000 users); the complete generation then streams
//! past it, and what is left is the sorted list of changed ids, kept between the chunks the
//! collector reads. Only the changed entities' states are fetched. Reading a complete snapshot
//! for posture keeps its sorted ids alike (no states) while the chunks are read.
//!
//! Crash order as for checkpoints: the file sinks' lengths are written before the head moves,
//! so a crash in between leaves a page counted in the file that the snapshot does not hold
//! (that snapshot never completes; its events stay in the file, as with a failed snapshot).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::bucket::Conflict;
use super::keys;
use super::records::{CompleteGeneration, EntityHash, StoredInventoryEntity, StoredSnapshotHead};
use super::NatsStore;
use crate::state::{
    ChangedEntity, FileMark, PendingSnapshot, SnapshotInfo, SnapshotKey, StateError, StoredEntity,
};

/// Entity reads and writes in flight at once.
const PARALLEL: usize = 32;

/// Listings kept at once; more means callers that never finished reading theirs.
const LISTINGS_KEPT: usize = 32;

/// Sorted entity ids found by a scan, kept between the chunks read from them.
#[derive(Debug, Default)]
pub struct Listings(Mutex<HashMap<ListingOf, Arc<Listing>>>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ListingOf {
    /// The entities whose hash differs between a pending generation (at a head revision: no
    /// page was added since) and the complete one.
    Changes {
        snapshot: String,
        generation: u64,
        revision: u64,
    },
    /// Every entity of a complete generation.
    Complete { snapshot: String, generation: u64 },
}

impl ListingOf {
    fn snapshot(&self) -> &str {
        match self {
            ListingOf::Changes { snapshot, .. } | ListingOf::Complete { snapshot, .. } => snapshot,
        }
    }
}

#[derive(Debug)]
pub(super) struct Listing {
    ids: Vec<Box<str>>,
    /// How many entities the pending generation holds (for `Changes`).
    pending_entities: usize,
}

impl Listing {
    fn after(&self, after_id: &str, limit: usize) -> &[Box<str>] {
        let from = self.ids.partition_point(|id| **id <= *after_id);
        &self.ids[from..(from + limit).min(self.ids.len())]
    }
}

impl Listings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ListingOf, Arc<Listing>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, of: &ListingOf) -> Option<Arc<Listing>> {
        self.lock().get(of).cloned()
    }

    fn keep(&self, of: ListingOf, listing: Listing) -> Arc<Listing> {
        let listing = Arc::new(listing);
        let mut kept = self.lock();
        if kept.len() >= LISTINGS_KEPT {
            kept.clear();
        }
        kept.insert(of, listing.clone());
        listing
    }

    fn forget(&self, of: &ListingOf) {
        self.lock().remove(of);
    }

    fn forget_snapshot(&self, snapshot: &str) {
        self.lock().retain(|of, _| of.snapshot() != snapshot);
    }
}

fn snapshot_token(key: &SnapshotKey) -> String {
    keys::key(&[
        &key.integration,
        key.account_id.as_deref().unwrap_or(""),
        key.kind.as_str(),
    ])
}

fn generation_prefix(snapshot: &str, generation: u64) -> String {
    format!("{snapshot}.{generation}.")
}

fn fenced(snapshot: &PendingSnapshot) -> StateError {
    StateError::Fenced {
        stream: snapshot.key.describe(),
        revision: snapshot.revision,
    }
}

/// Runs `work` in a task of its own, as `commit_page` does: once handed over, a write finishes
/// (and runs its `then`) even if the caller is dropped meanwhile.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, StateError>> + Send + 'static,
) -> Result<T, StateError> {
    tokio::spawn(work)
        .await
        .map_err(|e| StateError::Blocking(e.to_string()))?
}

fn changes_of(snapshot: &PendingSnapshot) -> ListingOf {
    ListingOf::Changes {
        snapshot: snapshot_token(&snapshot.key),
        generation: snapshot.generation,
        revision: snapshot.revision,
    }
}

fn digest(hash: &str) -> [u8; 32] {
    Sha256::digest(hash.as_bytes()).into()
}

impl NatsStore {
    async fn head(&self, key: &SnapshotKey) -> Result<(StoredSnapshotHead, u64), StateError> {
        let head = self.inventory.get(&snapshot_token(key)).await?;
        Ok(head.unwrap_or_default())
    }

    /// The head, if it is still the one this writer holds; otherwise [`StateError::Fenced`].
    async fn held_head(
        &self,
        snapshot: &PendingSnapshot,
    ) -> Result<StoredSnapshotHead, StateError> {
        let (head, revision) = self.head(&snapshot.key).await?;
        if revision != snapshot.revision || head.pending != Some(snapshot.generation) {
            return Err(self.overtaken(snapshot).await);
        }
        Ok(head)
    }

    /// Another writer overtook `snapshot`: its generation, named by no head, is purged
    /// (best effort: a generation left over is purged by the next completion).
    async fn overtaken(&self, snapshot: &PendingSnapshot) -> StateError {
        if let Ok((head, _)) = self.head(&snapshot.key).await {
            let named = head.pending == Some(snapshot.generation)
                || head.complete.map(|c| c.generation) == Some(snapshot.generation);
            if !named {
                self.purge_generation(&snapshot.key, snapshot.generation)
                    .await;
            }
        }
        fenced(snapshot)
    }

    async fn purge_generation(&self, key: &SnapshotKey, generation: u64) {
        let filter = format!("{}>", generation_prefix(&snapshot_token(key), generation));
        if let Err(e) = self.entities.purge(&filter).await {
            tracing::warn!(integration = %key.integration, inventory = %key.kind, generation, error = %e,
                "an old inventory generation was not purged; the next completion tries again");
        }
    }

    pub async fn begin_snapshot(&self, key: &SnapshotKey) -> Result<PendingSnapshot, StateError> {
        let (mut head, revision) = self.head(key).await?;
        let abandoned = head.pending.take();
        let generation = head.next_generation.max(1);
        head.next_generation = generation + 1;
        head.pending = Some(generation);
        let mut snapshot = PendingSnapshot {
            key: key.clone(),
            previous_completed_ms: head.complete.as_ref().map(|c| c.completed_ms),
            revision,
            generation,
            complete_generation: head.complete.as_ref().map(|c| c.generation),
        };
        match self
            .inventory
            .write_at(&snapshot_token(key), &head, revision)
            .await?
        {
            Ok(new_revision) => snapshot.revision = new_revision,
            Err(Conflict) => return Err(fenced(&snapshot)),
        }
        if let Some(abandoned) = abandoned {
            self.purge_generation(key, abandoned).await;
        }
        // What an earlier snapshot of the key left listed is of generations no longer read.
        self.listings.forget_snapshot(&snapshot_token(key));
        Ok(snapshot)
    }

    pub async fn add_pending(
        &self,
        snapshot: &mut PendingSnapshot,
        entities: Vec<StoredEntity>,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        let (store, held) = (self.clone(), snapshot.clone());
        let revision = detached(async move {
            let head = store.held_head(&held).await?;
            store.write_file_marks(&files, now_ms).await?;
            store.put_entities(&held, entities).await?;
            let token = snapshot_token(&held.key);
            match store.inventory.update(&token, &head, held.revision).await? {
                Ok(revision) => {
                    then();
                    Ok(revision)
                }
                Err(Conflict) => Err(store.overtaken(&held).await),
            }
        })
        .await?;
        snapshot.revision = revision;
        Ok(())
    }

    /// Writes a page's entities into the snapshot's generation; an entity the page lists twice
    /// is written once, with its last state (parallel writes would otherwise race).
    async fn put_entities(
        &self,
        snapshot: &PendingSnapshot,
        entities: Vec<StoredEntity>,
    ) -> Result<(), StateError> {
        let prefix = generation_prefix(&snapshot_token(&snapshot.key), snapshot.generation);
        let mut seen = HashSet::new();
        let mut latest: Vec<StoredEntity> = entities
            .into_iter()
            .rev()
            .filter(|e| seen.insert(e.entity_id.clone()))
            .collect();
        latest.reverse();
        futures::stream::iter(latest)
            .map(|e| {
                let key = format!("{prefix}{}", keys::token(&e.entity_id));
                let value = StoredInventoryEntity {
                    hash: e.hash,
                    state: e.state,
                };
                let store = self.clone();
                async move { store.entities.put(&key, &value).await }
            })
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<u64>>()
            .await?;
        Ok(())
    }

    /// The entity ids of one generation as `each` gets them from a scan (unsorted), with the
    /// value unless `headers_only`.
    async fn scan_generation(
        &self,
        key: &SnapshotKey,
        generation: u64,
        headers_only: bool,
        mut each: impl FnMut(String, &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let prefix = generation_prefix(&snapshot_token(key), generation);
        let bucket = &self.entities;
        bucket
            .scan(&format!("{prefix}>"), headers_only, |k, _, value| {
                let id = k
                    .strip_prefix(prefix.as_str())
                    .and_then(keys::part)
                    .ok_or_else(|| bucket.error(format!("{k}: not an entity key")))?;
                each(id, value)
            })
            .await
    }

    fn hash_of(&self, id: &str, value: &[u8]) -> Result<[u8; 32], StateError> {
        let entity: EntityHash = serde_json::from_slice(value).map_err(|e| {
            self.entities
                .error(format!("entity {id}: unreadable ({e})"))
        })?;
        Ok(digest(&entity.hash))
    }

    async fn changes_listing(
        &self,
        snapshot: &PendingSnapshot,
    ) -> Result<Arc<Listing>, StateError> {
        let of = changes_of(snapshot);
        if let Some(listing) = self.listings.get(&of) {
            return Ok(listing);
        }
        let mut pending: HashMap<Box<str>, [u8; 32]> = HashMap::new();
        self.scan_generation(&snapshot.key, snapshot.generation, false, |id, value| {
            let hash = self.hash_of(&id, value)?;
            pending.insert(id.into_boxed_str(), hash);
            Ok(())
        })
        .await?;
        let pending_entities = pending.len();
        let mut changed: Vec<Box<str>> = Vec::new();
        if let Some(complete) = snapshot.complete_generation {
            self.scan_generation(&snapshot.key, complete, false, |id, value| {
                let hash = self.hash_of(&id, value)?;
                // Absent from the pending generation: deleted; another hash: changed.
                if pending.remove(id.as_str()) != Some(hash) {
                    changed.push(id.into_boxed_str());
                }
                Ok(())
            })
            .await?;
        }
        changed.extend(pending.into_keys());
        changed.sort_unstable();
        let listing = Listing {
            ids: changed,
            pending_entities,
        };
        Ok(self.listings.keep(of, listing))
    }

    async fn entity(
        &self,
        key: &SnapshotKey,
        generation: u64,
        id: &str,
    ) -> Result<Option<StoredInventoryEntity>, StateError> {
        let k = format!(
            "{}{}",
            generation_prefix(&snapshot_token(key), generation),
            keys::token(id)
        );
        Ok(self.entities.get(&k).await?.map(|(e, _)| e))
    }

    pub async fn changed_entities(
        &self,
        snapshot: &PendingSnapshot,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<ChangedEntity>, StateError> {
        let listing = self.changes_listing(snapshot).await?;
        // Each read owns what it uses: futures borrowing across `buffered` are not `Send`
        // for every lifetime, which a spawned collector task needs.
        let ids: Vec<String> = listing
            .after(after_id, limit)
            .iter()
            .map(|id| id.to_string())
            .collect();
        let reads = ids.into_iter().map(|id| {
            let (store, snapshot) = (self.clone(), snapshot.clone());
            async move {
                let before = match snapshot.complete_generation {
                    Some(complete) => store.entity(&snapshot.key, complete, &id).await?,
                    None => None,
                };
                let after = store
                    .entity(&snapshot.key, snapshot.generation, &id)
                    .await?;
                Ok::<_, StateError>(ChangedEntity {
                    entity_id: id,
                    before: before.map(|e| e.state),
                    after: after.map(|e| e.state),
                })
            }
        });
        futures::stream::iter(reads)
            .buffered(PARALLEL)
            .try_collect()
            .await
    }

    pub async fn commit_files(
        &self,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        let store = self.clone();
        detached(async move {
            store.write_file_marks(&files, now_ms).await?;
            then();
            Ok(())
        })
        .await
    }

    /// How many entities the pending generation holds: known if its changes were read,
    /// counted by one header-only scan if not (a first snapshot).
    async fn pending_entities(&self, snapshot: &PendingSnapshot) -> Result<usize, StateError> {
        let of = changes_of(snapshot);
        if let Some(listing) = self.listings.get(&of) {
            return Ok(listing.pending_entities);
        }
        let mut count = 0;
        self.scan_generation(&snapshot.key, snapshot.generation, true, |_, _| {
            count += 1;
            Ok(())
        })
        .await?;
        Ok(count)
    }

    pub async fn complete_snapshot(
        &self,
        snapshot: PendingSnapshot,
        completed_ms: i64,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        let store = self.clone();
        detached(async move {
            let mut head = store.held_head(&snapshot).await?;
            let entities = store.pending_entities(&snapshot).await? as i64;
            store.write_file_marks(&files, now_ms).await?;
            let previous = head.complete.replace(CompleteGeneration {
                generation: snapshot.generation,
                completed_ms,
                entities,
            });
            head.pending = None;
            let token = snapshot_token(&snapshot.key);
            match store
                .inventory
                .update(&token, &head, snapshot.revision)
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(Conflict)) => return Err(store.overtaken(&snapshot).await),
                // The ack may be what was lost: the head as written is this completion.
                Err(e) => match store.head(&snapshot.key).await {
                    Ok((now, _)) if now == head => {}
                    _ => return Err(e),
                },
            }
            then();
            store.listings.forget_snapshot(&token);
            // Garbage now: the generation this one replaced, and any that snapshots which did
            // not complete (or overtaken writers) left between the two.
            let first = previous.map_or(1, |p| p.generation);
            for generation in first..snapshot.generation {
                store.purge_generation(&snapshot.key, generation).await;
            }
            Ok(())
        })
        .await
    }

    pub async fn snapshot_completed_ms(
        &self,
        key: &SnapshotKey,
    ) -> Result<Option<i64>, StateError> {
        let (head, _) = self.head(key).await?;
        Ok(head.complete.map(|c| c.completed_ms))
    }

    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StateError> {
        let mut out = Vec::new();
        for key in self.inventory.keys().await? {
            let Some(parts) = keys::parts(&key) else {
                continue;
            };
            let [integration, account, kind] = parts.as_slice() else {
                continue;
            };
            let Some((head, _)) = self.inventory.get::<StoredSnapshotHead>(&key).await? else {
                continue;
            };
            if let Some(complete) = head.complete {
                out.push(SnapshotInfo {
                    integration: integration.clone(),
                    account_id: (!account.is_empty()).then(|| account.clone()),
                    kind: kind.clone(),
                    completed_ms: complete.completed_ms,
                    entities: complete.entities,
                });
            }
        }
        out.sort_by(|a, b| {
            let order = |s: &SnapshotInfo| {
                (
                    s.integration.clone(),
                    s.account_id.clone().unwrap_or_default(),
                    s.kind.clone(),
                )
            };
            order(a).cmp(&order(b))
        });
        Ok(out)
    }

    pub async fn complete_entities(
        &self,
        key: &SnapshotKey,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StateError> {
        let (head, _) = self.head(key).await?;
        let Some(complete) = head.complete else {
            return Ok(Vec::new());
        };
        let of = ListingOf::Complete {
            snapshot: snapshot_token(key),
            generation: complete.generation,
        };
        let listing = match self.listings.get(&of) {
            Some(listing) => listing,
            None => {
                let mut ids: Vec<Box<str>> = Vec::new();
                self.scan_generation(key, complete.generation, true, |id, _| {
                    ids.push(id.into_boxed_str());
                    Ok(())
                })
                .await?;
                ids.sort_unstable();
                self.listings.keep(
                    of.clone(),
                    Listing {
                        ids,
                        pending_entities: 0,
                    },
                )
            }
        };
        let chunk = listing.after(after_id, limit);
        if chunk.len() < limit {
            self.listings.forget(&of);
        }
        let ids: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
        let reads = ids.into_iter().map(|id| {
            let (store, key) = (self.clone(), key.clone());
            async move {
                let entity = store.entity(&key, complete.generation, &id).await?;
                Ok::<_, StateError>(entity.map(|e| StoredEntity {
                    entity_id: id,
                    hash: e.hash,
                    state: e.state,
                }))
            }
        });
        // An entity gone meanwhile (a newer snapshot completed and purged this one) is left
        // out rather than failing the reader.
        let read: Vec<Option<StoredEntity>> = futures::stream::iter(reads)
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
    }
}
