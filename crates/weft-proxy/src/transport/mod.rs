//! The transport seam: the byte streams between the proxy and its peers,
//! and what is known about the connection a request came in on.
//!
//! Every connection the proxy serves or makes is a [`Stream`], so the
//! HTTP server, the TCP proxy and the upstream pools never name
//! `TcpStream` or a TLS type. Which transport a filter chain or a
//! cluster uses is data decided when its configuration compiles
//! ([`DownstreamTransport`], [`UpstreamTransport`]), in the spirit of
//! pingora's peer with its optional TLS, never code on the request path.
//! Envoy's `transport_socket` is read here: `raw_buffer` (plain) or the
//! TLS transport socket (`tls`: rustls with the ring provider, built in
//! [`tls`] from Envoy's TLS contexts, secrets resolved by name from
//! [`Secrets`]). Anything else is refused by name. A plain connection
//! pays nothing for TLS: no allocation, no lock, no extra branch per
//! request (the `tls` of its [`ConnectionInfo`] is `None`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use weft_envoy::TransportSocket;
use weft_envoy::TypedConfig;

use crate::error::CompileError;
use crate::io::Rewind;

pub(crate) mod certs;
mod params;
mod secrets;
pub(crate) mod tls;
mod verify;

pub use secrets::{Delivered, Secrets};
pub(crate) use tls::check_secret;

/// A TLS session the proxy accepted: the bytes listener filters read
/// (the ClientHello) are handed to the handshake first.
pub type TlsServerStream = tokio_rustls::server::TlsStream<Rewind<TcpStream>>;
pub type TlsClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A connection's byte stream, whatever carries it (TLS boxed: a plain
/// stream stays small).
pub enum Stream {
    Plain(TcpStream),
    TlsServer(Box<TlsServerStream>),
    TlsClient(Box<TlsClientStream>),
}

impl Stream {
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_nodelay(on),
            Stream::TlsServer(s) => s.get_ref().0.get_ref().set_nodelay(on),
            Stream::TlsClient(s) => s.get_ref().0.set_nodelay(on),
        }
    }

    /// The connection's peer address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            Stream::TlsServer(s) => s.get_ref().0.get_ref().peer_addr(),
            Stream::TlsClient(s) => s.get_ref().0.peer_addr(),
        }
    }

    /// The connection's local address.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.local_addr(),
            Stream::TlsServer(s) => s.get_ref().0.get_ref().local_addr(),
            Stream::TlsClient(s) => s.get_ref().0.local_addr(),
        }
    }
}

/// The local address of the upstream connection a response came on
/// (in the response's extensions; Envoy's `%UPSTREAM_LOCAL_ADDRESS%`).
#[derive(Clone, Copy, Debug)]
pub struct UpstreamLocal(pub std::net::SocketAddr);

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Stream::TlsServer(s) => f
                .debug_tuple("TlsServer")
                .field(s.get_ref().0.get_ref())
                .finish(),
            Stream::TlsClient(s) => f.debug_tuple("TlsClient").field(s.get_ref().0).finish(),
        }
    }
}

/// Dispatches to the stream inside, whatever carries it.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Plain($s) => $e,
            Stream::TlsServer($s) => $e,
            Stream::TlsClient($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

impl hyper_util::client::legacy::connect::Connection for Stream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let mut connected = hyper_util::client::legacy::connect::Connected::new();
        if let Ok(local) = self.local_addr() {
            connected = connected.extra(UpstreamLocal(local));
        }
        match self {
            // What ALPN negotiated decides the pool's protocol.
            Stream::TlsClient(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                connected.negotiated_h2()
            }
            _ => connected,
        }
    }
}

/// What is known about a downstream connection, carried with each of
/// its requests: the peer and addresses now, the TLS session's facts
/// when the connection is TLS.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// Where the client meant to connect before it was redirected to the
    /// proxy, when `original_dst` restored it; what ORIGINAL_DST
    /// clusters dial.
    pub original_dst: Option<SocketAddr>,
    /// The connection's local address (the restored destination when
    /// `original_dst` restored one).
    pub local: Option<SocketAddr>,
    /// The TLS session, when the connection is TLS (boxed: most
    /// connections in a test or a plaintext mesh have none).
    pub tls: Option<Box<TlsInfo>>,
    /// This connection's `x-forwarded-client-cert` element, made once
    /// when its connection manager adds one to each request.
    pub client_cert: Option<http::HeaderValue>,
    /// The server name the TLS inspector read from the ClientHello
    /// (Envoy's `requestedServerName()`: without the inspector, none).
    pub requested_server_name: Option<String>,
}

/// A downstream TLS session's facts, as RBAC, headers such as
/// `x-forwarded-client-cert` and access logs read them.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`, as Envoy's `%DOWNSTREAM_TLS_VERSION%`.
    pub version: &'static str,
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The application protocol negotiated by ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate chain (DER), leaf first, when it sent one.
    pub peer_certificates: Vec<Vec<u8>>,
    /// The identities in the client certificate's URI SANs
    /// (`spiffe://<trust domain>/ns/<ns>/sa/<sa>` in a mesh).
    pub peer_identities: Vec<String>,
    /// The client certificate's DNS SANs.
    pub peer_dns_sans: Vec<String>,
    /// The client certificate's subject as OpenSSL prints it in RFC 2253
    /// form (`CN=front,O=weft tests`), empty without a certificate: what
    /// RBAC's `authenticated` matches after the SANs, as Envoy does.
    pub peer_subject: String,
    /// The URI SANs of the proxy's own certificate on this connection.
    pub local_identities: Arc<[String]>,
}

