//! The ADS server proxies connect to, state of the world and delta.
//!
//! The current mesh view is a [`Snapshot`] in a `watch` channel; each
//! stream is one task that owns its proxy's state (subscriptions, what
//! it was sent, nonces), so streams never contend for a lock while
//! serving. On a new snapshot a stream regenerates its proxy's
//! resources (shared with every proxy of the same shape through a cache
//! keyed by the snapshot's version) and sends only the types whose
//! subscribed resources changed. The per-proxy sync state is published
//! for `proxy-status`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_stream::StreamExt;
use weft_xds::Kind;

use crate::context::Context;
use crate::gen::{self, Proxy, ProxyKind};
use crate::metrics::targets::ProxyTarget;
use crate::metrics::Pilot;

mod encode;
mod grpc;
mod parts;
mod request;
pub use request::check_request_framing;
mod stream;
mod wire;

pub(crate) use encode::{KeyHash, KeySet};

use encode::Encoded;

/// One version of the mesh as served.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub ctx: Arc<Context>,
    pub version: u64,
}

/// A proxy's resources as proto3 JSON, by type and name.
pub type ConfigDump = BTreeMap<Kind, BTreeMap<String, serde_json::Value>>;

/// What `proxy-status` shows for one type of one proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// Version of the last response sent.
    pub sent: String,
    /// Version the proxy last accepted.
    pub acked: String,
    /// The proxy's rejection of the last response, if it rejected it.
    pub nack: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ProxyStatus {
    pub id: String,
    /// The proxy as the control plane understood it (for config dumps).
    pub proxy: Option<Proxy>,
    /// The snapshot version the proxy's resources were last generated
    /// from (what it was sent is at most this new).
    pub snapshot: u64,
    pub types: BTreeMap<Kind, TypeStatus>,
    /// The proxy's admin port on its loopback, from the node metadata
    /// `PROXY_CONFIG.proxyAdminPort` (as pilot-agent sends it), for
    /// `weft proxy-config secret`.
    pub admin_port: Option<u16>,
    /// Where its metrics are scraped, from its node metadata
    /// (`crate::metrics::targets`).
    pub scrape: Option<ProxyTarget>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `what` is the endpoint: xDS, the secure port, or the debug
    /// endpoint. Retryable once the port is free.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The CA could not start: its files (state directory or `cacerts`)
    /// are unreadable or inconsistent. Not retryable until fixed.
    #[error("the CA: {0}")]
    Ca(#[from] weft_identity::ca::CaError),
    /// The join token could not be read or created.
    #[error("the CA: {0}")]
    JoinToken(#[from] weft_identity::auth::AuthError),
    /// The secure port's TLS configuration could not be built.
    #[error("the secure port: {0}")]
    Tls(#[from] weft_identity::tls::TlsError),
    /// The CA's state directory is inside the watched configuration
    /// directory (keys must not sit among files that are shared).
    #[error("the CA state directory {state} is inside the configuration directory {config}; choose one outside it (--state-dir)")]
    StateInConfig {
        state: std::path::PathBuf,
        config: std::path::PathBuf,
    },
}

/// Binds one of the control plane's listeners; the address it got.
pub(crate) async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServeError> {
    let fail = |source| ServeError::Bind { what, addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    Ok((listener, local))
}

struct Shared {
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// Encoded resources by proxy shape, reused across snapshots.
    cache: Mutex<encode::Cache>,
    status: Mutex<BTreeMap<u64, ProxyStatus>>,
    next_stream: std::sync::atomic::AtomicU64,
    metrics: Arc<Pilot>,
    /// The snapshot version last published and when the change it
    /// carries was noticed: each stream's convergence time ends when it
    /// has sent that snapshot.
    noticed: Mutex<Option<(u64, std::time::Instant)>>,
}

/// Cheap to clone; every clone serves the same snapshot.
#[derive(Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
}

/// The HTTP/2 receive window of an xDS connection and of each stream.
pub(crate) const REQUEST_WINDOW: u32 = 64 * 1024;

impl AdsServer {
    pub fn new(snapshot: Snapshot) -> AdsServer {
        AdsServer::with_metrics(snapshot, Arc::default())
    }

    /// A server counting into `metrics` (which the run loop counts into
    /// too).
    pub fn with_metrics(snapshot: Snapshot, metrics: Arc<Pilot>) -> AdsServer {
        let (tx, _) = watch::channel(Arc::new(snapshot));
        AdsServer {
            shared: Arc::new(Shared {
                snapshot: tx,
                cache: Mutex::new(encode::Cache::default()),
                status: Mutex::new(BTreeMap::new()),
                next_stream: 0.into(),
                metrics,
                noticed: Mutex::new(None),
            }),
        }
    }

    pub fn metrics(&self) -> &Arc<Pilot> {
        &self.shared.metrics
    }

    /// Serves the next snapshot to every connected proxy.
    pub fn publish(&self, snapshot: Snapshot) {
        self.shared.snapshot.send_replace(Arc::new(snapshot));
    }

    /// [`AdsServer::publish`] of a snapshot made for a change noticed at
    /// `noticed`: each proxy's `pilot_proxy_convergence_time` runs from
    /// then until its stream has sent what the snapshot changed.
    pub fn publish_noticed(&self, snapshot: Snapshot, noticed: std::time::Instant) {
        *self.shared.noticed.lock().expect("noticed lock") = Some((snapshot.version, noticed));
        self.publish(snapshot);
    }

    /// When the change snapshot `version` carries was noticed.
    fn noticed(&self, version: u64) -> Option<std::time::Instant> {
        match *self.shared.noticed.lock().expect("noticed lock") {
            Some((v, at)) if v == version => Some(at),
            _ => None,
        }
    }

    /// Told of every snapshot published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.snapshot.subscribe()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.borrow().clone()
    }

    /// Connected proxies and what each has accepted.
    pub fn status(&self) -> Vec<ProxyStatus> {
        self.shared
            .status
            .lock()
            .expect("status lock")
            .values()
            .cloned()
            .collect()
    }

    /// What the current snapshot gives the connected proxy `id` (a node
    /// id, or a workload `name.namespace`), in Envoy's proto3 JSON form.
    pub fn config_of(&self, id: &str) -> Option<(String, ConfigDump)> {
        let proxy = self
            .status()
            .into_iter()
            .filter_map(|p| p.proxy)
            .find(|p| p.id == id || format!("{}.{}", p.name, p.namespace) == id)?;
        let snapshot = self.snapshot();
        let output = match proxy.kind {
            ProxyKind::Sidecar => gen::sidecar(&snapshot.ctx, &proxy),
            ProxyKind::Router => gen::gateway(&snapshot.ctx, &proxy),
        };
        let dump = output
            .into_iter()
            .map(|(kind, resources)| {
                let json = resources
                    .into_iter()
                    .filter_map(|(name, r)| match r.to_json() {
                        Ok(json) => Some((name, json)),
                        Err(e) => {
                            // The descriptors weft reads xDS with lack a
                            // type the generators use: a build bug.
                            tracing::error!("config dump of {} {name:?}: {e}", kind.xds());
                            None
                        }
                    })
                    .collect();
                (kind, json)
            })
            .collect();
        Some((proxy.id, dump))
    }

    /// The ADS service, for a server that carries it beside others (the
    /// secure port, `crate::ca`).
    pub(crate) fn grpc_service(&self) -> grpc::AdsService {
        grpc::AdsService::new(self.clone())
    }

    /// Binds `addr` and serves until the task is dropped.
    pub async fn serve(
        self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
        let (listener, local) = bind("xDS", addr).await?;
        let svc = grpc::AdsService::new(self);
        // No Nagle: a small response must not wait for the proxy's
        // delayed ACK.
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        let task = tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                // What a proxy may send before the server reads it. The
                // default (1 MB a stream) is what a hundred proxies'
                // ACKs after a push filled, held until read; requests
                // are read a field at a time, so a small window costs
                // nothing but window updates.
                .initial_stream_window_size(REQUEST_WINDOW)
                .initial_connection_window_size(REQUEST_WINDOW)
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!("xDS server stopped: {e}");
            }
        });
        Ok((local, task))
    }

    /// The proxy's resources for `snapshot`, from the cache when a proxy
    /// of the same shape already asked.
    fn encoded(&self, snapshot: &Snapshot, proxy: &Proxy) -> Arc<Encoded> {
        let shape = gen::shape(&snapshot.ctx, proxy);
        // Generated under the lock: the other streams of this shape,
        // woken by the same snapshot, wait for it instead of doing the
        // same work again.
        let mut cache = self.shared.cache.lock().expect("cache lock");
        if let Some(e) = cache.get(&shape, snapshot.version) {
            return e;
        }
        let t = std::time::Instant::now();
        let encoded = match proxy.kind {
            ProxyKind::Sidecar => {
                let by_kind =
                    parts::sidecar(&mut cache, &shape, snapshot.version, &snapshot.ctx, proxy);
                cache.finish(&shape, snapshot.version, by_kind)
            }
            ProxyKind::Router => {
                let output = gen::gateway(&snapshot.ctx, proxy);
                cache.encode(&shape, snapshot.version, output)
            }
        };
        tracing::debug!(
            version = snapshot.version,
            shape,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "generated and encoded resources for a proxy shape"
        );
        encoded
    }
}

