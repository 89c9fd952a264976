//! The HTTP connection manager's request path: pick a virtual host and a
//! route, then answer locally (direct response, redirect, error) or
//! forward to the route's cluster, setting the headers Envoy sets.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST, LOCATION};
use http::{HeaderMap, Request, Response, StatusCode, Uri};

use crate::body::{full, Body};

use crate::chain::{FilterKind, HttpSettings, Routes};
use crate::cors::Cors;
use crate::error::ForwardError;
use crate::fault::{AbortReply, Injected};
use crate::headers::{upgrade_kind, HTTP1_METHODS};
use crate::local_reply::{grpc_reply, is_grpc, LocalReply};
use crate::matchers::{rewrite_path, RequestView};
use crate::metadata::DynamicMetadata;
use crate::ratelimit::Limited;
use crate::rbac;
use crate::request::{Outcome, Routed};
use crate::routes::{Action, Redirect};
use crate::routes::{PerFilter, PerRoute};
use crate::snapshot::Snapshot;
use crate::stream_timers::{self, Activity, Limits, TrackedRequest};
use crate::transport::ConnectionInfo;

static EMPTY_ROUTES: std::sync::LazyLock<Arc<crate::routes::RouteTable>> =
    std::sync::LazyLock::new(|| {
        let empty = weft_envoy::route::RouteConfiguration::default();
        Arc::new(
            crate::routes::RouteTable::compile(&empty, &crate::stats::Store::default(), None)
                .expect("an empty table compiles"),
        )
    });

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn local_reply(settings: &HttpSettings, status: u16, body: &str) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    resp.extensions_mut().insert(LocalReply {
        message: body.to_string(),
        grpc_status: None,
    });
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    set_server(settings, resp.headers_mut());
    resp
}

/// What the HTTP filters decided for a request.
#[derive(Default)]
struct Filtered {
    /// A local reply that ends the request here.
    reply: Option<Response<Body>>,
    flag: Option<&'static str>,
    /// Headers a filter sets on the response, whatever it turns out to be.
    response_headers: Option<Box<HeaderMap>>,
    /// The reply is sent as it is, without the route's response headers
    /// (Envoy's CORS preflight answer is encoded directly, not as a local
    /// reply of the route).
    final_reply: bool,
    /// The path (with query) the request goes on with, when a filter
    /// changed it (the JWT filter takes a token out of the query).
    path: Option<String>,
    /// Headers a filter adds to the response when the request goes on
    /// (the external authorizer's `allowed_client_headers_on_success`).
    response_append: Vec<(HeaderName, HeaderValue)>,
}