impl ConnectionInfo {
    /// The scheme requests on this connection arrived with.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// The `raw_buffer` transport socket: bytes as they are (by its typed
/// config, or by its name alone, as older configurations say it).
fn is_plain(ts: &TransportSocket) -> bool {
    match &ts.typed_config {
        Some(TypedConfig::RawBuffer) => true,
        None => ts.name.ends_with("raw_buffer"),
        Some(_) => false,
    }
}

/// Refuses a transport socket weft cannot carry, naming it.
fn refuse(at: &str, ts: &TransportSocket) -> CompileError {
    CompileError::Config {
        field: format!("{at}.transport_socket"),
        message: format!(
            "transport socket {:?} is not implemented by weft yet",
            ts.name
        ),
    }
}

/// How a filter chain's connections are carried (`transport_socket` on
/// a filter chain).
#[derive(Debug, Clone, Default)]
pub enum DownstreamTransport {
    #[default]
    Plain,
    Tls(Arc<tls::Server>),
}

/// A connection taken over by its transport: the stream, the bytes
/// listener filters read that the chain must still see (none for TLS,
/// whose handshake consumed them), and the TLS session's facts.
pub struct Accepted {
    pub stream: Stream,
    pub early: BytesMut,
    pub tls: Option<Box<TlsInfo>>,
}

impl DownstreamTransport {
    /// Whether it waits for an SDS secret.
    pub fn pending(&self) -> bool {
        match self {
            DownstreamTransport::Plain => false,
            DownstreamTransport::Tls(s) => s.pending(),
        }
    }

    pub fn compile(
        at: &str,
        ts: Option<&TransportSocket>,
        secrets: &Secrets,
    ) -> Result<Self, CompileError> {
        match ts {
            None => Ok(DownstreamTransport::Plain),
            Some(ts) if is_plain(ts) => Ok(DownstreamTransport::Plain),
            Some(TransportSocket {
                typed_config: Some(TypedConfig::DownstreamTlsContext(ctx)),
                ..
            }) => Ok(DownstreamTransport::Tls(Arc::new(tls::Server::compile(
                &format!("{at}.transport_socket.typed_config"),
                ctx,
                secrets,
            )?))),
            Some(ts) => Err(refuse(at, ts)),
        }
    }

    /// Takes over an accepted connection (for TLS: the handshake, fed
    /// first with the bytes listener filters read).
    pub async fn accept(&self, tcp: TcpStream, early: BytesMut) -> io::Result<Accepted> {
        match self {
            DownstreamTransport::Plain => Ok(Accepted {
                stream: Stream::Plain(tcp),
                early,
                tls: None,
            }),
            DownstreamTransport::Tls(server) => {
                let (stream, info) = server.accept(Rewind::new(early, tcp)).await?;
                Ok(Accepted {
                    stream: Stream::TlsServer(Box::new(stream)),
                    early: BytesMut::new(),
                    tls: Some(Box::new(info)),
                })
            }
        }
    }
}

/// How a cluster's connections are carried (`transport_socket` on a
/// cluster, or one of its `transport_socket_matches`), and the scheme
/// its requests say they use.
#[derive(Debug, Clone, Default)]
pub enum UpstreamTransport {
    #[default]
    Plain,
    Tls(Arc<tls::Client>),
}

impl UpstreamTransport {
    /// `http2`: the cluster speaks HTTP/2 (offered by ALPN as `h2` when
    /// the context names no protocols).
    pub fn compile(
        at: &str,
        ts: Option<&TransportSocket>,
        secrets: &Secrets,
        http2: bool,
    ) -> Result<Self, CompileError> {
        match ts {
            None => Ok(UpstreamTransport::Plain),
            Some(ts) if is_plain(ts) => Ok(UpstreamTransport::Plain),
            Some(TransportSocket {
                typed_config: Some(TypedConfig::UpstreamTlsContext(ctx)),
                ..
            }) => Ok(UpstreamTransport::Tls(Arc::new(tls::Client::compile(
                &format!("{at}.transport_socket.typed_config"),
                ctx,
                secrets,
                http2,
            )?))),
            Some(ts) => Err(refuse(at, ts)),
        }
    }

    /// Whether it waits for an SDS secret.
    pub fn pending(&self) -> bool {
        match self {
            UpstreamTransport::Plain => false,
            UpstreamTransport::Tls(c) => c.pending(),
        }
    }

    /// The `:scheme` of requests sent over it.
    pub fn scheme(&self) -> &'static str {
        match self {
            UpstreamTransport::Plain => "http",
            UpstreamTransport::Tls(_) => "https",
        }
    }

    /// Connects to `addr`, TLS handshake included, within `timeout`.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let connect = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            match self {
                UpstreamTransport::Plain => Ok(Stream::Plain(tcp)),
                UpstreamTransport::Tls(client) => Ok(Stream::TlsClient(Box::new(
                    client.connect(addr, tcp).await?,
                ))),
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout")),
        }
    }
}
