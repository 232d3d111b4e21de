//! One inventory snapshot of one kind of one account: page the listing with the pure
//! [`OffsetPager`] through the same pacing, permits and retries as the logs (`drive::Fetcher`),
//! hand every page's entities to the sinks, and store them as the pending snapshot once the
//! sinks acknowledged them. When Duo says the listing is complete, the changes since the
//! previous complete snapshot are read from the state store a chunk at a time, delivered, and
//! only then does the pending snapshot become the complete one. A page failing part-way stops
//! the snapshot before any change is read: no Delete, and the previous snapshot stays.

use tokio_util::sync::CancellationToken;

use super::drive::{account, Fetcher};
use super::{CollectError, IntegrationRuntime, StreamReport, StreamTarget};
use crate::clock::now_ms;
use crate::duo::DuoError;
use crate::event::{Batch, Event, InventoryItem};
use crate::inventory::{diff, parse_page, ChangeEvent, EntityState, InventoryKind, OffsetPager};
use crate::logs::page::PageError;
use crate::normalize::{change_event_id, inventory_event_id, InventoryCtx};
use crate::sink::deliver_all;
use crate::sink::SinkError;
use crate::state::RunOutcome;
use crate::state::{PendingSnapshot, SnapshotKey, StoredEntity};

/// Changed entities read from the state store per round (and so change events in memory).
const CHANGE_CHUNK: usize = 500;

/// What one snapshot did.
#[derive(Debug, Default)]
pub(super) struct SnapshotProgress {
    pub pages: u64,
    pub entities: u64,
    pub changes: u64,
}

pub(super) fn key(target: &StreamTarget, kind: InventoryKind) -> SnapshotKey {
    SnapshotKey {
        integration: target.stream.integration.clone(),
        account_id: target.stream.account_id.clone(),
        kind,
    }
}

/// Takes one complete snapshot of `target`'s inventory kind (or fails leaving the previous one).
pub(super) async fn snapshot(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    kind: InventoryKind,
    progress: &mut SnapshotProgress,
    cancel: &CancellationToken,
) -> Result<(), CollectError> {
    let key = key(target, kind);
    let mut pending = rt.store.begin_snapshot(&key).await?;
    let snapshot_ms = rt.duo_clock.now_ms();
    let collected_at = crate::status::iso(snapshot_ms);
    let ctx = InventoryCtx {
        integration: &target.stream.integration,
        account_id: target.stream.account_id.as_deref(),
        snapshot_ms,
        collected_at: &collected_at,
    };
    let mut pager = OffsetPager::new(kind);
    let mut fetcher = Fetcher::new(rt, target);
    let result = async {
        while let Some(request) = pager.next() {
            if cancel.is_cancelled() {
                return Err(CollectError::Duo(DuoError::Cancelled));
            }
            let mut params = request.params();
            if let Some(account) = &target.stream.account_id {
                params.push(("account_id".to_string(), account.clone()));
            }
            let (page, permit) = fetcher
                .fetch(&params, cancel, |body| {
                    parse_page(kind, body).map_err(|e| PageError(e.to_string()))
                })
                .await?;
            let step = pager.on_page(page)?;
            let stored: Vec<StoredEntity> = step
                .entities
                .iter()
                .map(|e| {
                    let state = EntityState::from_entity(kind, e);
                    StoredEntity {
                        entity_id: e.id.clone(),
                        hash: state.change_hash(),
                        state: state.to_stored(),
                    }
                })
                .collect();
            let events: Vec<Event> = step
                .entities
                .iter()
                .map(|e| event(inventory_event_id(&ctx, kind, e), snapshot_ms))
                .collect();
            let items: Vec<InventoryItem> =
                step.entities.into_iter().map(InventoryItem::Entity).collect();
            let count = items.len();
            let receipt = deliver(rt, target, &collected_at, &events, &items, cancel).await?;
            let files = receipt.files();
            rt.store
                .add_pending(&mut pending, stored, files, now_ms(), move || {
                    receipt.committed()
                })
                .await?;
            drop(permit);
            progress.pages += 1;
            progress.entities += count as u64;
            tracing::debug!(integration = %ctx.integration, account = account(target), inventory = %kind,
                offset = request.offset.unwrap_or(0), entities = count, "inventory page stored");
        }
        Ok(())
    }
    .await;
    fetcher.finish();
    result?;
    if pending.previous_completed_ms.is_some() {
        progress.changes = emit_changes(rt, target, &pending, &ctx, cancel).await?;
    }
    rt.store
        .complete_snapshot(pending, snapshot_ms, Vec::new(), now_ms(), || {})
        .await?;
    Ok(())
}

/// An inventory event's metadata: its id and the snapshot's time (the text is rendered from
/// the item, not from `raw`).
fn event(event_id: String, ts_ms: i64) -> Event {
    Event {
        raw: String::new(),
        event_id,
        ts_ms,
    }
}

async fn deliver(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    collected_at: &str,
    events: &[Event],
    items: &[InventoryItem],
    cancel: &CancellationToken,
) -> Result<crate::sink::PageReceipt, CollectError> {
    if events.is_empty() {
        return Ok(crate::sink::PageReceipt::default());
    }
    let batch = Batch {
        stream: &target.stream,
        account_name: target.account_name.as_deref(),
        collected_at,
        events,
        inventory: Some(items),
    };
    Ok(deliver_all(&rt.sinks, &batch, &rt.sink_retry, cancel).await?)
}

