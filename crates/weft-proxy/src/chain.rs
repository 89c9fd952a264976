//! Filter chains as the proxy serves them: how a chain's connections
//! are carried (its transport) and what serves them — an HTTP connection
//! manager (its settings, HTTP filters and route table) or a TCP proxy —
//! compiled from Envoy's configuration.

use std::sync::Arc;
use std::time::Duration;

use weft_envoy::filters::{CodecType, HttpConnectionManager, TcpProxy};
use weft_envoy::TypedConfig;

use crate::access_log::AccessLog;
use crate::error::{reject, unsupported, CompileError};
use crate::routes::RouteTable;
use crate::stats::{HttpStats, Store, TcpStats};
use crate::transport::{DownstreamTransport, Secrets};

/// A filter chain: its transport, the network RBAC filters that decide
/// whether a connection goes on, and what serves its connections.
#[derive(Debug)]
pub struct FilterChain {
    pub transport: DownstreamTransport,
    /// `envoy.filters.network.rbac` filters before the terminal one
    /// (`None`: a chain without them pays nothing for them).
    pub(crate) network: Option<Arc<crate::rbac::NetworkRbacs>>,
    pub terminal: Chain,
}

impl FilterChain {
    pub fn compile(
        at: &str,
        chain: &weft_envoy::listener::FilterChain,
        stats: &Store,
        secrets: &Secrets,
        inbound: bool,
    ) -> Result<Self, CompileError> {
        let transport = DownstreamTransport::compile(at, chain.transport_socket.as_ref(), secrets)?;
        let Some((terminal, before)) = chain.filters.split_last() else {
            return Err(CompileError::Config {
                field: format!("{at}.filters"),
                message: "a filter chain needs a terminal filter".into(),
            });
        };
        let mut rbac = Vec::with_capacity(before.len());
        for (i, f) in before.iter().enumerate() {
            let fat = format!("{at}.filters[{i}]");
            match &f.typed_config {
                TypedConfig::NetworkRbac(r) => rbac.push((format!("{fat}.typed_config"), &**r)),
                _ => return Err(unsupported(
                    fat,
                    "network filters other than envoy.filters.network.rbac before the terminal one",
                )),
            }
        }
        let network = if rbac.is_empty() {
            None
        } else {
            let compiled = crate::rbac::NetworkRbacs::compile(rbac.into_iter(), stats)
                .map_err(rbac_error(""))?;
            Some(Arc::new(compiled))
        };
        let fat = format!("{at}.filters[{}]", before.len());
        let terminal = match &terminal.typed_config {
            TypedConfig::HttpConnectionManager(hcm) => Chain::Http(Arc::new(compile_hcm(
                &format!("{fat}.typed_config"),
                hcm,
                stats,
                inbound,
            )?)),
            TypedConfig::TcpProxy(tp) => Chain::Tcp(Arc::new(compile_tcp(
                &format!("{fat}.typed_config"),
                tp,
                stats,
            )?)),
            _ => return Err(unsupported(fat, "this network filter")),
        };
        Ok(FilterChain {
            transport,
            network,
            terminal,
        })
    }
}

/// An RBAC compile error under the field `at` (a path prefix ending in
/// `.`, or empty when the error's own field is absolute).
fn rbac_error(at: &str) -> impl Fn(crate::rbac::RbacError) -> CompileError + '_ {
    move |e| match e {
        crate::rbac::RbacError::Invalid { field, message } => CompileError::Config {
            field: format!("{at}{field}"),
            message,
        },
    }
}

#[derive(Debug)]
pub enum Chain {
    Http(Arc<HttpSettings>),
    Tcp(Arc<TcpSettings>),
}

