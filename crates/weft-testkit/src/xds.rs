//! A fake xDS control plane: a real gRPC ADS server (state of the world)
//! on 127.0.0.1 that Envoy and weft both connect to. A test sets
//! resources in Envoy's JSON form, pushes them, and waits for each proxy
//! to ACK (or NACK) the version. It keeps every request it received so a
//! test can look at what a proxy said.
//!
//! Serving rules, as a control plane following Envoy's protocol: a
//! request on a new stream, or one whose subscribed names changed, is
//! answered at once with the current version; an ACK or NACK is not
//! answered; a push sends every subscribed type to every stream. LDS and
//! CDS responses hold every resource of their type, RDS and EDS those of
//! the names asked for.
//!
//! Both ADS variants are served. On a delta stream a response holds only
//! the resources that changed since that stream last got them (each with
//! its own version, a digest of its bytes) and the names removed; a
//! push sends every subscribed type even when nothing changed (an empty
//! response the proxy ACKs, so a test can wait for the version). A delta
//! request is recorded as the state-of-the-world request it stands for:
//! its nonce, error_detail, subscribed names, and the version of the
//! response its nonce answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use weft_xds::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use weft_xds::discovery::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use weft_xds::Kind;

use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};

type Any = envoy_types::pb::google::protobuf::Any;
type DeltaResource = envoy_types::pb::envoy::service::discovery::v3::Resource;

enum Tx {
    Sotw(mpsc::UnboundedSender<Result<DiscoveryResponse, Status>>),
    Delta(mpsc::UnboundedSender<Result<DeltaDiscoveryResponse, Status>>),
}