/// Delivers the changes between the complete and the pending snapshot, a chunk at a time;
/// returns how many change events went out.
async fn emit_changes(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    pending: &PendingSnapshot,
    ctx: &InventoryCtx<'_>,
    cancel: &CancellationToken,
) -> Result<u64, CollectError> {
    let key = &pending.key;
    let mut after = String::new();
    let mut emitted = 0u64;
    loop {
        let chunk = rt
            .store
            .changed_entities(pending, &after, CHANGE_CHUNK)
            .await?;
        let Some(last) = chunk.last() else {
            return Ok(emitted);
        };
        after = last.entity_id.clone();
        let mut changes: Vec<ChangeEvent> = Vec::new();
        for row in &chunk {
            let (Ok(before), Ok(now)) = (
                stored_state(row.before.as_deref(), key, &row.entity_id),
                stored_state(row.after.as_deref(), key, &row.entity_id),
            ) else {
                continue;
            };
            changes.extend(diff(before.as_ref(), now.as_ref()));
        }
        let events: Vec<Event> = changes
            .iter()
            .map(|c| event(change_event_id(ctx, c), ctx.snapshot_ms))
            .collect();
        let items: Vec<InventoryItem> = changes.into_iter().map(InventoryItem::Change).collect();
        let receipt = deliver(rt, target, ctx.collected_at, &events, &items, cancel).await?;
        let files = receipt.files();
        rt.store
            .commit_files(files, now_ms(), move || receipt.committed())
            .await?;
        emitted += items.len() as u64;
        tracing::debug!(integration = %ctx.integration, account = account(target), inventory = %key.kind,
            changed_entities = chunk.len(), change_events = items.len(), "inventory changes delivered");
    }
}

/// A stored state back. One this build cannot read (written by another version) is skipped
/// with a warning: calling it absent would report a Create or Delete that did not happen.
fn stored_state(
    text: Option<&str>,
    key: &SnapshotKey,
    entity_id: &str,
) -> Result<Option<EntityState>, ()> {
    let Some(text) = text else {
        return Ok(None);
    };
    EntityState::from_stored(text).map(Some).map_err(|e| {
        tracing::warn!(integration = %key.integration, inventory = %key.kind, entity_id, error = %e,
            "unreadable stored inventory state; its change (if any) is not reported this time");
    })
}

impl IntegrationRuntime {
    /// One snapshot as a stream's run: logged, reported to the observer, never failing others.
    pub(super) async fn take_snapshot(
        &self,
        target: &StreamTarget,
        kind: InventoryKind,
        cancel: &CancellationToken,
    ) -> StreamReport {
        let stream = &target.stream;
        let account = account(target);
        tracing::info!(integration = %stream.integration, account, inventory = %kind, "inventory snapshot started");
        let mut progress = SnapshotProgress::default();
        let result = snapshot(self, target, kind, &mut progress, cancel).await;
        let (outcome, error) = match result {
            Ok(()) => (RunOutcome::Ok, None),
            Err(CollectError::Duo(DuoError::Cancelled))
            | Err(CollectError::Sink(SinkError::Cancelled)) => (RunOutcome::Interrupted, None),
            Err(CollectError::Duo(e @ DuoError::Api { status: 403, .. })) => (
                RunOutcome::Failed,
                // Duo's own hint names the log permission; the inventory kind's is the one.
                Some(format!(
                    "{}; fix: {}",
                    e.without_hint(),
                    kind.forbidden_fix()
                )),
            ),
            Err(CollectError::State(e)) if e.needs_operator() => {
                cancel.cancel();
                (RunOutcome::Failed, Some(e.to_string()))
            }
            Err(e) => (RunOutcome::Failed, Some(e.to_string())),
        };
        match &error {
            Some(e) => {
                tracing::error!(integration = %stream.integration, account, inventory = %kind, pages = progress.pages,
                entities = progress.entities, error = %e, "inventory snapshot failed; the previous complete snapshot stays, no change is reported")
            }
            None => {
                tracing::info!(integration = %stream.integration, account, inventory = %kind, pages = progress.pages,
                entities = progress.entities, changes = progress.changes, outcome = outcome.as_str(), "inventory snapshot finished")
            }
        }
        self.observer
            .run_finished(stream, outcome == RunOutcome::Failed);
        StreamReport {
            stream: stream.clone(),
            pages: progress.pages,
            events: progress.entities + progress.changes,
            outcome,
            error,
        }
    }

    /// The posture gauges of every account from its latest complete snapshots.
    pub(super) async fn update_posture(&self, accounts: &[Option<String>]) {
        for account_id in accounts {
            let (integration, account, inactive_after) = (
                self.settings.name.clone(),
                account_id.clone(),
                self.settings.inactive_after,
            );
            let computed = crate::posture_report::account_posture(
                &self.store,
                &integration,
                account.as_deref(),
                inactive_after,
            )
            .await;
            match computed {
                Ok(Some(p)) => self.observer.posture(
                    &self.settings.name,
                    account_id.as_deref(),
                    &p.posture.counts,
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(integration = %self.settings.name, error = %e, "cannot compute the posture gauges")
                }
            }
        }
    }
}
