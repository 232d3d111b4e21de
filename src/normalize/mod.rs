//! Event normalization: turns a Duo record into the bytes a sink writes. Pure: no I/O.
//!
//! Every format appends the collector's own metadata (`_duo_collector`) so that a consumer can
//! always tell where an event came from and deduplicate on `event_id`.

mod raw;

use std::fmt;
use std::str::FromStr;

use crate::event::{Batch, Event};

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

/// Renders each event of a batch as one line (without the trailing newline) into `out`,
/// calling `emit` after each line with the range of `out` that holds it.
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