impl Tx {
    fn fail(&self, status: Status) {
        let _ = match self {
            Tx::Sotw(tx) => tx.send(Err(status)).is_ok(),
            Tx::Delta(tx) => tx.send(Err(status)).is_ok(),
        };
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The node id the stream's first request carried.
    pub node: String,
    pub request: DiscoveryRequest,
    /// It came on a delta stream (and `request` stands for it).
    pub delta: bool,
}

#[derive(Default)]
struct Subscription {
    /// None: every resource of the type (LDS, CDS).
    names: Option<BTreeSet<String>>,
    /// Nonce of the last response sent on this type.
    nonce: String,
    /// Delta: what the stream holds, name → version.
    sent: BTreeMap<String, String>,
}

struct StreamState {
    node: String,
    tx: Tx,
    subs: HashMap<String, Subscription>,
}

#[derive(Default)]
struct Inner {
    version: u64,
    nonce: u64,
    resources: BTreeMap<Kind, BTreeMap<String, Any>>,
    streams: HashMap<u64, StreamState>,
    next_stream: u64,
    received: Vec<Received>,
    /// The version each nonce was sent with.
    nonces: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    inner: Mutex<Inner>,
    /// Woken on every request received.
    requests: Notify,
}

pub struct FakeXds {
    pub addr: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeXds {
    /// Serves on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// Serves SDS (and ADS) on a Unix socket at `path`, as Istio's node
    /// agent serves secrets to its proxy; `addr` is then 0.0.0.0:0.
    pub async fn start_unix(path: &std::path::Path) -> Self {
        let listener = tokio::net::UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("fake SDS server cannot bind {}: {e}", path.display()));
        let state = Arc::new(State::default());
        let ads = AggregatedDiscoveryServiceServer::new(Service(Arc::clone(&state)))
            .max_decoding_message_size(usize::MAX);
        let sds = SecretDiscoveryServiceServer::new(Service(Arc::clone(&state)))
            .max_decoding_message_size(usize::MAX);
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(ads)
                .add_service(sds)
                .serve_with_incoming(incoming)
                .await;
        });
        FakeXds {
            addr: "0.0.0.0:0".parse().expect("address"),
            state,
            server,
        }
    }

    /// Serves on `addr` (a restarted control plane comes back on the same
    /// port).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("fake xDS server cannot bind {addr}: {e}"));
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State::default());
        let svc = AggregatedDiscoveryServiceServer::new(Service(Arc::clone(&state)))
            .max_decoding_message_size(usize::MAX);
        // No Nagle, as real control planes (gRPC-Go) do: otherwise a
        // small response can wait for the proxy's delayed ACK (~40 ms).
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        });
        FakeXds {
            addr,
            state,
            server,
        }
    }

    /// Sets (adds or replaces) a resource given in Envoy's JSON form; it
    /// is sent with the next [`FakeXds::push`].
    pub fn set(&self, kind: Kind, resource: Value) {
        let any = weft_xds::encode(kind, &resource)
            .unwrap_or_else(|e| panic!("test resource does not encode: {e}"));
        let (_, name, _) = weft_xds::to_json(&any.type_url, &any.value).expect("round trip");
        let mut inner = self.state.inner.lock().expect("poisoned");
        inner.resources.entry(kind).or_default().insert(name, any);
    }

    pub fn remove(&self, kind: Kind, name: &str) {
        let mut inner = self.state.inner.lock().expect("poisoned");
        if let Some(m) = inner.resources.get_mut(&kind) {
            m.remove(name);
        }
    }

    /// Sends a new version of every subscribed type to every stream, and
    /// returns that version.
    pub fn push(&self) -> String {
        let mut inner = self.state.inner.lock().expect("poisoned");
        inner.version += 1;
        let ids: Vec<u64> = inner.streams.keys().copied().collect();
        for id in ids {
            let types: Vec<String> = inner.streams[&id].subs.keys().cloned().collect();
            for t in types {
                respond(&mut inner, id, &t);
            }
        }
        version(&inner)
    }

    /// Like [`FakeXds::push`], but sends only the given types (as a
    /// control plane does when only routes or endpoints changed); the
    /// others keep the version they were last sent with.
    pub fn push_only(&self, kinds: &[Kind]) -> String {
        let mut inner = self.state.inner.lock().expect("poisoned");
        inner.version += 1;
        let urls: Vec<String> = kinds.iter().map(|k| k.type_url()).collect();
        let ids: Vec<u64> = inner.streams.keys().copied().collect();
        for id in ids {
            let types: Vec<String> = inner.streams[&id]
                .subs
                .keys()
                .filter(|t| urls.contains(t))
                .cloned()
                .collect();
            for t in types {
                respond(&mut inner, id, &t);
            }
        }
        version(&inner)
    }

    /// The version the next push will carry is after this one.
    pub fn version(&self) -> String {
        version(&self.state.inner.lock().expect("poisoned"))
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.inner.lock().expect("poisoned").received.clone()
    }

    /// Node ids with a stream open now.
    pub fn connected(&self) -> Vec<String> {
        let inner = self.state.inner.lock().expect("poisoned");
        let mut ids: Vec<String> = inner.streams.values().map(|s| s.node.clone()).collect();
        ids.sort();
        ids
    }

    /// Waits until `node` ACKs `version` of `kind`.
    pub async fn wait_ack(
        &self,
        node: &str,
        kind: Kind,
        version: &str,
        within: Duration,
    ) -> Result<(), String> {
        let url = kind.type_url();
        self.wait(within, |r| {
            r.node == node
                && r.request.type_url == url
                && r.request.version_info == version
                && r.request.error_detail.is_none()
                && !r.request.response_nonce.is_empty()
        })
        .await
        .map(|_| ())
        .map_err(|seen| {
            format!(
                "{node} did not ACK {} version {version:?}; {seen}",
                kind.xds()
            )
        })
    }

    /// Waits until `node` NACKs `kind`; returns the error_detail message.
    pub async fn wait_nack(
        &self,
        node: &str,
        kind: Kind,
        within: Duration,
    ) -> Result<String, String> {
        let url = kind.type_url();
        self.wait(within, |r| {
            r.node == node && r.request.type_url == url && r.request.error_detail.is_some()
        })
        .await
        .map(|r| {
            r.request
                .error_detail
                .map(|s| s.message)
                .unwrap_or_default()
        })
        .map_err(|seen| format!("{node} did not NACK {}; {seen}", kind.xds()))
    }

    /// Waits for a received request that `matches` (looking at those
    /// already received too).
    async fn wait(
        &self,
        within: Duration,
        matches: impl Fn(&Received) -> bool,
    ) -> Result<Received, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.requests.notified();
            let found = {
                let inner = self.state.inner.lock().expect("poisoned");
                inner.received.iter().find(|r| matches(r)).cloned()
            };
            if let Some(r) = found {
                return Ok(r);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .received()
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} v={:?} nonce={:?} nack={}",
                            r.node,
                            r.request.type_url.rsplit('.').next().unwrap_or_default(),
                            r.request.version_info,
                            r.request.response_nonce,
                            r.request
                                .error_detail
                                .as_ref()
                                .map_or("-", |s| s.message.as_str())
                        )
                    })
                    .collect();
                return Err(format!("received: [{}]", seen.join(", ")));
            }
        }
    }

    /// Stops serving: open streams end with UNAVAILABLE and the port is
    /// closed, as when a control plane dies.
    pub fn stop(&self) {
        self.server.abort();
        let mut inner = self.state.inner.lock().expect("poisoned");
        for (_, s) in inner.streams.drain() {
            s.tx.fail(Status::unavailable("control plane stopped"));
        }
    }
}

