//! The router filter: sends a routed request to its cluster and brings
//! the response back. A request is sent as one or more attempts: each
//! picks an endpoint, passes the cluster's circuit breakers and runs
//! under the per-try timeout; a failed attempt is retried when the retry
//! policy says so, after a jittered back-off, with the body replayed.
//! The route timeout bounds all attempts together.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::body::{full, Body, BoxError};
use crate::circuit::{Admitted, Held};
use crate::cluster::{Cluster, Endpoint, PickContext};
use crate::error::ForwardError;
use crate::headers::{upgrade_kind, HOP_BY_HOP};
use crate::matchers::RequestView;
use crate::replay::Replay;
use crate::request::{Outcome, Routed};
use crate::retry::{AttemptFailure, RetryPolicy};
use crate::routes::{Forward, Mirror};
use crate::upstream_headers;

static X_UPSTREAM_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");
static X_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");

/// An empty body that does not say it has ended before it is polled, so
/// hyper encodes its known length (0) instead of omitting it.
struct DeclaredEmpty(Body);

impl hyper::body::Body for DeclaredEmpty {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(0)
    }
}

/// Where each attempt's request body comes from.
enum Bodies {
    /// Sent once: no retry can follow (or nothing to replay).
    Once(Option<Body>),
    /// No body; `declared` sends `content-length: 0`.
    Empty {
        declared: bool,
    },
    Replay(Replay),
}

impl Bodies {
    fn next(&mut self) -> Body {
        match self {
            Bodies::Once(b) => b.take().unwrap_or_else(|| full(Bytes::new())),
            Bodies::Empty { declared: true } => DeclaredEmpty(full(Bytes::new())).boxed(),
            Bodies::Empty { declared: false } => full(Bytes::new()),
            Bodies::Replay(r) => r.attempt(),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            Bodies::Once(_) => false,
            Bodies::Empty { .. } => true,
            Bodies::Replay(r) => r.replayable(),
        }
    }
}

/// The request as every attempt sends it (each attempt gets a copy).
struct Prepared {
    method: http::Method,
    uri: Uri,
    version: http::Version,
    headers: HeaderMap,
}