/// Whether the node's bootstrap says it has no certificate source.
pub(super) fn no_workload_certs(node: &envoy_types::pb::envoy::config::core::v3::Node) -> bool {
    use envoy_types::pb::google::protobuf::value::Kind as V;
    node.metadata
        .as_ref()
        .and_then(|m| m.fields.get(crate::gen::NO_WORKLOAD_CERTS))
        .is_some_and(|v| matches!(&v.kind, Some(V::StringValue(s)) if s == "none"))
}

/// Node metadata `PROXY_CONFIG.proxyAdminPort`: where the proxy's admin
/// endpoint listens on its loopback.
pub(super) fn metadata_admin_port(
    node: &envoy_types::pb::envoy::config::core::v3::Node,
) -> Option<u16> {
    use envoy_types::pb::google::protobuf::value::Kind as V;
    let config = node.metadata.as_ref()?.fields.get("PROXY_CONFIG")?;
    let Some(V::StructValue(s)) = &config.kind else {
        return None;
    };
    match &s.fields.get("proxyAdminPort")?.kind {
        Some(V::NumberValue(n)) => u16::try_from(*n as i64).ok().filter(|p| *p != 0),
        // Protobuf JSON may carry integers as strings.
        Some(V::StringValue(v)) => v.parse().ok().filter(|p| *p != 0),
        _ => None,
    }
}

/// Node metadata `LABELS` (what pilot-agent sends) as a string map.
pub(super) fn metadata_labels(
    node: &envoy_types::pb::envoy::config::core::v3::Node,
) -> Option<weft_api::Map<String, String>> {
    use envoy_types::pb::google::protobuf::value::Kind as V;
    let labels = node.metadata.as_ref()?.fields.get("LABELS")?;
    let Some(V::StructValue(s)) = &labels.kind else {
        return None;
    };
    Some(
        s.fields
            .iter()
            .filter_map(|(k, v)| match &v.kind {
                Some(V::StringValue(s)) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
    )
}
