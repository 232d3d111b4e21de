//! The collector's side of a sink's delivery reports: the sink status that `status` shows
//! (last success, failing since, last error) goes to the state store, off the async workers;
//! failed attempts are counted; a stream waiting out a sink's retry is progress for the
//! watchdog (backpressure is not a wedge).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::clock::now_ms;
use crate::observe::Observer;
use crate::sink::{DeliveryEvents, FailedAttempt};
use crate::state::State;

#[derive(Debug)]
pub struct SinkStatusRecorder {
    state: State,
    observer: Arc<Observer>,
}

impl SinkStatusRecorder {
    pub fn new(state: State, observer: Arc<Observer>) -> SinkStatusRecorder {
        SinkStatusRecorder { state, observer }
    }
}

impl DeliveryEvents for SinkStatusRecorder {
    fn attempt_failed<'a>(&'a self, failed: FailedAttempt<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let sink = failed.sink;
            self.observer.sink_error(sink);
            if let Some(pause) = failed.retry_in {
                self.observer.waiting(&failed.stream.integration, pause);
            }
            let (name, text) = (sink.to_string(), failed.error.to_string());
            let recorded = self
                .state
                .blocking(move |s| s.record_sink_failure(&name, now_ms(), &text))
                .await;
            if let Err(e) = recorded {
                tracing::warn!(sink, error = %e, "cannot record the sink's delivery state");
            }
        })
    }

    fn delivered<'a>(&'a self, sink: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = sink.to_string();
            let recorded = self
                .state
                .blocking(move |s| s.record_sink_success(&name, now_ms()))
                .await;
            if let Err(e) = recorded {
                tracing::warn!(sink, error = %e, "cannot record the sink's delivery state");
            }
        })
    }
}
