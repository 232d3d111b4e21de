//! The syslog sink: RFC 5424 (or 3164) messages over UDP, TCP or TLS.
//!
//! Acknowledgement is only what the transport gives: TCP and TLS = the piece was written and
//! flushed to the socket (syslog has no application-level ack, so a receiver that dies right
//! after reading loses what it read); UDP = the datagrams were sent (lossy). Before each write
//! the connection is checked for a close by the receiver, and after a TLS handshake the sink
//! waits briefly for a rejection (a TLS 1.3 server rejects a client certificate only after the
//! client's handshake finished), so a refused connection fails the piece instead of
//! swallowing it. Any error drops the connection; the retry reconnects.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::config::{Batching, SyslogProtocol, SyslogSettings, SyslogTransport};
use super::syslog_frame::{self, Header, SdElement};
use super::{DriverError, Rendered};

/// The SD-ID of the element that carries the collector's metadata (32473 is the enterprise
/// number RFC 5612 reserves for examples and documentation).
pub const SD_ID: &str = "duo@32473";
/// How long a new TLS connection is watched for a rejection by the server.
const TLS_SETTLE: Duration = Duration::from_millis(500);

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub struct SyslogSink {
    name: String,
    settings: SyslogSettings,
    hostname: String,
    procid: String,
    tls: Option<TlsConnector>,
    conn: Option<Conn>,
    truncated: Arc<AtomicU64>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("address", &self.settings.address)
            .field("transport", &self.settings.transport)
            .finish()
    }
}

/// This machine's host name, for the HOSTNAME field.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Why a connection or a write failed. Every one of them may work on a new connection except a
/// TLS server name that is not a name at all, which only the configuration can fix.
#[derive(Debug, thiserror::Error)]
enum SyslogError {
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("{address} resolves to no address")]
    NoAddress { address: String },
    #[error("UDP socket: {0}")]
    UdpSocket(std::io::Error),
    #[error("{what} timed out after {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS server name {name:?}: {reason}")]
    ServerName { name: String, reason: String },
    #[error("TLS handshake with {address}: {source}")]
    Handshake {
        address: String,
        source: std::io::Error,
    },
    #[error("{address} refused the TLS session: {reason}")]
    Refused {
        address: String,
        reason: Box<SyslogError>,
    },
    #[error("UDP send to {address}: {source}")]
    UdpSend {
        address: String,
        source: std::io::Error,
    },
    #[error("writing to {address}: {source}")]
    Write {
        address: String,
        source: std::io::Error,
    },
    #[error("the receiver closed the connection")]
    Closed,
    #[error("reading from the receiver: {0}")]
    Read(std::io::Error),
}

impl From<SyslogError> for DriverError {
    fn from(error: SyslogError) -> DriverError {
        match error {
            SyslogError::ServerName { .. } => DriverError::permanent(
                error.to_string(),
                "set the sink's `server_name` to the host name in the receiver's certificate",
            ),
            _ => DriverError::transient(error.to_string()),
        }
    }
}

