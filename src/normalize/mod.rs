//! Event normalization: turns a Duo record into the bytes a sink writes. Pure: no I/O.
//!
//! Every format appends the collector's own metadata (`_duo_collector`) so that a consumer can
//! always tell where an event came from and deduplicate on `event_id`.

mod raw;

use std::fmt;
use std::str::FromStr;

use crate::event::{Batch, Event};
use crate::logs::LogKind;

/// The output format of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The Duo record unchanged, plus one `_duo_collector` object.
    #[default]
    Raw,
}

impl Format {
    pub const ALL: [Format; 1] = [Format::Raw];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL
                    .iter()
                    .map(|f| format!("{:?}", f.as_str()))
                    .collect();
                format!("unknown format {s:?}; valid formats: {}", names.join(", "))
            })
    }
}

/// A sink's rendering settings: the format and the fields it drops.
#[derive(Debug, Clone, Default)]
pub struct Formatter {
    pub format: Format,
    /// Dotted paths removed from every event (in the output format's own field names).
    pub exclude_fields: Vec<String>,
}

impl Formatter {
    pub fn new(format: Format, exclude_fields: Vec<String>) -> Self {
        Formatter {
            format,
            exclude_fields,
        }
    }

    /// Renders each event of a batch as one line (no trailing newline) into `out`, returning
    /// the range of `out` that holds each event's line, in order.
    pub fn render_batch(
        &self,
        batch: &Batch<'_>,
        out: &mut Vec<u8>,
    ) -> Vec<std::ops::Range<usize>> {
        render_batch(self.format, batch, out)
    }
}

/// RFC 5424 severity of an event (0 emergency … 7 debug), for syslog headers.
pub fn syslog_severity(log: LogKind, event: &Event) -> u8 {
    const WARNING: u8 = 4;
    const NOTICE: u8 = 5;
    const INFORMATIONAL: u8 = 6;
    match log {
        LogKind::Authentication
            if event.raw.contains("\"result\":\"fraud\"")
                || event.raw.contains("\"result\":\"denied\"") =>
        {
            WARNING
        }
        LogKind::TrustMonitor => WARNING,
        LogKind::Administrator => NOTICE,
        _ => INFORMATIONAL,
    }
}

/// Renders each event of a batch as one line (without the trailing newline) into `out`,
/// returning the range of `out` that holds each line.
pub fn render_batch(
    format: Format,
    batch: &Batch<'_>,
    out: &mut Vec<u8>,
) -> Vec<std::ops::Range<usize>> {
    let mut lines = Vec::with_capacity(batch.events.len());
    match format {
        Format::Raw => {
            let prefix = raw::metadata_prefix(batch);
            for event in batch.events {
                let start = out.len();
                raw::render(event, &prefix, out);
                lines.push(start..out.len());
            }
        }
    }
    lines
}

/// Renders one event on its own; for tests and tools.
pub fn render_one(format: Format, batch: &Batch<'_>, event: &Event) -> String {
    let mut out = Vec::new();
    let single = Batch {
        events: std::slice::from_ref(event),
        ..*batch
    };
    render_batch(format, &single, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