#[derive(Debug)]
pub struct HttpSettings {
    pub codec: CodecType,
    pub routes: Routes,
    /// The `server` response header (Envoy's `server_name`, "envoy" by default).
    pub server_name: http::HeaderValue,
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    pub use_remote_address: bool,
    /// X-Forwarded-For entries from the right that are proxies, not the
    /// client (only without `use_remote_address`).
    pub xff_num_trusted_hops: u32,
    pub skip_xff_append: bool,
    pub websocket: bool,
    pub access_logs: Vec<AccessLog>,
    /// Request header bytes allowed (names + values); Envoy's default is 60 KiB.
    pub max_request_headers: usize,
    /// Most request headers accepted (`max_headers_count`).
    pub max_headers_count: usize,
    /// Close a connection with no request open after this long without
    /// bytes (Envoy's default: one hour).
    pub idle_timeout: Option<Duration>,
    /// Drain a connection this long after it opened.
    pub max_connection_duration: Option<Duration>,
    /// A stream with no byte either way for this long ends (Envoy's
    /// default: five minutes); routes may replace it.
    pub stream_idle_timeout: Option<Duration>,
    /// The whole request must have arrived within this.
    pub request_timeout: Option<Duration>,
    /// No stream lives longer; routes may replace it.
    pub max_stream_duration: Option<Duration>,
    /// A draining connection's grace: HTTP/1 waits this long for one more
    /// request (answered with `connection: close`) before closing.
    pub drain_timeout: Duration,
    /// HTTP/2 settings advertised to clients.
    pub h2: H2Settings,
    pub stats: std::sync::Arc<HttpStats>,
    /// The HTTP filters before the router, in their configured order.
    pub filters: Vec<HttpFilter>,
    /// What becomes of `x-forwarded-client-cert`.
    pub client_cert: crate::xfcc::ClientCertPolicy,
    /// Some filter is RBAC or JWT: requests that match no route are
    /// checked too (Envoy's filters run before its router answers 404).
    pub rbac: bool,
    /// What becomes of a request's path before anything looks at it.
    pub path: crate::path_norm::PathNormalization,
    /// Some filter is Istio's stats: requests are counted when done.
    pub istio_stats: bool,
}

/// An HTTP filter of a connection manager, under its configured name
/// (what routes' `typed_per_filter_config` keys on).
#[derive(Debug)]
pub struct HttpFilter {
    pub name: String,
    pub kind: FilterKind,
}

#[derive(Debug)]
pub enum FilterKind {
    Fault(crate::fault::FaultFilter),
    RateLimit(crate::ratelimit::RateLimit),
    Cors(crate::cors::CorsFilter),
    Rbac(crate::rbac::HttpRbac),
    Jwt(crate::jwt::JwtAuthn),
    ExtAuthz(crate::ext_authz::ExtAuthz),
    /// Istio's metadata exchange (`istio.metadata_exchange`).
    PeerExchange(crate::peer_exchange::PeerExchange),
    /// Istio's standard metrics (`istio.stats`), shared with the
    /// responses whose completion it counts.
    IstioStats(Arc<crate::istio_stats::IstioStats>),
}

/// Where a connection manager's route table is.
#[derive(Debug)]
pub enum Routes {
    Inline(Arc<RouteTable>),
    /// By name from RDS, looked up in the snapshot a request is served
    /// from, so a new table applies to the next request.
    Rds(String),
}

/// Downstream HTTP/2 settings (`http2_protocol_options`). Envoy's
/// defaults: 2^31-1 concurrent streams; windows are hyper's (Envoy's
/// 256 MiB defaults rely on its per-connection buffer limits, which weft
/// does not have yet).
#[derive(Debug, Clone, Copy)]
pub struct H2Settings {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: Option<u32>,
    pub initial_connection_window_size: Option<u32>,
}

fn h2_settings(
    at: &str,
    o: Option<&weft_envoy::filters::Http2ProtocolOptions>,
) -> Result<H2Settings, CompileError> {
    let o = o.cloned().unwrap_or_default();
    let range = |field: &str, v: Option<u32>, lo: u32| -> Result<Option<u32>, CompileError> {
        match v {
            Some(n) if !(lo..=2_147_483_647).contains(&n) => Err(CompileError::Config {
                field: format!("{at}.http2_protocol_options.{field}"),
                message: format!("{n} is out of range: expected {lo}–2147483647"),
            }),
            v => Ok(v),
        }
    };
    Ok(H2Settings {
        max_concurrent_streams: range("max_concurrent_streams", o.max_concurrent_streams, 1)?
            .unwrap_or(2_147_483_647),
        initial_stream_window_size: range(
            "initial_stream_window_size",
            o.initial_stream_window_size,
            65_535,
        )?,
        initial_connection_window_size: range(
            "initial_connection_window_size",
            o.initial_connection_window_size,
            65_535,
        )?,
    })
}

