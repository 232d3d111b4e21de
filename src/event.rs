//! The units that flow from the pager to the sinks.

use std::fmt;

use crate::inventory::{ChangeEvent, Entity, InventoryKind};
use crate::log_kind::LogKind;

/// One collection stream: its own checkpoint, its own failures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub integration: String,
    /// The MSP child account, or `None` for the integration's own account.
    pub account_id: Option<String>,
    pub log: LogKind,
    /// Set for an inventory snapshot of this kind: its events are entities and changes, not
    /// log records, and `log` is not read (labels come from [`StreamId::source_name`]).
    pub inventory: Option<InventoryKind>,
}

impl StreamId {
    pub fn new(integration: &str, account_id: Option<String>, log: LogKind) -> Self {
        StreamId {
            integration: integration.to_string(),
            account_id,
            log,
            inventory: None,
        }
    }

    /// The stream of an inventory kind's snapshots.
    pub fn inventory(integration: &str, account_id: Option<String>, kind: InventoryKind) -> Self {
        StreamId {
            inventory: Some(kind),
            // Not read for an inventory stream; any value would do.
            ..StreamId::new(integration, account_id, LogKind::Administrator)
        }
    }

    /// What the stream carries, as sinks label it (syslog MSGID, NATS `{log}`, metrics): the
    /// log kind's name, or `inventory_<kind>`.
    pub fn source_name(&self) -> &'static str {
        match self.inventory {
            Some(kind) => kind.log_name(),
            None => self.log.as_str(),
        }
    }

    /// The endpoint the stream pages.
    pub fn path(&self) -> &'static str {
        match self.inventory {
            Some(kind) => kind.path(),
            None => self.log.path(),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account_id {
            Some(a) => write!(f, "{}/{}/{}", self.integration, a, self.source_name()),
            None => write!(f, "{}/{}", self.integration, self.source_name()),
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
    /// An inventory stream's page: what each event of `events` (same index) is; rendered by
    /// the inventory mappings instead of from the event's raw text.
    pub inventory: Option<&'a [InventoryItem]>,
}

impl<'a> Batch<'a> {
    /// A page of log events of a stream with no MSP account name.
    pub fn of_events(stream: &'a StreamId, collected_at: &'a str, events: &'a [Event]) -> Self {
        Batch {
            stream,
            account_name: None,
            collected_at,
            events,
            inventory: None,
        }
    }
}

/// One event of an inventory snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryItem {
    /// An entity as listed (secrets dropped).
    Entity(Entity),
    /// What changed since the previous complete snapshot.
    Change(ChangeEvent),
}