impl Prepared {
    fn request(&mut self, body: Body, last: bool) -> Request<Body> {
        let mut up = Request::new(body);
        *up.method_mut() = self.method.clone();
        *up.version_mut() = self.version;
        *up.uri_mut() = self.uri.clone();
        *up.headers_mut() = if last {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        up
    }
}

/// How one attempt ended. Short-lived and never stored, so the size of
/// the response variant costs nothing that boxing (an allocation per
/// request) would save.
#[allow(clippy::large_enum_variant)]
enum Tried {
    Response(Response<hyper::body::Incoming>, Admitted),
    Failed(AttemptFailure),
    /// Not retriable whatever the policy says.
    Fatal(ForwardError),
}

/// Forwards a routed request to `cluster`, one of its route's targets:
/// attempts under the retry policy, mirrors, then the response as the
/// client gets it.
pub(crate) async fn forward<B>(
    r: &Routed<'_>,
    fwd: &Forward,
    cluster: &str,
    mut req: Request<B>,
    outcome: &mut Outcome,
) -> Result<Response<Body>, ForwardError>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    let cluster = r
        .snapshot
        .clusters
        .get(cluster)
        .ok_or(ForwardError::NoCluster)?;
    let started = Instant::now();
    let deadline = (!fwd.timeout.is_zero()).then(|| started + fwd.timeout);
    let upgrade = upgrade_kind(req.headers()).and_then(|k| HeaderValue::from_str(k).ok());
    let downstream_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    // Upgraded connections are not retried: what was sent after the
    // switch cannot be replayed.
    let policy = fwd.retry.as_deref().filter(|p| {
        upgrade.is_none()
            && p.applies_to(&RequestView {
                method: req.method().as_str(),
                authority: r.host,
                scheme: r.conn.scheme(),
                path_and_query: r.path,
                headers: req.headers(),
            })
    });
    let hashed = fwd.hash.as_ref().map(|h| {
        let conn = crate::hashing::Conn {
            peer: r.conn.peer,
            local: r.conn.local,
        };
        h.hash(req.headers(), r.path, &conn)
    });
    let hash = hashed.as_ref().and_then(|h| h.hash);
    let set_cookie = hashed.and_then(|h| h.set_cookie);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let first = pick(
        cluster,
        policy,
        &tried,
        r.conn.original_dst,
        req.headers(),
        hash,
    )?;
    let (mut parts, body) = req.into_parts();
    let new_path = crate::matchers::rewrite_path(
        r.path,
        fwd.matched_prefix.as_deref(),
        fwd.prefix_rewrite.as_deref(),
        fwd.regex_rewrite.as_ref(),
    );
    let new_host = upstream_host(fwd, &first, r.host);
    parts.uri = request_uri(first.scheme(), &new_host, &new_path, &first)?;
    upstream_headers::shape(
        &mut parts.headers,
        &upstream_headers::Shaping {
            settings: r.settings,
            fwd,
            peer: r.conn.peer,
            host: r.host,
            path: r.path,
            new_host: &new_host,
            upgrade: upgrade.as_ref(),
            http2_upstream: cluster.http2,
        },
    );
    parts.version = if cluster.http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    // A body error while forwarding is the client's fault, not the
    // upstream's; remember it to answer 400 rather than 503. A finished
    // (empty) body cannot fail, so most requests skip the flag.
    let ended = hyper::body::Body::is_end_stream(&body);
    let body_failed = (!ended).then(|| Arc::new(AtomicBool::new(false)));
    let failed = body_failed.clone();
    let body = body
        .map_err(move |e| {
            if let Some(f) = &failed {
                f.store(true, Ordering::Relaxed);
            }
            Box::new(e) as BoxError
        })
        .boxed();
    // A request without a body reaches an HTTP/1.1 upstream with
    // `content-length: 0` unless its method usually has no body (GET,
    // HEAD, DELETE, CONNECT), as Envoy's codec writes it (pinned by the
    // methods-and-bodies parity scenario); hyper would omit it.
    let bodiless_method = matches!(
        parts.method,
        http::Method::GET | http::Method::HEAD | http::Method::CONNECT | http::Method::DELETE
    );
    let declared = !cluster.http2 && !bodiless_method && upgrade.is_none() && ended;
    if declared {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    // The mirrors this request goes to (each by its share).
    let mirrors: Vec<&Mirror> = fwd
        .mirrors
        .iter()
        .filter(|m| m.share.0 > 0 && fastrand::u32(0..m.share.1.max(1)) < m.share.0)
        .collect();
    let mut bodies = match (policy.is_some() || !mirrors.is_empty(), ended) {
        (_, true) => Bodies::Empty { declared },
        (true, false) => Bodies::Replay(Replay::new(body, crate::replay::DEFAULT_LIMIT)),
        (false, false) => Bodies::Once(Some(body)),
    };
    let mut prepared = Prepared {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
    };
    for m in mirrors {
        shadow(r, fwd, m, &prepared, bodies.next());
    }
    let stats = &cluster.stats;
    let mut endpoint = first;
    let mut attempt: u32 = 1;
    // Held from the decision to retry until that retry has ended.
    let mut _retrying = None;
    let (resp, admitted) = loop {
        tried.push(endpoint.addr);
        outcome.upstream = Some(endpoint.addr);
        outcome.attempts = attempt;
        // Without a retry to follow, the request moves instead of copying.
        let last = policy.is_none_or(|p| attempt > p.num_retries);
        let mut up = prepared.request(bodies.next(), last);
        if fwd.auto_host_rewrite && attempt > 1 {
            let host = upstream_host(fwd, &endpoint, r.host);
            *up.uri_mut() = request_uri(endpoint.scheme(), &host, &new_path, &endpoint)?;
            if !cluster.http2 {
                if let Ok(v) = HeaderValue::from_str(&host) {
                    up.headers_mut().insert(HOST, v);
                }
            }
        }
        if r.vh.attempt_count_upstream {
            up.headers_mut()
                .insert(X_ATTEMPT_COUNT.clone(), HeaderValue::from(attempt));
        }
        let per_try = policy.and_then(|p| p.per_try_timeout);
        let mut facts = AttemptFacts {
            capture: !r.settings.access_logs.is_empty(),
            ..Default::default()
        };
        let tried_now = send(cluster, &endpoint, up, per_try, deadline, &mut facts).await;
        // Envoy's %UPSTREAM_TRANSPORT_FAILURE_REASON% for the one
        // connect failure weft tells apart (the last attempt's counts).
        outcome.transport_failure = facts
            .refused
            .then_some("delayed_connect_error:_Connection_refused");
        outcome.upstream_local = facts.local;
        if matches!(tried_now, Tried::Fatal(ForwardError::Overflow)) {
            // Refused before a host's connection pool took it: Envoy
            // logs no upstream host.
            outcome.upstream = None;
        }
        let tried_now = match tried_now {
            Tried::Failed(_)
                if body_failed
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::Relaxed)) =>
            {
                Tried::Fatal(ForwardError::DownstreamProtocol)
            }
            other => other,
        };
        let retriable = match (&tried_now, policy) {
            (Tried::Response(resp, _), Some(p)) => {
                p.retry_response(resp.status().as_u16(), resp.headers())
            }
            (Tried::Failed(f), Some(p)) => p.retry_failure(*f),
            _ => false,
        };
        let Some(p) = policy.filter(|_| retriable) else {
            if attempt > 1 && matches!(tried_now, Tried::Response(..)) {
                stats.upstream_rq_retry_success.inc();
            }
            match tried_now {
                Tried::Response(resp, admitted) => break (resp, admitted),
                Tried::Failed(f) => return Err(failure_error(f)),
                Tried::Fatal(e) => return Err(e),
            }
        };
        let exhausted = attempt > p.num_retries;
        let slot = (!exhausted && bodies.replayable())
            .then(|| cluster.breakers.retry(stats))
            .flatten();
        let Some(slot) = slot else {
            if exhausted {
                stats.upstream_rq_retry_limit_exceeded.inc();
                outcome.flag = Some("URX");
            }
            match tried_now {
                Tried::Response(resp, admitted) => break (resp, admitted),
                Tried::Failed(f) => return Err(failure_error(f)),
                Tried::Fatal(e) => return Err(e),
            }
        };
        // The failed attempt's response (and its connection) go now.
        drop(tried_now);
        _retrying = Some(slot);
        let pause = p.backoff(attempt);
        match deadline {
            Some(d) if Instant::now() + pause >= d => {
                tokio::time::sleep_until(d.into()).await;
                stats.upstream_rq_timeout.inc();
                return Err(ForwardError::Timeout);
            }
            _ => tokio::time::sleep(pause).await,
        }
        stats.upstream_rq_retry.inc();
        attempt += 1;
        endpoint = pick(
            cluster,
            Some(p),
            &tried,
            r.conn.original_dst,
            &prepared.headers,
            hash,
        )?;
    };
    outcome.details = Some("via_upstream");
    outcome.upstream_local = resp
        .extensions()
        .get::<crate::transport::UpstreamLocal>()
        .map(|l| l.0);
    let tunnel_idle = outcome.stream.as_ref().and_then(|(_, l)| l.idle);
    let upgrade = downstream_upgrade.map(|d| (d, tunnel_idle));
    let mut resp = finish(r, resp, admitted, upgrade, started, attempt)?;
    if let Some(c) = set_cookie {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Sends a copy of the request to a mirror cluster and forgets it: the
/// Host gets `-shadow` appended (before any port), the answer is read
/// and dropped, and nothing of it reaches the client. A mirror cluster
/// that does not exist (RDS tables may name one not yet delivered)
/// mirrors nothing.
fn shadow(r: &Routed<'_>, fwd: &Forward, m: &Mirror, prepared: &Prepared, body: Body) {
    let Some(cluster) = r.snapshot.clusters.get(&m.cluster).cloned() else {
        return;
    };
    let mut req = Request::new(body);
    *req.method_mut() = prepared.method.clone();
    *req.version_mut() = if cluster.http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    *req.headers_mut() = prepared.headers.clone();
    let authority = prepared
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let host = if m.shadow_suffix {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                format!("{h}-shadow:{p}")
            }
            _ => format!("{authority}-shadow"),
        }
    } else {
        authority
    };
    let path = prepared
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let original_dst = r.conn.original_dst;
    let timeout = fwd.timeout;
    let attempt_count = r.vh.attempt_count_upstream;
    tokio::spawn(async move {
        let Ok(endpoint) = pick(&cluster, None, &[], original_dst, req.headers(), None) else {
            return;
        };
        let Ok(uri) = request_uri(endpoint.scheme(), &host, &path, &endpoint) else {
            return;
        };
        *req.uri_mut() = uri;
        if cluster.http2 {
            req.headers_mut().remove(HOST);
        } else if let Ok(v) = HeaderValue::from_str(&host) {
            req.headers_mut().insert(HOST, v);
        }
        if attempt_count {
            req.headers_mut()
                .insert(X_ATTEMPT_COUNT.clone(), HeaderValue::from(1));
        }
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        if let Tried::Response(resp, _admitted) = send(
            &cluster,
            &endpoint,
            req,
            None,
            deadline,
            &mut AttemptFacts::default(),
        )
        .await
        {
            let _ = resp.into_body().collect().await;
        }
    });
}

