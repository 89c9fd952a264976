//! Rules serde cannot express: oneofs, references between resources,
//! and what weft does not implement yet (named, never ignored).

use std::collections::HashSet;

use weft_yaml::PathSeg;

mod access_log;
mod ext_authz;
mod filters;
pub mod istio;
mod jwt;
mod rbac;
mod routes;
mod tls;

use routes::route_config;
pub use routes::RETRY_ON;

use crate::cluster::{Cluster, DiscoveryType, LbPolicy};
use crate::filters::HttpConnectionManager;
use crate::listener::Listener;
use crate::route::RouteConfiguration;
use crate::xds::{ApiType, ApiVersion, ConfigSource};
use crate::{Bootstrap, FieldError, TypedConfig};

/// A path under construction: `at(&["static_resources", "listeners"])`.
#[derive(Clone, Default)]
struct At(Vec<PathSeg>);

impl At {
    fn key(&self, k: &str) -> At {
        let mut p = self.0.clone();
        p.push(PathSeg::Key(k.to_string()));
        At(p)
    }
    fn idx(&self, i: usize) -> At {
        let mut p = self.0.clone();
        p.push(PathSeg::Index(i));
        At(p)
    }
    fn err(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(self.0.clone(), message)
    }
}

fn exactly_one(at: &At, what: &str, set: &[(&str, bool)]) -> Result<(), FieldError> {
    let chosen: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
    match chosen.len() {
        1 => Ok(()),
        0 => Err(at.err(format!("{what} needs one of {}", names.join(", ")))),
        _ => Err(at.err(format!(
            "{what} sets {}; only one of {} may be set",
            chosen.join(" and "),
            names.join(", ")
        ))),
    }
}

/// RE2 syntax is what Envoy accepts; Rust's `regex` crate implements the
/// same family (no backreferences or lookaround) and is what matches at
/// runtime, so compiling with it is the check.
fn regex(at: &At, pattern: &str) -> Result<(), FieldError> {
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| at.err(format!("invalid regex {pattern:?}: {e}")))
}

pub fn bootstrap(b: &Bootstrap) -> Result<(), FieldError> {
    let root = At::default().key("static_resources");
    let mut clusters = HashSet::new();
    for (i, c) in b.static_resources.clusters.iter().enumerate() {
        let at = root.key("clusters").idx(i);
        if !clusters.insert(c.name.as_str()) {
            return Err(at
                .key("name")
                .err(format!("duplicate cluster name {:?}", c.name)));
        }
        cluster(&at, c)?;
    }
    let mut names = HashSet::new();
    for (i, l) in b.static_resources.listeners.iter().enumerate() {
        let at = root.key("listeners").idx(i);
        if !names.insert(l.name.as_str()) {
            return Err(at
                .key("name")
                .err(format!("duplicate listener name {:?}", l.name)));
        }
        listener(&at, l, &clusters)?;
    }
    let mut secrets = HashSet::new();
    for (i, s) in b.static_resources.secrets.iter().enumerate() {
        let at = root.key("secrets").idx(i);
        tls::secret(&at, s)?;
        if !secrets.insert(s.name.as_str()) {
            return Err(at
                .key("name")
                .err(format!("duplicate secret name {:?}", s.name)));
        }
    }
    dynamic_resources(b, &clusters)?;
    if let Some(admin) = &b.admin {
        if let Some(addr) = &admin.address {
            if addr.socket_addr().is_none() {
                return Err(At::default()
                    .key("admin")
                    .key("address")
                    .err("expected socket_address with an IP address and a port"));
            }
        }
    }
    Ok(())
}

