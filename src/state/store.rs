//! The state-store interface: everything the collector persists, behind one type with a
//! backend per deployment. SQLite ([`SqliteStore`], the embedded default, one host) and NATS
//! JetStream key-value buckets (several collectors sharing their state) keep the same contract,
//! checked by one suite (`tests/it/state_contract.rs`) against both.
//!
//! Fencing: a checkpoint moves only by [`StateStore::commit_page`] with the [`Revision`] the
//! caller last read ([`StateStore::load_checkpoint`]) or wrote (the revision `commit_page`
//! returned). Another revision in the store means another writer moved the stream since:
//! the commit fails with [`StateError::Fenced`] and writes nothing, and the caller stops the
//! stream instead of trying again (a blind retry would move a checkpoint the new holder
//! already moved, possibly backwards).
//!
//! Inventory snapshots are fenced alike: [`StateStore::begin_snapshot`] hands out a
//! [`PendingSnapshot`] that every later write of that snapshot hands back; once another writer
//! began or completed the same snapshot, the write fails with [`StateError::Fenced`] and the
//! complete snapshot stays as that writer left it.
//!
//! Moving inventory between backends: [`StateStore::copy_snapshots_from`] (built on
//! `snapshots`, `complete_entities` by chunks, and `begin_snapshot` / `add_pending` /
//! `complete_snapshot` at the listed `completed_ms`).

use std::collections::HashMap;

use super::{
    ChangedEntity, ClockStatus, FileMark, NatsStore, PaceStatus, PendingSnapshot, RunRecord,
    SinkStatus, SnapshotInfo, SnapshotKey, SqliteStore, StateError, StoredEntity, StreamStatus,
    Write,
};
use crate::checkpoint::Checkpoint;
use crate::event::StreamId;
use crate::pacing::PaceKey;

/// Which write of a stream's checkpoint the caller last saw; opaque to the caller, who only
/// hands back what it was given. `Revision::NONE` is a stream never written in this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Revision(pub u64);

impl Revision {
    pub const NONE: Revision = Revision(0);
}

/// A value as read, with the revision to write it back with.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

/// One acknowledged page to commit: the checkpoint it moves the stream to, the run it counts
/// for, and the file sinks' lengths after it.
#[derive(Debug, Clone)]
pub struct PageCommit {
    pub stream: StreamId,
    pub run_id: i64,
    pub checkpoint: Checkpoint,
    pub events: usize,
    pub now_ms: i64,
    pub files: Vec<FileMark>,
    /// The revision the committer last read or wrote.
    pub revision: Revision,
}

/// Which backend `[state]` chose.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum StoreSettings {
    /// `state.db` in `state_dir`.
    #[default]
    Sqlite,
    Nats(Box<super::NatsStoreSettings>),
}

/// The state store. Cheap to clone; clones share the backend.
#[derive(Debug, Clone)]
pub enum StateStore {
    Sqlite(SqliteStore),
    Nats(NatsStore),
}

macro_rules! each_backend {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            StateStore::Sqlite($store) => $call.await,
            StateStore::Nats($store) => $call.await,
        }
    };
}

impl StateStore {
    /// Opens the chosen backend; `state_db` is the SQLite file's path.
    pub async fn open(
        settings: &StoreSettings,
        state_db: &std::path::Path,
    ) -> Result<StateStore, StateError> {
        match settings {
            StoreSettings::Sqlite => Ok(StateStore::sqlite(super::State::open(state_db)?)),
            StoreSettings::Nats(nats) => Ok(StateStore::Nats(NatsStore::open(nats).await?)),
        }
    }

    /// The SQLite store over an open database.
    pub fn sqlite(state: super::State) -> StateStore {
        StateStore::Sqlite(SqliteStore::new(state))
    }

    /// The stream's checkpoint (`None` before its first commit) and the revision to commit
    /// its next page with.
    pub async fn load_checkpoint(
        &self,
        stream: &StreamId,
    ) -> Result<Versioned<Option<Checkpoint>>, StateError> {
        each_backend!(self, s => s.load_checkpoint(stream))
    }

    /// Commits a page (see [`PageCommit`]) if the stream's checkpoint is still at
    /// `commit.revision`; returns the new revision. `then` runs once the commit is durable,
    /// even if the caller stopped waiting (the file sinks mark their pages committed there).
    pub async fn commit_page(
        &self,
        commit: PageCommit,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<Revision, StateError> {
        each_backend!(self, s => s.commit_page(commit, then))
    }

    /// Starts a run record and returns its id (unique per stream).
    pub async fn begin_run(&self, stream: &StreamId, now_ms: i64) -> Result<i64, StateError> {
        each_backend!(self, s => s.begin_run(stream, now_ms))
    }

    /// The stream's kept runs, newest first.
    pub async fn runs(&self, stream: &StreamId) -> Result<Vec<RunRecord>, StateError> {
        each_backend!(self, s => s.runs(stream))
    }

    /// Marks runs left running by a process that died as interrupted; returns how many.
    pub async fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        each_backend!(self, s => s.close_abandoned_runs(now_ms))
    }

    /// Every stream that has a checkpoint or a run, sorted by (integration, account, log).
    pub async fn status(&self) -> Result<Vec<StreamStatus>, StateError> {
        each_backend!(self, s => s.status())
    }

