//! The transport seam: the byte streams between the proxy and its peers,
//! and what is known about the connection a request came in on.
//!
//! Every connection the proxy serves or makes is a [`Stream`], so the
//! HTTP server, the TCP proxy and the upstream pools never name
//! `TcpStream`. Today a stream is plain TCP; TLS becomes a second variant
//! (issue 22) without touching them. Which transport a filter chain or a
//! cluster uses is data decided when its configuration compiles
//! ([`DownstreamTransport`], [`UpstreamTransport`]), in the spirit of
//! pingora's peer with its optional TLS, never code on the request path.
//! Envoy's `transport_socket` is read here: `raw_buffer` (plain) is what
//! weft carries today, and a TLS transport socket is refused by name.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use weft_envoy::TransportSocket;
use weft_envoy::TypedConfig;

use crate::error::CompileError;

/// A connection's byte stream, whatever carries it.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
}

impl Stream {
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_nodelay(on),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Stream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        // With TLS, the negotiated ALPN (h2) is reported here.
        hyper_util::client::legacy::connect::Connected::new()
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
}

/// A downstream TLS session's facts, as RBAC, headers such as
/// `x-forwarded-client-cert` and access logs read them.
#[derive(Debug, Clone, Default)]
// Nothing makes or reads one until the proxy terminates TLS (issue 22);
// the type is here so every request already carries the room for it.
#[allow(dead_code)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The application protocol negotiated by ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate chain (DER), leaf first, when it sent one.
    pub peer_certificates: Vec<Vec<u8>>,
    /// The identities in the client certificate's URI SANs
    /// (`spiffe://<trust domain>/ns/<ns>/sa/<sa>` in a mesh).
    pub peer_identities: Vec<String>,
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

/// Refuses a transport socket weft cannot carry yet, naming it.
fn refuse(at: &str, ts: &TransportSocket) -> CompileError {
    let what = match &ts.typed_config {
        Some(TypedConfig::UpstreamTlsContext | TypedConfig::DownstreamTlsContext) => {
            format!("TLS transport socket {:?}", ts.name)
        }
        _ => format!("transport socket {:?}", ts.name),
    };
    CompileError::Config {
        field: format!("{at}.transport_socket"),
        message: format!("{what} is not implemented by weft yet"),
    }
}

/// How a filter chain's connections are carried (`transport_socket` on
/// a filter chain).
#[derive(Debug, Clone, Default)]
pub enum DownstreamTransport {
    #[default]
    Plain,
}

impl DownstreamTransport {
    pub fn compile(at: &str, ts: Option<&TransportSocket>) -> Result<Self, CompileError> {
        match ts {
            Some(ts) if !is_plain(ts) => Err(refuse(at, ts)),
            _ => Ok(DownstreamTransport::Plain),
        }
    }

    /// Takes over an accepted connection (for TLS: the handshake).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        match self {
            DownstreamTransport::Plain => Ok(Stream::Plain(tcp)),
        }
    }
}

/// How a cluster's connections are carried (`transport_socket` on a
/// cluster), and the scheme its requests say they use.
#[derive(Debug, Clone, Default)]
pub enum UpstreamTransport {
    #[default]
    Plain,
}

impl UpstreamTransport {
    pub fn compile(at: &str, ts: Option<&TransportSocket>) -> Result<Self, CompileError> {
        match ts {
            Some(ts) if !is_plain(ts) => Err(refuse(at, ts)),
            _ => Ok(UpstreamTransport::Plain),
        }
    }

    /// The `:scheme` of requests sent over it.
    pub fn scheme(&self) -> &'static str {
        match self {
            UpstreamTransport::Plain => "http",
        }
    }

    /// Connects to `addr` within `timeout`.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout"));
            }
        };
        tcp.set_nodelay(true)?;
        match self {
            UpstreamTransport::Plain => Ok(Stream::Plain(tcp)),
        }
    }
}