impl SyslogSink {
    pub fn open(name: &str, settings: &SyslogSettings) -> Result<SyslogSink, DriverError> {
        let tls = match settings.transport {
            SyslogTransport::Tls => Some(TlsConnector::from(Arc::new(super::tls::client_config(
                &settings.tls,
            )?))),
            _ => None,
        };
        Ok(SyslogSink {
            name: name.to_string(),
            settings: settings.clone(),
            hostname: settings.hostname.clone().unwrap_or_else(local_hostname),
            procid: std::process::id().to_string(),
            tls,
            conn: None,
            truncated: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Connects as a delivery would (TCP, and the TLS handshake with the sink's certificates);
    /// UDP has no handshake, so only the address is resolved.
    pub async fn probe(&self) -> Result<super::Probe, DriverError> {
        let address = &self.settings.address;
        if self.settings.transport == SyslogTransport::Udp {
            return match tokio::net::lookup_host(address.as_str()).await {
                Ok(_) => Ok(super::Probe::Unverified {
                    detail: format!(
                        "{address} resolves; UDP has no handshake, so reachability cannot be tested"
                    ),
                    hint: "prefer transport = \"tcp\" or \"tls\" for delivery you can verify",
                }),
                Err(e) => Err(DriverError::permanent(
                    format!("{address}: {e}"),
                    "check the address",
                )),
            };
        }
        self.connect()
            .await
            .map(|_| {
                super::Probe::Reached(format!("syslog receiver {address} accepts connections"))
            })
            .map_err(DriverError::from)
    }

    /// Batch limits, and the header bytes each message adds to its line.
    pub fn limits(&self) -> (Batching, usize) {
        (self.settings.batch, 200)
    }

    /// Messages truncated to `max_message_size` so far (UDP).
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// Formats event `i` of the page as one unframed message.
    fn message(&self, page: &Rendered<'_>, i: usize, out: &mut Vec<u8>) {
        let batch = page.batch;
        let event = &batch.events[i];
        let header = Header {
            facility: self.settings.facility.code(),
            severity: crate::normalize::syslog_severity(batch.stream, event),
            timestamp_ms: Some(event.ts_ms),
            hostname: &self.hostname,
            app_name: &self.settings.app_name,
            procid: &self.procid,
            msgid: batch.stream.source_name(),
        };
        match self.settings.protocol {
            SyslogProtocol::Rfc3164 => syslog_frame::rfc3164(out, &header, page.line(i)),
            SyslogProtocol::Rfc5424 => {
                let mut params = vec![
                    ("integration", batch.stream.integration.as_str()),
                    ("log", batch.stream.source_name()),
                    ("event_id", event.event_id.as_str()),
                ];
                if let Some(account) = &batch.stream.account_id {
                    params.push(("account_id", account));
                }
                let sd = [SdElement {
                    id: SD_ID,
                    params: &params,
                }];
                syslog_frame::rfc5424(out, &header, &sd, page.line(i));
            }
        }
    }

    async fn connect(&self) -> Result<Conn, SyslogError> {
        let s = &self.settings;
        let timeout = s.timeout;
        let within = |what: &'static str| move |_| SyslogError::Timeout { what, timeout };
        let address = || s.address.clone();
        if s.transport == SyslogTransport::Udp {
            let addr = tokio::net::lookup_host(&s.address)
                .await
                .map_err(|source| SyslogError::Resolve {
                    address: address(),
                    source,
                })?
                .next()
                .ok_or_else(|| SyslogError::NoAddress { address: address() })?;
            let local = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = UdpSocket::bind(local)
                .await
                .map_err(SyslogError::UdpSocket)?;
            socket.connect(addr).await.map_err(SyslogError::UdpSocket)?;
            return Ok(Conn::Udp(socket));
        }
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(&s.address))
            .await
            .map_err(within("connect"))?
            .map_err(|source| SyslogError::Connect {
                address: address(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(connector) = &self.tls else {
            return Ok(Conn::Tcp(tcp));
        };
        let name = s.tls.server_name.clone().unwrap_or_else(|| s.host.clone());
        let server_name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            SyslogError::ServerName {
                name,
                reason: e.to_string(),
            }
        })?;
        let tls = tokio::time::timeout(timeout, connector.connect(server_name, tcp))
            .await
            .map_err(within("TLS handshake"))?
            .map_err(|source| SyslogError::Handshake {
                address: address(),
                source,
            })?;
        let mut conn = Conn::Tls(Box::new(tls));
        check_open(&mut conn, TLS_SETTLE)
            .await
            .map_err(|reason| SyslogError::Refused {
                address: address(),
                reason: Box::new(reason),
            })?;
        Ok(conn)
    }

    /// Every failure here is a connection or a write that may work again on a new connection.
    pub async fn send(
        &mut self,
        page: &Rendered<'_>,
        events: Range<usize>,
    ) -> Result<(), DriverError> {
        let result = self.try_send(page, events).await;
        if result.is_err() {
            // Whatever state the connection is in, a retry starts on a fresh one.
            self.conn = None;
        }
        result.map_err(DriverError::from)
    }

    async fn try_send(
        &mut self,
        page: &Rendered<'_>,
        events: Range<usize>,
    ) -> Result<(), SyslogError> {
        if let Some(conn) = &mut self.conn {
            if let Err(e) = check_open(conn, Duration::ZERO).await {
                tracing::info!(sink = %self.name, reason = %e, "syslog connection lost; reconnecting");
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let mut buf = Vec::new();
        let mut message = Vec::with_capacity(2048);
        let max = self.settings.max_message_size;
        for i in events {
            message.clear();
            self.message(page, i, &mut message);
            match self.conn.as_mut() {
                Some(Conn::Udp(socket)) => {
                    if syslog_frame::truncate_datagram(&mut message, max) {
                        let total = self.truncated.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(sink = %self.name, event_id = %page.batch.events[i].event_id, max_message_size = max, truncated_total = total, "syslog message longer than max_message_size; truncated");
                    }
                    socket
                        .send(&message)
                        .await
                        .map_err(|source| SyslogError::UdpSend {
                            address: self.settings.address.clone(),
                            source,
                        })?;
                }
                _ => syslog_frame::octet_counted(&mut buf, &message),
            }
        }
        let timeout = self.settings.timeout;
        let address = &self.settings.address;
        let write = async {
            match self.conn.as_mut() {
                Some(Conn::Tcp(s)) => {
                    s.write_all(&buf).await?;
                    s.flush().await
                }
                Some(Conn::Tls(s)) => {
                    s.write_all(&buf).await?;
                    s.flush().await
                }
                _ => Ok(()),
            }
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| SyslogError::Timeout {
                what: "writing",
                timeout,
            })?
            .map_err(|source| SyslogError::Write {
                address: address.clone(),
                source,
            })
    }
}

/// Fails if the receiver closed the connection or sent a TLS alert; waits up to `wait` for
/// that (zero: only what has already arrived). A syslog receiver never sends data otherwise.
async fn check_open(conn: &mut Conn, wait: Duration) -> Result<(), SyslogError> {
    let mut buf = [0u8; 512];
    let read = async {
        match conn {
            Conn::Udp(_) => std::future::pending().await,
            Conn::Tcp(s) => s.read(&mut buf).await,
            Conn::Tls(s) => s.read(&mut buf).await,
        }
    };
    match tokio::time::timeout(wait, read).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => Err(SyslogError::Closed),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(SyslogError::Read(e)),
    }
}
