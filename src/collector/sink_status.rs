//! The collector's side of a sink's delivery reports: the sink status that `status` shows
//! (last success, failing since, last error) goes to the state store, off the async workers;
//! failed attempts are counted; a stream waiting out a sink's retry is progress for the
//! watchdog (backpressure is not a wedge).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::clock::now_ms;
use crate::observe::Observer;
use crate::sink::{DeliveryEvents, FailedAttempt};
use crate::state::{SinkAttempt, StateStore, Write};

#[derive(Debug)]
pub struct SinkStatusRecorder {
    store: StateStore,
    observer: Arc<Observer>,
}

impl SinkStatusRecorder {
    pub fn new(store: StateStore, observer: Arc<Observer>) -> SinkStatusRecorder {
        SinkStatusRecorder { store, observer }
    }

    async fn record(&self, sink: &str, error: Option<String>) {
        let attempt = SinkAttempt {
            sink: sink.to_string(),
            now_ms: now_ms(),
            error,
        };
        if let Err(e) = self.store.write(Write::Sink(attempt)).await {
            tracing::warn!(sink, error = %e, "cannot record the sink's delivery state");
        }
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
            self.record(sink, Some(failed.error.to_string())).await;
        })
    }

    fn delivered<'a>(&'a self, sink: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.record(sink, None))
    }
}