    /// The rates earlier runs learned for `integration` that still apply under
    /// `ceiling_per_minute` (a rate Duo pushed down is kept; one at an old ceiling is not).
    pub async fn learned_rates(
        &self,
        integration: &str,
        ceiling_per_minute: f64,
    ) -> Result<HashMap<PaceKey, f64>, StateError> {
        each_backend!(self, s => s.learned_rates(integration, ceiling_per_minute))
    }

    pub async fn pacing_status(&self) -> Result<Vec<PaceStatus>, StateError> {
        each_backend!(self, s => s.pacing_status())
    }

    pub async fn clock_offset(&self, integration: &str) -> Result<Option<ClockStatus>, StateError> {
        each_backend!(self, s => s.clock_offset(integration))
    }

    pub async fn clock_offsets(&self) -> Result<Vec<ClockStatus>, StateError> {
        each_backend!(self, s => s.clock_offsets())
    }

    pub async fn sink_status(&self) -> Result<Vec<SinkStatus>, StateError> {
        each_backend!(self, s => s.sink_status())
    }

    /// The committed length of the file sink `sink`'s file, if one was ever recorded.
    pub async fn file_mark(&self, sink: &str) -> Result<Option<FileMark>, StateError> {
        each_backend!(self, s => s.file_mark(sink))
    }

    /// Applies a write other than a page's commit (see [`Write`]).
    pub async fn write(&self, write: Write) -> Result<(), StateError> {
        each_backend!(self, s => s.write(write))
    }

    /// Starts a snapshot of `key`: what a snapshot that did not complete left pending is
    /// dropped; the complete one stays until [`StateStore::complete_snapshot`].
    pub async fn begin_snapshot(&self, key: &SnapshotKey) -> Result<PendingSnapshot, StateError> {
        each_backend!(self, s => s.begin_snapshot(key))
    }

    /// Adds a delivered page's entities to the pending snapshot, with the file sinks' lengths
    /// after the page; an entity listed twice keeps its latest state. `then` runs once both
    /// are durable (see [`StateStore::commit_page`]).
    pub async fn add_pending(
        &self,
        snapshot: &mut PendingSnapshot,
        entities: Vec<StoredEntity>,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        match self {
            StateStore::Sqlite(s) => s.add_pending(snapshot, entities, files, now_ms, then).await,
            StateStore::Nats(s) => s.add_pending(snapshot, entities, files, now_ms, then).await,
        }
    }

    /// Up to `limit` entities after `after_id` (in id order) whose hash differs between the
    /// complete and the pending snapshot, including those only one of them holds.
    pub async fn changed_entities(
        &self,
        snapshot: &PendingSnapshot,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<ChangedEntity>, StateError> {
        each_backend!(self, s => s.changed_entities(snapshot, after_id, limit))
    }

    /// Records the file sinks' lengths after a delivery that moves nothing else (a chunk of
    /// change events before the snapshot completes); `then` runs once they are durable.
    pub async fn commit_files(
        &self,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        each_backend!(self, s => s.commit_files(files, now_ms, then))
    }

    /// The pending snapshot becomes the complete one (the previous one is dropped), with the
    /// file sinks' lengths; SQLite does it in one transaction, NATS by one compare-and-set of
    /// the snapshot's head after the marks.
    pub async fn complete_snapshot(
        &self,
        snapshot: PendingSnapshot,
        completed_ms: i64,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        each_backend!(self, s => s.complete_snapshot(snapshot, completed_ms, files, now_ms, then))
    }

    /// When the last complete snapshot of `key` completed; `None` before the first.
    pub async fn snapshot_completed_ms(
        &self,
        key: &SnapshotKey,
    ) -> Result<Option<i64>, StateError> {
        each_backend!(self, s => s.snapshot_completed_ms(key))
    }

    /// Every complete snapshot, sorted by integration, account (own first) and kind.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StateError> {
        each_backend!(self, s => s.snapshots())
    }

    /// Up to `limit` entities of the complete snapshot of `key` after `after_id`, in id order.
    pub async fn complete_entities(
        &self,
        key: &SnapshotKey,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StateError> {
        each_backend!(self, s => s.complete_entities(key, after_id, limit))
    }

    /// Copies every complete inventory snapshot of `source` into this store, a chunk at a
    /// time, each completed at its `completed_ms` (so the next snapshot reports the changes
    /// since it); returns how many snapshots were copied. A snapshot this store already has
    /// is replaced.
    pub async fn copy_snapshots_from(
        &self,
        source: &StateStore,
        now_ms: i64,
    ) -> Result<usize, StateError> {
        const CHUNK: usize = 500;
        let listed = source.snapshots().await?;
        for info in &listed {
            let kind = info.kind.parse().map_err(|_| StateError::Corrupt {
                stream: format!("{}/{}", info.integration, info.kind),
                detail: "an inventory kind this build does not know".into(),
            })?;
            let key = SnapshotKey {
                integration: info.integration.clone(),
                account_id: info.account_id.clone(),
                kind,
            };
            let mut pending = self.begin_snapshot(&key).await?;
            let mut after = String::new();
            loop {
                let chunk = source.complete_entities(&key, &after, CHUNK).await?;
                let Some(last) = chunk.last() else { break };
                after = last.entity_id.clone();
                self.add_pending(&mut pending, chunk, Vec::new(), now_ms, || {})
                    .await?;
            }
            self.complete_snapshot(pending, info.completed_ms, Vec::new(), now_ms, || {})
                .await?;
        }
        Ok(listed.len())
    }
}
