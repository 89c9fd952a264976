//! Binding listeners and serving connections from the current snapshot.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weft_envoy::filters::CodecType;

use crate::chain::{Chain, HttpSettings};
use crate::listener::{Accepted, InspectError, ListenerConfig};
use crate::snapshot::Snapshot;
use crate::transport::{ConnectionInfo, Stream};

/// What every connection task shares: the current snapshot (read without
/// locks) and the shutdown signal.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    draining: AtomicBool,
    /// How long connections of a replaced or removed listener may go on
    /// before they are closed (Envoy's `--drain-time-s`, 600 s).
    drain_time_ms: std::sync::atomic::AtomicU64,
    stop: watch::Sender<bool>,
    /// The listeners bound now, by name. Only configuration changes take
    /// this lock, never a connection.
    bound: std::sync::Mutex<HashMap<String, Bound>>,
    /// Accept loops (static and dynamic), joined on shutdown.
    tasks: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Listeners stopped whose accept loop may still hold the socket:
    /// their address, and a flag set once the socket is closed. A
    /// listener added again on that address waits for it.
    closing: std::sync::Mutex<Vec<(SocketAddr, watch::Receiver<bool>)>>,
}

/// A bound listener's accept loop.
struct Bound {
    /// The configured address (a replacement must keep it, as in Envoy).
    addr: SocketAddr,
    local: SocketAddr,
    stop: watch::Sender<bool>,
    /// Set by the accept loop once it has closed the socket.
    closed: watch::Receiver<bool>,
}

/// Why a new snapshot could not be installed (configuration; the
/// previous one keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("listener {name:?}: cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {name:?}: its address cannot change from {was} to {now}; remove it and add it under another name")]
    AddressChanged {
        name: String,
        was: SocketAddr,
        now: SocketAddr,
    },
}

impl Shared {
    /// Makes `next` the configuration: binds listeners it adds, stops
    /// those it removes, and drains the connections of listeners it
    /// replaces or removes. A listener that cannot be bound refuses the
    /// whole snapshot and the current one keeps serving.
    pub async fn install(self: &Arc<Self>, next: Snapshot) -> Result<(), InstallError> {
        let mut fresh = Vec::new();
        let current: HashMap<String, SocketAddr> = self
            .bound
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(n, b)| (n.clone(), b.addr))
            .collect();
        for l in next.listeners.iter().filter(|l| l.bind) {
            match current.get(&l.name) {
                Some(was) if *was != l.addr => {
                    return Err(InstallError::AddressChanged {
                        name: l.name.clone(),
                        was: *was,
                        now: l.addr,
                    })
                }
                Some(_) => {}
                None => {
                    self.wait_closed(l.addr).await;
                    let socket =
                        TcpListener::bind(l.addr)
                            .await
                            .map_err(|source| InstallError::Bind {
                                name: l.name.clone(),
                                addr: l.addr,
                                source,
                            })?;
                    fresh.push((l.name.clone(), l.addr, socket));
                }
            }
        }
        let previous = self.snapshot.swap(Arc::new(next));
        let next = self.snapshot.load_full();
        let mut bound = self.bound.lock().expect("poisoned");
        let mut tasks = self.tasks.lock().expect("poisoned");
        for (name, addr, socket) in fresh {
            let (stop, _) = watch::channel(false);
            let (closed_tx, closed) = watch::channel(false);
            let local = socket.local_addr().unwrap_or(addr);
            tasks.spawn(accept_loop(
                Arc::clone(self),
                name.clone(),
                socket,
                stop.subscribe(),
                closed_tx,
            ));
            bound.insert(
                name,
                Bound {
                    addr,
                    local,
                    stop,
                    closed,
                },
            );
        }
        let mut closing = self.closing.lock().expect("poisoned");
        // Closed, or its loop gone (the sender dropped): nothing to wait for.
        closing.retain(|(_, closed)| !*closed.borrow() && closed.has_changed().is_ok());
        let live: HashMap<&str, &Arc<ListenerConfig>> = next
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l))
            .collect();
        bound.retain(|name, b| {
            let keep = live.get(name.as_str()).is_some_and(|l| l.bind);
            if !keep {
                let _ = b.stop.send(true);
                closing.push((b.addr, b.closed.clone()));
            }
            keep
        });
        for old in &previous.listeners {
            let kept = live
                .get(old.name.as_str())
                .is_some_and(|l| Arc::ptr_eq(l, old));
            if !kept {
                let _ = old.drain.send(true);
            }
        }
        Ok(())
    }

    /// Waits (briefly) until no stopped listener holds `addr`: the accept
    /// loop of a listener removed a moment ago closes its socket when it
    /// next runs, which on a busy machine can be after the listener is
    /// added again (as Envoy, removal must free the address).
    async fn wait_closed(&self, addr: SocketAddr) {
        let pending: Vec<watch::Receiver<bool>> = self
            .closing
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|(a, closed)| *a == addr && !*closed.borrow())
            .map(|(_, closed)| closed.clone())
            .collect();
        for mut closed in pending {
            // A loop that ended without saying so dropped its sender: its
            // socket is gone too.
            let _ = tokio::time::timeout(Duration::from_secs(5), closed.wait_for(|c| *c)).await;
        }
    }

    /// Sets how long a drained listener's connections may go on.
    pub fn set_drain_time(&self, d: Duration) {
        let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
        self.drain_time_ms.store(ms, Ordering::Relaxed);
    }

    pub fn drain_time(&self) -> Duration {
        Duration::from_millis(self.drain_time_ms.load(Ordering::Relaxed))
    }

    /// Resolves when a connection of listener `l` must close: the
    /// listener has drained and the drain time has passed since.
    fn closing(&self, l: &ListenerConfig) -> impl std::future::Future<Output = ()> + 'static {
        let mut drain = l.drain.subscribe();
        let time = self.drain_time();
        async move {
            if drain.wait_for(|d| *d).await.is_err() {
                // The listener's configuration is gone without a drain
                // signal: nothing will ever ask this connection to close.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(time).await;
        }
    }

    /// The bound address of each listener (useful with port 0).
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<_> = self
            .bound
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(n, b)| (n.clone(), b.local))
            .collect();
        out.sort();
        out
    }

    /// Turns true when the proxy shuts down.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
    /// Stop accepting, let open connections finish, then exit.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