/// Runs the connection manager's HTTP filters in order, each with the
/// most specific per-route settings under its name (route, virtual host,
/// table) or its own. A local reply ends the chain. Returns the reply
/// and the response flag to log (a delay that let the request on is DI).
async fn run_filters<B>(
    r: &Routed<'_>,
    cluster: Option<&str>,
    req: &mut Request<B>,
    metadata: &mut DynamicMetadata,
) -> Filtered {
    let settings = r.settings;
    let levels: [&PerFilter; 3] = [&r.route.filters, &r.vh.filters, &r.table.filters];
    let mut out = Filtered::default();
    for f in &settings.filters {
        let per_route = levels.iter().find_map(|l| l.get(&f.name));
        match &f.kind {
            FilterKind::Fault(filter) => {
                let fault = match per_route {
                    Some(PerRoute::Fault(x)) => &**x,
                    _ => &*filter.config,
                };
                let view = RequestView {
                    method: req.method().as_str(),
                    authority: r.host,
                    scheme: r.conn.scheme(),
                    path_and_query: r.path,
                    headers: req.headers(),
                };
                match filter.apply(fault, cluster, &view).await {
                    Injected::None => {}
                    Injected::Delayed => out.flag = Some("DI"),
                    Injected::Abort { delayed, reply } => {
                        out.flag = Some(if delayed { "DI,FI" } else { "FI" });
                        out.reply = Some(fault_reply(settings, reply));
                        return out;
                    }
                }
            }
            FilterKind::RateLimit(own) => {
                let limit = match per_route {
                    Some(PerRoute::RateLimit(x)) => &**x,
                    _ => own,
                };
                if let Limited::Refuse = limit.check(req.headers_mut()) {
                    let mut r = local_reply(settings, limit.status, "local_rate_limited");
                    limit.headers.response.apply(r.headers_mut());
                    out.reply = Some(r);
                    out.flag = Some("RL");
                    return out;
                }
            }
            FilterKind::Rbac(filter) => {
                let per_route = match per_route {
                    Some(PerRoute::Rbac(x)) => Some(&**x),
                    _ => None,
                };
                if !rbac_allows(
                    filter, per_route, settings, r.conn, req, r.host, r.path, metadata,
                ) {
                    out.reply = Some(local_reply(settings, 403, rbac::DENIED_BODY));
                    return out;
                }
            }
            FilterKind::Jwt(filter) => {
                let per_route = match per_route {
                    Some(PerRoute::Jwt(x)) => Some(&**x),
                    _ => None,
                };
                let (parts_method, headers) = (req.method().clone(), req.headers_mut());
                let jr = crate::jwt::Request {
                    method: &parts_method,
                    authority: r.host,
                    scheme: r.conn.scheme(),
                    path_and_query: r.path,
                    headers,
                };
                match filter.check(per_route, jr, metadata) {
                    Ok(None) => {}
                    Ok(Some(path)) => out.path = Some(path),
                    Err(rej) => {
                        let mut reply = local_reply(settings, rej.status, rej.body);
                        reply
                            .headers_mut()
                            .insert(http::header::WWW_AUTHENTICATE, rej.www_authenticate);
                        out.reply = Some(reply);
                        return out;
                    }
                }
            }
            FilterKind::ExtAuthz(filter) => {
                let per_route = match per_route {
                    Some(PerRoute::ExtAuthz(x)) => Some(&**x),
                    _ => None,
                };
                match ext_authz(
                    filter, per_route, r.snapshot, r.conn, req, r.host, r.path, metadata,
                )
                .await
                {
                    Ok(mut pass) => out.response_append.append(&mut pass.response_headers),
                    Err(reply) => {
                        out.flag = Some("UAEX");
                        out.reply = Some(denied_reply(settings, reply));
                        return out;
                    }
                }
            }
            // Their work is done around the chain (`routed`, `serve`)
            // and when the response completes.
            FilterKind::PeerExchange(_) | FilterKind::IstioStats(_) => {}
            FilterKind::Cors(_) if cluster.is_none() => {}
            FilterKind::Cors(filter) => {
                let policies = levels.map(|l| match l.get(&f.name) {
                    Some(PerRoute::Cors(p)) => Some(&**p),
                    _ => None,
                });
                match filter.decide(policies, req.headers(), req.method()) {
                    Cors::Pass => {}
                    Cors::Response(h) => out.response_headers = Some(h),
                    Cors::Reply(h) => {
                        let mut r = local_reply(settings, 200, "");
                        r.extensions_mut().remove::<LocalReply>();
                        r.headers_mut().remove(http::header::CONTENT_TYPE);
                        r.headers_mut().extend(*h);
                        out.reply = Some(r);
                        out.final_reply = true;
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// One external authorization filter's check of a request.
#[allow(clippy::too_many_arguments)]
async fn ext_authz<B>(
    filter: &crate::ext_authz::ExtAuthz,
    per_route: Option<&crate::ext_authz::ExtAuthzPerRoute>,
    snapshot: &Snapshot,
    conn: &ConnectionInfo,
    req: &mut Request<B>,
    host: &str,
    path: &str,
    metadata: &DynamicMetadata,
) -> Result<crate::ext_authz::Pass, crate::ext_authz::Denial> {
    let method = req.method().clone();
    let protocol = if req.version() == http::Version::HTTP_2 {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    };
    let er = crate::ext_authz::Request {
        method: &method,
        authority: host,
        path_and_query: path,
        scheme: conn.scheme(),
        protocol,
        headers: req.headers_mut(),
    };
    filter
        .check(per_route, &RouterCaller(snapshot), conn, er, metadata)
        .await
}

/// ext_authz's checks go out through the router, to the snapshot's
/// clusters.
struct RouterCaller<'a>(&'a Snapshot);

impl crate::ext_authz::Caller for RouterCaller<'_> {
    fn call(
        &self,
        cluster: &str,
        req: Request<crate::body::Body>,
        host: &str,
        path: &str,
        timeout: std::time::Duration,
    ) -> impl std::future::Future<
        Output = Option<(http::response::Parts, bytes::Bytes, Option<http::HeaderMap>)>,
    > + Send {
        crate::router::call(self.0, cluster, req, host, path, timeout)
    }
}

/// The external authorizer's refusal as the client gets it: its status
/// and body (a local reply, `text/plain` when it has a body) with its
/// chosen headers set over the reply's.
fn denied_reply(settings: &HttpSettings, d: crate::ext_authz::Denial) -> Response<Body> {
    let message = String::from_utf8_lossy(&d.body).into_owned();
    let mut resp = Response::new(full(d.body.clone()));
    resp.extensions_mut().insert(LocalReply {
        message,
        grpc_status: None,
    });
    *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN);
    if !d.body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    for (k, v) in d.headers {
        // The length is the body's, whoever says it.
        if k != http::header::CONTENT_LENGTH {
            resp.headers_mut().insert(k, v);
        }
    }
    set_server(settings, resp.headers_mut());
    resp
}

/// One RBAC filter's decision on a request (its own rules, or the
/// route's that replace them).
#[allow(clippy::too_many_arguments)]
fn rbac_allows<B>(
    filter: &rbac::HttpRbac,
    per_route: Option<&rbac::RbacPerRoute>,
    settings: &HttpSettings,
    conn: &ConnectionInfo,
    req: &Request<B>,
    host: &str,
    path: &str,
    metadata: &mut DynamicMetadata,
) -> bool {
    let rq = rbac::http::Request {
        conn,
        view: RequestView {
            method: req.method().as_str(),
            authority: host,
            scheme: conn.scheme(),
            path_and_query: path,
            headers: req.headers(),
        },
        use_remote_address: settings.use_remote_address,
        xff_num_trusted_hops: settings.xff_num_trusted_hops,
    };
    filter.allows(per_route, &rq, metadata)
}

/// The RBAC and JWT filters on a request that no route serves (none
/// matched, or the virtual host redirects it to https): in Envoy the
/// filters run before the router answers, so a denied request gets the
/// 403 or 401, not the 404 or 301. No route, no per-route settings.
fn unrouted_filters<B>(
    settings: &HttpSettings,
    conn: &ConnectionInfo,
    req: &mut Request<B>,
    host: &str,
    path: &str,
    metadata: &mut DynamicMetadata,
) -> Option<Response<Body>> {
    for f in &settings.filters {
        match &f.kind {
            FilterKind::Rbac(filter)
                if !rbac_allows(filter, None, settings, conn, req, host, path, metadata) =>
            {
                return Some(local_reply(settings, 403, rbac::DENIED_BODY));
            }
            FilterKind::Jwt(filter) => {
                let method = req.method().clone();
                let jr = crate::jwt::Request {
                    method: &method,
                    authority: host,
                    scheme: conn.scheme(),
                    path_and_query: path,
                    headers: req.headers_mut(),
                };
                if let Err(rej) = filter.check(None, jr, metadata) {
                    let mut reply = local_reply(settings, rej.status, rej.body);
                    reply
                        .headers_mut()
                        .insert(http::header::WWW_AUTHENTICATE, rej.www_authenticate);
                    return Some(reply);
                }
            }
            // Envoy's ext_authz does not check a request no route serves
            // (measured against Envoy 1.40: a 404 without a check).
            _ => {}
        }
    }
    None
}

/// The fault filter's abort: the status with Envoy's body, or for gRPC
/// a trailers-only reply carrying the status.
fn fault_reply(settings: &HttpSettings, reply: AbortReply) -> Response<Body> {
    match reply {
        AbortReply::Http(status) => local_reply(settings, status, "fault filter abort"),
        AbortReply::Grpc(code) => {
            let mut r = local_reply(settings, 200, "");
            r.extensions_mut().insert(LocalReply {
                message: "fault filter abort".into(),
                grpc_status: u8::try_from(code).ok(),
            });
            let h = r.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert(
                HeaderName::from_static("grpc-status"),
                HeaderValue::from(code),
            );
            h.insert(
                HeaderName::from_static("grpc-message"),
                HeaderValue::from_static("fault filter abort"),
            );
            r
        }
    }
}

fn set_server(settings: &HttpSettings, h: &mut HeaderMap) {
    h.insert(http::header::SERVER, settings.server_name.clone());
}

fn request_id() -> HeaderValue {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    // A version 4 UUID, as Envoy generates.
    let s = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&s).expect("hex is a valid header value")
}

/// Serves one request on an HTTP listener.
pub async fn handle<B>(
    snapshot: Arc<Snapshot>,
    settings: Arc<HttpSettings>,
    conn: Arc<ConnectionInfo>,
    req: Request<B>,
) -> (Response<Body>, Outcome)
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    let grpc = is_grpc(req.headers());
    let http1 = req.version() < http::Version::HTTP_2;
    let activity = Activity::new();
    let req = req.map(|b| TrackedRequest::new(b, Arc::clone(&activity)));
    let (mut resp, outcome) = serve(snapshot, settings, conn, req, Arc::clone(&activity)).await;
    // A local reply before the request has fully arrived leaves the rest
    // of it unread: an HTTP/1 connection cannot go on, and Envoy says so.
    if http1 && !activity.request_done() && resp.extensions().get::<LocalReply>().is_some() {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if grpc {
        grpc_reply(&mut resp);
    }
    if let Some((activity, limits)) = &outcome.stream {
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp = resp.map(|b| stream_timers::response(b, Arc::clone(activity), *limits));
        }
    }
    (resp, outcome)
}

async fn serve<B>(
    snapshot: Arc<Snapshot>,
    settings: Arc<HttpSettings>,
    conn: Arc<ConnectionInfo>,
    mut req: Request<TrackedRequest<B>>,
    activity: Arc<Activity>,
) -> (Response<Body>, Outcome)
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    let mut outcome = Outcome::default();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    // Envoy refuses HTTP/1.0 unless `accept_http_10`, which weft does
    // not implement.
    if req.version() == http::Version::HTTP_10 {
        outcome.flag = Some("DPE");
        return (local_reply(&settings, 426, ""), outcome);
    }
    // Envoy's HTTP/1 codec knows a fixed set of methods (case-sensitive)
    // and refuses others; HTTP/2 carries any token.
    if req.version() == http::Version::HTTP_11 && !HTTP1_METHODS.contains(&req.method().as_str()) {
        outcome.flag = Some("DPE");
        return (local_reply(&settings, 400, "Bad Request"), outcome);
    }
    if header_bytes > settings.max_request_headers
        || req.headers().len() > settings.max_headers_count
    {
        outcome.flag = Some("DPE");
        return (
            local_reply(&settings, 431, "Request Header Fields Too Large"),
            outcome,
        );
    }
    // Envoy normalizes the path first (a CONNECT has none to normalize).
    let path = match normalize(&settings, &req, path, &mut outcome) {
        Ok(path) => path,
        Err(reply) => return (*reply, outcome),
    };
    // Every request gets an id before anything else, local replies too.
    let h = req.headers_mut();
    let external = settings.use_remote_address && !settings.preserve_external_request_id;
    if settings.generate_request_id && (!h.contains_key(&X_REQUEST_ID) || external) {
        h.insert(X_REQUEST_ID.clone(), request_id());
    }
    outcome.request_id = h
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Before routing, as Envoy's connection manager sets it while it
    // reads the request's headers.
    settings.client_cert.apply(req.headers_mut(), &conn);
    let table = match &settings.routes {
        Routes::Inline(t) => t,
        // A table RDS has not delivered routes nothing, as Envoy's empty
        // default does.
        Routes::Rds(name) => snapshot.routes.get(name).unwrap_or(&EMPTY_ROUTES),
    };
    let vh = table.virtual_host(&host);
    if let Some(vh) = vh {
        let internal = req
            .headers()
            .get("x-envoy-internal")
            .is_some_and(|v| v.as_bytes() == b"true");
        if vh.redirects_to_tls(conn.tls.is_some(), internal) {
            if settings.rbac {
                let denied = unrouted_filters(
                    &settings,
                    &conn,
                    &mut req,
                    &host,
                    &path,
                    &mut outcome.metadata,
                );
                if let Some(reply) = denied {
                    return (reply, outcome);
                }
            }
            // Envoy's TLS redirect: the same authority and path over
            // https, before any route is matched.
            let mut resp = local_reply(&settings, 301, "");
            if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{path}")) {
                resp.headers_mut().insert(LOCATION, v);
            }
            return (resp, outcome);
        }
    }
    // A CONNECT without a path matches only routes with a
    // connect_matcher, which weft does not implement: none.
    let connect = req.method() == http::Method::CONNECT && req.uri().path_and_query().is_none();
    let matched = vh.filter(|_| !connect).and_then(|vh| {
        let view = RequestView {
            method: req.method().as_str(),
            authority: &host,
            scheme: conn.scheme(),
            path_and_query: &path,
            headers: req.headers(),
        };
        vh.route(&view).map(|r| (vh, r))
    });
    let Some((vh, route)) = matched else {
        if settings.rbac {
            let denied = unrouted_filters(
                &settings,
                &conn,
                &mut req,
                &host,
                &path,
                &mut outcome.metadata,
            );
            if let Some(reply) = denied {
                return (reply, outcome);
            }
        }
        settings.stats.no_route.inc();
        outcome.flag = Some(ForwardError::NoRoute.flag());
        return (local_reply(&settings, 404, ""), outcome);
    };
    if !route.name.is_empty() {
        outcome.route_name = Some(route.name.clone());
    }
    if let Some(kind) = upgrade_kind(req.headers()) {
        // Only WebSocket upgrades, enabled on the connection manager or
        // the route, are forwarded; anything else is refused rather than
        // quietly turned into a plain request.
        let allowed = kind.eq_ignore_ascii_case("websocket")
            && match &route.action {
                Action::Forward(f) => f.websocket.unwrap_or(settings.websocket),
                _ => settings.websocket,
            };
        if !allowed {
            outcome.flag = Some("UPE");
            return (local_reply(&settings, 403, ""), outcome);
        }
    }
    let limits = stream_limits(&settings, &route.action, req.headers());
    // Set before routing: an upgraded stream's tunnel keeps the idle timer.
    outcome.stream = Some((Arc::clone(&activity), limits));
    let raced = {
        let r = Routed {
            snapshot: &snapshot,
            settings: &settings,
            conn: &conn,
            table,
            vh,
            route,
            host: &host,
            path: &path,
        };
        let work = routed(&r, req, &mut outcome);
        if limits.any() {
            tokio::pin!(work);
            tokio::select! {
                // A response that is ready first never arms a timer.
                biased;
                resp = &mut work => Ok(resp),
                why = stream_timers::expired(&activity, limits) => Err(why),
            }
        } else {
            Ok(work.await)
        }
    };
    let mut resp = match raced {
        Ok(resp) => resp,
        Err(why) => {
            let (status, body, grpc_status, flag) = why.reply(activity.request_done());
            if let Some(f) = flag {
                outcome.flag = Some(f);
            }
            let mut r = local_reply(&settings, status, body);
            if let Some(local) = r.extensions_mut().get_mut::<LocalReply>() {
                local.grpc_status = grpc_status;
            }
            r
        }
    };
    for f in &settings.filters {
        if let FilterKind::PeerExchange(x) = &f.kind {
            x.on_response(resp.headers_mut(), &mut outcome.peers);
        }
    }
    (resp, outcome)
}