#[derive(Debug)]
pub struct TcpSettings {
    /// (cluster, cumulative weight end)
    pub clusters: Vec<(String, u64)>,
    pub idle_timeout: Option<Duration>,
    pub access_logs: Vec<AccessLog>,
    pub stats: std::sync::Arc<TcpStats>,
}

impl TcpSettings {
    pub fn pick(&self) -> &str {
        &crate::routes::pick_cumulative(&self.clusters, |(_, end)| *end).0
    }
}

/// A timeout field as Envoy reads it: unset takes `default`, `0s`
/// disables.
pub(crate) fn timeout(
    set: Option<weft_envoy::Duration>,
    default: Option<Duration>,
) -> Option<Duration> {
    match set {
        Some(d) if d.0.is_zero() => None,
        Some(d) => Some(d.0),
        None => default,
    }
}

/// `inbound`: the listener's traffic direction is INBOUND (Istio's
/// stats then report as the destination).
pub(crate) fn compile_hcm(
    at: &str,
    h: &HttpConnectionManager,
    stats: &Store,
    inbound: bool,
) -> Result<HttpSettings, CompileError> {
    let common = h.common_http_protocol_options.clone().unwrap_or_default();
    reject(
        at,
        &[
            // Without use_remote_address the trusted hops only choose the
            // client's address in X-Forwarded-For (what RBAC reads); at
            // the edge they would also decide what is internal.
            (
                "xff_num_trusted_hops",
                h.xff_num_trusted_hops > 0 && h.use_remote_address == Some(true),
            ),
            // Envoy does not implement them either (not-implemented-hide).
            (
                "path_normalization_options",
                h.path_normalization_options.is_some(),
            ),
        ],
    )?;
    let mut websocket = false;
    for (i, u) in h.upgrade_configs.iter().enumerate() {
        if !u.upgrade_type.eq_ignore_ascii_case("websocket") {
            return Err(unsupported(
                format!("{at}.upgrade_configs[{i}]"),
                "upgrades other than websocket",
            ));
        }
        websocket = u.enabled.unwrap_or(true);
    }
    let routes = match (&h.route_config, &h.rds) {
        (Some(rc), _) => Routes::Inline(Arc::new(compile_routes(
            &format!("{at}.route_config"),
            rc,
            stats,
            None,
        )?)),
        (None, Some(rds)) => Routes::Rds(rds.route_config_name.clone()),
        (None, None) => {
            return Err(CompileError::Config {
                field: format!("{at}.route_config"),
                message: "required".into(),
            })
        }
    };
    let mut filters = Vec::new();
    for (i, f) in h.http_filters.iter().enumerate() {
        let field = format!("{at}.http_filters[{i}]");
        let config = |message| CompileError::Config {
            field: field.clone(),
            message,
        };
        let kind = match &f.typed_config {
            Some(weft_envoy::TypedConfig::Fault(cfg)) => {
                let fstats = crate::stats::FaultStats::new(stats, &h.stat_prefix);
                FilterKind::Fault(
                    crate::fault::FaultFilter::new(&f.name, cfg, fstats).map_err(config)?,
                )
            }
            Some(weft_envoy::TypedConfig::LocalRateLimit(cfg)) => FilterKind::RateLimit(
                crate::ratelimit::RateLimit::compile(cfg, stats).map_err(config)?,
            ),
            Some(weft_envoy::TypedConfig::Cors) => {
                FilterKind::Cors(crate::cors::CorsFilter::new(stats, &h.stat_prefix))
            }
            Some(weft_envoy::TypedConfig::Rbac(cfg)) => {
                let routes = h
                    .route_config
                    .as_ref()
                    .map(|rc| route_rbac_policies(rc, &f.name));
                let compiled = crate::rbac::HttpRbac::compile(
                    cfg,
                    stats,
                    &h.stat_prefix,
                    routes
                        .iter()
                        .flatten()
                        .map(|(shadow, n)| (*shadow, n.as_str())),
                )
                .map_err(rbac_error(&format!("{field}.typed_config.")))?;
                FilterKind::Rbac(compiled)
            }
            Some(weft_envoy::TypedConfig::JwtAuthn(cfg)) => {
                FilterKind::Jwt(crate::jwt::JwtAuthn::compile(cfg).map_err(|e| match e {
                    crate::jwt::JwtError::Invalid { field: f, message } => CompileError::Config {
                        field: format!("{field}.typed_config.{f}"),
                        message,
                    },
                })?)
            }
            Some(weft_envoy::TypedConfig::ExtAuthz(cfg)) => {
                FilterKind::ExtAuthz(crate::ext_authz::ExtAuthz::compile(cfg).map_err(
                    |(f, message)| CompileError::Config {
                        field: format!("{field}.typed_config.{f}"),
                        message,
                    },
                )?)
            }
            Some(weft_envoy::TypedConfig::PeerMetadata(cfg)) => {
                FilterKind::PeerExchange(crate::peer_exchange::PeerExchange::compile(
                    cfg,
                    stats.istio.node(),
                    stats.istio.node_id(),
                ))
            }
            Some(weft_envoy::TypedConfig::IstioStats(cfg)) => {
                FilterKind::IstioStats(Arc::new(crate::istio_stats::IstioStats::compile(
                    &format!("{field}.typed_config"),
                    cfg,
                    stats,
                    inbound,
                )?))
            }
            _ => continue,
        };
        filters.push(HttpFilter {
            name: f.name.clone(),
            kind,
        });
    }
    Ok(HttpSettings {
        istio_stats: filters
            .iter()
            .any(|f| matches!(f.kind, FilterKind::IstioStats(_))),
        rbac: filters.iter().any(|f| {
            matches!(
                f.kind,
                FilterKind::Rbac(_) | FilterKind::Jwt(_) | FilterKind::ExtAuthz(_)
            )
        }),
        filters,
        client_cert: crate::xfcc::ClientCertPolicy::compile(h),
        path: path_normalization(h),
        codec: h.codec_type,
        routes,
        server_name: http::HeaderValue::from_str(h.server_name.as_deref().unwrap_or("envoy"))
            .map_err(|_| CompileError::Config {
                field: format!("{at}.server_name"),
                message: "not a valid header value".into(),
            })?,
        generate_request_id: h.generate_request_id.unwrap_or(true),
        preserve_external_request_id: h.preserve_external_request_id,
        use_remote_address: h.use_remote_address.unwrap_or(false),
        xff_num_trusted_hops: h.xff_num_trusted_hops,
        skip_xff_append: h.skip_xff_append,
        websocket,
        access_logs: compile_logs(at, &h.access_log)?,
        max_request_headers: h.max_request_headers_kb.unwrap_or(60) as usize * 1024,
        // Envoy's default is 100 headers per request.
        max_headers_count: common.max_headers_count.unwrap_or(100) as usize,
        idle_timeout: timeout(common.idle_timeout, Some(Duration::from_secs(3600))),
        max_connection_duration: timeout(common.max_connection_duration, None),
        stream_idle_timeout: timeout(h.stream_idle_timeout, Some(Duration::from_secs(300))),
        request_timeout: timeout(h.request_timeout, None),
        max_stream_duration: timeout(common.max_stream_duration, None),
        h2: h2_settings(at, h.http2_protocol_options.as_ref())?,
        drain_timeout: h.drain_timeout.map_or(Duration::from_secs(5), |d| d.0),
        stats: HttpStats::new(stats, &h.stat_prefix),
    })
}

