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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use weft_xds::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use weft_xds::discovery::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use weft_xds::Kind;

use crate::context::Context;
use crate::gen::{self, Proxy, ProxyKind};

type Any = envoy_types::pb::google::protobuf::Any;
type DeltaResource = envoy_types::pb::envoy::service::discovery::v3::Resource;

/// One version of the mesh as served.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub ctx: Arc<Context>,
    pub version: u64,
}

/// A proxy's resources encoded for the wire: type → name → (Any, digest).
type Encoded = BTreeMap<Kind, BTreeMap<String, (Any, u64)>>;

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
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen for xDS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct Shared {
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// Encoded resources by proxy shape, for one snapshot version.
    cache: Mutex<(u64, HashMap<String, Arc<Encoded>>)>,
    status: Mutex<BTreeMap<u64, ProxyStatus>>,
    next_stream: std::sync::atomic::AtomicU64,
}

/// Cheap to clone; every clone serves the same snapshot.
#[derive(Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
}

impl AdsServer {
    pub fn new(snapshot: Snapshot) -> AdsServer {
        let (tx, _) = watch::channel(Arc::new(snapshot));
        AdsServer {
            shared: Arc::new(Shared {
                snapshot: tx,
                cache: Mutex::new((u64::MAX, HashMap::new())),
                status: Mutex::new(BTreeMap::new()),
                next_stream: 0.into(),
            }),
        }
    }

