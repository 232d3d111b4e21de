//! Draining a windowed log — the v2 logs (authentication, telephony, activity) and Trust
//! Monitor: a fixed window `[mintime, now − delay]` paged with the endpoint's own cursor. The
//! window and cursor are checkpointed after each acknowledged page, so a restart resumes the
//! same window at the same cursor.

use tokio_util::sync::CancellationToken;

use super::{
    deliver_and_commit, now_ms, retention_floor_ms, CollectError, IntegrationRuntime, Progress,
    StreamTarget,
};
use crate::logs::page::{parse_trust_monitor, parse_v2, Page, PageError};
use crate::logs::{LogKind, Paging};

fn parse(kind: LogKind, body: &[u8]) -> Result<Page, PageError> {
    match kind.paging() {
        Paging::TrustMonitor => parse_trust_monitor(body),
        _ => parse_v2(kind, body),
    }
}

pub(super) async fn drain(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    run_id: i64,
    progress: &mut Progress,
    cancel: &CancellationToken,
) -> Result<(), CollectError> {
    let stream = &target.stream;
    let kind = stream.log;
    let settings = &rt.settings;
    let limit = settings.page_size.min(kind.max_page_size());
    let mut cp = rt.checkpoint_or_start(stream, |ms| ms)?;
    let trust_monitor = kind.paging() == Paging::TrustMonitor;
    let mut opened_window = false;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let _permit = rt.request_permit().await;
        let now = now_ms();
        let maxtime = match cp.window_max_ms {
            // A window opened while the clock was ahead (stepped back since): wait until it
            // is settled again rather than ask for events Duo may not have published yet.
            Some(max) if max > now - settings.delay.as_millis() as i64 => {
                tracing::warn!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %kind, window_end_ms = max, "the open window ends later than now - delay (clock stepped back?); resuming it later");
                return Ok(());
            }
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
        let floor = retention_floor_ms(now);
        if cp.mintime_ms < floor {
            tracing::warn!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %kind, mintime_ms = cp.mintime_ms, clamped_to_ms = floor, "mintime is older than Duo's 180-day retention; clamping (older events are no longer available)");
            cp.mintime_ms = floor;
            if trust_monitor {
                // Trust Monitor's offset may be positional: it is only valid for the query it
                // came from, so restart the window (repeats possible, no loss).
                cp.cursor = None;
            }
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
        ];
        if !trust_monitor {
            params.push(("sort".to_string(), "ts:asc".to_string()));
        }
        if let Some(cursor) = &cp.cursor {
            let name = if trust_monitor {
                "offset"
            } else {
                "next_offset"
            };
            params.push((name.to_string(), cursor.clone()));
        }
        if let Some(account) = &stream.account_id {
            params.push(("account_id".to_string(), account.clone()));
        }
        let page = rt
            .client
            .get(&target.host, kind.path(), &params, cancel, |body| {
                parse(kind, body)
            })
            .await?;
        let count = page.events.len();
        let drained =
            count == 0 || page.next_offset.is_none() || (!trust_monitor && count < limit as usize);
        if drained {
            cp.mintime_ms = maxtime + 1;
            cp.window_max_ms = None;
            cp.cursor = None;
        } else {
            if page.next_offset == cp.cursor {
                return Err(CollectError::Duo(crate::duo::DuoError::Malformed(format!(
                    "{kind}: Duo returned the same cursor it was sent ({}); stopping instead of looping",
                    page.next_offset.as_deref().unwrap_or("-")
                ))));
            }
            cp.cursor = page.next_offset.clone();
        }
        deliver_and_commit(rt, target, run_id, &page.events, &mut cp, progress, cancel).await?;
        tracing::debug!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %kind, events = count, cursor = cp.cursor.as_deref().unwrap_or("-"), window_end_ms = maxtime, drained, "page committed");
    }
}
