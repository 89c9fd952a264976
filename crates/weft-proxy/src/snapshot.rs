//! A bootstrap compiled into what the proxy runs: listeners with their
//! filter chains, route tables and clusters. A snapshot is immutable; a
//! new configuration builds a new one beside it and swaps it in whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weft_envoy::filters::{CodecType, HttpConnectionManager, TcpProxy};
use weft_envoy::Bootstrap;

use crate::access_log::AccessLog;
use crate::cluster::Cluster;
use crate::error::CompileError;
use crate::listener::chains::ConnectionFacts;
use crate::listener::ListenerConfig;
use crate::routes::RouteTable;
use crate::stats::{HttpStats, Store, TcpStats};

#[derive(Debug)]
pub struct Snapshot {
    pub listeners: Vec<Arc<ListenerConfig>>,
    /// Shared between snapshots that differ in other things only.
    pub clusters: Arc<HashMap<String, Arc<Cluster>>>,
    /// Route tables from RDS, by name.
    pub routes: HashMap<String, Arc<RouteTable>>,
    pub admin: Option<SocketAddr>,
    pub stats: Arc<Store>,
    /// The configuration as read, and when, for /config_dump.
    pub source: serde_json::Value,
    pub loaded: std::time::SystemTime,
    /// What xDS delivered, when the proxy has an xDS client.
    pub xds: Option<Arc<crate::xds::XdsDump>>,
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

pub(crate) fn unsupported(field: String, what: &str) -> CompileError {
    CompileError::Config {
        field,
        message: format!("{what} is not implemented by weft yet"),
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

/// Fails on the first field in `set` that is in use.
fn reject(at: &str, set: &[(&str, bool)]) -> Result<(), CompileError> {
    match set.iter().find(|(_, used)| *used) {
        Some((name, _)) => Err(unsupported(format!("{at}.{name}"), name)),
        None => Ok(()),
    }
}

impl Snapshot {
    /// Compiles with a fresh statistics store.
    pub async fn compile(b: &Bootstrap) -> Result<Self, CompileError> {
        Self::compile_with(b, Store::new()).await
    }

    /// Compiles, registering statistics in `stats` (which a replaced
    /// snapshot shares, so counts carry over).
    pub async fn compile_with(b: &Bootstrap, stats: Arc<Store>) -> Result<Self, CompileError> {
        let mut clusters = HashMap::new();
        for (i, c) in b.static_resources.clusters.iter().enumerate() {
            let at = format!("static_resources.clusters[{i}]");
            reject(
                &at,
                &[
                    ("respect_dns_ttl", c.respect_dns_ttl),
                    (
                        "per_connection_buffer_limit_bytes",
                        c.per_connection_buffer_limit_bytes.is_some(),
                    ),
                ],
            )?;
            let cluster = Arc::new(Cluster::compile(c, &at, &stats).await?);
            cluster.start_background();
            clusters.insert(c.name.clone(), cluster);
        }
        let mut listeners = Vec::new();
        for (i, l) in b.static_resources.listeners.iter().enumerate() {
            listeners.push(Arc::new(crate::listener::compile(
                &format!("static_resources.listeners[{i}]"),
                l,
                &stats,
            )?));
        }
        Ok(Snapshot {
            listeners,
            clusters: Arc::new(clusters),
            routes: HashMap::new(),
            admin: b
                .admin
                .as_ref()
                .and_then(|a| a.address.as_ref())
                .and_then(|a| a.socket_addr()),
            stats,
            source: b.source.clone(),
            loaded: std::time::SystemTime::now(),
            xds: None,
        })
    }

    /// A snapshot with nothing in it, before the first configuration.
    pub fn empty(stats: Arc<Store>) -> Self {
        Snapshot {
            listeners: Vec::new(),
            clusters: Default::default(),
            routes: HashMap::new(),
            admin: None,
            stats,
            source: serde_json::Value::Null,
            loaded: std::time::SystemTime::now(),
            xds: None,
        }
    }

    /// The index of the listener with this name.
    pub fn listener(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }

    /// The listener that listener `from` (with `use_original_dst`) hands
    /// a connection to: only a redirected connection moves (as in Envoy),
    /// to the listener bound to exactly its original destination, else to
    /// a wildcard (0.0.0.0 or ::) one on that port.
    pub fn handoff(&self, from: usize, facts: &ConnectionFacts) -> Option<usize> {
        let dst = facts.local.filter(|_| facts.restored)?;
        self.listener_for(dst).filter(|&j| j != from)
    }

    fn listener_for(&self, dst: SocketAddr) -> Option<usize> {
        let exact = self.listeners.iter().position(|l| l.addr == dst);
        exact.or_else(|| {
            self.listeners.iter().position(|l| {
                l.addr.port() == dst.port()
                    && l.addr.ip().is_unspecified()
                    && l.addr.is_ipv4() == dst.is_ipv4()
            })
        })
    }
}

pub(crate) fn compile_hcm(
    at: &str,
    h: &HttpConnectionManager,
    stats: &Store,
) -> Result<HttpSettings, CompileError> {
    let common = h.common_http_protocol_options.clone().unwrap_or_default();
    reject(
        at,
        &[
            ("xff_num_trusted_hops", h.xff_num_trusted_hops > 0),
            ("normalize_path", h.normalize_path == Some(true)),
            ("merge_slashes", h.merge_slashes),
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
            _ => continue,
        };
        filters.push(HttpFilter {
            name: f.name.clone(),
            kind,
        });
    }
    Ok(HttpSettings {
        filters,
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
        &[
            ("access_log", !t.access_log.is_empty()),
            (
                "max_connect_attempts",
                t.max_connect_attempts.is_some_and(|n| n != 1),
            ),
        ],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener per address, each with a catch-all tcp_proxy chain.
    async fn snapshot(addrs: &[&str]) -> Snapshot {
        let listeners: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (ip, port) = a.rsplit_once(':').unwrap();
                format!(
                    "{{name: l{i}, address: {{socket_address: {{address: \"{}\", port_value: {port}}}}}, bind_to_port: false, filter_chains: [{{filters: [{{name: t, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}}}]}}]}}",
                    ip.trim_matches(['[', ']'])
                )
            })
            .collect();
        let text = format!(
            "static_resources:\n  clusters: [{{name: c, type: STATIC}}]\n  listeners: [{}]\n",
            listeners.join(", ")
        );
        let boot = weft_envoy::parse_bootstrap("t", &text).unwrap();
        Snapshot::compile(&boot).await.unwrap()
    }

    fn redirected(to: &str, restored: bool) -> ConnectionFacts {
        ConnectionFacts {
            local: Some(to.parse().unwrap()),
            restored,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn handoff_prefers_the_exact_address_then_the_wildcard() {
        let s = snapshot(&[
            "0.0.0.0:15001",
            "10.0.0.7:9080",
            "0.0.0.0:9080",
            "[::]:9090",
        ])
        .await;
        assert_eq!(s.handoff(0, &redirected("10.0.0.7:9080", true)), Some(1));
        assert_eq!(s.handoff(0, &redirected("10.0.0.8:9080", true)), Some(2));
        // No IPv4 wildcard on 9090 (only ::), and nothing on 9091.
        assert_eq!(s.handoff(0, &redirected("10.0.0.8:9090", true)), None);
        assert_eq!(s.handoff(0, &redirected("[fd00::1]:9090", true)), Some(3));
        assert_eq!(s.handoff(0, &redirected("10.0.0.8:9091", true)), None);
        // A connection that was not redirected stays where it arrived,
        // as does one whose destination is the capturing listener.
        assert_eq!(s.handoff(0, &redirected("10.0.0.7:9080", false)), None);
        assert_eq!(s.handoff(0, &redirected("10.0.0.1:15001", true)), None);
    }
}
