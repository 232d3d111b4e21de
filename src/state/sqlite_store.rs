//! The SQLite backend of [`super::StateStore`]: today's [`State`] (file, schema and
//! transactions unchanged), each call on tokio's blocking pool through [`State::blocking`].
//!
//! Revisions are a per-stream counter kept in memory, starting at 0 at every open, not a
//! column: a state directory is used by one process at a time (the state-dir lock), so only
//! writers inside this process can race, and a counter tells them apart without a migration.
//! The counter is checked and moved under one lock around the transaction, so two commits
//! from the same revision cannot both land. Inventory snapshots are fenced the same way, with
//! a counter per snapshot that every `begin_snapshot` moves (same tables as before: migration 6).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{
    ChangedEntity, ClockStatus, FileMark, PaceStatus, PageCommit, PendingSnapshot, Revision,
    RunRecord, SinkStatus, SnapshotInfo, SnapshotKey, State, StateError, StoredEntity,
    StreamStatus, Versioned, Write,
};
use crate::checkpoint::Checkpoint;
use crate::event::StreamId;
use crate::pacing::PaceKey;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    state: State,
    revisions: Arc<Mutex<HashMap<StreamId, u64>>>,
    snapshot_revisions: Arc<Mutex<HashMap<SnapshotKey, u64>>>,
}

impl SqliteStore {
    pub fn new(state: State) -> SqliteStore {
        SqliteStore {
            state,
            revisions: Arc::default(),
            snapshot_revisions: Arc::default(),
        }
    }

    /// The database underneath, for what is not (yet) behind the interface.
    pub fn state(&self) -> &State {
        &self.state
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        self.state.blocking(work).await
    }

    fn revision(&self, stream: &StreamId) -> Revision {
        let revisions = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        Revision(revisions.get(stream).copied().unwrap_or(0))
    }

    pub async fn load_checkpoint(
        &self,
        stream: &StreamId,
    ) -> Result<Versioned<Option<Checkpoint>>, StateError> {
        let revision = self.revision(stream);
        let key = stream.clone();
        let value = self.run(move |s| s.load_checkpoint(&key)).await?;
        Ok(Versioned { value, revision })
    }

    pub async fn commit_page(
        &self,
        commit: PageCommit,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<Revision, StateError> {
        let revisions = self.revisions.clone();
        self.run(move |s| {
            let mut revisions = revisions.lock().unwrap_or_else(|p| p.into_inner());
            let current = revisions.get(&commit.stream).copied().unwrap_or(0);
            if current != commit.revision.0 {
                return Err(StateError::Fenced {
                    stream: commit.stream.to_string(),
                    revision: commit.revision.0,
                });
            }
            s.commit_page(
                &commit.stream,
                commit.run_id,
                &commit.checkpoint,
                commit.events,
                commit.now_ms,
                &commit.files,
            )?;
            revisions.insert(commit.stream, current + 1);
            drop(revisions);
            then();
            Ok(Revision(current + 1))
        })
        .await
    }

    pub async fn begin_run(&self, stream: &StreamId, now_ms: i64) -> Result<i64, StateError> {
        let stream = stream.clone();
        self.run(move |s| s.begin_run(&stream, now_ms)).await
    }

    pub async fn runs(&self, stream: &StreamId) -> Result<Vec<RunRecord>, StateError> {
        let stream = stream.clone();
        self.run(move |s| s.runs(&stream)).await
    }

    pub async fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        self.run(move |s| s.close_abandoned_runs(now_ms)).await
    }

    pub async fn status(&self) -> Result<Vec<StreamStatus>, StateError> {
        self.run(|s| s.status()).await
    }

    pub async fn learned_rates(
        &self,
        integration: &str,
        ceiling_per_minute: f64,
    ) -> Result<HashMap<PaceKey, f64>, StateError> {
        let integration = integration.to_string();
        self.run(move |s| s.learned_rates(&integration, ceiling_per_minute))
            .await
    }

    pub async fn pacing_status(&self) -> Result<Vec<PaceStatus>, StateError> {
        self.run(|s| s.pacing_status()).await
    }

    pub async fn clock_offset(&self, integration: &str) -> Result<Option<ClockStatus>, StateError> {
        let integration = integration.to_string();
        self.run(move |s| s.clock_offset(&integration)).await
    }

    pub async fn clock_offsets(&self) -> Result<Vec<ClockStatus>, StateError> {
        self.run(|s| s.clock_offsets()).await
    }

