//! TLS for the CA's port and its clients, with rustls on ring.
//!
//! - [`ServingCert`]: the control plane's serving certificate, issued by
//!   the mesh CA and issued again once half its life has gone (checked
//!   at each handshake, so no task is needed);
//! - [`server_config`] / [`client_config`]: rustls configurations
//!   speaking HTTP/2 (gRPC) only; a client trusts exactly the roots it is
//!   given;
//! - [`TlsIncoming`]: accepted TCP connections after their handshake, as
//!   the stream tonic's server takes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::ca::{Ca, CaError, ServingNames};
use crate::x509;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS configuration could not be built. Not retryable: the
/// certificates or keys are wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Certificate(#[from] x509::X509Error),
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
    #[error("the serving certificate: {0}")]
    Issue(#[from] CaError),
    #[error("{0:?} is not a DNS name or IP address to verify a server by")]
    ServerName(String),
}

/// rustls' ring provider (never aws-lc).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_err(what: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { what, source }
}

/// The control plane's serving certificate, from the mesh CA, renewed at
/// half its life.
pub struct ServingCert {
    ca: Arc<Ca>,
    names: ServingNames,
    ttl: Duration,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Arc<CertifiedKey>, SystemTime)>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    pub fn new(ca: Arc<Ca>, names: ServingNames, ttl: Duration) -> Result<ServingCert, TlsError> {
        let provider = provider();
        let first = issue(&ca, &names, ttl, &provider)?;
        Ok(ServingCert {
            ca,
            names,
            ttl,
            provider,
            current: Mutex::new(first),
        })
    }

    /// The certificate served now (the leaf first).
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().expect("serving cert lock");
        if SystemTime::now() >= current.1 {
            match issue(&self.ca, &self.names, self.ttl, &self.provider) {
                Ok(next) => *current = next,
                // The old one is still valid for half its life.
                Err(e) => tracing::warn!("renewing the serving certificate: {e}"),
            }
        }
        current.0.clone()
    }
}

fn issue(
    ca: &Ca,
    names: &ServingNames,
    ttl: Duration,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, SystemTime), TlsError> {
    let issued = ca.issue_serving(names, ttl)?;
    let key = provider
        .key_provider
        .load_private_key(issued.key)
        .map_err(rustls_err("the serving key"))?;
    // The root is the peer's to have; leaf and intermediates are sent.
    let mut chain = issued.chain;
    chain.pop();
    let half = issued
        .not_after
        .duration_since(issued.not_before)
        .unwrap_or_default()
        / 2;
    Ok((
        Arc::new(CertifiedKey::new(chain, key)),
        issued.not_before + half,
    ))
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server configuration presenting `cert`, speaking HTTP/2.
pub fn server_config(cert: Arc<ServingCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err("the server's TLS versions"))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting only the certificates in `roots_pem`,
/// speaking HTTP/2.
pub fn client_config(roots_pem: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in x509::nonempty_certs_from_pem("the root certificate", roots_pem)? {
        roots
            .add(cert)
            .map_err(rustls_err("the root certificate"))?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err("the client's TLS versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A gRPC channel to `address` over TLS, verifying the server's
/// certificate against `roots_pem` for `server_name` (the address's IP
/// when `None`). Connects on first use and again after a failure; each
/// call times out after `timeout`. What an agent dials the CA with, and
/// what a proxy can dial xDS on the secure port with.
pub fn channel(
    address: SocketAddr,
    server_name: Option<&str>,
    roots_pem: &str,
    timeout: Duration,
) -> Result<tonic::transport::Channel, TlsError> {
    let config = client_config(roots_pem)?;
    let name = match server_name {
        Some(n) => {
            ServerName::try_from(n.to_string()).map_err(|_| TlsError::ServerName(n.to_string()))?
        }
        None => ServerName::IpAddress(address.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let connect = tower::service_fn(move |_: http::Uri| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect(address).await?;
            let _ = tcp.set_nodelay(true);
            let stream = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    // TLS is done by the connector; the URI only names the authority.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("an address is a valid authority")
        .timeout(timeout);
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// Connections of a TCP listener after their TLS handshake, for
/// `tonic::transport::Server::serve_with_incoming`. Handshakes run side
/// by side in their own tasks; one that fails or stalls is dropped (and
/// logged) without holding up the others. Dropping the stream stops
/// accepting.
pub struct TlsIncoming {
    rx: mpsc::Receiver<TlsStream<TcpStream>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsIncoming {
    pub fn new(listener: tokio::net::TcpListener, config: Arc<ServerConfig>) -> TlsIncoming {
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let closed = tx.clone();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("accept on the secure port: {e}");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(stream).await;
                        }
                        Ok(Err(e)) => handshake_failed(peer, &e.to_string()),
                        Err(_) => handshake_failed(peer, "timed out"),
                    }
                });
                if closed.is_closed() {
                    return;
                }
            }
        });
        TlsIncoming { rx, task }
    }
}

fn handshake_failed(peer: SocketAddr, why: &str) {
    tracing::debug!(%peer, "TLS handshake on the secure port failed: {why}");
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|s| s.map(Ok))
    }
}
