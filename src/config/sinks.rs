//! Validation of `[[sink]]` tables.

use std::path::PathBuf;

use super::raw::RawSink;
use super::validate::{validate_name, Report};
use super::{SinkKind, SinkSettings};
use crate::normalize::Format;

pub(super) fn validate_sink(
    report: &mut Report,
    scope: String,
    raw: RawSink,
) -> Option<SinkSettings> {
    let name = validate_name(report, &scope, raw.name);
    let format = match raw.format.as_deref() {
        None => Some(Format::default()),
        Some(f) => match f.parse::<Format>() {
            Ok(format) => Some(format),
            Err(e) => {
                report.error(&scope, "format", e);
                None
            }
        },
    };
    let kind = match raw.kind.as_deref() {
        None => {
            report.error(&scope, "type", "missing; use \"file\" or \"stdout\"");
            None
        }
        Some("file") => match raw.path {
            Some(p) if !p.trim().is_empty() => Some(SinkKind::File {
                path: PathBuf::from(p),
            }),
            _ => {
                report.error(
                    &scope,
                    "path",
                    "a file sink needs `path`, e.g. \"/var/log/duo-collector/events.jsonl\"",
                );
                None
            }
        },
        Some("stdout") => {
            if raw.path.is_some() {
                report.error(
                    &scope,
                    "path",
                    "a stdout sink takes no path; remove it or use type = \"file\"",
                );
            }
            Some(SinkKind::Stdout)
        }
        Some(other) => {
            report.error(
                &scope,
                "type",
                format!("unknown sink type {other:?}; use \"file\" or \"stdout\""),
            );
            None
        }
    };
    let exclude_fields = raw.exclude_fields.unwrap_or_default();
    for path in &exclude_fields {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            report.error(
                &scope,
                "exclude_fields",
                format!("{path:?} is not a dotted field path such as \"access_device.location\""),
            );
        }
    }
    Some(SinkSettings {
        name: name?,
        format: format?,
        exclude_fields,
        kind: kind?,
    })
}