/// A connection manager's `normalize_path`, `merge_slashes` and
/// `path_with_escaped_slashes_action`, with Envoy's defaults (off, off,
/// KEEP_UNCHANGED).
fn path_normalization(h: &HttpConnectionManager) -> crate::path_norm::PathNormalization {
    use crate::path_norm::EscapedSlashes;
    use weft_envoy::filters::PathWithEscapedSlashesAction as Action;
    crate::path_norm::PathNormalization {
        normalize: h.normalize_path.unwrap_or(false),
        merge_slashes: h.merge_slashes,
        escaped_slashes: match h.path_with_escaped_slashes_action {
            Action::IMPLEMENTATION_SPECIFIC_DEFAULT | Action::KEEP_UNCHANGED => {
                EscapedSlashes::Keep
            }
            Action::REJECT_REQUEST => EscapedSlashes::Reject,
            Action::UNESCAPE_AND_REDIRECT => EscapedSlashes::UnescapeAndRedirect,
            Action::UNESCAPE_AND_FORWARD => EscapedSlashes::UnescapeAndForward,
        },
    }
}

/// The policy names (shadow or not) of the RBAC rules an inline route
/// table's routes, virtual hosts and table set for filter `name`, for
/// its per-policy counters.
fn route_rbac_policies(
    rc: &weft_envoy::route::RouteConfiguration,
    name: &str,
) -> Vec<(bool, String)> {
    let levels = std::iter::once(&rc.typed_per_filter_config).chain(
        rc.virtual_hosts.iter().flat_map(|vh| {
            std::iter::once(&vh.typed_per_filter_config)
                .chain(vh.routes.iter().map(|r| &r.typed_per_filter_config))
        }),
    );
    let mut out = Vec::new();
    for level in levels {
        let Some(TypedConfig::RbacPerRoute(p)) = level.get(name) else {
            continue;
        };
        let Some(r) = &p.rbac else { continue };
        for (shadow, rules) in [(false, &r.rules), (true, &r.shadow_rules)] {
            for policy in rules.iter().flat_map(|r| r.policies.keys()) {
                out.push((shadow, policy.clone()));
            }
        }
    }
    out
}