/// The path as the connection manager's normalization leaves it, or its
/// answer: a 307 to the path with slashes unescaped, or a 400 (gRPC
/// requests, which cannot follow a redirect, get the 400 too).
fn normalize<B>(
    settings: &HttpSettings,
    req: &Request<B>,
    path: String,
    outcome: &mut Outcome,
) -> Result<String, Box<Response<Body>>> {
    use crate::path_norm::Normalized;
    if settings.path.is_noop() || req.method() == http::Method::CONNECT || !path.starts_with('/') {
        return Ok(path);
    }
    let (reply, normalized) = match settings.path.apply(&path) {
        Normalized::Continue(p) => {
            if p != path {
                outcome.path = Some(p.clone());
            }
            return Ok(p);
        }
        Normalized::Redirect(p) if !is_grpc(req.headers()) => {
            settings
                .stats
                .downstream_rq_redirected_with_normalized_path
                .inc();
            let mut r = local_reply(settings, 307, "");
            if let Ok(v) = HeaderValue::from_str(&p) {
                r.headers_mut().insert(LOCATION, v);
            }
            (r, p)
        }
        Normalized::Redirect(p) | Normalized::Reject { path: p, .. } => {
            settings.stats.downstream_rq_failed_path_normalization.inc();
            (local_reply(settings, 400, ""), p)
        }
    };
    // The log shows the path as far as normalization got, as Envoy's.
    if normalized != path {
        outcome.path = Some(normalized);
    }
    Err(Box::new(reply))
}

