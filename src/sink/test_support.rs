//! What the sinks' unit tests share.

use std::sync::Mutex;

use futures::future::BoxFuture;

use super::{DeliveryEvents, FailedAttempt};

/// The sinks' delivery reports, in order: `"<sink> delivered"`, `"<sink> failed, retry in
/// <pause>"` or `"<sink> failed, given up"`.
#[derive(Debug, Default)]
pub struct RecordedDeliveries(Mutex<Vec<String>>);

impl RecordedDeliveries {
    pub fn reports(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl DeliveryEvents for RecordedDeliveries {
    fn attempt_failed<'a>(&'a self, failed: FailedAttempt<'a>) -> BoxFuture<'a, ()> {
        let report = match failed.retry_in {
            Some(pause) => format!("{} failed, retry in {pause:?}", failed.sink),
            None => format!("{} failed, given up", failed.sink),
        };
        self.0.lock().unwrap().push(report);
        Box::pin(async {})
    }

    fn delivered<'a>(&'a self, sink: &'a str) -> BoxFuture<'a, ()> {
        self.0.lock().unwrap().push(format!("{sink} delivered"));
        Box::pin(async {})
    }
}
