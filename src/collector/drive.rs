//! The async side of a stream: asks the pure pager what to fetch, waits for the endpoint's
//! pacing slot, fetches (holding a page permit only from the request to the commit), hands
//! the page back to the pager, delivers what it says and commits its checkpoint. No paging
//! decision is made here; see `crate::pager`.

use crate::duo::Call;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::SemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::commit::{deliver_and_commit, Fence};
use super::{CollectError, IntegrationRuntime, Progress, StreamTarget};
use crate::duo::retry::jitter;
use crate::duo::DuoError;
use crate::logs::page::{parse, PageError};
use crate::pacing::{rate_limit_backoff, PaceKey, Pacer, RateLimitLog, RATE_LIMIT_ATTEMPTS};
use crate::pager::{self, Done, Next, Notice, PagerSettings};
use crate::state::{LearnedRate, RateLimited, StateError, Write};

pub(super) async fn drain(
    rt: &IntegrationRuntime,
    target: &StreamTarget,
    run_id: i64,
    progress: &mut Progress,
    cancel: &CancellationToken,
) -> Result<(), CollectError> {
    let stream = &target.stream;
    let settings = &rt.settings;
    let pager_settings = PagerSettings {
        delay_ms: settings.delay.as_millis() as i64,
        page_size: settings.page_size,
        initial_lookback_ms: settings.initial_lookback.as_millis() as i64,
    };
    // The revision read here fences every commit of this run: a checkpoint another instance
    // moved meanwhile refuses the next commit (`StateError::Fenced`), and the stream stops.
    let loaded = rt.store.load_checkpoint(stream).await?;
    let mut run = Fence {
        run_id,
        revision: loaded.revision,
    };
    let mut pager = pager::for_kind(
        stream.log,
        pager_settings,
        loaded.value,
        rt.duo_clock.now_ms(),
    );
    let mut fetcher = Fetcher::new(rt, target);
    let result = loop {
        if cancel.is_cancelled() {
            break Ok(());
        }
        let next = pager.next(rt.duo_clock.now_ms());
        report(target, pager.take_notices());
        let request = match next {
            Next::Fetch(r) => r,
            Next::Done(done) => {
                if let Done::WindowNotSettled {
                    window_end_ms,
                    settled_ms,
                } = done
                {
                    tracing::warn!(integration = %stream.integration, account = account(target), log = %stream.log, window_end_ms, settled_ms,
                        "the open window ends later than Duo's now - delay (this host's clock stepped back?); a later run resumes it");
                }
                break Ok(());
            }
        };
        let mut params = request.params;
        if let Some(account) = &stream.account_id {
            params.push(("account_id".to_string(), account.clone()));
        }
        match fetcher
            .fetch(&params, cancel, |body| parse(stream.log, body))
            .await
        {
            Ok((page, permit)) => {
                let delivery = match pager.on_page(page, rt.duo_clock.now_ms()) {
                    Ok(d) => d,
                    Err(e) => break Err(CollectError::Pager(e)),
                };
                report(target, pager.take_notices());
                let count = delivery.events.len();
                deliver_and_commit(
                    rt,
                    target,
                    &mut run,
                    &delivery.events,
                    &delivery.checkpoint,
                    progress,
                    cancel,
                )
                .await?;
                drop(permit);
                tracing::debug!(integration = %stream.integration, account = account(target), log = %stream.log, events = count,
                    cursor = %delivery.checkpoint.cursor().map_or_else(|| "-".to_string(), ToString::to_string), finished = delivery.finished, "page committed");
            }
            Err(e) if e.is_refused() => {
                let restart = pager.on_refused(&e.to_string(), rt.duo_clock.now_ms());
                report(target, pager.take_notices());
                match restart {
                    // Nothing delivered; the restarted window is committed so that a crash
                    // now does not send the refused cursor again.
                    Ok(cp) => {
                        deliver_and_commit(rt, target, &mut run, &[], &cp, progress, cancel).await?
                    }
                    Err(_) => break Err(CollectError::Duo(e)),
                }
            }
            Err(e) => break Err(CollectError::Duo(e)),
        }
    };
    fetcher.finish();
    result
}

