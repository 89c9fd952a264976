//! How a cluster's endpoints connect: the connector each endpoint's pool
//! dials with, and the transports (`transport_socket_matches`, then
//! `transport_socket`) an endpoint is given by its metadata.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use weft_envoy::cluster as cfg;

use super::Endpoint;
use crate::stats::ClusterStats;
use crate::transport::{Stream, UpstreamTransport};

/// Dials one address whatever the URI says, over the cluster's
/// transport.
#[derive(Clone, Debug)]
pub struct FixedConnector {
    pub(super) addr: SocketAddr,
    pub(super) connect: Arc<Connect>,
}

type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<TokioIo<Stream>>> + Send>>;

impl tower_service::Service<http::Uri> for FixedConnector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Connecting {
        let addr = self.addr;
        let connect = Arc::clone(&self.connect);
        Box::pin(async move {
            // Envoy counts attempts, failed ones included.
            let stats = &connect.stats;
            stats.upstream_cx_total.inc();
            match connect.transport.connect(addr, connect.timeout).await {
                Ok(s) => Ok(TokioIo::new(s)),
                Err(e) => {
                    stats.upstream_cx_connect_fail.inc();
                    Err(e)
                }
            }
        })
    }
}

/// How a cluster's endpoints connect: every endpoint gets its own pool.
#[derive(Debug)]
pub(super) struct Connect {
    pub(super) http2: bool,
    pub(super) timeout: Duration,
    /// Plain or (later) TLS, decided when the cluster compiled.
    pub(super) transport: UpstreamTransport,
    /// Counts connection attempts and failures.
    pub(super) stats: Arc<ClusterStats>,
}

/// The transports of a cluster: `transport_socket_matches` in order,
/// each with what an endpoint's metadata must hold, then the cluster's
/// `transport_socket`. Chosen once per endpoint, when it is made; each
/// endpoint pools its own connections, so pools never mix transports.
#[derive(Debug)]
pub(super) struct Transports {
    pub(super) matches: Vec<(Wanted, Arc<Connect>)>,
    pub(super) default: Arc<Connect>,
}

/// What a transport socket match wants of an endpoint's metadata.
pub(super) type Wanted = Vec<(String, serde_json::Value)>;

/// The metadata key transport socket matches read.
const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// Metadata keys as the model normalizes field names (`tlsMode` and
/// `tls_mode` are one key), so a match and an endpoint agree whichever
/// way each was decoded.
pub(super) fn key(k: &str) -> String {
    weft_envoy::snake_case(k)
}

impl Transports {
    /// The endpoint's transport: its own metadata under
    /// `envoy.transport_socket_match`, else its locality's.
    pub(super) fn choose(
        &self,
        locality: Option<&cfg::Metadata>,
        endpoint: Option<&cfg::Metadata>,
    ) -> &Arc<Connect> {
        if self.matches.is_empty() {
            return &self.default;
        }
        fn values(
            m: Option<&cfg::Metadata>,
        ) -> Option<&serde_json::Map<String, serde_json::Value>> {
            m?.filter_metadata.get(TRANSPORT_SOCKET_MATCH)?.as_object()
        }
        let md = values(endpoint).or_else(|| values(locality));
        self.matches
            .iter()
            .find(|(want, _)| {
                want.iter().all(|(k, v)| {
                    md.is_some_and(|md| md.iter().any(|(mk, mv)| key(mk) == *k && mv == v))
                })
            })
            .map_or(&self.default, |(_, c)| c)
    }
}

pub(super) trait MakeEndpoint {
    fn endpoint(&self, addr: SocketAddr, hostname: Option<String>, weight: u32) -> Arc<Endpoint>;
}

impl MakeEndpoint for Arc<Connect> {
    fn endpoint(&self, addr: SocketAddr, hostname: Option<String>, weight: u32) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            addr,
            hostname,
            weight,
            active: AtomicUsize::new(0),
            client: std::sync::OnceLock::new(),
            connect: Arc::clone(self),
            used: AtomicBool::new(false),
            outlier: Default::default(),
        })
    }
}
