//! The Duo log kinds and the facts about each endpoint that the pager needs. A leaf: it imports
//! nothing from the crate, so every module may name a kind.

use std::fmt;
use std::str::FromStr;

/// One Duo log endpoint. The string form is what configs, state and events use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogKind {
    Authentication,
    Administrator,
    Telephony,
    Activity,
    TrustMonitor,
    OfflineEnrollment,
}

/// How an endpoint pages, which decides the shape of its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// v2 logs: `mintime`/`maxtime` in ms, `next_offset` cursor, `limit` up to 1000.
    V2,
    /// Trust Monitor: ms window on surfaced time, `offset` cursor, `limit` up to 200.
    TrustMonitor,
    /// v1 logs: `mintime` in seconds, the 1000 earliest events, no cursor.
    V1,
}

impl LogKind {
    pub const ALL: [LogKind; 6] = [
        LogKind::Authentication,
        LogKind::Administrator,
        LogKind::Telephony,
        LogKind::Activity,
        LogKind::TrustMonitor,
        LogKind::OfflineEnrollment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Authentication => "authentication",
            LogKind::Administrator => "administrator",
            LogKind::Telephony => "telephony",
            LogKind::Activity => "activity",
            LogKind::TrustMonitor => "trust_monitor",
            LogKind::OfflineEnrollment => "offline_enrollment",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            LogKind::Authentication => "/admin/v2/logs/authentication",
            LogKind::Administrator => "/admin/v1/logs/administrator",
            LogKind::Telephony => "/admin/v2/logs/telephony",
            LogKind::Activity => "/admin/v2/logs/activity",
            LogKind::TrustMonitor => "/admin/v1/trust_monitor/events",
            LogKind::OfflineEnrollment => "/admin/v1/logs/offline_enrollment",
        }
    }

    pub fn paging(self) -> Paging {
        match self {
            LogKind::Authentication | LogKind::Telephony | LogKind::Activity => Paging::V2,
            LogKind::TrustMonitor => Paging::TrustMonitor,
            LogKind::Administrator | LogKind::OfflineEnrollment => Paging::V1,
        }
    }

    /// The largest `limit` the endpoint accepts (v1 endpoints take none and return up to 1000).
    pub fn max_page_size(self) -> u32 {
        match self.paging() {
            Paging::TrustMonitor => 200,
            Paging::V2 | Paging::V1 => 1000,
        }
    }

    pub fn names() -> String {
        LogKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown log kind {s:?}; valid kinds: {}", LogKind::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in LogKind::ALL {
            assert_eq!(kind.as_str().parse::<LogKind>(), Ok(kind));
        }
        assert!("auth"
            .parse::<LogKind>()
            .unwrap_err()
            .contains("authentication"));
    }
}