/// A running proxy: its bound addresses and a handle to stop it.
pub struct Running {
    pub shared: Arc<Shared>,
    /// Bound address per listener name at start (useful with port 0).
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
}

impl Running {
    /// Waits until shutdown is requested and connections have drained
    /// (or `drain` has passed).
    pub async fn wait(self, drain: Duration) {
        let mut stop = self.shared.stop.subscribe();
        let _ = stop.wait_for(|s| *s).await;
        let mut tasks = std::mem::take(&mut *self.shared.tasks.lock().expect("poisoned"));
        let _ =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    }
}

/// Holds a gauge up while something is active.
struct ActiveGuard<'a>(&'a crate::stats::Level);

impl<'a> ActiveGuard<'a> {
    fn new(g: &'a crate::stats::Level) -> Self {
        g.inc();
        ActiveGuard(g)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Envoy's default `--drain-time-s`.
pub const DRAIN_TIME: Duration = Duration::from_secs(600);

/// Binds every listener and the admin address, then serves.
pub async fn start(snapshot: Snapshot) -> std::io::Result<Running> {
    let admin_addr = snapshot.admin;
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(Snapshot::empty(Arc::clone(&snapshot.stats))),
        draining: AtomicBool::new(false),
        drain_time_ms: std::sync::atomic::AtomicU64::new(DRAIN_TIME.as_millis() as u64),
        stop: watch::Sender::new(false),
        bound: Default::default(),
        tasks: Default::default(),
        closing: Default::default(),
    });
    shared.install(snapshot).await.map_err(|e| match e {
        InstallError::Bind { ref source, .. } => std::io::Error::new(source.kind(), e.to_string()),
        other => std::io::Error::other(other.to_string()),
    })?;
    let admin = match admin_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("admin on {addr}: {e}")))?;
            let local = listener.local_addr()?;
            let task = admin_loop(Arc::clone(&shared), listener);
            shared.tasks.lock().expect("poisoned").spawn(task);
            Some(local)
        }
        None => None,
    };
    Ok(Running {
        listeners: shared.bound(),
        shared,
        admin,
    })
}

