//! Draining a v2 log (authentication, telephony, activity): a fixed window
//! `[mintime, now − delay]` paged with `next_offset`; the window and cursor are checkpointed
//! after each acknowledged page, so a restart resumes the same window at the same cursor.

use tokio_util::sync::CancellationToken;

use super::{
    now_ms, CollectError, IntegrationRuntime, Progress, RETENTION_MARGIN_MS, RETENTION_MS,
};
use crate::event::{Batch, StreamId};
use crate::logs::page::parse_v2;
use crate::sink::deliver_all;
use crate::state::Checkpoint;

pub(super) async fn drain(
    rt: &IntegrationRuntime,
    stream: &StreamId,
    host: &str,
    run_id: i64,
    progress: &mut Progress,
    cancel: &CancellationToken,
) -> Result<(), CollectError> {
    let settings = &rt.settings;
    let limit = settings.page_size.min(stream.log.max_page_size());
    let mut cp = match rt.state.load_checkpoint(stream)? {
        Some(cp) => cp,
        None => Checkpoint {
            mintime_ms: now_ms() - settings.initial_lookback.as_millis() as i64,
            ..Checkpoint::default()
        },
    };
    let mut opened_window = false;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let now = now_ms();
        let maxtime = match cp.window_max_ms {
            Some(max) => max,
            None => {
                // One run drains everything up to now − delay, in one window.
                if opened_window {
                    return Ok(());
                }
                let max = now - settings.delay.as_millis() as i64;
                if cp.mintime_ms >= max {
                    return Ok(());
                }
                opened_window = true;
                cp.window_max_ms = Some(max);
                cp.cursor = None;
                max
            }
        };
        let floor = now - RETENTION_MS + RETENTION_MARGIN_MS;
        if cp.mintime_ms < floor {
            tracing::warn!(stream = %stream, mintime_ms = cp.mintime_ms, clamped_to_ms = floor, "mintime is older than Duo's 180-day retention; clamping (older events are no longer available)");
            cp.mintime_ms = floor;
            if floor >= maxtime {
                cp.window_max_ms = None;
                cp.cursor = None;
                continue;
            }
        }

        let mut params = vec![
            ("mintime".to_string(), cp.mintime_ms.to_string()),
            ("maxtime".to_string(), maxtime.to_string()),
            ("limit".to_string(), limit.to_string()),
            ("sort".to_string(), "ts:asc".to_string()),
        ];
        if let Some(cursor) = &cp.cursor {
            params.push(("next_offset".to_string(), cursor.clone()));
        }
        if let Some(account) = &stream.account_id {
            params.push(("account_id".to_string(), account.clone()));
        }
        let kind = stream.log;
        let page = rt
            .client
            .get(host, kind.path(), &params, cancel, |body| {
                parse_v2(kind, body)
            })
            .await?;
        let count = page.events.len();
        if count > 0 {
            let collected_at =
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let batch = Batch {
                stream,
                account_name: None,
                collected_at: &collected_at,
                events: &page.events,
            };
            deliver_all(&rt.sinks, &batch, &rt.sink_retry, cancel).await?;
            let newest = page.events.iter().map(|e| e.ts_ms).max();
            cp.newest_event_ms = cp.newest_event_ms.max(newest);
        }
        let drained = count == 0 || count < limit as usize || page.next_offset.is_none();
        if drained {
            cp.mintime_ms = maxtime + 1;
            cp.window_max_ms = None;
            cp.cursor = None;
        } else {
            cp.cursor = page.next_offset;
        }
        rt.state.commit_page(stream, run_id, &cp, count, now_ms())?;
        progress.pages += 1;
        progress.events += count as u64;
        tracing::debug!(integration = %stream.integration, log = %stream.log, events = count, cursor = cp.cursor.as_deref().unwrap_or("-"), window_end_ms = maxtime, drained, "page committed");
    }
}