    pub async fn sink_status(&self) -> Result<Vec<SinkStatus>, StateError> {
        self.run(|s| s.sink_status()).await
    }

    pub async fn file_mark(&self, sink: &str) -> Result<Option<FileMark>, StateError> {
        let sink = sink.to_string();
        self.run(move |s| s.file_mark(&sink)).await
    }

    pub async fn write(&self, write: Write) -> Result<(), StateError> {
        self.run(move |s| match write {
            Write::EndRun(end) => s.end_run(
                &end.stream,
                end.run_id,
                end.outcome,
                end.error.as_deref(),
                end.now_ms,
            ),
            Write::Rate(r) => s.save_rate(
                &r.integration,
                &r.key,
                r.rate_per_minute,
                r.ceiling_per_minute,
                r.now_ms,
            ),
            Write::RateLimited(r) => s.set_rate_limited_until(&r.integration, &r.key, r.until_ms),
            Write::Clock(c) => s.save_clock_offset(&c.integration, c.offset_ms, c.now_ms),
            Write::Sink(a) => match &a.error {
                None => s.record_sink_success(&a.sink, a.now_ms),
                Some(error) => s.record_sink_failure(&a.sink, a.now_ms, error),
            },
            Write::FileMark { mark, now_ms } => s.record_file_mark(&mark, now_ms),
        })
        .await
    }

    pub async fn begin_snapshot(&self, key: &SnapshotKey) -> Result<PendingSnapshot, StateError> {
        let (key, revisions) = (key.clone(), self.snapshot_revisions.clone());
        self.run(move |s| {
            let mut revisions = revisions.lock().unwrap_or_else(|p| p.into_inner());
            s.begin_snapshot(&key)?;
            let previous_completed_ms = s.snapshot_completed_ms(&key)?;
            let revision = revisions.get(&key).copied().unwrap_or(0) + 1;
            revisions.insert(key.clone(), revision);
            Ok(PendingSnapshot {
                key,
                previous_completed_ms,
                revision,
                generation: 0,
                complete_generation: None,
            })
        })
        .await
    }

    /// Runs `write` if `snapshot` is still the one its key's last `begin_snapshot` handed out,
    /// under the lock that `begin_snapshot` moves the counter with.
    async fn fenced<T: Send + 'static>(
        &self,
        snapshot: &PendingSnapshot,
        write: impl FnOnce(&State) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let (key, revision) = (snapshot.key.clone(), snapshot.revision);
        let revisions = self.snapshot_revisions.clone();
        self.run(move |s| {
            let revisions = revisions.lock().unwrap_or_else(|p| p.into_inner());
            if revisions.get(&key).copied() != Some(revision) {
                return Err(StateError::Fenced {
                    stream: key.describe(),
                    revision,
                });
            }
            write(s)
        })
        .await
    }

    pub async fn add_pending(
        &self,
        snapshot: &PendingSnapshot,
        entities: Vec<StoredEntity>,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        let key = snapshot.key.clone();
        self.fenced(snapshot, move |s| {
            s.add_pending(&key, &entities, &files, now_ms)?;
            then();
            Ok(())
        })
        .await
    }

    pub async fn changed_entities(
        &self,
        snapshot: &PendingSnapshot,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<ChangedEntity>, StateError> {
        let (key, after_id) = (snapshot.key.clone(), after_id.to_string());
        self.run(move |s| s.changed_entities(&key, &after_id, limit))
            .await
    }

    pub async fn commit_files(
        &self,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        self.run(move |s| {
            s.commit_files(&files, now_ms)?;
            then();
            Ok(())
        })
        .await
    }

    pub async fn complete_snapshot(
        &self,
        snapshot: PendingSnapshot,
        completed_ms: i64,
        files: Vec<FileMark>,
        now_ms: i64,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), StateError> {
        let key = snapshot.key.clone();
        self.fenced(&snapshot, move |s| {
            s.complete_snapshot(&key, completed_ms, &files, now_ms)?;
            then();
            Ok(())
        })
        .await
    }

    pub async fn snapshot_completed_ms(
        &self,
        key: &SnapshotKey,
    ) -> Result<Option<i64>, StateError> {
        let key = key.clone();
        self.run(move |s| s.snapshot_completed_ms(&key)).await
    }

    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StateError> {
        self.run(|s| s.snapshots()).await
    }

    pub async fn complete_entities(
        &self,
        key: &SnapshotKey,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StateError> {
        let (key, after_id) = (key.clone(), after_id.to_string());
        self.run(move |s| s.complete_entities(&key, &after_id, limit))
            .await
    }
}