impl Drop for FakeXds {
    fn drop(&mut self) {
        self.stop();
    }
}

fn version(inner: &Inner) -> String {
    format!("v{}", inner.version)
}

/// Sends stream `id` the current set of `type_url` it subscribes to.
fn respond(inner: &mut Inner, id: u64, type_url: &str) {
    let Some(kind) = Kind::from_type_url(type_url) else {
        return;
    };
    inner.nonce += 1;
    let nonce = format!("n{}", inner.nonce);
    let version = version(inner);
    let all = inner.resources.get(&kind).cloned().unwrap_or_default();
    let Some(stream) = inner.streams.get_mut(&id) else {
        return;
    };
    let Some(sub) = stream.subs.get_mut(type_url) else {
        return;
    };
    let subscribed: BTreeMap<String, Any> = all
        .into_iter()
        .filter(|(name, _)| sub.names.as_ref().is_none_or(|n| n.contains(name)))
        .collect();
    sub.nonce = nonce.clone();
    match &stream.tx {
        Tx::Sotw(tx) => {
            let _ = tx.send(Ok(DiscoveryResponse {
                version_info: version.clone(),
                resources: subscribed.into_values().collect(),
                type_url: type_url.to_string(),
                nonce: nonce.clone(),
                ..Default::default()
            }));
        }
        Tx::Delta(tx) => {
            let mut resources = Vec::new();
            let mut now = BTreeMap::new();
            for (name, any) in subscribed {
                let v = format!("{:016x}", digest(&any.value));
                if sub.sent.get(&name) != Some(&v) {
                    resources.push(DeltaResource {
                        name: name.clone(),
                        version: v.clone(),
                        resource: Some(any),
                        ..Default::default()
                    });
                }
                now.insert(name, v);
            }
            let removed_resources = sub
                .sent
                .keys()
                .filter(|n| !now.contains_key(*n))
                .cloned()
                .collect();
            sub.sent = now;
            let _ = tx.send(Ok(DeltaDiscoveryResponse {
                system_version_info: version.clone(),
                resources,
                type_url: type_url.to_string(),
                removed_resources,
                nonce: nonce.clone(),
                ..Default::default()
            }));
        }
    }
    inner.nonces.insert(nonce, version);
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

struct Service(Arc<State>);

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = open_stream(&self.0, Tx::Sotw(tx));
        let state = Arc::clone(&self.0);
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                on_request(&state, id, req);
            }
            state.inner.lock().expect("poisoned").streams.remove(&id);
        });
        let out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = open_stream(&self.0, Tx::Delta(tx));
        let state = Arc::clone(&self.0);
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                on_delta_request(&state, id, req);
            }
            state.inner.lock().expect("poisoned").streams.remove(&id);
        });
        let out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }
}

