//! The SQLite backend of [`super::StateStore`]: today's [`State`] (file, schema and
//! transactions unchanged), each call on tokio's blocking pool through [`State::blocking`].
//!
//! Revisions are a per-stream counter kept in memory, starting at 0 at every open, not a
//! column: a state directory is used by one process at a time (the state-dir lock), so only
//! writers inside this process can race, and a counter tells them apart without a migration.
//! The counter is checked and moved under one lock around the transaction, so two commits
//! from the same revision cannot both land.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{
    ClockStatus, FileMark, PaceStatus, PageCommit, Revision, RunOutcome, RunRecord, SinkStatus,
    State, StateError, StreamStatus, Versioned,
};
use crate::checkpoint::Checkpoint;
use crate::event::StreamId;
use crate::pacing::PaceKey;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    state: State,
    revisions: Arc<Mutex<HashMap<StreamId, u64>>>,
}

impl SqliteStore {
    pub fn new(state: State) -> SqliteStore {
        SqliteStore {
            state,
            revisions: Arc::default(),
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

    pub async fn end_run(
        &self,
        stream: &StreamId,
        run_id: i64,
        outcome: RunOutcome,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let (stream, error) = (stream.clone(), error.map(str::to_string));
        self.run(move |s| s.end_run(&stream, run_id, outcome, error.as_deref(), now_ms))
            .await
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

    pub async fn save_rate(
        &self,
        integration: &str,
        key: &PaceKey,
        rate_per_minute: f64,
        ceiling_per_minute: f64,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let (integration, key) = (integration.to_string(), key.clone());
        self.run(move |s| {
            s.save_rate(
                &integration,
                &key,
                rate_per_minute,
                ceiling_per_minute,
                now_ms,
            )
        })
        .await
    }

    pub async fn set_rate_limited_until(
        &self,
        integration: &str,
        key: &PaceKey,
        until_ms: Option<i64>,
    ) -> Result<(), StateError> {
        let (integration, key) = (integration.to_string(), key.clone());
        self.run(move |s| s.set_rate_limited_until(&integration, &key, until_ms))
            .await
    }

    pub async fn pacing_status(&self) -> Result<Vec<PaceStatus>, StateError> {
        self.run(|s| s.pacing_status()).await
    }

    pub async fn save_clock_offset(
        &self,
        integration: &str,
        offset_ms: i64,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let integration = integration.to_string();
        self.run(move |s| s.save_clock_offset(&integration, offset_ms, now_ms))
            .await
    }

    pub async fn clock_offset(&self, integration: &str) -> Result<Option<ClockStatus>, StateError> {
        let integration = integration.to_string();
        self.run(move |s| s.clock_offset(&integration)).await
    }

    pub async fn clock_offsets(&self) -> Result<Vec<ClockStatus>, StateError> {
        self.run(|s| s.clock_offsets()).await
    }

    pub async fn record_sink_success(&self, sink: &str, now_ms: i64) -> Result<(), StateError> {
        let sink = sink.to_string();
        self.run(move |s| s.record_sink_success(&sink, now_ms))
            .await
    }

    pub async fn record_sink_failure(
        &self,
        sink: &str,
        now_ms: i64,
        error: &str,
    ) -> Result<(), StateError> {
        let (sink, error) = (sink.to_string(), error.to_string());
        self.run(move |s| s.record_sink_failure(&sink, now_ms, &error))
            .await
    }

    pub async fn sink_status(&self) -> Result<Vec<SinkStatus>, StateError> {
        self.run(|s| s.sink_status()).await
    }

    pub async fn file_mark(&self, sink: &str) -> Result<Option<FileMark>, StateError> {
        let sink = sink.to_string();
        self.run(move |s| s.file_mark(&sink)).await
    }

    pub async fn record_file_mark(&self, mark: &FileMark, now_ms: i64) -> Result<(), StateError> {
        let mark = mark.clone();
        self.run(move |s| s.record_file_mark(&mark, now_ms)).await
    }
}
