//! `test-connectivity` for a sink: each driver, opened with its real settings (TLS roots,
//! credentials, stream), reaches its destination the way a delivery would, and sends nothing.

use super::config::{SinkKind, SinkSettings};
use super::{file, DriverError, HttpSink, NatsSink, SyslogSink};

/// What a probe found when nothing stood in its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The destination answered as a delivery needs it to.
    Reached(String),
    /// Nothing to answer with (UDP syslog has no handshake): as far as can be told.
    Unverified { detail: String, hint: &'static str },
}

/// Opens the sink's driver and asks it to reach its destination.
pub async fn probe(settings: &SinkSettings) -> Result<Probe, DriverError> {
    match &settings.kind {
        SinkKind::File { path, .. } => file::probe(path).map(Probe::Reached),
        SinkKind::Stdout => Ok(Probe::Reached("standard output".to_string())),
        SinkKind::Syslog(s) => SyslogSink::open(&settings.name, s)?.probe().await,
        SinkKind::Http(s) => HttpSink::open(s)?.probe().await.map(Probe::Reached),
        SinkKind::Nats(s) => NatsSink::open(s)?.probe().await.map(Probe::Reached),
    }
}