/// The timers a routed stream runs under: the route's idle timeout and
/// maximum duration where it sets them, else the connection manager's.
fn stream_limits(settings: &HttpSettings, action: &Action, headers: &HeaderMap) -> Limits {
    let (idle, duration) = match action {
        Action::Forward(f) => (
            match f.idle_timeout {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => settings.stream_idle_timeout,
            },
            match &f.max_stream {
                Some(m) => m.limit(settings.max_stream_duration, headers),
                None => settings.max_stream_duration,
            },
        ),
        _ => (settings.stream_idle_timeout, settings.max_stream_duration),
    };
    Limits {
        idle,
        request: settings.request_timeout,
        duration,
    }
}

/// The routed part of a request: HTTP filters, then the route's action.
async fn routed<B>(r: &Routed<'_>, mut req: Request<B>, outcome: &mut Outcome) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    let Routed {
        settings,
        table,
        vh,
        route,
        host,
        path,
        ..
    } = *r;
    let picked = match &route.action {
        Action::Forward(f) => Some(f.targets.pick()),
        _ => None,
    };
    let mut aborted = None;
    let mut late_headers = None;
    let mut late_append = Vec::new();
    let mut new_path = None;
    if !settings.filters.is_empty() {
        for f in &settings.filters {
            if let FilterKind::PeerExchange(x) = &f.kind {
                x.on_request(req.headers_mut(), &mut outcome.peers);
            }
        }
        let cluster = picked.map(|p| p.0);
        let filtered = run_filters(r, cluster, &mut req, &mut outcome.metadata).await;
        new_path = filtered.path;
        if filtered.flag.is_some() {
            outcome.flag = filtered.flag;
        }
        late_headers = filtered.response_headers;
        late_append = filtered.response_append;
        match filtered.reply {
            Some(r) if filtered.final_reply => return r,
            r => aborted = r,
        }
    }
    let mut resp = match (aborted, &route.action) {
        (Some(r), _) => r,
        (None, action) => match action {
            Action::Direct { status, body } => {
                outcome.details = Some("direct_response");
                let mut reply = local_reply(settings, *status, body.as_deref().unwrap_or(""));
                if body.is_none() {
                    reply.headers_mut().remove(http::header::CONTENT_TYPE);
                }
                // Envoy points a 201 Created at the request's own URL.
                if *status == 201 {
                    let scheme = req.uri().scheme_str().unwrap_or(r.conn.scheme());
                    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{host}{path}")) {
                        reply.headers_mut().insert(LOCATION, v);
                    }
                }
                reply
            }
            Action::Redirect(rd) => redirect(r, rd, req.uri()),
            Action::Forward(fwd) => {
                let (cluster_name, weighted_ops) = picked.unwrap_or_else(|| fwd.targets.pick());
                outcome.cluster = Some(cluster_name.to_string());
                let levels = [
                    weighted_ops,
                    Some(&route.headers),
                    Some(&vh.headers),
                    Some(&table.headers),
                ];
                mutate(req.headers_mut(), &levels, |o| &o.request);
                let rewritten = new_path.as_deref().map(|path| Routed { path, ..*r });
                let r = rewritten.as_ref().unwrap_or(r);
                match crate::router::forward(r, fwd, cluster_name, req, outcome).await {
                    Ok(mut r) => {
                        mutate(r.headers_mut(), &levels, |o| &o.response);
                        if let Some(h) = late_headers {
                            r.headers_mut().extend(*h);
                        }
                        for (k, v) in late_append {
                            r.headers_mut().append(k, v);
                        }
                        return r;
                    }
                    Err(e) => {
                        outcome.flag = Some(e.flag());
                        let retried = outcome.attempts > 1;
                        let mut r = local_reply(settings, e.status(), e.body(retried));
                        if vh.attempt_count_downstream && outcome.attempts > 0 {
                            r.headers_mut().insert(
                                HeaderName::from_static("x-envoy-attempt-count"),
                                HeaderValue::from(outcome.attempts),
                            );
                        }
                        r
                    }
                }
            }
        },
    };
    let levels = [
        Some(&route.headers),
        Some(&vh.headers),
        Some(&table.headers),
    ];
    mutate(resp.headers_mut(), &levels, |o| &o.response);
    if let Some(h) = late_headers {
        resp.headers_mut().extend(*h);
    }
    for (k, v) in late_append {
        resp.headers_mut().append(k, v);
    }
    resp
}