async fn accept_loop(
    shared: Arc<Shared>,
    name: String,
    listener: TcpListener,
    mut removed: watch::Receiver<bool>,
    closed: watch::Sender<bool>,
) {
    let mut stop = shared.stop.subscribe();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = removed.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let snapshot = shared.snapshot.load_full();
                let Some(index) = snapshot.listener(&name) else { continue };
                conns.spawn(connection(Arc::clone(&shared), snapshot, index, stream, peer));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closed.send(true);
    // Connections already accepted run to completion (or drain).
    while conns.join_next().await.is_some() {}
}

/// One downstream connection: listener filters, the hand-off to the
/// listener of its original destination, the filter chain, then serving.
async fn connection(
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    index: usize,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let Some(mut l) = snapshot.listeners.get(index) else {
        return;
    };
    let mut conn = Accepted::new(stream, peer);
    if !inspect(l, &mut conn).await {
        return;
    }
    if l.use_original_dst {
        if let Some(j) = snapshot.handoff(index, &conn.facts) {
            // The receiving listener's own listener filters run too.
            l = &snapshot.listeners[j];
            if !inspect(l, &mut conn).await {
                return;
            }
        }
    }
    let Some(chain) = l.chains.select(&conn.facts) else {
        l.stats.no_filter_chain_match.inc();
        tracing::debug!(listener = %l.name, ?conn.facts, "no filter chain matches; closing");
        return;
    };
    l.stats.downstream_cx_total.inc();
    let _active = ActiveGuard::new(&l.stats.downstream_cx_active);
    let original_dst = conn.facts.local.filter(|_| conn.facts.restored);
    let local = conn.facts.local;
    let accepted = match chain.transport.accept(conn.stream, conn.read).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(listener = %l.name, "closing connection: transport: {e}");
            return;
        }
    };
    let stream = accepted.stream;
    let info = ConnectionInfo {
        peer,
        original_dst,
        local,
        tls: accepted.tls,
        requested_server_name: conn.facts.server_name,
        // Set below for an HTTP chain whose manager forwards it.
        client_cert: None,
    };
    // The network RBAC filters see every read from downstream, the
    // bytes listener filters read first included.
    let gate = chain
        .network
        .as_ref()
        .map(|n| crate::rbac::Gate::new(Arc::clone(n), Arc::new(info.clone())));
    match &chain.terminal {
        Chain::Tcp(t) => {
            let stream = crate::tcp::Downstream {
                stream,
                early: accepted.early,
                original_dst,
                gate,
            };
            let closing = shared.closing(l);
            crate::tcp::serve(Arc::clone(&snapshot), Arc::clone(t), stream, closing).await
        }
        Chain::Http(h) => {
            let _ = stream.set_nodelay(true);
            let mut io = crate::io::Rewind::new(accepted.early, stream);
            if let Some(g) = gate {
                io = io.gated(Box::new(g));
            }
            let mut info = info;
            info.client_cert = h.client_cert.element(info.tls.as_deref());
            let drain = (l.drain.subscribe(), shared.drain_time());
            serve_http(shared, Arc::clone(h), io, Arc::new(info), drain).await
        }
    }
}

/// Runs a listener's filters; false when the connection is to be closed.
async fn inspect(l: &crate::listener::ListenerConfig, conn: &mut Accepted) -> bool {
    match conn.inspect(&l.filters).await {
        Ok(()) => true,
        Err(e) => {
            if matches!(e, InspectError::Timeout) {
                l.stats.downstream_pre_cx_timeout.inc();
            }
            tracing::debug!(listener = %l.name, "closing connection: {e}");
            false
        }
    }
}