/// A route table, inline or from RDS; `at` is where errors point.
pub fn compile_routes(
    at: &str,
    rc: &weft_envoy::route::RouteConfiguration,
    store: &Store,
    previous: Option<&RouteTable>,
) -> Result<RouteTable, CompileError> {
    let routes =
        RouteTable::compile(rc, store, previous).map_err(|message| CompileError::Config {
            field: at.to_string(),
            message,
        })?;
    Ok(routes)
}

pub(crate) fn compile_tcp(
    at: &str,
    t: &TcpProxy,
    stats: &Store,
) -> Result<TcpSettings, CompileError> {
    reject(
        at,
        &[(
            "max_connect_attempts",
            t.max_connect_attempts.is_some_and(|n| n != 1),
        )],
    )?;
    let clusters = match (&t.cluster, &t.weighted_clusters) {
        (Some(c), _) => vec![(c.clone(), 1)],
        (None, Some(w)) => {
            let mut end = 0;
            w.clusters
                .iter()
                .map(|c| {
                    end += u64::from(c.weight);
                    (c.name.clone(), end)
                })
                .collect()
        }
        (None, None) => {
            return Err(CompileError::Config {
                field: at.to_string(),
                message: "tcp_proxy needs cluster or weighted_clusters".into(),
            })
        }
    };
    Ok(TcpSettings {
        clusters,
        // Envoy's default idle timeout is one hour.
        idle_timeout: timeout(t.idle_timeout, Some(Duration::from_secs(3600))),
        access_logs: compile_logs(at, &t.access_log)?,
        stats: TcpStats::new(stats, &t.stat_prefix),
    })
}

fn compile_logs(
    at: &str,
    logs: &[weft_envoy::filters::AccessLog],
) -> Result<Vec<AccessLog>, CompileError> {
    logs.iter()
        .enumerate()
        .map(|(i, l)| AccessLog::compile(&format!("{at}.access_log[{i}]"), l))
        .collect()
}