/// The endpoint for the next attempt. With the previous-hosts predicate
/// a retry re-picks (up to `host_selection_retry_max_attempts` times)
/// to avoid hosts already tried, then takes what it got.
fn pick(
    cluster: &Cluster,
    policy: Option<&RetryPolicy>,
    tried: &[SocketAddr],
    original_dst: Option<SocketAddr>,
    headers: &HeaderMap,
    hash: Option<u64>,
) -> Result<Arc<Endpoint>, ForwardError> {
    let ctx = PickContext {
        original_dst,
        headers: Some(headers),
        hash,
    };
    let picks = match policy {
        Some(p) if p.previous_hosts && !tried.is_empty() => p.host_selection_attempts,
        _ => 1,
    };
    let mut picked = None;
    for _ in 0..picks {
        picked = cluster.pick(&ctx);
        match &picked {
            Some(e) if tried.contains(&e.addr) => continue,
            _ => break,
        }
    }
    picked.ok_or_else(|| {
        cluster.stats.upstream_cx_none_healthy.inc();
        cluster.stats.upstream_rq.count(503);
        ForwardError::NoHealthyUpstream
    })
}

fn upstream_host(fwd: &Forward, endpoint: &Endpoint, host: &str) -> String {
    if let Some(h) = &fwd.host_rewrite {
        h.clone()
    } else if let (true, Some(name)) = (fwd.auto_host_rewrite, &endpoint.hostname) {
        // Only DNS clusters have a host name to rewrite to; Envoy leaves
        // the Host alone for the others.
        name.clone()
    } else {
        host.to_string()
    }
}

