//! What the NATS store shows across the cluster: every stream's checkpoint and last run, the
//! learned rates, Duo's clock, the sinks; and the runs no live process is running any more.

use std::collections::{BTreeSet, HashSet};

use super::keys;
use super::records::{RunHistory, StoredClock, StoredRate, StoredRun, StoredSink};
use super::NatsStore;
use crate::pacing::PaceKey;
use crate::state::{ClockStatus, PaceStatus, RunOutcome, SinkStatus, StateError, StreamStatus};

/// Why a run left running was closed.
const ABANDONED: &str = "the collector stopped during this run (crash or kill); the next run resumed from the last checkpoint";

impl NatsStore {
    /// Every stream with a checkpoint or a run, sorted as SQLite sorts them (integration,
    /// account with the own account first, log kind).
    pub async fn status(&self) -> Result<Vec<StreamStatus>, StateError> {
        let mut streams = BTreeSet::new();
        for key in self
            .checkpoints
            .keys()
            .await?
            .iter()
            .chain(&self.runs.keys().await?)
        {
            if let Some(stream) = keys::stream_of(key) {
                let account = stream.account_id.clone().unwrap_or_default();
                streams.insert((
                    stream.integration.clone(),
                    account,
                    stream.log.as_str(),
                    stream,
                ));
            }
        }
        let mut out = Vec::with_capacity(streams.len());
        for (_, _, _, stream) in streams {
            let stored = self.stored_checkpoint(&stream).await?;
            let history = self
                .runs
                .get::<RunHistory>(&keys::stream_key(&stream))
                .await?;
            let last_run = history.and_then(|(h, _)| h.last().map(|r| r.record()));
            out.push(StreamStatus {
                integration: stream.integration.clone(),
                account_id: stream.account_id.clone(),
                log: stream.log.as_str().to_string(),
                events_total: stored.as_ref().map_or(0, |(s, _)| s.events_total),
                checkpoint_updated_ms: stored.as_ref().map(|(s, _)| s.updated_ms),
                checkpoint: stored.map(|(s, _)| s.checkpoint),
                last_run,
            });
        }
        Ok(out)
    }

    /// Closes the runs left running whose stream no live instance holds a lease on (a running
    /// stream's holder renews its lease; one whose holder died has none once it expired). The
    /// leases are read once, after `now_ms`: a run begun since then is not touched, as its
    /// lease may be younger than that read.
    pub async fn close_abandoned_runs(&self, now_ms: i64) -> Result<usize, StateError> {
        let leased: HashSet<String> = self.leases.keys().await?.into_iter().collect();
        let mut closed = 0;
        for key in self.runs.keys().await? {
            if leased.contains(&key) {
                continue;
            }
            let count = self
                .runs
                .modify::<RunHistory, usize>(&key, |history| {
                    let mut history = history?;
                    let mut count = 0;
                    let abandoned =
                        |r: &&mut StoredRun| r.outcome.is_none() && r.started_ms < now_ms;
                    for run in history.runs.iter_mut().filter(abandoned) {
                        run.outcome = Some(RunOutcome::Interrupted.as_str().to_string());
                        run.ended_ms = Some(now_ms);
                        run.error = Some(ABANDONED.to_string());
                        count += 1;
                    }
                    (count > 0).then_some((history, count))
                })
                .await?;
            closed += count.unwrap_or(0);
        }
        Ok(closed)
    }

    /// Every learned rate: (integration, key, rate).
    pub(super) async fn rates_stored(
        &self,
    ) -> Result<Vec<(String, PaceKey, StoredRate)>, StateError> {
        let mut out = Vec::new();
        for key in self.rates.keys().await? {
            let Some(parts) = keys::parts(&key) else {
                continue;
            };
            let [integration, account, endpoint] = parts.as_slice() else {
                continue;
            };
            if let Some((rate, _)) = self.rates.get::<StoredRate>(&key).await? {
                let pace = PaceKey {
                    account: account.clone(),
                    endpoint: endpoint.clone(),
                };
                out.push((integration.clone(), pace, rate));
            }
        }
        Ok(out)
    }

    pub async fn pacing_status(&self) -> Result<Vec<PaceStatus>, StateError> {
        let mut out: Vec<PaceStatus> = self
            .rates_stored()
            .await?
            .into_iter()
            .map(|(integration, key, rate)| PaceStatus {
                integration,
                account_id: (!key.account.is_empty()).then_some(key.account),
                endpoint: key.endpoint,
                rate_per_minute: rate.rate_per_minute,
                ceiling_per_minute: rate.ceiling_per_minute,
                rate_limited_until_ms: rate.rate_limited_until_ms,
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |p: &PaceStatus| {
                (
                    p.integration.clone(),
                    p.account_id.clone().unwrap_or_default(),
                    p.endpoint.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(out)
    }

    pub async fn clock_offset(&self, integration: &str) -> Result<Option<ClockStatus>, StateError> {
        let stored = self
            .clock
            .get::<StoredClock>(&keys::token(integration))
            .await?;
        Ok(stored.map(|(c, _)| ClockStatus {
            integration: integration.to_string(),
            offset_ms: c.offset_ms,
            measured_ms: c.measured_ms,
        }))
    }

    pub async fn clock_offsets(&self) -> Result<Vec<ClockStatus>, StateError> {
        let mut out = Vec::new();
        for key in self.clock.keys().await? {
            if let Some(integration) = keys::part(&key) {
                out.extend(self.clock_offset(&integration).await?);
            }
        }
        out.sort_by(|a, b| a.integration.cmp(&b.integration));
        Ok(out)
    }

    pub async fn sink_status(&self) -> Result<Vec<SinkStatus>, StateError> {
        let mut out = Vec::new();
        for key in self.sinks.keys().await? {
            let Some(sink) = keys::part(&key) else {
                continue;
            };
            if let Some((stored, _)) = self.sinks.get::<StoredSink>(&key).await? {
                out.push(stored.status(sink));
            }
        }
        out.sort_by(|a, b| a.sink.cmp(&b.sink));
        Ok(out)
    }
}