/// Applies header operations level by level, most specific first, so the
/// enclosing levels win on overwrite (Envoy's default).
fn mutate(
    h: &mut HeaderMap,
    levels: &[Option<&crate::headers::HeaderOps>],
    side: fn(&crate::headers::HeaderOps) -> &crate::headers::Ops,
) {
    for ops in levels.iter().flatten() {
        side(ops).apply(h);
    }
}

fn redirect(r: &Routed<'_>, rd: &Redirect, uri: &Uri) -> Response<Body> {
    let (host, path) = (r.host, r.path);
    let scheme = rd
        .scheme
        .clone()
        .or_else(|| uri.scheme_str().map(str::to_string))
        .unwrap_or_else(|| r.conn.scheme().into());
    let (orig_host, orig_port) = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
            (h.to_string(), Some(p.to_string()))
        }
        _ => (host.to_string(), None),
    };
    let new_host = rd.host.clone().unwrap_or(orig_host);
    let orig_scheme = uri.scheme_str().unwrap_or(r.conn.scheme());
    let port = match (rd.port, &orig_port) {
        (Some(p), _) => Some(p.to_string()),
        // host_redirect replaces the whole authority, port included.
        (None, _) if rd.host.is_some() => None,
        // A scheme change drops the port only when it was the old
        // scheme's default (http://h:80 → https://h).
        (None, Some(p))
            if rd.scheme.is_none()
                || !matches!((orig_scheme, p.as_str()), ("http", "80") | ("https", "443")) =>
        {
            Some(p.clone())
        }
        _ => None,
    };
    let default_port = matches!(
        (scheme.as_str(), port.as_deref()),
        ("http", Some("80")) | ("https", Some("443"))
    );
    let authority = match port {
        Some(p) if !default_port => format!("{new_host}:{p}"),
        _ => new_host,
    };
    let mut new_path = match &rd.path {
        Some(p) => {
            // path_redirect replaces the path; the query is kept unless the
            // new path has its own or strip_query is set.
            let q = path.split_once('?').map(|(_, q)| q);
            match q {
                Some(q) if !p.contains('?') => format!("{p}?{q}"),
                _ => p.clone(),
            }
        }
        None => rewrite_path(
            path,
            rd.matched_prefix.as_deref(),
            rd.prefix_rewrite.as_deref(),
            rd.regex_rewrite.as_ref(),
        ),
    };
    if rd.strip_query {
        if let Some((p, _)) = new_path.split_once('?') {
            new_path = p.to_string();
        }
    }
    let mut resp = local_reply(r.settings, rd.status, "");
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{authority}{new_path}")) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}