/// The URI's authority is what HTTP/2 sends as :authority and its scheme
/// the cluster's transport's; the endpoint's connector dials the
/// endpoint regardless.
fn request_uri(
    scheme: &str,
    host: &str,
    path: &str,
    endpoint: &Endpoint,
) -> Result<Uri, ForwardError> {
    let uri = |authority: &str| {
        Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
    };
    uri(host)
        .or_else(|_| uri(&endpoint.addr.to_string()))
        .map_err(|_| ForwardError::NoRoute)
}

/// One attempt: through the circuit breakers to the endpoint, bounded
/// by the per-try timeout and what is left of the route timeout.
async fn send(
    cluster: &Cluster,
    endpoint: &Endpoint,
    req: Request<Body>,
    per_try: Option<Duration>,
    deadline: Option<Instant>,
    facts: &mut AttemptFacts,
) -> Tried {
    let stats = &cluster.stats;
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let (limit, per_try_binds) = match (per_try, left) {
        (Some(p), Some(l)) if p < l => (Some(p), true),
        (Some(p), None) => (Some(p), true),
        (_, l) => (l, false),
    };
    let attempt = async {
        let Some(admitted) = cluster.breakers.admit(!cluster.http2, stats).await else {
            return Tried::Fatal(ForwardError::Overflow);
        };
        let mut req = req;
        let captured = facts
            .capture
            .then(|| hyper_util::client::legacy::connect::capture_connection(&mut req));
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        let result = endpoint.client().request(req).await;
        endpoint.active.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(resp) => Tried::Response(resp, admitted),
            Err(e) => {
                facts.refused = connect_refused(&e);
                // The connection the request failed on, if one was made.
                if let Some(c) = captured.as_ref() {
                    if let Some(connected) = c.connection_metadata().as_ref() {
                        let mut ext = http::Extensions::new();
                        connected.get_extras(&mut ext);
                        facts.local = ext.get::<crate::transport::UpstreamLocal>().map(|l| l.0);
                    }
                }
                Tried::Failed(classify(&e))
            }
        }
    };
    let result = match limit {
        Some(l) => tokio::time::timeout(l, attempt).await,
        None => Ok(attempt.await),
    };
    let tried = match result {
        Err(_) if per_try_binds => {
            stats.upstream_rq_per_try_timeout.inc();
            Tried::Failed(AttemptFailure::PerTryTimeout)
        }
        Err(_) => {
            stats.upstream_rq_timeout.inc();
            Tried::Fatal(ForwardError::Timeout)
        }
        Ok(t) => t,
    };
    use crate::outlier::Result as Seen;
    let seen = match &tried {
        Tried::Response(resp, _) => Some(Seen::Status(resp.status().as_u16())),
        Tried::Failed(AttemptFailure::ConnectFailure) => Some(Seen::ConnectFailed),
        Tried::Failed(_) | Tried::Fatal(ForwardError::Timeout) => Some(Seen::LocalFailure),
        Tried::Fatal(_) => None,
    };
    if let Some(seen) = seen {
        cluster.report(endpoint, seen);
    }
    match &tried {
        Tried::Response(resp, _) => {
            stats.upstream_rq_total.inc();
            stats.upstream_rq.count(resp.status().as_u16());
        }
        Tried::Failed(AttemptFailure::ConnectFailure) => {
            stats.upstream_rq.count(503);
        }
        Tried::Failed(AttemptFailure::PerTryTimeout) | Tried::Fatal(ForwardError::Timeout) => {
            stats.upstream_rq_total.inc();
            stats.upstream_rq.count(504);
        }
        Tried::Failed(_) => {
            stats.upstream_rq_total.inc();
            stats.upstream_rq.count(503);
        }
        Tried::Fatal(ForwardError::Overflow) => {
            stats.upstream_rq.count(503);
        }
        Tried::Fatal(_) => {}
    }
    tried
}

