//! A page's delivery and commit: every sink acknowledges it, then the checkpoint moves (fenced
//! on the revision this run last read or wrote), then the observer hears of it.

use tokio_util::sync::CancellationToken;

use super::{CollectError, IntegrationRuntime, Progress, StreamTarget};
use crate::clock::now_ms;
use crate::event::{Batch, Event};
use crate::observe::CommittedPage;
use crate::sink::{deliver_all, PageReceipt};
use crate::state::{Checkpoint, PageCommit, Revision};

/// A stream's run as its commits see it: the run they count for, and the revision the next
/// commit is fenced on (the one this run last read or wrote).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fence {
    pub run_id: i64,
    pub revision: Revision,
}

/// Hands a page to every sink and, once all acknowledged it, commits the checkpoint.
pub(super) async fn deliver_and_commit(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    run: &mut Fence,
    events: &[Event],
    cp: &Checkpoint,
    progress: &mut Progress,
    cancel: &CancellationToken,
) -> Result<(), CollectError> {
    let mut receipt = PageReceipt::default();
    if !events.is_empty() {
        let collected_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let batch = Batch {
            stream: &target.stream,
            account_name: target.account_name.as_deref(),
            collected_at: &collected_at,
            events,
            inventory: None,
        };
        // Sinks count their own failed attempts in the observer.
        receipt = deliver_all(&rt.sinks, &batch, &rt.sink_retry, cancel).await?;
    }
    // The file sinks' lengths move with the checkpoint: exactly-once files across crashes. The
    // receipt goes with the commit, so the pages are marked committed with it even if this
    // future is dropped meanwhile. Fenced on the revision this stream last read or wrote.
    let commit = PageCommit {
        stream: target.stream.clone(),
        run_id: run.run_id,
        checkpoint: cp.clone(),
        events: events.len(),
        now_ms: now_ms(),
        files: receipt.files(),
        revision: run.revision,
    };
    run.revision = rt
        .store
        .commit_page(commit, move || receipt.committed())
        .await?;
    let position_ms = cp.position_ms();
    let lag_ms = crate::checkpoint::lag_ms(
        rt.duo_clock.now_ms(),
        rt.settings.delay.as_millis() as i64,
        position_ms,
    );
    let sink_names: Vec<String> = rt.sinks.iter().map(|s| s.name.clone()).collect();
    rt.observer.page_committed(
        &CommittedPage {
            stream: &target.stream,
            events: events.len(),
            position_ms,
            duo_lag_ms: lag_ms,
            run_events: progress.events + events.len() as u64,
        },
        &sink_names,
    );
    progress.pages += 1;
    progress.events += events.len() as u64;
    Ok(())
}