pub(super) fn account(target: &StreamTarget) -> &str {
    target.stream.account_id.as_deref().unwrap_or("-")
}

fn pace_key(target: &StreamTarget) -> PaceKey {
    PaceKey {
        account: target.stream.account_id.clone().unwrap_or_default(),
        endpoint: target.stream.path().to_string(),
    }
}

/// Log lines for what the pager noticed.
fn report(target: &StreamTarget, notices: Vec<Notice>) {
    let stream = &target.stream;
    for notice in notices {
        match notice {
            Notice::Clamped { from_ms, to_ms } => {
                tracing::warn!(integration = %stream.integration, account = account(target), log = %stream.log, mintime_ms = from_ms, clamped_to_ms = to_ms,
                    "mintime is older than Duo's 180-day retention; the window starts at the retention limit (older events are no longer available)")
            }
            Notice::CursorDropped { cursor } => {
                tracing::warn!(integration = %stream.integration, account = account(target), log = %stream.log, cursor = %cursor,
                    "Duo refused the saved cursor; restarting the window from its mintime (events already delivered in it may repeat, none is lost)")
            }
            Notice::OversizedSecond { second } => {
                tracing::warn!(integration = %stream.integration, account = account(target), log = %stream.log, second,
                    "one second holds 1000 or more events; Duo's v1 API returns only the 1000 earliest from a given second and has no cursor, so the rest of that second cannot be fetched; advancing by one second")
            }
        }
    }
}

/// Fetches one page at the endpoint's pace, retrying 429s and transient failures without
/// holding a page permit while it waits. Log streams and inventory snapshots alike.
pub(super) struct Fetcher<'a> {
    rt: &'a IntegrationRuntime,
    target: &'a StreamTarget,
    pacer: Arc<Pacer>,
    rate_log: RateLimitLog,
    /// "rate limited, resuming at T" is recorded for `status`.
    waiting_out_limit: bool,
}