/// What a client error says about the attempt.
fn classify(e: &hyper_util::client::legacy::Error) -> AttemptFailure {
    if e.is_connect() {
        return AttemptFailure::ConnectFailure;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return AttemptFailure::RefusedStream;
            }
        }
        source = s.source();
    }
    AttemptFailure::Reset
}

/// What the access log learns of a failed attempt.
#[derive(Default)]
struct AttemptFacts {
    /// Whether to find out `local` (only access logs need it).
    capture: bool,
    /// The connect failure was a refused connection.
    refused: bool,
    /// The local address of the connection the attempt failed on.
    local: Option<std::net::SocketAddr>,
}

/// Whether a connect failure was a refused connection.
fn connect_refused(e: &hyper_util::client::legacy::Error) -> bool {
    if !e.is_connect() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = s.source();
    }
    false
}

fn failure_error(f: AttemptFailure) -> ForwardError {
    match f {
        AttemptFailure::ConnectFailure => ForwardError::ConnectFailure,
        AttemptFailure::Reset | AttemptFailure::RefusedStream => ForwardError::UpstreamReset,
        AttemptFailure::PerTryTimeout => ForwardError::Timeout,
    }
}

/// The upstream response as the client gets it: an accepted upgrade
/// joined end to end, hop-by-hop headers dropped, Envoy's headers set.
fn finish(
    r: &Routed<'_>,
    mut resp: Response<hyper::body::Incoming>,
    admitted: Admitted,
    downstream_upgrade: Option<(hyper::upgrade::OnUpgrade, Option<Duration>)>,
    started: Instant,
    attempts: u32,
) -> Result<Response<Body>, ForwardError> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some((down, idle))) = (switching, downstream_upgrade) {
        let up = hyper::upgrade::on(&mut resp);
        // The upgraded stream stays under the stream idle timeout, as in
        // Envoy: silence both ways for that long closes the tunnel.
        tokio::spawn(async move {
            if let (Ok(down), Ok(up)) = (down.await, up.await) {
                crate::tcp::tunnel(TokioIo::new(down), TokioIo::new(up), idle).await;
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    for name in HOP_BY_HOP {
        if switching && matches!(*name, "connection" | "upgrade") {
            continue;
        }
        parts.headers.remove(*name);
    }
    parts.headers.insert(
        X_UPSTREAM_TIME.clone(),
        HeaderValue::from(started.elapsed().as_millis() as u64),
    );
    if r.vh.attempt_count_downstream {
        parts
            .headers
            .insert(X_ATTEMPT_COUNT.clone(), HeaderValue::from(attempts));
    }
    parts
        .headers
        .insert(http::header::SERVER, r.settings.server_name.clone());
    let body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    Ok(Response::from_parts(
        parts,
        Held::new(body, admitted).boxed(),
    ))
}

/// A request a filter makes of a cluster by name (the external
/// authorization check): an endpoint picked as the router picks one,
/// through the cluster's circuit breakers, with `host` as the Host (or
/// `:authority`) and the response read whole, all within `timeout`.
/// `None`: no such cluster, no healthy endpoint, a connection failure,
/// a reset or the timeout. The response's trailers come last.
pub(crate) async fn call(
    snapshot: &crate::snapshot::Snapshot,
    cluster: &str,
    mut req: Request<Body>,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Option<(http::response::Parts, Bytes, Option<HeaderMap>)> {
    let cluster = snapshot.clusters.get(cluster)?;
    let started = Instant::now();
    let endpoint = pick(cluster, None, &[], None, req.headers(), None).ok()?;
    *req.uri_mut() = request_uri(endpoint.scheme(), host, path, &endpoint).ok()?;
    if cluster.http2 {
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut().remove(HOST);
    } else {
        *req.version_mut() = http::Version::HTTP_11;
        req.headers_mut()
            .insert(HOST, HeaderValue::from_str(host).ok()?);
    }
    let deadline = started + timeout;
    let Tried::Response(resp, admitted) = send(
        cluster,
        &endpoint,
        req,
        None,
        Some(deadline),
        &mut AttemptFacts::default(),
    )
    .await
    else {
        return None;
    };
    let (mut parts, body) = resp.into_parts();
    let left = deadline.saturating_duration_since(Instant::now());
    let body = tokio::time::timeout(left, body.collect())
        .await
        .ok()?
        .ok()?;
    drop(admitted);
    let trailers = body.trailers().cloned();
    // What Envoy's router adds to every upstream response.
    parts.headers.insert(
        X_UPSTREAM_TIME.clone(),
        HeaderValue::from(started.elapsed().as_millis() as u64),
    );
    Some((parts, body.to_bytes(), trailers))
}
