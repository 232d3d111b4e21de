//! Test peers for tests/it/proxy.rs: a TLS terminator in front of the in-process simulator, and a
//! small HTTP CONNECT proxy that records what it was asked. Test helpers, not product code.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

use crate::common::HOST;

/// A CA and a server certificate for the Duo host name and `localhost`.
pub struct TestCa {
    pub ca_pem: String,
    server_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

pub fn make_ca() -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "duo-collector proxy test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![HOST.to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    TestCa {
        ca_pem: ca_cert.pem(),
        server_chain: vec![cert.der().clone()],
        server_key_der: key.serialize_der(),
    }
}

/// TLS in front of the in-process simulator: accepts TLS on 127.0.0.1 and relays the
/// plaintext to the simulator's port.
pub async fn start_tls_terminator(ca: &TestCa, backend: SocketAddr) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            ca.server_chain.clone(),
            rustls_pki_types::PrivateKeyDer::Pkcs8(ca.server_key_der.clone().into()),
        )
        .unwrap();
    // The simulator speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// What a test proxy was asked.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub target: String,
    pub proxy_authorization: Option<String>,
}

/// A small HTTP CONNECT proxy on 127.0.0.1: records every CONNECT, tunnels the ones whose
/// target is in `routes` to the mapped address, answers 403 to the others, and 407 when it
/// requires credentials that were not sent.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<ConnectRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start(routes: Vec<(String, SocketAddr)>, required_auth: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(routes);
        let required_auth = Arc::new(required_auth);
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (routes, required_auth, recorded) =
                    (routes.clone(), required_auth.clone(), recorded.clone());
                tokio::spawn(async move {
                    let _ = tunnel(socket, &routes, required_auth.as_deref(), &recorded).await;
                });
            }
        });
        ConnectProxy { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<ConnectRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|r| r.target).collect()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the request head byte by byte, so no tunnelled byte is consumed with it.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::other("request head too long"));
        }
        head.push(socket.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

async fn tunnel(
    mut socket: TcpStream,
    routes: &[(String, SocketAddr)],
    required_auth: Option<&str>,
    recorded: &Mutex<Vec<ConnectRequest>>,
) -> std::io::Result<()> {
    let head = read_head(&mut socket).await?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next());
    let proxy_authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_string());
    let target = target.unwrap_or_default().to_string();
    recorded.lock().unwrap().push(ConnectRequest {
        target: format!("{method} {target}"),
        proxy_authorization: proxy_authorization.clone(),
    });
    if method != "CONNECT" {
        return socket
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
    }
    if let Some(wanted) = required_auth {
        if proxy_authorization.as_deref() != Some(wanted) {
            return socket
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    }
    let Some((_, backend)) = routes.iter().find(|(t, _)| t.eq_ignore_ascii_case(&target)) else {
        return socket
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
    };
    let mut upstream = TcpStream::connect(backend).await?;
    socket
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut socket, &mut upstream).await?;
    Ok(())
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
