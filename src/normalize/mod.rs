//! Event normalization: turns a Duo record into the bytes a sink writes. Pure: no I/O.
//!
//! Every format appends the collector's own metadata (`_duo_collector`) so that a consumer can
//! always tell where an event came from and deduplicate on `event_id`.

mod cef;
mod ecs;
mod filter;
mod inventory_ecs;
mod inventory_render;
mod inventory_text;
mod ip;
mod json;
mod ocsf;
mod raw;
mod record;

/// ECS for the inventory and its changes.
pub use inventory_ecs::{inventory_change_ecs, inventory_ecs};
/// Raw and CEF for the inventory and its changes.
pub use inventory_text::{
    change_event_id, inventory_cef, inventory_cef_excluding, inventory_change_cef,
    inventory_change_cef_excluding, inventory_change_raw, inventory_event_id, inventory_raw,
};
/// OCSF for the inventory and its changes.
pub use ocsf::inventory::{
    change_event as inventory_change_ocsf, inventory_event as inventory_ocsf, InventoryCtx,
};

use std::fmt;
use std::str::FromStr;

use crate::event::{Batch, Event, StreamId};
use crate::logs::LogKind;

/// The output format of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// OCSF 1.7.0 JSON, one class per log kind and action; unmapped Duo fields under
    /// `unmapped`, the collector's metadata under `unmapped._duo_collector`.
    #[default]
    Ocsf,
    /// Elastic Common Schema JSON; unmapped Duo fields under `cisco_duo.<kind>`, the
    /// collector's metadata under `cisco_duo.collector`.
    Ecs,
    /// ArcSight CEF text (for syslog), with labelled custom strings.
    Cef,
    /// The Duo record unchanged, plus one `_duo_collector` object.
    Raw,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Ocsf, Format::Ecs, Format::Cef, Format::Raw];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
            Format::Raw => "raw",
        }
    }
}

/// What every event of a batch shares.
pub(crate) struct Ctx<'b> {
    pub integration: &'b str,
    pub account_id: Option<&'b str>,
    pub account_name: Option<&'b str>,
    pub log: LogKind,
    pub collected_at: &'b str,
    /// `collected_at` in epoch ms.
    pub processed_ms: Option<i64>,
}

impl<'b> Ctx<'b> {
    fn new(batch: &'b Batch<'b>) -> Self {
        Ctx {
            integration: &batch.stream.integration,
            account_id: batch.stream.account_id.as_deref(),
            account_name: batch.account_name,
            log: batch.stream.log,
            collected_at: batch.collected_at,
            processed_ms: chrono::DateTime::parse_from_rfc3339(batch.collected_at)
                .ok()
                .map(|t| t.timestamp_millis()),
        }
    }

    /// The `_duo_collector` object (as in the raw format).
    pub(crate) fn write_collector(&self, w: &mut json::W<'_>, event: &Event) {
        w.obj("_duo_collector", |w| self.collector_fields(w, event));
    }

    pub(crate) fn collector_fields(&self, w: &mut json::W<'_>, event: &Event) {
        w.str("integration", self.integration);
        w.opt_str("account_id", self.account_id);
        w.opt_str("account_name", self.account_name);
        w.str("log", self.log.as_str());
        w.str("collected_at", self.collected_at);
        w.str("event_id", &event.event_id);
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
        render_filtered(self.format, &self.exclude_fields, batch, out)
    }
}

/// RFC 5424 severity of an event (0 emergency … 7 debug), for syslog headers.
pub fn syslog_severity(stream: &StreamId, event: &Event) -> u8 {
    const WARNING: u8 = 4;
    const NOTICE: u8 = 5;
    const INFORMATIONAL: u8 = 6;
    if stream.inventory.is_some() {
        return INFORMATIONAL;
    }
    match stream.log {
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
    render_filtered(format, &[], batch, out)
}

/// [`render_batch`] with `exclude_fields` (dotted paths in the output format's own names; for
/// CEF, extension keys).
pub fn render_filtered(
    format: Format,
    exclude: &[String],
    batch: &Batch<'_>,
    out: &mut Vec<u8>,
) -> Vec<std::ops::Range<usize>> {
    if let (Some(items), Some(kind)) = (batch.inventory, batch.stream.inventory) {
        return inventory_render::render(format, exclude, batch, kind, items, out);
    }
    let mut lines = Vec::with_capacity(batch.events.len());
    match format {
        Format::Raw => {
            let prefix = raw::metadata_prefix(batch);
            let paths: Vec<&str> = exclude.iter().map(String::as_str).collect();
            let mut line = Vec::new();
            for event in batch.events {
                let start = out.len();
                if paths.is_empty() {
                    raw::render(event, &prefix, out);
                } else {
                    line.clear();
                    raw::render(event, &prefix, &mut line);
                    let text = String::from_utf8_lossy(&line);
                    filter::write_filtered(out, &text, &paths);
                }
                lines.push(start..out.len());
            }
        }
        Format::Ocsf | Format::Ecs => {
            let ctx = Ctx::new(batch);
            for event in batch.events {
                let start = out.len();
                let mut w = json::W::new(out, exclude);
                if format == Format::Ocsf {
                    ocsf::render(&ctx, event, &mut w);
                } else {
                    ecs::render(&ctx, event, &mut w);
                }
                lines.push(start..out.len());
            }
        }
        Format::Cef => {
            let ctx = Ctx::new(batch);
            for event in batch.events {
                let start = out.len();
                cef::render(&ctx, event, exclude, out);
                lines.push(start..out.len());
            }
        }
    }
    lines
}

/// Renders one event on its own; for tests and tools.
pub fn render_one(format: Format, batch: &Batch<'_>, event: &Event) -> String {
    Formatter::new(format, Vec::new()).render_one(batch, event)
}

impl Formatter {
    /// Renders one event on its own, with this formatter's exclusions; for tests and tools.
    pub fn render_one(&self, batch: &Batch<'_>, event: &Event) -> String {
        let mut out = Vec::new();
        let single = Batch {
            events: std::slice::from_ref(event),
            ..*batch
        };
        self.render_batch(&single, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
