//! Everything a state store persists, as one backend-neutral value ([`StateDump`]), for
//! `migrate-state`: exported from either backend, imported into either. Each concern is a list
//! of its own (streams with their checkpoints and runs, learned rates, Duo's clock, sink status,
//! file marks), so that a concern that comes behind the interface later is one more list.
//!
//! Inventory snapshots are not in the dump: a tenant's entities are never held whole, so
//! `migrate-state` copies the complete snapshots after it with
//! [`crate::state::StateStore::copy_snapshots_from`], a chunk at a time.
//!
//! An import writes only keys the target does not hold, unless it is told to overwrite:
//! SQLite refuses a row whose key exists (plain `INSERT`, in one transaction), NATS writes with
//! `create`. So a collector that wrote a stream into the target since the caller looked is
//! never silently overwritten.

use super::{ClockStatus, FileMark, RunRecord, SinkStatus, StateError, StateStore};
use crate::checkpoint::Checkpoint;
use crate::event::StreamId;
use crate::pacing::PaceKey;

/// The persisted state of one store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDump {
    /// Every stream with a checkpoint or a run, sorted.
    pub streams: Vec<StreamDump>,
    pub rates: Vec<RateDump>,
    pub clocks: Vec<ClockStatus>,
    pub sinks: Vec<SinkStatus>,
    pub files: Vec<FileMarkDump>,
}

/// A stream: its checkpoint (none before its first commit) and its kept runs, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDump {
    pub stream: StreamId,
    pub checkpoint: Option<CheckpointDump>,
    pub runs: Vec<RunRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointDump {
    pub checkpoint: Checkpoint,
    pub events_total: i64,
    pub updated_ms: i64,
}

/// A learned request rate, with its rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateDump {
    pub integration: String,
    pub key: PaceKey,
    pub rate_per_minute: f64,
    pub ceiling_per_minute: f64,
    pub updated_ms: i64,
    pub rate_limited_until_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileMarkDump {
    pub mark: FileMark,
    pub updated_ms: i64,
}

impl StateDump {
    /// Whether the store holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.rates.is_empty()
            && self.clocks.is_empty()
            && self.sinks.is_empty()
            && self.files.is_empty()
    }
}

impl StateStore {
    /// Reads everything the store persists. Meant for a store no collector writes meanwhile
    /// (`migrate-state` holds the state-dir lock and checks that no lease is held).
    pub async fn export_all(&self) -> Result<StateDump, StateError> {
        let mut streams = Vec::new();
        for row in self.status().await? {
            // A row of a log kind this build does not know names no stream it could resume.
            let Ok(log) = row.log.parse() else {
                tracing::warn!(integration = %row.integration, log = %row.log, "not copied: a log kind this build does not know");
                continue;
            };
            let stream = StreamId::new(&row.integration, row.account_id.clone(), log);
            let mut runs = self.runs(&stream).await?;
            runs.reverse();
            let checkpoint = row.checkpoint.map(|checkpoint| CheckpointDump {
                checkpoint,
                events_total: row.events_total,
                updated_ms: row.checkpoint_updated_ms.unwrap_or(0),
            });
            streams.push(StreamDump {
                stream,
                checkpoint,
                runs,
            });
        }
        let (rates, files) = match self {
            StateStore::Sqlite(s) => {
                s.state()
                    .blocking(|s| Ok((s.export_rates()?, s.export_file_marks()?)))
                    .await?
            }
            StateStore::Nats(s) => (s.export_rates().await?, s.export_file_marks().await?),
        };
        Ok(StateDump {
            streams,
            rates,
            clocks: self.clock_offsets().await?,
            sinks: self.sink_status().await?,
            files,
        })
    }

    /// Writes `dump` into the store: with `overwrite`, what the store holds under the same
    /// keys is replaced; without it, the import stops at the first key the store holds (on
    /// SQLite nothing is written then; on NATS, what was written before that key stays).
    /// Keys only the store holds are left as they are.
    pub async fn import(&self, dump: StateDump, overwrite: bool) -> Result<(), StateError> {
        match self {
            StateStore::Sqlite(s) => {
                s.state()
                    .blocking(move |s| s.import(&dump, overwrite))
                    .await
            }
            StateStore::Nats(s) => s.import(&dump, overwrite).await,
        }
    }
}
