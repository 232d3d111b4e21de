//! What a sink driver says when it could not do what was asked: whether trying the same again
//! can help ([`DriverError::Transient`]) or not before someone changes the configuration or the
//! destination ([`DriverError::Permanent`], which carries that fix), and what a page's delivery
//! as a whole ends with ([`SinkError`]).

use std::time::Duration;

/// Why a driver could not open, connect or have a piece acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The destination may well accept it later: a network error, a timeout, HTTP 5xx, 408,
    /// 429, a server restarting.
    #[error("{detail}")]
    Transient {
        detail: String,
        /// The server asked us to wait this long (HTTP Retry-After).
        retry_after: Option<Duration>,
    },
    /// Retrying the same cannot succeed: bad credentials, a stream that does not exist, an
    /// HTTP 4xx other than 408/429, a certificate file that cannot be used.
    #[error("{detail}; fix: {fix}")]
    Permanent { detail: String, fix: String },
}

impl DriverError {
    pub fn transient(detail: impl Into<String>) -> Self {
        DriverError::Transient {
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn permanent(detail: impl Into<String>, fix: impl Into<String>) -> Self {
        DriverError::Permanent {
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, DriverError::Permanent { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DriverError::Transient { retry_after, .. } => *retry_after,
            DriverError::Permanent { .. } => None,
        }
    }
}

/// How the delivery of a page to one sink ended, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink:?}: {error}")]
    Open { sink: String, error: DriverError },
    #[error("sink {sink:?}: permanent failure, not retried: {error}")]
    Permanent { sink: String, error: DriverError },
    #[error("sink {sink:?}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        sink: String,
        attempts: u32,
        last: DriverError,
    },
    #[error("sink delivery cancelled by shutdown")]
    Cancelled,
}
