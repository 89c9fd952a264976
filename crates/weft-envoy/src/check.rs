//! Rules serde cannot express: oneofs, references between resources,
//! and what weft does not implement yet (named, never ignored).

use std::collections::HashSet;

use weft_yaml::PathSeg;

use crate::cluster::{Cluster, DiscoveryType, LbPolicy};
use crate::filters::HttpConnectionManager;
use crate::listener::Listener;
use crate::route::{HeaderMatcher, Route, RouteConfiguration};
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
            || b.static_resources.listeners.iter().any(uses_rds);
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
    match hcm.http_filters.last() {
        Some(f) if matches!(f.typed_config, Some(TypedConfig::Router(_))) => {}
        _ => {
            return Err(at
                .key("http_filters")
                .err("the last HTTP filter must be envoy.filters.http.router"))
        }
    }
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let fat = at.key("http_filters").idx(i);
        match &f.typed_config {
            Some(TypedConfig::Router(_)) if i + 1 == hcm.http_filters.len() => {}
            Some(TypedConfig::Router(_)) => {
                return Err(fat.err("the router must be the last HTTP filter"))
            }
            Some(TypedConfig::Fault(fault)) => http_fault(&fat.key("typed_config"), fault)?,
            Some(TypedConfig::LocalRateLimit(l)) => {
                local_rate_limit(&fat.key("typed_config"), l, false)?
            }
            _ => {
                return Err(fat.err(format!(
                    "HTTP filter {:?} is not implemented by weft yet",
                    f.name
                )))
            }
        }
    }
    match &hcm.route_config {
        Some(rc) => route_config(&at.key("route_config"), rc, clusters, true),
        None => Ok(()),
    }
}

/// `validate_default`: Envoy checks cluster references in inline route
/// tables unless told not to, and in RDS tables only when told to.
fn route_config(
    at: &At,
    rc: &RouteConfiguration,
    clusters: &HashSet<&str>,
    validate_default: bool,
) -> Result<(), FieldError> {
    let validate = rc.validate_clusters.unwrap_or(validate_default);
    per_filter_config(at, &rc.typed_per_filter_config)?;
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let vat = at.key("virtual_hosts").idx(i);
        if vh.domains.is_empty() {
            return Err(vat
                .key("domains")
                .err("a virtual host needs at least one domain"));
        }
        per_filter_config(&vat, &vh.typed_per_filter_config)?;
        if let Some(p) = &vh.retry_policy {
            retry_policy(&vat.key("retry_policy"), p)?;
        }
        for (j, r) in vh.routes.iter().enumerate() {
            route(&vat.key("routes").idx(j), r, clusters, validate)?;
        }
    }
    Ok(())
}

/// Filter settings by route: only filters weft implements, each checked
/// as the filter's own configuration.
fn per_filter_config(at: &At, c: &crate::route::PerFilterConfig) -> Result<(), FieldError> {
    for (name, config) in c {
        let cat = at.key("typed_per_filter_config").key(name);
        match config {
            TypedConfig::Fault(f) => http_fault(&cat, f)?,
            TypedConfig::LocalRateLimit(l) => local_rate_limit(&cat, l, true)?,
            _ => {
                return Err(cat.err(
                    "not a per-route filter configuration weft implements (the fault and local rate limit filters' are)",
                ))
            }
        }
    }
    Ok(())
}

