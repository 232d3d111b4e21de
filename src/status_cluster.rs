//! `status` on the NATS state store: which instance holds which stream and since when, and the
//! instances sharing the buckets (live ones, and any that still hold a lease they no longer
//! renew).

use serde::Serialize;

use crate::state::LeaseView;
use crate::status::{iso, StatusRow};

/// One instance as the lease bucket shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct InstanceRow {
    pub instance: String,
    /// Announced itself within `lease_ttl`.
    pub live: bool,
    pub streams_held: usize,
    /// When it took the oldest lease it holds, RFC 3339.
    pub holding_since: Option<String>,
}

/// Sets each row's holder from the lease bucket.
pub fn attach_holders(rows: &mut [StatusRow], view: &LeaseView) {
    let by_stream: std::collections::HashMap<(&str, Option<&str>, &str), _> = view
        .holders
        .iter()
        .map(|h| {
            let stream = &h.stream;
            let key = (
                stream.integration.as_str(),
                stream.account_id.as_deref(),
                stream.source_name(),
            );
            (key, h)
        })
        .collect();
    for row in rows {
        let key = (
            row.integration.as_str(),
            row.account_id.as_deref(),
            row.log.as_str(),
        );
        if let Some(h) = by_stream.get(&key) {
            row.held_by = Some(h.instance.clone());
            row.held_since = Some(iso(h.since_ms));
        }
    }
}

/// Every instance that is live or holds a lease, by id.
pub fn instance_rows(view: &LeaseView) -> Vec<InstanceRow> {
    let mut ids: Vec<&String> = view
        .live
        .iter()
        .chain(view.holders.iter().map(|h| &h.instance))
        .collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let held = view.holders.iter().filter(|h| &h.instance == id);
            InstanceRow {
                instance: id.clone(),
                live: view.live.contains(id),
                streams_held: held.clone().count(),
                holding_since: held.map(|h| h.since_ms).min().map(iso),
            }
        })
        .collect()
}

pub fn render_instances_text(rows: &[InstanceRow]) -> String {
    let mut out = String::from("instances (NATS state store)\n");
    if rows.is_empty() {
        out.push_str("  none running (no instance announced itself within lease_ttl)\n");
    }
    for r in rows {
        out.push_str(&format!(
            "  {} : {}, {}{}\n",
            r.instance,
            if r.live {
                "live"
            } else {
                "not seen within lease_ttl (its leases expire)"
            },
            crate::human::count(r.streams_held as u64, "stream", "streams"),
            r.holding_since
                .as_ref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StreamId;
    use crate::log_kind::LogKind;
    use crate::state::LeaseHolder;

    fn holder(account: &str, instance: &str, since_ms: i64) -> LeaseHolder {
        LeaseHolder {
            stream: StreamId::new("msp", Some(account.to_string()), LogKind::Authentication),
            instance: instance.to_string(),
            since_ms,
            revision: crate::state::Revision(1),
        }
    }

    #[test]
    fn instances_count_their_streams_and_a_silent_holder_shows_as_not_live() {
        let view = LeaseView {
            holders: vec![
                holder("a", "host-1", 2_000),
                holder("b", "host-1", 1_000),
                holder("c", "gone-9", 500),
            ],
            live: ["host-1".to_string(), "host-2".to_string()].into(),
        };
        let rows = instance_rows(&view);
        assert_eq!(
            rows,
            vec![
                InstanceRow {
                    instance: "gone-9".into(),
                    live: false,
                    streams_held: 1,
                    holding_since: Some(iso(500)),
                },
                InstanceRow {
                    instance: "host-1".into(),
                    live: true,
                    streams_held: 2,
                    holding_since: Some(iso(1_000)),
                },
                InstanceRow {
                    instance: "host-2".into(),
                    live: true,
                    streams_held: 0,
                    holding_since: None,
                },
            ]
        );
        let text = render_instances_text(&rows);
        assert!(text.contains("host-1 : live, 2 streams since"), "{text}");
        assert!(
            text.contains("gone-9 : not seen within lease_ttl"),
            "{text}"
        );
    }
}