impl<'a> Fetcher<'a> {
    pub(super) fn new(rt: &'a IntegrationRuntime, target: &'a StreamTarget) -> Fetcher<'a> {
        Fetcher {
            rt,
            target,
            pacer: rt.pacers.get(pace_key(target)),
            rate_log: RateLimitLog::default(),
            waiting_out_limit: false,
        }
    }

    /// One page of the target's endpoint, parsed by `parse`, with the page permit it holds
    /// until the caller has delivered and committed it.
    pub(super) async fn fetch<T>(
        &mut self,
        params: &[(String, String)],
        cancel: &CancellationToken,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<(T, Option<SemaphorePermit<'a>>), DuoError> {
        let rt: &'a IntegrationRuntime = self.rt;
        let kind = self.target.stream.source_name();
        let retry = &rt.retry;
        let mut rate_limited_in_a_row = 0u32;
        let mut transient_failures = 0u32;
        loop {
            let wait = self
                .pacer
                .next_slot()
                .saturating_duration_since(tokio::time::Instant::now());
            if !wait.is_zero() {
                // A deliberate wait, not a wedge: the watchdog counts it as progress.
                rt.observer.waiting(&rt.settings.name, wait);
            }
            self.pacer
                .wait_turn(cancel)
                .await
                .map_err(|_| DuoError::Cancelled)?;
            let permit = rt.request_permit().await;
            let outcome = rt
                .client
                .request_once(
                    &Call::get(&self.target.host, self.target.stream.path(), params),
                    cancel,
                    &parse,
                )
                .await;
            self.pacer.answered();
            let err = match outcome {
                Ok(page) => {
                    self.on_success().await;
                    return Ok((page, permit));
                }
                Err(e) => e,
            };
            drop(permit);
            if err.is_rate_limited() {
                rate_limited_in_a_row += 1;
                let backoff = rate_limit_backoff(
                    rate_limited_in_a_row,
                    retry.rate_limit_initial,
                    retry.rate_limit_max,
                ) + jitter(retry.jitter);
                self.on_rate_limited(backoff, rate_limited_in_a_row).await;
                continue;
            }
            if err.is_transient() {
                transient_failures += 1;
                if transient_failures >= retry.transient_attempts {
                    return Err(err);
                }
                let wait = retry.transient_initial * 2u32.saturating_pow(transient_failures - 1)
                    + jitter(retry.jitter);
                rt.observer.api_retry(&rt.settings.name, wait);
                tracing::warn!(integration = %rt.settings.name, account = account(self.target), log = %kind, attempt = transient_failures,
                    wait_ms = wait.as_millis() as u64, error = %err, "Duo request failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(DuoError::Cancelled),
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            return Err(err);
        }
    }

    async fn on_success(&mut self) {
        let rt = self.rt;
        if let Some(rate) = self.pacer.on_success() {
            self.save_rate(rate).await;
        }
        if std::mem::take(&mut self.waiting_out_limit) {
            let _ = self.set_rate_limited_until(None).await;
            tracing::info!(integration = %rt.settings.name, account = account(self.target), log = self.target.stream.source_name(),
                rate_per_minute = self.pacer.rate_per_minute(), "Duo answers again after rate limiting; collection resumed");
        }
    }

    async fn on_rate_limited(&mut self, backoff: Duration, in_a_row: u32) {
        let rt = self.rt;
        let stream = &self.target.stream;
        let rate = self.pacer.on_rate_limited(backoff);
        self.save_rate(rate).await;
        rt.observer.api_retry(&rt.settings.name, backoff);
        let now = crate::clock::now_ms();
        if let Some(summary) = self.rate_log.on_rate_limited(now) {
            tracing::warn!(integration = %stream.integration, account = account(self.target), log = stream.source_name(), responses_429 = summary.count,
                rate_per_minute = format!("{rate:.2}"), "Duo is rate limiting this endpoint; pacing requests down (one line per minute)");
        }
        if in_a_row >= RATE_LIMIT_ATTEMPTS {
            // Past Duo's own retry schedule: not a failure. The stream has yielded its permit
            // and resumes by itself at its next slot.
            let resume_ms = now + backoff.as_millis() as i64;
            if let Err(e) = self.set_rate_limited_until(Some(resume_ms)).await {
                tracing::error!(integration = %stream.integration, error = %e, "cannot record the rate-limit wait");
            }
            if !self.waiting_out_limit {
                tracing::warn!(integration = %stream.integration, account = account(self.target), log = stream.source_name(), attempts = in_a_row,
                    resume_at = %crate::status::iso(resume_ms), "still rate limited after Duo's retry schedule; waiting for the next slot instead of failing");
            }
            self.waiting_out_limit = true;
        }
    }

    async fn set_rate_limited_until(&self, until_ms: Option<i64>) -> Result<(), StateError> {
        self.rt
            .store
            .write(Write::RateLimited(RateLimited {
                integration: self.rt.settings.name.clone(),
                key: self.pacer.key().clone(),
                until_ms,
            }))
            .await
    }

    async fn save_rate(&self, rate: f64) {
        let rt = self.rt;
        if !rate.is_finite() {
            return;
        }
        rt.observer.request_rate(&self.target.stream, rate);
        let saved = rt.store.write(Write::Rate(LearnedRate {
            integration: rt.settings.name.clone(),
            key: self.pacer.key().clone(),
            rate_per_minute: rate,
            ceiling_per_minute: rt.settings.requests_per_minute,
            now_ms: crate::clock::now_ms(),
        }));
        if let Err(e) = saved.await {
            tracing::error!(integration = %rt.settings.name, error = %e, "cannot save the learned request rate");
        }
    }

    /// The end of the run: 429s not yet reported get their line.
    pub(super) fn finish(&mut self) {
        let stream = &self.target.stream;
        if let Some(summary) = self.rate_log.flush(crate::clock::now_ms()) {
            tracing::warn!(integration = %stream.integration, account = account(self.target), log = stream.source_name(), responses_429 = summary.count,
                rate_per_minute = format!("{:.2}", self.pacer.rate_per_minute()), "Duo rate limited this endpoint during the run");
        }
    }
}