/// The local rate limit filter's settings, by Envoy's rules: a bucket
/// with a fill interval of at least 50 ms; per route one is required.
fn local_rate_limit(
    at: &At,
    l: &crate::filters::LocalRateLimit,
    per_route: bool,
) -> Result<(), FieldError> {
    if l.stat_prefix.is_empty() {
        return Err(at.key("stat_prefix").err("required"));
    }
    let refuse = [
        ("descriptors", !l.descriptors.is_empty()),
        ("stage", l.stage != 0),
        (
            "local_rate_limit_per_downstream_connection",
            l.local_rate_limit_per_downstream_connection,
        ),
        (
            "enable_x_ratelimit_headers",
            l.enable_x_ratelimit_headers
                .as_deref()
                .is_some_and(|v| v != "OFF"),
        ),
        (
            "rate_limited_as_resource_exhausted",
            l.rate_limited_as_resource_exhausted,
        ),
        ("enable_retry_after_header", l.enable_retry_after_header),
    ];
    for (field, set) in refuse {
        if set {
            return Err(at.key(field).err("not implemented by weft yet"));
        }
    }
    if let Some(s) = &l.status {
        match s.number() {
            Some(c) if c >= 400 => {}
            _ => {
                return Err(at.key("status").key("code").err(format!(
                    "{}: expected an HTTP status of 400 or more",
                    s.code
                )))
            }
        }
    }
    match &l.token_bucket {
        Some(b) => {
            let bat = at.key("token_bucket");
            if b.max_tokens == 0 {
                return Err(bat.key("max_tokens").err("must be greater than 0"));
            }
            if b.tokens_per_fill == Some(0) {
                return Err(bat.key("tokens_per_fill").err("must be greater than 0"));
            }
            match b.fill_interval {
                Some(d) if d.0 >= std::time::Duration::from_millis(50) => {}
                _ => return Err(bat.key("fill_interval").err("required, and at least 50ms")),
            }
        }
        None if per_route => return Err(at.key("token_bucket").err("required per route")),
        None => {}
    }
    for (field, p) in [
        ("filter_enabled", &l.filter_enabled),
        ("filter_enforced", &l.filter_enforced),
    ] {
        if let Some(p) = p {
            if p.default_value.numerator > p.default_value.denominator.value() {
                return Err(at
                    .key(field)
                    .key("default_value")
                    .key("numerator")
                    .err("larger than the denominator"));
            }
        }
    }
    Ok(())
}

/// The fault filter's settings, by Envoy's rules.
fn http_fault(at: &At, f: &crate::filters::HttpFault) -> Result<(), FieldError> {
    if !f.downstream_nodes.is_empty() {
        return Err(at
            .key("downstream_nodes")
            .err("not implemented by weft yet"));
    }
    if f.response_rate_limit.is_some() {
        return Err(at
            .key("response_rate_limit")
            .err("not implemented by weft yet"));
    }
    let percent = |pat: At, p: &Option<crate::FractionalPercent>| match p {
        Some(p) if p.numerator > p.denominator.value() => {
            Err(pat.key("numerator").err("larger than the denominator"))
        }
        _ => Ok(()),
    };
    if let Some(d) = &f.delay {
        let dat = at.key("delay");
        exactly_one(
            &dat,
            "a fault delay",
            &[
                ("fixed_delay", d.fixed_delay.is_some()),
                ("header_delay", d.header_delay.is_some()),
            ],
        )?;
        percent(dat.key("percentage"), &d.percentage)?;
    }
    if let Some(a) = &f.abort {
        let aat = at.key("abort");
        exactly_one(
            &aat,
            "a fault abort",
            &[
                ("http_status", a.http_status.is_some()),
                ("grpc_status", a.grpc_status.is_some()),
                ("header_abort", a.header_abort.is_some()),
            ],
        )?;
        if let Some(code) = a.http_status {
            if !(200..600).contains(&code) {
                return Err(aat
                    .key("http_status")
                    .err(format!("{code} is out of range: expected 200–599")));
            }
        }
        percent(aat.key("percentage"), &a.percentage)?;
    }
    for (i, h) in f.headers.iter().enumerate() {
        header_matcher(&at.key("headers").idx(i), h)?;
    }
    Ok(())
}