/// weft's xDS client speaks ADS over gRPC to a static cluster; a
/// bootstrap that names a dynamic source must say where ADS is.
fn dynamic_resources(b: &Bootstrap, clusters: &HashSet<&str>) -> Result<(), FieldError> {
    let at = At::default().key("dynamic_resources");
    let dynamic = b.dynamic_resources.clone().unwrap_or_default();
    for (name, src) in [
        ("lds_config", &dynamic.lds_config),
        ("cds_config", &dynamic.cds_config),
    ] {
        if let Some(src) = src {
            config_source(&at.key(name), src)?;
        }
    }
    let Some(ads) = &dynamic.ads_config else {
        // Without ADS, nothing may ask for a dynamic resource.
        let needs_ads = dynamic.lds_config.is_some()
            || dynamic.cds_config.is_some()
            || b.static_resources
                .clusters
                .iter()
                .any(|c| c.eds_cluster_config.is_some())
            || b.static_resources.listeners.iter().any(uses_rds)
            || tls::uses_sds(b);
        if needs_ads {
            return Err(at
                .key("ads_config")
                .err("an `ads` config source needs dynamic_resources.ads_config"));
        }
        return Ok(());
    };
    let aat = at.key("ads_config");
    match ads.api_type {
        ApiType::GRPC | ApiType::DELTA_GRPC => {}
        other => {
            return Err(aat
                .key("api_type")
                .err(format!("{other:?}: ADS is GRPC or DELTA_GRPC")))
        }
    }
    if ads
        .transport_api_version
        .is_some_and(|v| v == ApiVersion::V2)
    {
        return Err(aat
            .key("transport_api_version")
            .err("V2 is not supported; use V3"));
    }
    for (name, set) in [
        ("cluster_names", !ads.cluster_names.is_empty()),
        ("refresh_delay", ads.refresh_delay.is_some()),
        ("request_timeout", ads.request_timeout.is_some()),
        ("rate_limit_settings", ads.rate_limit_settings.is_some()),
    ] {
        if set {
            return Err(aat.key(name).err("not implemented by weft for ADS"));
        }
    }
    if ads.grpc_services.len() != 1 {
        return Err(aat
            .key("grpc_services")
            .err("expected exactly one gRPC service"));
    }
    let g = &ads.grpc_services[0];
    let gat = aat.key("grpc_services").idx(0);
    if g.google_grpc.is_some() {
        return Err(gat
            .key("google_grpc")
            .err("not implemented by weft; use envoy_grpc"));
    }
    if !g.initial_metadata.is_empty() {
        return Err(gat
            .key("initial_metadata")
            .err("not implemented by weft yet"));
    }
    let Some(eg) = &g.envoy_grpc else {
        return Err(gat.key("envoy_grpc").err("required"));
    };
    known_cluster(
        &gat.key("envoy_grpc").key("cluster_name"),
        &eg.cluster_name,
        clusters,
    )
}

fn uses_rds(l: &Listener) -> bool {
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.iter())
        .flat_map(|c| c.filters.iter())
        .any(
            |f| matches!(&f.typed_config, TypedConfig::HttpConnectionManager(h) if h.rds.is_some()),
        )
}

/// Where a dynamic resource comes from: only the ADS stream here.
fn config_source(at: &At, src: &ConfigSource) -> Result<(), FieldError> {
    for (name, set) in [
        ("api_config_source", src.api_config_source.is_some()),
        ("path", src.path.is_some()),
        ("path_config_source", src.path_config_source.is_some()),
        ("self", src.self_.is_some()),
        ("authorities", !src.authorities.is_empty()),
    ] {
        if set {
            return Err(at
                .key(name)
                .err("not implemented by weft: dynamic resources come over ADS (`ads: {}`)"));
        }
    }
    if src.ads.is_none() {
        return Err(at.err("expected `ads: {}`: weft takes dynamic resources over ADS"));
    }
    if src
        .resource_api_version
        .is_some_and(|v| v == ApiVersion::V2)
    {
        return Err(at
            .key("resource_api_version")
            .err("V2 is not supported; use V3"));
    }
    Ok(())
}

/// One RDS virtual host on its own (cluster references not checked).
pub(crate) fn virtual_host_resource(vh: &crate::route::VirtualHost) -> Result<(), FieldError> {
    routes::virtual_host(&At::default(), vh, &HashSet::new(), false)
}

/// SDS from a gRPC config source of its own (Istio's agent socket):
/// state of the world over one `envoy_grpc` service.
fn sds_api_source(at: &At, api: &crate::xds::ApiConfigSource) -> Result<(), FieldError> {
    if api.api_type != ApiType::GRPC {
        return Err(at
            .key("api_type")
            .err(format!("{:?}: weft's SDS client speaks GRPC", api.api_type)));
    }
    for (name, set) in [
        ("cluster_names", !api.cluster_names.is_empty()),
        ("refresh_delay", api.refresh_delay.is_some()),
        ("request_timeout", api.request_timeout.is_some()),
        ("rate_limit_settings", api.rate_limit_settings.is_some()),
    ] {
        if set {
            return Err(at.key(name).err("not implemented by weft for SDS"));
        }
    }
    let [g] = api.grpc_services.as_slice() else {
        return Err(at
            .key("grpc_services")
            .err("expected exactly one gRPC service"));
    };
    let gat = at.key("grpc_services").idx(0);
    if g.google_grpc.is_some() || g.envoy_grpc.is_none() {
        return Err(gat
            .key("envoy_grpc")
            .err("required (google_grpc is not implemented by weft)"));
    }
    if !g.initial_metadata.is_empty() {
        return Err(gat
            .key("initial_metadata")
            .err("not implemented by weft yet"));
    }
    Ok(())
}

