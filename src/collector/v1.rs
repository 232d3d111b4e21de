//! Draining a v1 log (administrator, offline enrollment). The API takes only `mintime` in
//! seconds (inclusive) and returns the 1000 earliest events, with no cursor, and many events
//! share a second. So: resume at the newest second already delivered, drop the events of that
//! second whose fingerprints were delivered (kept in the checkpoint), and deliver only events
//! older than `now − delay`, so events Duo publishes late are still collected next run.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use super::{
    deliver_and_commit, now_ms, retention_floor_ms, CollectError, IntegrationRuntime, Progress,
    StreamTarget,
};
use crate::logs::page::parse_v1;

/// Duo returns at most this many v1 events per call.
const V1_PAGE: usize = 1000;

fn floor_to_second(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
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
    let mut cp = rt.checkpoint_or_start(stream, floor_to_second)?;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let _permit = rt.request_permit().await;
        let now = now_ms();
        let settled_until = now - settings.delay.as_millis() as i64;
        let floor = floor_to_second(retention_floor_ms(now)) + 1000;
        if cp.mintime_ms < floor {
            tracing::warn!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %kind, mintime_ms = cp.mintime_ms, clamped_to_ms = floor, "mintime is older than Duo's 180-day retention; clamping");
            cp.mintime_ms = floor;
            cp.seen.clear();
        }
        if cp.mintime_ms > settled_until {
            return Ok(());
        }
        let mut params = vec![("mintime".to_string(), (cp.mintime_ms / 1000).to_string())];
        if let Some(account) = &stream.account_id {
            params.push(("account_id".to_string(), account.clone()));
        }
        let mut page = rt
            .client
            .get(&target.host, kind.path(), &params, cancel, |body| {
                parse_v1(kind, body)
            })
            .await?;
        // "The 1000 earliest events": order them by time (stable) whatever order Duo used.
        page.events.sort_by_key(|e| e.ts_ms);
        let full = page.events.len() >= V1_PAGE;
        let one_second =
            full && page.events.first().map(|e| e.ts_ms) == page.events.last().map(|e| e.ts_ms);

        let seen: HashSet<&str> = cp.seen.iter().map(String::as_str).collect();
        let mut reached_unsettled = false;
        let mut deliver = Vec::with_capacity(page.events.len());
        for event in &page.events {
            if event.ts_ms > settled_until {
                reached_unsettled = true;
            } else if !(event.ts_ms == cp.mintime_ms && seen.contains(event.event_id.as_str())) {
                deliver.push(event.clone());
            }
        }
        drop(seen);
        let before = (cp.mintime_ms, cp.seen.len());
        if let Some(newest) = deliver.last().map(|e| e.ts_ms) {
            if newest != cp.mintime_ms {
                cp.mintime_ms = newest;
                cp.seen.clear();
            }
            cp.seen.extend(
                deliver
                    .iter()
                    .filter(|e| e.ts_ms == newest)
                    .map(|e| e.event_id.clone()),
            );
        }
        let stuck_second = one_second && !reached_unsettled;
        if stuck_second {
            let second = page.events[0].ts_ms;
            tracing::warn!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %kind, second = second / 1000,
                "one second holds 1000 or more events; Duo's v1 API returns only the 1000 earliest from a given second and has no cursor, so the rest of that second cannot be fetched; advancing by one second");
            cp.mintime_ms = second + 1000;
            cp.seen.clear();
        }
        let delivered = deliver.len();
        deliver_and_commit(rt, target, run_id, &deliver, &mut cp, progress, cancel).await?;
        tracing::debug!(integration = %stream.integration, account = stream.account_id.as_deref().unwrap_or("-"), log = %kind, events = delivered, resume_second = cp.mintime_ms / 1000, "page committed");
        let progressed = stuck_second || (cp.mintime_ms, cp.seen.len()) != before;
        if !full || reached_unsettled || !progressed {
            return Ok(());
        }
    }
}
