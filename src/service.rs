//! systemd integration (`Type=notify`: READY, STATUS, STOPPING, WATCHDOG, RELOADING) and the
//! optional HTTP endpoints `/metrics`, `/healthz`, `/readyz`. Without `NOTIFY_SOCKET` the
//! notifications are no-ops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::event::StreamId;
use crate::observe::{CommittedPage, Observer, PageListener};
use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        notify(&[NotifyState::Status(status)]);
    }
}

/// The `systemctl status` line, following the pages the collector commits.
pub struct StatusLine;

impl PageListener for StatusLine {
    fn page(&self, page: &CommittedPage<'_>) {
        status(&format!(
            "collecting {}: {} behind, {} events this run",
            page.stream,
            crate::human::duration_secs(page.duo_lag_ms / 1000),
            page.run_events
        ));
    }

    fn finished(&self, _stream: &StreamId, _failed: bool) {}
}

pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing the page in flight"),
    ]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Pings the watchdog every half interval while no integration is wedged (busy without
/// progress for a whole interval). Runs on the supervisor task, so a dead runtime stops it too.
pub async fn watchdog_loop(interval: Duration, observer: Arc<Observer>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stalled = observer.stalled(interval.as_millis() as i64);
        if stalled.is_empty() {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(integrations = ?stalled, "collection made no progress for a whole watchdog interval; not pinging the watchdog so systemd restarts the service");
        }
    }
}

async fn metrics(State(observer): State<Arc<Observer>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        observer.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(observer): State<Arc<Observer>>) -> (StatusCode, String) {
    if observer.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let failing = observer.failing_streams();
        let why = if failing.is_empty() {
            "starting\n".to_string()
        } else {
            let names: Vec<String> = failing.iter().map(|s| s.to_string()).collect();
            format!("failing streams: {}\n", names.join(", "))
        };
        (StatusCode::SERVICE_UNAVAILABLE, why)
    }
}

/// Binds the metrics listener (before READY, so a bad address fails the start).
pub async fn bind_metrics(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `/metrics`, `/healthz` and `/readyz` until cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    observer: Arc<Observer>,
    cancel: CancellationToken,
) {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(observer);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}