pub(crate) fn secret_resource(s: &crate::tls::Secret) -> Result<(), FieldError> {
    tls::secret(&At::default(), s)
}

pub(crate) fn cluster_resource(c: &Cluster) -> Result<(), FieldError> {
    cluster(&At::default(), c)
}

pub(crate) fn listener_resource(l: &Listener, clusters: &HashSet<&str>) -> Result<(), FieldError> {
    listener(&At::default(), l, clusters)
}

pub(crate) fn route_configuration_resource(
    rc: &RouteConfiguration,
    clusters: &HashSet<&str>,
) -> Result<(), FieldError> {
    route_config(&At::default(), rc, clusters, false)
}

fn cluster(at: &At, c: &Cluster) -> Result<(), FieldError> {
    if c.name.is_empty() {
        return Err(at.key("name").err("a cluster needs a name"));
    }
    if let Some(ts) = &c.transport_socket {
        tls::transport_socket(&at.key("transport_socket"), ts, tls::Side::Upstream)?;
    }
    for (i, m) in c.transport_socket_matches.iter().enumerate() {
        let mat = at.key("transport_socket_matches").idx(i);
        if m.name.is_empty() {
            return Err(mat.key("name").err("a transport socket match needs a name"));
        }
        match &m.transport_socket {
            Some(ts) => {
                tls::transport_socket(&mat.key("transport_socket"), ts, tls::Side::Upstream)?
            }
            None => return Err(mat.key("transport_socket").err("required")),
        }
    }
    for (i, t) in c
        .circuit_breakers
        .iter()
        .flat_map(|cb| cb.thresholds.iter())
        .enumerate()
    {
        if t.max_connection_pools.is_some() {
            return Err(at
                .key("circuit_breakers")
                .key("thresholds")
                .idx(i)
                .key("max_connection_pools")
                .err("not implemented by weft yet"));
        }
    }
    if let Some(od) = &c.outlier_detection {
        let oat = at.key("outlier_detection");
        let percents = [
            ("max_ejection_percent", od.max_ejection_percent),
            ("enforcing_consecutive_5xx", od.enforcing_consecutive_5xx),
            ("enforcing_success_rate", od.enforcing_success_rate),
            (
                "enforcing_consecutive_gateway_failure",
                od.enforcing_consecutive_gateway_failure,
            ),
            (
                "enforcing_consecutive_local_origin_failure",
                od.enforcing_consecutive_local_origin_failure,
            ),
            (
                "enforcing_local_origin_success_rate",
                od.enforcing_local_origin_success_rate,
            ),
            (
                "failure_percentage_threshold",
                od.failure_percentage_threshold,
            ),
            (
                "enforcing_failure_percentage",
                od.enforcing_failure_percentage,
            ),
            (
                "enforcing_failure_percentage_local_origin",
                od.enforcing_failure_percentage_local_origin,
            ),
        ];
        for (name, v) in percents {
            if v.is_some_and(|v| v > 100) {
                return Err(oat.key(name).err("a percentage: expected 0–100"));
            }
        }
        for (name, d) in [
            ("interval", od.interval),
            ("base_ejection_time", od.base_ejection_time),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                return Err(oat.key(name).err("must be greater than 0"));
            }
        }
        if od.successful_active_health_check_uneject_host == Some(true) {
            return Err(oat
                .key("successful_active_health_check_uneject_host")
                .err("active health checking is not implemented by weft yet"));
        }
    }
    // Envoy's rules: ORIGINAL_DST clusters choose their own host, take no
    // endpoints, and only they may say CLUSTER_PROVIDED.
    let original_dst = c.type_ == DiscoveryType::ORIGINAL_DST;
    match c.lb_policy {
        LbPolicy::CLUSTER_PROVIDED if original_dst => {}
        _ if original_dst => {
            return Err(at.key("lb_policy").err(
                "ORIGINAL_DST clusters choose their own host: lb_policy must be CLUSTER_PROVIDED",
            ))
        }
        LbPolicy::CLUSTER_PROVIDED => {
            return Err(at
                .key("lb_policy")
                .err("CLUSTER_PROVIDED is only valid for ORIGINAL_DST clusters"))
        }
        LbPolicy::ROUND_ROBIN
        | LbPolicy::LEAST_REQUEST
        | LbPolicy::RANDOM
        | LbPolicy::RING_HASH
        | LbPolicy::MAGLEV => {}
    }
    if let Some(r) = &c.ring_hash_lb_config {
        let rat = at.key("ring_hash_lb_config");
        if r.hash_function == Some(crate::cluster::RingHashFunction::MURMUR_HASH_2) {
            return Err(rat
                .key("hash_function")
                .err("MURMUR_HASH_2 is not implemented by weft yet; use XX_HASH"));
        }
        let min = r.minimum_ring_size.map_or(1024, |n| n.0);
        let max = r.maximum_ring_size.map_or(8 * 1024 * 1024, |n| n.0);
        if !(1..=8 * 1024 * 1024).contains(&max) {
            return Err(rat.key("maximum_ring_size").err("expected 1 to 8388608"));
        }
        if min < 1 || min > max {
            return Err(rat
                .key("minimum_ring_size")
                .err("expected at least 1 and at most maximum_ring_size"));
        }
    }
    if let Some(t) = c.maglev_lb_config.as_ref().and_then(|m| m.table_size) {
        let prime = t.0 > 1 && (2..).take_while(|d| d * d <= t.0).all(|d| t.0 % d != 0);
        if !prime || t.0 > 5_000_011 {
            return Err(at
                .key("maglev_lb_config")
                .key("table_size")
                .err(format!("{} must be a prime number up to 5000011", t.0)));
        }
    }
    if original_dst
        && c.load_assignment
            .as_ref()
            .is_some_and(|la| !la.endpoints.is_empty())
    {
        return Err(at
            .key("load_assignment")
            .err("ORIGINAL_DST clusters take no endpoints: the destination is the connection's"));
    }
    if !original_dst && c.original_dst_lb_config.is_some() {
        return Err(at
            .key("original_dst_lb_config")
            .err("only valid on ORIGINAL_DST clusters"));
    }
    match (&c.eds_cluster_config, c.type_ == DiscoveryType::EDS) {
        (Some(eds), true) => match &eds.eds_config {
            Some(src) => config_source(&at.key("eds_cluster_config").key("eds_config"), src)?,
            None => {
                return Err(at
                    .key("eds_cluster_config")
                    .key("eds_config")
                    .err("an EDS cluster needs eds_config"))
            }
        },
        (None, true) => {
            return Err(at
                .key("eds_cluster_config")
                .err("an EDS cluster needs eds_cluster_config"))
        }
        (Some(_), false) => {
            return Err(at
                .key("eds_cluster_config")
                .err("only valid on EDS clusters"))
        }
        (None, false) => {}
    }
    if c.type_ == DiscoveryType::EDS
        && c.load_assignment
            .as_ref()
            .is_some_and(|la| !la.endpoints.is_empty())
    {
        return Err(at
            .key("load_assignment")
            .err("an EDS cluster's endpoints come from EDS, not load_assignment"));
    }
    let endpoints = c.load_assignment.iter().flat_map(|la| {
        la.endpoints.iter().enumerate().flat_map(|(i, le)| {
            le.lb_endpoints
                .iter()
                .enumerate()
                .map(move |(j, e)| (i, j, e))
        })
    });
    for (i, j, e) in endpoints {
        let eat = at
            .key("load_assignment")
            .key("endpoints")
            .idx(i)
            .key("lb_endpoints")
            .idx(j)
            .key("endpoint")
            .key("address");
        let Some(sa) = &e.endpoint.address.socket_address else {
            // A Unix socket: what a gRPC config source (SDS) may dial.
            if e.endpoint.address.pipe.is_some() && c.type_ == DiscoveryType::STATIC {
                continue;
            }
            return Err(eat.err("expected socket_address"));
        };
        if u16::try_from(sa.port_value).is_err() || sa.port_value == 0 {
            return Err(eat.key("socket_address").key("port_value").err(format!(
                "port {} is out of range: expected 1–65535",
                sa.port_value
            )));
        }
        if c.type_ == DiscoveryType::STATIC && sa.address.parse::<std::net::IpAddr>().is_err() {
            return Err(eat.key("socket_address").key("address").err(format!(
                "{:?} is not an IP address; STATIC clusters need IPs (use STRICT_DNS for names)",
                sa.address
            )));
        }
    }
    for (name, opts) in &c.typed_extension_protocol_options {
        if !matches!(opts, TypedConfig::HttpProtocolOptions(_)) {
            return Err(at
                .key("typed_extension_protocol_options")
                .key(name)
                .err("expected envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));
        }
    }
    Ok(())
}

fn listener(at: &At, l: &Listener, clusters: &HashSet<&str>) -> Result<(), FieldError> {
    if l.address.socket_addr().is_none() {
        return Err(at
            .key("address")
            .err("expected socket_address with an IP address and a port"));
    }
    if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
        return Err(at
            .key("filter_chains")
            .err("a listener needs at least one filter chain"));
    }
    for (i, f) in l.listener_filters.iter().enumerate() {
        let ok = matches!(
            f.typed_config,
            TypedConfig::OriginalDst | TypedConfig::TlsInspector | TypedConfig::HttpInspector
        );
        if !ok {
            return Err(at
                .key("listener_filters")
                .idx(i)
                .err("not a listener filter"));
        }
    }
    let chains = l
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| (at.key("filter_chains").idx(i), c))
        .chain(
            l.default_filter_chain
                .iter()
                .map(|c| (at.key("default_filter_chain"), c)),
        );
    for (cat, chain) in chains {
        if let Some(ts) = &chain.transport_socket {
            tls::transport_socket(&cat.key("transport_socket"), ts, tls::Side::Downstream)?;
        }
        let n = chain.filters.len();
        if n == 0 {
            return Err(cat
                .key("filters")
                .err("a filter chain needs a terminal filter"));
        }
        for (i, f) in chain.filters.iter().enumerate() {
            let fat = cat.key("filters").idx(i).key("typed_config");
            let terminal = i + 1 == n;
            match &f.typed_config {
                TypedConfig::HttpConnectionManager(hcm) if terminal => {
                    http_connection_manager(&fat, hcm, clusters)?
                }
                TypedConfig::TcpProxy(tp) if terminal => {
                    let at = fat.clone();
                    access_log::access_logs(&at, &tp.access_log)?;
                    match (&tp.cluster, &tp.weighted_clusters) {
                        (Some(c), None) => known_cluster(&at.key("cluster"), c, clusters)?,
                        (None, Some(w)) => {
                            if w.clusters.iter().map(|c| u64::from(c.weight)).sum::<u64>() == 0 {
                                return Err(at
                                    .key("weighted_clusters")
                                    .err("needs at least one cluster with a weight above 0"));
                            }
                            for (j, cw) in w.clusters.iter().enumerate() {
                                let wat = at.key("weighted_clusters").key("clusters").idx(j);
                                if cw.weight == 0 {
                                    // Envoy's tcp_proxy requires weight >= 1.
                                    return Err(wat.key("weight").err("must be at least 1"));
                                }
                                known_cluster(&wat.key("name"), &cw.name, clusters)?;
                            }
                        }
                        _ => exactly_one(
                            &at,
                            "tcp_proxy",
                            &[
                                ("cluster", tp.cluster.is_some()),
                                ("weighted_clusters", tp.weighted_clusters.is_some()),
                            ],
                        )?,
                    }
                }
                TypedConfig::HttpConnectionManager(_) | TypedConfig::TcpProxy(_) => {
                    return Err(fat.err("a terminal filter must be the last in its chain"))
                }
                TypedConfig::NetworkRbac(r) if !terminal => rbac::network_rbac(&fat, r)?,
                TypedConfig::NetworkRbac(_) => {
                    return Err(fat.err(
                        "envoy.filters.network.rbac is not a terminal filter: a chain ends with http_connection_manager or tcp_proxy",
                    ))
                }
                _ => return Err(fat.err("not a network filter weft implements")),
            }
        }
    }
    Ok(())
}

fn known_cluster(at: &At, name: &str, clusters: &HashSet<&str>) -> Result<(), FieldError> {
    if clusters.contains(name) {
        Ok(())
    } else {
        Err(at.err(format!("unknown cluster {name:?}")))
    }
}

fn http_connection_manager(
    at: &At,
    hcm: &HttpConnectionManager,
    clusters: &HashSet<&str>,
) -> Result<(), FieldError> {
    exactly_one(
        at,
        "an HTTP connection manager",
        &[
            ("route_config", hcm.route_config.is_some()),
            ("rds", hcm.rds.is_some()),
        ],
    )?;
    if let Some(rds) = &hcm.rds {
        config_source(&at.key("rds").key("config_source"), &rds.config_source)?;
        if rds.route_config_name.is_empty() {
            return Err(at
                .key("rds")
                .key("route_config_name")
                .err("RDS needs the route table's name"));
        }
    }
    filters::http_filters(at, &hcm.http_filters)?;
    access_log::access_logs(at, &hcm.access_log)?;
    match &hcm.route_config {
        Some(rc) => route_config(&at.key("route_config"), rc, clusters, true),
        None => Ok(()),
    }
}