    /// Serves the next snapshot to every connected proxy.
    pub fn publish(&self, snapshot: Snapshot) {
        self.shared.snapshot.send_replace(Arc::new(snapshot));
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
    /// id, or a workload `name.namespace`), in Envoy's JSON form.
    pub fn config_of(&self, id: &str) -> Option<(String, gen::Output)> {
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
        Some((proxy.id, output))
    }

    /// Binds `addr` and serves until the task is dropped.
    pub async fn serve(
        self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let svc = AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(usize::MAX);
        // No Nagle: a small response must not wait for the proxy's
        // delayed ACK.
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        let task = tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
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
        {
            let cache = self.shared.cache.lock().expect("cache lock");
            if cache.0 == snapshot.version {
                if let Some(e) = cache.1.get(&shape) {
                    return Arc::clone(e);
                }
            }
        }
        let output = match proxy.kind {
            ProxyKind::Sidecar => gen::sidecar(&snapshot.ctx, proxy),
            ProxyKind::Router => gen::gateway(&snapshot.ctx, proxy),
        };
        let mut encoded = Encoded::new();
        for (kind, resources) in output {
            let mut m = BTreeMap::new();
            for (name, json) in resources {
                match weft_xds::encode(kind, &json) {
                    Ok(any) => {
                        let digest = xxhash_rust::xxh64::xxh64(&any.value, 0);
                        m.insert(name, (any, digest));
                    }
                    // A generator bug: say so and leave the resource out
                    // rather than send something no proxy can read.
                    Err(e) => {
                        tracing::error!(proxy = %proxy.id, "generated {} {name:?} does not encode: {e}", kind.xds())
                    }
                }
            }
            encoded.insert(kind, m);
        }
        let encoded = Arc::new(encoded);
        let mut cache = self.shared.cache.lock().expect("cache lock");
        if cache.0 != snapshot.version {
            *cache = (snapshot.version, HashMap::new());
        }
        cache.1.insert(shape, Arc::clone(&encoded));
        encoded
    }
}

/// Node metadata `LABELS` (what pilot-agent sends) as a string map.
fn metadata_labels(
    node: &envoy_types::pb::envoy::config::core::v3::Node,
) -> Option<BTreeMap<String, String>> {
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

#[derive(Default)]
struct Subscription {
    /// None: every resource of the type (LDS, CDS).
    names: Option<BTreeSet<String>>,
    /// The last response: its nonce, version, and what it held
    /// (name → digest).
    nonce: String,
    version: String,
    sent: BTreeMap<String, u64>,
    /// Sent at least once on this stream.
    answered: bool,
}

/// One proxy's stream: who it is and what it was sent.
struct StreamState {
    id: u64,
    delta: bool,
    proxy: Option<Proxy>,
    encoded: Arc<Encoded>,
    version: u64,
    subs: BTreeMap<Kind, Subscription>,
    nonce: u64,
}

enum Out {
    Sotw(DiscoveryResponse),
    Delta(DeltaDiscoveryResponse),
}

impl StreamState {
    /// A response for `kind` if what the proxy holds differs from what it
    /// should hold, or `force` (it asked). Listeners and clusters go out
    /// whole (the state of the world); route tables and endpoints only
    /// where they changed (both ADS variants allow that), and delta
    /// responses also name what was removed.
    fn respond(&mut self, kind: Kind, force: bool) -> Option<Out> {
        let encoded = Arc::clone(&self.encoded);
        let empty = BTreeMap::new();
        let all = encoded.get(&kind).unwrap_or(&empty);
        let delta = self.delta;
        let wildcard = matches!(kind, Kind::Listener | Kind::Cluster);
        let sub = self.subs.get_mut(&kind)?;
        let subscribed = |n: &String| sub.names.as_ref().is_none_or(|ns| ns.contains(n));
        // What differs from what the proxy holds, without copying either.
        let changed: Vec<&String> = all
            .iter()
            .filter(|(n, (_, d))| subscribed(n) && sub.sent.get(*n) != Some(d))
            .map(|(n, _)| n)
            .collect();
        let removed: Vec<String> = sub
            .sent
            .keys()
            .filter(|n| !all.contains_key(*n) || !subscribed(n))
            .cloned()
            .collect();
        if !force && sub.answered && changed.is_empty() && removed.is_empty() {
            return None;
        }
        self.nonce += 1;
        let nonce = format!("{}-{}", self.id, self.nonce);
        let version = self.version.to_string();
        let pick = |names: &mut dyn Iterator<Item = &String>| -> Vec<Any> {
            names
                .filter_map(|n| all.get(n))
                .map(|(a, _)| a.clone())
                .collect()
        };
        let out = if delta {
            Out::Delta(DeltaDiscoveryResponse {
                system_version_info: version.clone(),
                resources: changed
                    .iter()
                    .filter_map(|n| {
                        let (any, d) = all.get(*n)?;
                        Some(DeltaResource {
                            name: (*n).clone(),
                            version: format!("{d:016x}"),
                            resource: Some(any.clone()),
                            ..Default::default()
                        })
                    })
                    .collect(),
                type_url: kind.type_url(),
                removed_resources: removed.clone(),
                nonce: nonce.clone(),
                ..Default::default()
            })
        } else {
            let resources = if wildcard {
                pick(&mut all.keys().filter(|n| subscribed(n)))
            } else {
                pick(&mut changed.iter().copied())
            };
            Out::Sotw(DiscoveryResponse {
                version_info: version.clone(),
                resources,
                type_url: kind.type_url(),
                nonce: nonce.clone(),
                ..Default::default()
            })
        };
        for n in &changed {
            if let Some((_, d)) = all.get(*n) {
                sub.sent.insert((*n).clone(), *d);
            }
        }
        for n in &removed {
            sub.sent.remove(n);
        }
        sub.nonce = nonce;
        sub.version = version;
        sub.answered = true;
        if kind == Kind::Cluster {
            // A cluster Envoy replaces warms again and waits for its
            // endpoints, even unchanged ones (and holds the CDS ACK until
            // then): they go out again with the next EDS response.
            let changed: Vec<String> = changed.into_iter().cloned().collect();
            if let Some(eds) = self.subs.get_mut(&Kind::ClusterLoadAssignment) {
                for n in &changed {
                    eds.sent.remove(n);
                }
            }
        }
        Some(out)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A request on either variant, reduced to what the stream logic needs.
struct Req {
    node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
    kind: Option<Kind>,
    type_url: String,
    nonce: String,
    error: Option<String>,
    /// SotW: the full name list.
    names: Option<Vec<String>>,
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
    initial: BTreeMap<String, String>,
}

impl From<DiscoveryRequest> for Req {
    fn from(r: DiscoveryRequest) -> Req {
        Req {
            node: r.node,
            kind: Kind::from_type_url(&r.type_url),
            type_url: r.type_url,
            nonce: r.response_nonce,
            error: r.error_detail.map(|s| s.message),
            names: Some(r.resource_names),
            subscribe: Vec::new(),
            unsubscribe: Vec::new(),
            initial: BTreeMap::new(),
        }
    }
}

impl From<DeltaDiscoveryRequest> for Req {
    fn from(r: DeltaDiscoveryRequest) -> Req {
        Req {
            node: r.node,
            kind: Kind::from_type_url(&r.type_url),
            type_url: r.type_url,
            nonce: r.response_nonce,
            error: r.error_detail.map(|s| s.message),
            names: None,
            subscribe: r.resource_names_subscribe,
            unsubscribe: r.resource_names_unsubscribe,
            initial: r.initial_resource_versions.into_iter().collect(),
        }
    }
}

impl AdsServer {
    /// Drives one stream until the proxy goes away.
    async fn run<R: Into<Req>>(
        self,
        mut incoming: Streaming<R>,
        delta: bool,
        tx: mpsc::UnboundedSender<Result<Out, Status>>,
    ) {
        let id = self
            .shared
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut snapshots = self.shared.snapshot.subscribe();
        let mut st = StreamState {
            id,
            delta,
            proxy: None,
            encoded: Arc::default(),
            version: 0,
            subs: BTreeMap::new(),
            nonce: 0,
        };
        loop {
            tokio::select! {
                req = incoming.next() => {
                    let Some(Ok(req)) = req else { break };
                    if let Err(status) = self.on_request(&mut st, req.into(), &tx) {
                        let _ = tx.send(Err(status));
                        break;
                    }
                }
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    let snap = snapshots.borrow_and_update().clone();
                    if let Some(proxy) = &st.proxy {
                        st.encoded = self.encoded(&snap, proxy);
                        st.version = snap.version;
                        let kinds: Vec<Kind> = st.subs.keys().copied().collect();
                        for kind in kinds {
                            if let Some(out) = st.respond(kind, false) {
                                self.sent(&st, kind);
                                let _ = tx.send(Ok(out));
                            }
                        }
                        if let Some(p) = self.shared.status.lock().expect("status lock").get_mut(&st.id) {
                            p.snapshot = snap.version;
                        }
                    }
                }
            }
        }
        self.shared.status.lock().expect("status lock").remove(&id);
    }

    fn on_request(
        &self,
        st: &mut StreamState,
        req: Req,
        tx: &mpsc::UnboundedSender<Result<Out, Status>>,
    ) -> Result<(), Status> {
        if st.proxy.is_none() {
            let Some(node) = &req.node else {
                return Err(Status::invalid_argument(
                    "the first request on a stream must carry the node",
                ));
            };
            let snap = self.snapshot();
            let proxy = Proxy::from_node(&node.id, metadata_labels(node), &snap.ctx)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            tracing::info!(proxy = %proxy.id, delta = st.delta, "proxy connected");
            st.encoded = self.encoded(&snap, &proxy);
            st.version = snap.version;
            self.shared.status.lock().expect("status lock").insert(
                st.id,
                ProxyStatus {
                    id: proxy.id.clone(),
                    proxy: Some(proxy.clone()),
                    snapshot: snap.version,
                    types: BTreeMap::new(),
                },
            );
            st.proxy = Some(proxy);
        }
        let Some(kind) = req.kind else {
            // Istio answers types it does not serve with nothing; so do we.
            tracing::debug!("request for unserved type {}", req.type_url);
            return Ok(());
        };
        let wildcard = matches!(kind, Kind::Listener | Kind::Cluster);
        let sub = st.subs.entry(kind).or_default();
        let first = !sub.answered;
        // ACK / NACK of our last response on this type.
        let acking = !req.nonce.is_empty() && req.nonce == sub.nonce;
        if !req.nonce.is_empty() && req.nonce != sub.nonce {
            // A stale nonce: the proxy answers an older response; a newer
            // one is on its way.
            return Ok(());
        }
        if acking {
            let mut status = self.shared.status.lock().expect("status lock");
            if let Some(t) = status
                .get_mut(&st.id)
                .map(|p| p.types.entry(kind).or_default())
            {
                match &req.error {
                    Some(e) => {
                        tracing::warn!(proxy = ?st.proxy.as_ref().map(|p| &p.id), "{} rejected: {e}", kind.xds());
                        t.nack = Some(e.clone());
                    }
                    None => {
                        t.acked = sub.version.clone();
                        t.nack = None;
                    }
                }
            }
        }
        let before = sub.names.clone();
        if st.delta {
            if first && !req.initial.is_empty() {
                // What the proxy already holds need not be sent again.
                sub.sent = req
                    .initial
                    .iter()
                    .filter_map(|(n, v)| Some((n.clone(), u64::from_str_radix(v, 16).ok()?)))
                    .collect();
            }
            if !wildcard {
                let mut names = sub.names.take().unwrap_or_default();
                names.extend(req.subscribe.iter().cloned());
                for n in &req.unsubscribe {
                    names.remove(n);
                    sub.sent.remove(n);
                }
                sub.names = Some(names);
            }
        } else if !wildcard {
            sub.names = req.names.map(|n| n.into_iter().collect());
        }
        let changed = sub.names != before;
        if first || changed {
            if let Some(out) = st.respond(kind, true) {
                self.sent(st, kind);
                let _ = tx.send(Ok(out));
            }
        }
        Ok(())
    }

    fn sent(&self, st: &StreamState, kind: Kind) {
        let version = st
            .subs
            .get(&kind)
            .map(|s| s.version.clone())
            .unwrap_or_default();
        let mut status = self.shared.status.lock().expect("status lock");
        if let Some(p) = status.get_mut(&st.id) {
            p.types.entry(kind).or_default().sent = version;
        }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().run(request.into_inner(), false, tx));
        let out =
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).filter_map(|r| match r {
                Ok(Out::Sotw(r)) => Some(Ok(r)),
                Ok(Out::Delta(_)) => None,
                Err(s) => Some(Err(s)),
            });
        Ok(Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().run(request.into_inner(), true, tx));
        let out =
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).filter_map(|r| match r {
                Ok(Out::Delta(r)) => Some(Ok(r)),
                Ok(Out::Sotw(_)) => None,
                Err(s) => Some(Err(s)),
            });
        Ok(Response::new(Box::pin(out)))
    }
}
