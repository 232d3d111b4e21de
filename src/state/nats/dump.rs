//! The NATS side of [`crate::state::StateDump`]: the learned rates with their times and every
//! file mark (what `status` does not read in full), and the import. Without `overwrite` every
//! key is written with `create`, so a key the buckets hold is never replaced: the import stops
//! there with [`StateError::AlreadyHeld`]. The file marks go first and each stream's checkpoint
//! last, as a page's commit orders them (a stop in between repeats a page, never loses one).

use serde::Serialize;

use super::bucket::{Bucket, Conflict};
use super::records::{
    RunHistory, StoredCheckpoint, StoredClock, StoredFileMark, StoredRate, StoredRun, StoredSink,
};
use super::{keys, rate_key, NatsStore};
use crate::state::checkpoints::CHECKPOINT_FORMAT;
use crate::state::{FileMarkDump, RateDump, StateDump, StateError, StreamDump};

/// Who ran a run copied from a store that does not name its instances (SQLite).
const MIGRATED_RUN: &str = "migrated";

impl NatsStore {
    pub(crate) async fn export_rates(&self) -> Result<Vec<RateDump>, StateError> {
        let mut out: Vec<RateDump> = self
            .rates_stored()
            .await?
            .into_iter()
            .map(|(integration, key, rate)| RateDump {
                integration,
                key,
                rate_per_minute: rate.rate_per_minute,
                ceiling_per_minute: rate.ceiling_per_minute,
                updated_ms: rate.updated_ms,
                rate_limited_until_ms: rate.rate_limited_until_ms,
            })
            .collect();
        out.sort_by(|a, b| (&a.integration, &a.key).cmp(&(&b.integration, &b.key)));
        Ok(out)
    }

    pub(crate) async fn export_file_marks(&self) -> Result<Vec<FileMarkDump>, StateError> {
        let mut out = Vec::new();
        // A file is on the host that writes it: this host's marks only (keyed host, sink).
        for key in self.files.keys().await? {
            let Some([host, sink]) =
                keys::parts(&key).and_then(|p| <[String; 2]>::try_from(p).ok())
            else {
                continue;
            };
            if host != self.host {
                continue;
            }
            if let Some((stored, _)) = self.files.get::<StoredFileMark>(&key).await? {
                out.push(FileMarkDump {
                    updated_ms: stored.updated_ms,
                    mark: stored.mark(&sink),
                });
            }
        }
        out.sort_by(|a, b| a.mark.sink.cmp(&b.mark.sink));
        Ok(out)
    }

    pub(crate) async fn import(&self, dump: &StateDump, overwrite: bool) -> Result<(), StateError> {
        for file in &dump.files {
            let stored = StoredFileMark::of(&file.mark, file.updated_ms);
            let what = || format!("the committed length of file sink {}", file.mark.sink);
            write(
                &self.files,
                &super::file_mark_key(&self.host, &file.mark.sink),
                &stored,
                overwrite,
                what,
            )
            .await?;
        }
        for rate in &dump.rates {
            let stored = StoredRate {
                rate_per_minute: rate.rate_per_minute,
                ceiling_per_minute: rate.ceiling_per_minute,
                updated_ms: rate.updated_ms,
                rate_limited_until_ms: rate.rate_limited_until_ms,
            };
            let what = || {
                format!(
                    "a learned rate for {} {}",
                    rate.integration, rate.key.endpoint
                )
            };
            write(
                &self.rates,
                &rate_key(&rate.integration, &rate.key),
                &stored,
                overwrite,
                what,
            )
            .await?;
        }
        for clock in &dump.clocks {
            let stored = StoredClock {
                offset_ms: clock.offset_ms,
                measured_ms: clock.measured_ms,
            };
            let what = || format!("Duo's clock for {}", clock.integration);
            write(
                &self.clock,
                &keys::token(&clock.integration),
                &stored,
                overwrite,
                what,
            )
            .await?;
        }
        for sink in &dump.sinks {
            let stored = StoredSink {
                last_success_ms: sink.last_success_ms,
                failing_since_ms: sink.failing_since_ms,
                last_error: sink.last_error.clone(),
                last_error_ms: sink.last_error_ms,
                failed_attempts: sink.failed_attempts,
            };
            let what = || format!("the status of sink {}", sink.sink);
            write(
                &self.sinks,
                &keys::token(&sink.sink),
                &stored,
                overwrite,
                what,
            )
            .await?;
        }
        for stream in &dump.streams {
            self.import_stream(stream, overwrite).await?;
        }
        Ok(())
    }

    /// The stream's runs, then its checkpoint. A stream is in the buckets when either key is:
    /// without `overwrite` both must be free (the runs are checked first, so a refused stream
    /// gets no checkpoint); with it, both are replaced (a checkpoint the dump has none of is
    /// deleted, so the history and the checkpoint stay one stream's).
    async fn import_stream(&self, dump: &StreamDump, overwrite: bool) -> Result<(), StateError> {
        let key = keys::stream_key(&dump.stream);
        let what = || format!("the stream {}", dump.stream);
        if !overwrite
            && self
                .checkpoints
                .get::<serde_json::Value>(&key)
                .await?
                .is_some()
        {
            return Err(already_held(&self.checkpoints, what()));
        }
        let history = RunHistory {
            next_id: dump.runs.len() as i64 + 1,
            runs: dump
                .runs
                .iter()
                .zip(1..)
                .map(|(run, id)| StoredRun {
                    id,
                    instance: MIGRATED_RUN.to_string(),
                    started_ms: run.started_ms,
                    ended_ms: run.ended_ms,
                    pages: run.pages,
                    events: run.events,
                    outcome: run.outcome.map(|o| o.as_str().to_string()),
                    error: run.error.clone(),
                })
                .collect(),
        };
        if !history.runs.is_empty() || overwrite {
            write(&self.runs, &key, &history, overwrite, what).await?;
        }
        match &dump.checkpoint {
            Some(cp) => {
                let stored = StoredCheckpoint {
                    format: CHECKPOINT_FORMAT,
                    checkpoint: cp.checkpoint.clone(),
                    events_total: cp.events_total,
                    updated_ms: cp.updated_ms,
                };
                write(&self.checkpoints, &key, &stored, overwrite, what).await?;
            }
            None if overwrite => {
                self.checkpoints
                    .kv
                    .delete(&key)
                    .await
                    .map_err(|e| self.checkpoints.error(e))?;
            }
            None => {}
        }
        Ok(())
    }
}

fn already_held(bucket: &Bucket, what: String) -> StateError {
    StateError::AlreadyHeld {
        store: format!("the NATS bucket {}", bucket.name),
        what,
    }
}

/// `put` when overwriting, else `create`; a key that holds a value then is refused.
async fn write<T: Serialize>(
    bucket: &Bucket,
    key: &str,
    value: &T,
    overwrite: bool,
    what: impl FnOnce() -> String,
) -> Result<(), StateError> {
    if overwrite {
        bucket.put(key, value).await?;
        return Ok(());
    }
    match bucket.create(key, value).await? {
        Ok(_) => Ok(()),
        Err(Conflict) => Err(already_held(bucket, what())),
    }
}