/// SDS is the same protocol on its own service (secrets only).
#[tonic::async_trait]
impl SecretDiscoveryService for Service {
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        AggregatedDiscoveryService::stream_aggregated_resources(self, request).await
    }

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        AggregatedDiscoveryService::delta_aggregated_resources(self, request).await
    }

    async fn fetch_secrets(
        &self,
        _: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("fetch_secrets"))
    }
}

fn open_stream(state: &State, tx: Tx) -> u64 {
    let mut inner = state.inner.lock().expect("poisoned");
    inner.next_stream += 1;
    let id = inner.next_stream;
    inner.streams.insert(
        id,
        StreamState {
            node: String::new(),
            tx,
            subs: HashMap::new(),
        },
    );
    id
}

fn on_delta_request(state: &State, id: u64, req: DeltaDiscoveryRequest) {
    let mut inner = state.inner.lock().expect("poisoned");
    let Some(stream) = inner.streams.get_mut(&id) else {
        return;
    };
    if let Some(node) = &req.node {
        stream.node = node.id.clone();
    }
    let node = stream.node.clone();
    let wildcard = matches!(
        Kind::from_type_url(&req.type_url),
        Some(Kind::Listener | Kind::Cluster)
    );
    let sub = stream.subs.entry(req.type_url.clone()).or_default();
    let first = sub.nonce.is_empty() && sub.names.is_none() && sub.sent.is_empty();
    if first {
        // What the proxy says it holds need not be sent again.
        sub.sent = req
            .initial_resource_versions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    let before = sub.names.clone();
    if !wildcard {
        let mut names = sub.names.take().unwrap_or_default();
        names.extend(req.resource_names_subscribe.iter().cloned());
        for n in &req.resource_names_unsubscribe {
            names.remove(n);
            sub.sent.remove(n);
        }
        sub.names = Some(names);
    }
    let changed = sub.names != before;
    let answer = first || changed || req.response_nonce.is_empty();
    let type_url = req.type_url.clone();
    let version = inner
        .nonces
        .get(&req.response_nonce)
        .cloned()
        .unwrap_or_default();
    inner.received.push(Received {
        node,
        request: DiscoveryRequest {
            version_info: version,
            resource_names: req.resource_names_subscribe.clone(),
            type_url: type_url.clone(),
            response_nonce: req.response_nonce.clone(),
            error_detail: req.error_detail.clone(),
            ..Default::default()
        },
        delta: true,
    });
    if answer {
        respond(&mut inner, id, &type_url);
    }
    drop(inner);
    state.requests.notify_waiters();
}

fn on_request(state: &State, id: u64, req: DiscoveryRequest) {
    let mut inner = state.inner.lock().expect("poisoned");
    let Some(stream) = inner.streams.get_mut(&id) else {
        return;
    };
    if let Some(node) = &req.node {
        stream.node = node.id.clone();
    }
    let node = stream.node.clone();
    let wildcard = matches!(
        Kind::from_type_url(&req.type_url),
        Some(Kind::Listener | Kind::Cluster)
    );
    let names = (!wildcard).then(|| req.resource_names.iter().cloned().collect());
    let sub = stream.subs.entry(req.type_url.clone()).or_default();
    let first = sub.nonce.is_empty();
    let changed = sub.names != names;
    sub.names = names;
    // A new subscription or a changed one is answered; an ACK or NACK
    // (nonce of our last response, names unchanged) is not.
    let answer = first || changed || req.response_nonce.is_empty();
    let type_url = req.type_url.clone();
    inner.received.push(Received {
        node,
        request: req,
        delta: false,
    });
    if answer {
        respond(&mut inner, id, &type_url);
    }
    drop(inner);
    state.requests.notify_waiters();
}

/// A bootstrap that takes everything over ADS from `xds`.
pub fn ads_bootstrap(node: &str, admin: u16, xds: SocketAddr) -> String {
    serde_json::json!({
        // No agent serves this node certificates: weft's control plane
        // then leaves its auto mTLS and PERMISSIVE ports plaintext.
        "node": {"id": node, "cluster": "test", "metadata": {"WEFT_WORKLOAD_CERTS": "none"}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": true
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            },
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": xds.port()}}}}
            ]}]}
        }]}
    })
    .to_string()
}
