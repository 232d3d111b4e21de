//! The units that flow from the pager to the sinks.

use std::fmt;

use crate::log_kind::LogKind;

/// One collection stream: its own checkpoint, its own failures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub integration: String,
    /// The MSP child account, or `None` for the integration's own account.
    pub account_id: Option<String>,
    pub log: LogKind,
}

impl StreamId {
    pub fn new(integration: &str, account_id: Option<String>, log: LogKind) -> Self {
        StreamId {
            integration: integration.to_string(),
            account_id,
            log,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account_id {
            Some(a) => write!(f, "{}/{}/{}", self.integration, a, self.log),
            None => write!(f, "{}/{}", self.integration, self.log),
        }
    }
}

/// One Duo record, kept as the exact JSON text Duo sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub raw: String,
    /// Stable id for downstream deduplication (`txid`, `telephony_id`, … or a content hash).
    pub event_id: String,
    /// When the event happened, epoch milliseconds.
    pub ts_ms: i64,
}

/// The events of one page, handed to every sink of the stream's integration.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub stream: &'a StreamId,
    pub account_name: Option<&'a str>,
    /// RFC 3339 time at which the page was fetched.
    pub collected_at: &'a str,
    pub events: &'a [Event],
}