fn route(at: &At, r: &Route, clusters: &HashSet<&str>, validate: bool) -> Result<(), FieldError> {
    per_filter_config(at, &r.typed_per_filter_config)?;
    let m = &r.match_;
    let mat = at.key("match");
    exactly_one(
        &mat,
        "a route match",
        &[
            ("prefix", m.prefix.is_some()),
            ("path", m.path.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
            ("path_separated_prefix", m.path_separated_prefix.is_some()),
        ],
    )?;
    if let Some(re) = &m.safe_regex {
        regex(&mat.key("safe_regex").key("regex"), &re.regex)?;
    }
    if let Some(rf) = &m.runtime_fraction {
        // No runtime layer: the default value is what applies.
        if rf.default_value.numerator > rf.default_value.denominator.value() {
            return Err(mat
                .key("runtime_fraction")
                .key("default_value")
                .key("numerator")
                .err("larger than the denominator"));
        }
    }
    for (i, h) in m.headers.iter().enumerate() {
        header_matcher(&mat.key("headers").idx(i), h)?;
    }
    for (i, q) in m.query_parameters.iter().enumerate() {
        if let Some(re) = q.string_match.as_ref().and_then(|s| s.safe_regex.as_ref()) {
            let qat = mat.key("query_parameters").idx(i).key("string_match");
            regex(&qat.key("safe_regex").key("regex"), &re.regex)?;
        }
    }
    exactly_one(
        at,
        "a route",
        &[
            ("route", r.route.is_some()),
            ("redirect", r.redirect.is_some()),
            ("direct_response", r.direct_response.is_some()),
        ],
    )?;
    if let Some(a) = &r.route {
        let aat = at.key("route");
        exactly_one(
            &aat,
            "a route action",
            &[
                ("cluster", a.cluster.is_some()),
                ("weighted_clusters", a.weighted_clusters.is_some()),
                ("cluster_header", a.cluster_header.is_some()),
            ],
        )?;
        if a.cluster_header.is_some() {
            return Err(aat.key("cluster_header").err("not implemented by weft yet"));
        }
        if validate {
            if let Some(c) = &a.cluster {
                known_cluster(&aat.key("cluster"), c, clusters)?;
            }
        }
        if let Some(w) = &a.weighted_clusters {
            let total: u64 = w
                .clusters
                .iter()
                .map(|c| u64::from(c.weight.unwrap_or(0)))
                .sum();
            if total == 0 {
                return Err(aat
                    .key("weighted_clusters")
                    .err("needs at least one cluster with a weight above 0"));
            }
            for (i, c) in w.clusters.iter().enumerate() {
                if validate {
                    let cat = aat.key("weighted_clusters").key("clusters").idx(i);
                    known_cluster(&cat.key("name"), &c.name, clusters)?;
                }
            }
        }
        if let Some(rr) = &a.regex_rewrite {
            regex(
                &aat.key("regex_rewrite").key("pattern").key("regex"),
                &rr.pattern.regex,
            )?;
        }
        if let Some(p) = &a.retry_policy {
            retry_policy(&aat.key("retry_policy"), p)?;
        }
        for (i, m) in a.request_mirror_policies.iter().enumerate() {
            let mat = aat.key("request_mirror_policies").idx(i);
            if m.cluster_header.is_some() {
                return Err(mat.key("cluster_header").err("not implemented by weft yet"));
            }
            if m.trace_sampled == Some(true) {
                return Err(mat
                    .key("trace_sampled")
                    .err("tracing is not implemented by weft yet"));
            }
            if m.cluster.is_empty() {
                return Err(mat.key("cluster").err("a mirror policy needs a cluster"));
            }
            if validate {
                known_cluster(&mat.key("cluster"), &m.cluster, clusters)?;
            }
            if let Some(rf) = &m.runtime_fraction {
                if rf.default_value.numerator > rf.default_value.denominator.value() {
                    return Err(mat
                        .key("runtime_fraction")
                        .key("default_value")
                        .key("numerator")
                        .err("larger than the denominator"));
                }
            }
        }
        for (i, h) in a.hash_policy.iter().enumerate() {
            let hat = aat.key("hash_policy").idx(i);
            exactly_one(
                &hat,
                "a hash policy",
                &[
                    ("header", h.header.is_some()),
                    ("cookie", h.cookie.is_some()),
                    ("connection_properties", h.connection_properties.is_some()),
                    ("query_parameter", h.query_parameter.is_some()),
                    ("filter_state", h.filter_state.is_some()),
                ],
            )?;
            if h.filter_state.is_some() {
                return Err(hat.key("filter_state").err("not implemented by weft yet"));
            }
            if let Some(rr) = h.header.as_ref().and_then(|x| x.regex_rewrite.as_ref()) {
                regex(
                    &hat.key("header")
                        .key("regex_rewrite")
                        .key("pattern")
                        .key("regex"),
                    &rr.pattern.regex,
                )?;
            }
        }
        if a.prefix_rewrite.is_some() && a.regex_rewrite.is_some() {
            return Err(aat.err("prefix_rewrite and regex_rewrite are mutually exclusive"));
        }
    }
    if let Some(d) = &r.direct_response {
        if !(200..=599).contains(&d.status) {
            return Err(at.key("direct_response").key("status").err(format!(
                "status {} is out of range: expected 200–599",
                d.status
            )));
        }
        if d.body.as_ref().is_some_and(|b| b.filename.is_some()) {
            return Err(at
                .key("direct_response")
                .key("body")
                .key("filename")
                .err("not implemented by weft yet; use inline_string"));
        }
    }
    Ok(())
}

/// The `retry_on` conditions weft implements. Envoy ignores tokens it
/// does not know (with a warning); the ones it knows that weft does not
/// implement are refused by name.
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    // No HTTP/3 upstreams, so this condition never arises, as in Envoy
    // with an HTTP/1 or HTTP/2 cluster.
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

fn retry_policy(at: &At, p: &crate::route::RetryPolicy) -> Result<(), FieldError> {
    for token in p.retry_on.split(',').map(str::trim) {
        if token == "reset-before-request" {
            return Err(at
                .key("retry_on")
                .err("reset-before-request is not implemented by weft yet"));
        }
    }
    for (i, h) in p.retry_host_predicate.iter().enumerate() {
        let hat = at.key("retry_host_predicate").idx(i);
        if !matches!(h.typed_config, Some(TypedConfig::PreviousHosts)) {
            return Err(hat.key("typed_config").err(format!(
                "{:?} needs the typed_config of envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate (the only host predicate weft implements)",
                h.name
            )));
        }
    }
    if let Some(b) = &p.retry_back_off {
        let bat = at.key("retry_back_off");
        let base = b.base_interval.map(|d| d.0);
        if base.is_none_or(|d| d.is_zero()) {
            return Err(bat
                .key("base_interval")
                .err("must be set and greater than 0"));
        }
        if let (Some(base), Some(max)) = (base, b.max_interval.map(|d| d.0)) {
            if max < base {
                return Err(bat
                    .key("max_interval")
                    .err("must not be less than base_interval"));
            }
        }
    }
    for (i, code) in p.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            return Err(at
                .key("retriable_status_codes")
                .idx(i)
                .err(format!("{code} is not an HTTP status")));
        }
    }
    for (i, h) in p.retriable_headers.iter().enumerate() {
        header_matcher(&at.key("retriable_headers").idx(i), h)?;
    }
    for (i, h) in p.retriable_request_headers.iter().enumerate() {
        header_matcher(&at.key("retriable_request_headers").idx(i), h)?;
    }
    Ok(())
}

fn header_matcher(at: &At, h: &HeaderMatcher) -> Result<(), FieldError> {
    if h.name.is_empty() {
        return Err(at.key("name").err("a header matcher needs a name"));
    }
    let set = [
        ("exact_match", h.exact_match.is_some()),
        ("safe_regex_match", h.safe_regex_match.is_some()),
        ("present_match", h.present_match.is_some()),
        ("prefix_match", h.prefix_match.is_some()),
        ("suffix_match", h.suffix_match.is_some()),
        ("contains_match", h.contains_match.is_some()),
        ("string_match", h.string_match.is_some()),
    ];
    if set.iter().filter(|(_, s)| *s).count() > 1 {
        exactly_one(at, "a header matcher", &set)?;
    }
    if let Some(re) = &h.safe_regex_match {
        regex(&at.key("safe_regex_match").key("regex"), &re.regex)?;
    }
    if let Some(re) = h.string_match.as_ref().and_then(|s| s.safe_regex.as_ref()) {
        regex(
            &at.key("string_match").key("safe_regex").key("regex"),
            &re.regex,
        )?;
    }
    Ok(())
}