async fn serve_http(
    shared: Arc<Shared>,
    h: Arc<HttpSettings>,
    io: crate::io::Rewind<Stream>,
    conn: Arc<ConnectionInfo>,
    (mut listener_drain, drain_time): (watch::Receiver<bool>, Duration),
) {
    let cx_stats = Arc::clone(&h.stats);
    cx_stats.downstream_cx_total.inc();
    let _cx_active = ActiveGuard::new(&cx_stats.downstream_cx_active);
    let codec = h.codec;
    let cap = h.max_request_headers + 8 * 1024;
    let max_headers = h.max_headers_count + 32;
    let activity = crate::io::Activity::new();
    let io = io.tracked(Arc::clone(&activity));
    let (idle, max_duration) = (h.idle_timeout, h.max_connection_duration);
    let settings = Arc::clone(&h);
    let requests = Arc::clone(&activity);
    let svc = service_fn(move |req| {
        let snapshot = shared.snapshot.load_full();
        let h = Arc::clone(&h);
        let conn = Arc::clone(&conn);
        let open = requests.open_request();
        let activity = Arc::clone(&requests);
        // Boxed: hyper keeps a slot of the service future's size for
        // every connection, idle or not (~7 KiB for this future); a box
        // per request costs one allocation and keeps idle connections
        // small.
        let fut: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<_, Infallible>> + Send>,
        > = Box::pin(async move {
            let _open = open;
            if req.version() == http::Version::HTTP_2 {
                activity.http2.store(true, Ordering::Relaxed);
            }
            let settings = Arc::clone(&h);
            let stats = &settings.stats;
            stats.downstream_rq_total.inc();
            let _rq_active = ActiveGuard::new(&stats.downstream_rq_active);
            let resp = if h.access_logs.is_empty() && !h.istio_stats {
                crate::http::handle(snapshot, h, conn, req).await.0
            } else {
                logged(snapshot, h, conn, req).await
            };
            stats.downstream_rq.count(resp.status().as_u16());
            let mut resp = resp;
            if activity.draining.load(Ordering::Relaxed) && !activity.http2.load(Ordering::Relaxed)
            {
                // hyper closes an HTTP/1 connection after a response that
                // says so.
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(resp)
        });
        fut
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The exact limit is checked per request; these stop a client from
    // making us buffer more.
    builder.http1().max_buf_size(cap).max_headers(max_headers);
    let h2 = settings.h2;
    builder
        .http2()
        .max_header_list_size(cap as u32)
        .max_concurrent_streams(h2.max_concurrent_streams);
    if let Some(w) = h2.initial_stream_window_size {
        builder.http2().initial_stream_window_size(w);
    }
    if let Some(w) = h2.initial_connection_window_size {
        builder.http2().initial_connection_window_size(w);
    }
    match codec {
        CodecType::HTTP1 => builder = builder.http1_only(),
        CodecType::HTTP2 => builder = builder.http2_only(),
        CodecType::AUTO => {}
    }
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // When the listener drains, its connections may go on for the drain
    // time, then are closed.
    let mut close_at = None;
    tokio::select! {
        _ = conn.as_mut() => return,
        why = crate::io::lifetime(&activity, idle, max_duration) => {
            match why {
                crate::io::Closing::Idle => settings.stats.downstream_cx_idle_timeout.inc(),
                crate::io::Closing::MaxDuration => settings.stats.downstream_cx_max_duration_reached.inc(),
            }
        }
        // The listener was replaced or removed.
        _ = listener_drain.wait_for(|d| *d) => {
            close_at = Some(tokio::time::Instant::now() + drain_time);
        }
    }
    // Drain as Envoy does: HTTP/2 gets a GOAWAY now and closes when its
    // open streams finish; HTTP/1 answers at most one more request, with
    // `connection: close`, or closes after drain_timeout.
    activity.draining.store(true, Ordering::Relaxed);
    if !activity.http2.load(Ordering::Relaxed) {
        let mut wait = tokio::time::Instant::now() + settings.drain_timeout;
        if let Some(at) = close_at {
            wait = wait.min(at);
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(wait) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    // What has not finished when the listener's drain time is over is
    // closed (a shutdown has its own bound, `Running::wait`).
    match close_at {
        Some(at) => {
            let _ = tokio::time::timeout_at(at, conn).await;
        }
        None => {
            let _ = conn.await;
        }
    }
}

async fn admin_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.stop.subscribe();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(crate::admin::handle(shared, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// `handle` with an access log line written when the response is done.
async fn logged(
    snapshot: Arc<Snapshot>,
    h: Arc<HttpSettings>,
    conn: Arc<ConnectionInfo>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<crate::body::Body> {
    use crate::access_log::{Counted, Entry, LoggedBody};
    use http_body_util::BodyExt;
    let started = std::time::Instant::now();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let original_path = req.headers().contains_key("x-envoy-original-path");
    let protocol = match req.version() {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let authority = || {
        req.uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| header("host"))
    };
    // The log line's fields only when there is a log to write: Istio's
    // stats alone need none of them.
    let logging = !h.access_logs.is_empty();
    let mut entry = if !logging {
        Entry::default()
    } else {
        Entry {
            start: Some(std::time::SystemTime::now()),
            method: req.method().to_string(),
            path: header("x-envoy-original-path").unwrap_or_else(|| {
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default()
            }),
            protocol,
            request_id: header("x-request-id"),
            authority: authority(),
            request_headers: req.headers().clone(),
            downstream_local: conn.local,
            downstream_remote: Some(trusted_client(&h, &conn, req.headers())),
            requested_server_name: conn.requested_server_name.clone(),
            ..Default::default()
        }
    };
    if logging && h.use_remote_address && !h.skip_xff_append {
        // Envoy's connection manager appends the peer before anything
        // logs the request's headers.
        if let Some(v) =
            crate::upstream_headers::appended_xff(&entry.request_headers, conn.peer.ip())
        {
            entry
                .request_headers
                .insert(http::HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    let mut pending: Vec<crate::istio_stats::Pending> = h
        .filters
        .iter()
        .filter_map(|f| match &f.kind {
            crate::chain::FilterKind::IstioStats(s) => Some(Arc::clone(s)),
            _ => None,
        })
        .map(|s| crate::istio_stats::Pending::new(s, &conn))
        .collect();
    if !pending.is_empty() {
        let path = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
        let first_line = req.method().as_str().len() + 1 + path + 1 + protocol.len();
        let head = crate::istio_stats::head_bytes(first_line, req.headers());
        let grpc = crate::local_reply::is_grpc(req.headers());
        let authority = entry
            .authority
            .clone()
            .or_else(authority)
            .unwrap_or_default();
        for p in &mut pending {
            p.request_head = head;
            p.grpc = grpc;
            p.authority.clone_from(&authority);
        }
    }
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let req = req.map(|b| Counted::new(b, Arc::clone(&received)));
    let logs = h.access_logs.clone();
    let clusters = Arc::clone(&snapshot.clusters);
    let (resp, outcome) = crate::http::handle(snapshot, h, conn, req).await;
    if !pending.is_empty() {
        let service = outcome
            .cluster
            .as_ref()
            .and_then(|c| clusters.get(c))
            .and_then(|c| c.istio_service.clone());
        // "HTTP/1.1 200 OK"
        let first_line = 9 + 3 + 1 + resp.status().canonical_reason().map_or(0, str::len);
        let head = crate::istio_stats::head_bytes(first_line, resp.headers());
        for p in &mut pending {
            p.status = resp.status().as_u16();
            p.peers = outcome.peers.clone();
            p.cluster.clone_from(&outcome.cluster);
            p.service.clone_from(&service);
            p.response_head = head;
        }
    }
    entry.status = resp.status().as_u16();
    entry.flags = outcome.flag;
    entry.known_details = outcome.details;
    entry.transport_failure = outcome.transport_failure;
    entry.upstream_host = outcome.upstream.map(|a| a.to_string());
    entry.upstream_local = outcome.upstream_local;
    entry.upstream_cluster = outcome.cluster;
    entry.route_name = outcome.route_name;
    if outcome.request_id.is_some() {
        entry.request_id = outcome.request_id;
    }
    if let Some(path) = outcome.path {
        if !original_path {
            entry.path = path;
        }
    }
    if logging {
        entry.response_headers = resp.headers().clone();
    }
    let stream = outcome.stream.map(|(a, _)| a);
    let (parts, body) = resp.into_parts();
    let body = LoggedBody::new(body, entry, logs, received, started, stream, pending)
        .with_grpc_status(&parts.headers);
    hyper::Response::from_parts(parts, body.boxed())
}

/// The client as the connection manager trusts it (Envoy's downstream
/// remote address): the peer with `use_remote_address`, else the
/// X-Forwarded-For address it picks, with port 0.
fn trusted_client(
    h: &HttpSettings,
    conn: &ConnectionInfo,
    headers: &http::HeaderMap,
) -> std::net::SocketAddr {
    let unset = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let ip = crate::rbac::http::trusted_remote(
        headers,
        unset,
        h.use_remote_address,
        h.xff_num_trusted_hops,
    );
    if ip == unset {
        conn.peer
    } else {
        std::net::SocketAddr::new(ip, 0)
    }
}
