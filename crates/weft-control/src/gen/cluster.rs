//! Clusters (CDS) for a sidecar: one per imported service port
//! (`outbound|PORT||HOST`) and per DestinationRule subset
//! (`outbound|PORT|SUBSET|HOST`), with the rule's traffic policy in
//! Envoy's terms; `inbound|PORT||` for the workload's own ports; and the
//! fixed `PassthroughCluster` / `BlackHoleCluster`.

use serde_json::{json, Map, Value};
use weft_api::destination_rule::{
    ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection, SimpleLb, TrafficPolicy,
};

use super::{cluster_name, Proxy, Scope};
use crate::context::Context;
use crate::model::{Port, Resolution, Service};

/// Istio leaves Envoy's circuit breakers effectively off unless a
/// DestinationRule sets them.
const UNLIMITED: u32 = u32::MAX;

/// A generated cluster and, for EDS clusters, which endpoints it takes.
pub(crate) struct Generated {
    pub json: Value,
    pub eds: Option<EdsSource>,
}

pub(crate) struct EdsSource {
    pub service: String,
    pub port: u32,
    /// The subset's labels (empty: every endpoint).
    pub labels: weft_api::Map<String, String>,
}

/// The policy a cluster ends up with: the rule's, overridden by its
/// port-level settings, overridden by the subset's.
#[derive(Default)]
pub(crate) struct Policy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
}

impl Policy {
    fn overlay(&mut self, p: &TrafficPolicy, port: u32) {
        if p.load_balancer.is_some() {
            self.load_balancer = p.load_balancer.clone();
        }
        if p.connection_pool.is_some() {
            self.connection_pool = p.connection_pool.clone();
        }
        if p.outlier_detection.is_some() {
            self.outlier_detection = p.outlier_detection.clone();
        }
        for pl in &p.port_level_settings {
            if pl.port.as_ref().map(|s| s.number) != Some(port) {
                continue;
            }
            if pl.load_balancer.is_some() {
                self.load_balancer = pl.load_balancer.clone();
            }
            if pl.connection_pool.is_some() {
                self.connection_pool = pl.connection_pool.clone();
            }
            if pl.outlier_detection.is_some() {
                self.outlier_detection = pl.outlier_detection.clone();
            }
        }
    }

    /// The effective policy for a service port (and subset) seen from
    /// `namespace`.
    pub fn of(
        ctx: &Context,
        service: &Service,
        port: u32,
        subset: Option<&str>,
        namespace: &str,
    ) -> Policy {
        let mut policy = Policy::default();
        let Some(dr) = ctx.destination_rule_for(&service.hostname, namespace, &service.namespace)
        else {
            return policy;
        };
        if let Some(tp) = &dr.spec.traffic_policy {
            policy.overlay(tp, port);
        }
        if let Some(tp) = subset.and_then(|name| {
            dr.spec
                .subsets
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.traffic_policy.as_ref())
        }) {
            policy.overlay(tp, port);
        }
        policy
    }
}

/// A service's clusters: one per port, and one per port and subset of
/// the DestinationRule that applies.
pub(crate) fn for_service(ctx: &Context, proxy: &Proxy, service: &Service) -> Vec<Generated> {
    let mut out = Vec::new();
    let dr = ctx.destination_rule_for(&service.hostname, &proxy.namespace, &service.namespace);
    for port in &service.ports {
        out.push(outbound(ctx, proxy, service, port, None));
        for subset in dr.iter().flat_map(|dr| dr.spec.subsets.iter()) {
            out.push(outbound(
                ctx,
                proxy,
                service,
                port,
                Some((&subset.name, &subset.labels)),
            ));
        }
    }
    out
}

/// The clusters a sidecar has whatever it imports: `inbound|PORT||` per
/// ingress listener, `PassthroughCluster` and `BlackHoleCluster`.
pub(crate) fn fixed(ctx: &Context, scope: &Scope) -> Vec<Generated> {
    let mut out = Vec::new();
    for ingress in &scope.ingress {
        out.push(inbound(ctx, ingress));
    }
    out.push(Generated {
        json: json!({
            "name": "PassthroughCluster",
            "type": "ORIGINAL_DST",
            "connect_timeout": ctx.mesh.connect_timeout,
            "lb_policy": "CLUSTER_PROVIDED",
            "circuit_breakers": unlimited(),
        }),
        eds: None,
    });
    out.push(Generated {
        json: json!({
            "name": "BlackHoleCluster",
            "type": "STATIC",
            "connect_timeout": ctx.mesh.connect_timeout,
        }),
        eds: None,
    });
    out
}

fn unlimited() -> Value {
    json!({"thresholds": [{
        "max_connections": UNLIMITED,
        "max_pending_requests": UNLIMITED,
        "max_requests": UNLIMITED,
        "max_retries": UNLIMITED,
        "track_remaining": true,
    }]})
}

fn outbound(
    ctx: &Context,
    proxy: &Proxy,
    service: &Service,
    port: &Port,
    subset: Option<(&str, &weft_api::Map<String, String>)>,
) -> Generated {
    let name = cluster_name(
        "outbound",
        port.number,
        subset.map_or("", |s| s.0),
        &service.hostname,
    );
    let policy = Policy::of(
        ctx,
        service,
        port.number,
        subset.map(|s| s.0),
        &proxy.namespace,
    );
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    c.insert("connect_timeout".into(), json!(ctx.mesh.connect_timeout));
    let mut eds = None;
    let passthrough = service.resolution == Resolution::Passthrough
        || policy
            .load_balancer
            .as_ref()
            .and_then(|lb| lb.simple)
            .is_some_and(|s| s == SimpleLb::PASSTHROUGH);
    if passthrough {
        c.insert("type".into(), json!("ORIGINAL_DST"));
        c.insert("lb_policy".into(), json!("CLUSTER_PROVIDED"));
    } else {
        match service.resolution {
            Resolution::Dns | Resolution::DnsRoundRobin => {
                let kind = if service.resolution == Resolution::Dns {
                    "STRICT_DNS"
                } else {
                    "LOGICAL_DNS"
                };
                c.insert("type".into(), json!(kind));
                c.insert("dns_lookup_family".into(), json!("V4_ONLY"));
                c.insert("respect_dns_ttl".into(), json!(true));
                let labels = subset.map(|s| s.1.clone()).unwrap_or_default();
                let endpoints =
                    super::endpoint::lb_endpoints(ctx, &service.hostname, port.number, &labels);
                c.insert(
                    "load_assignment".into(),
                    json!({"cluster_name": name, "endpoints": endpoints}),
                );
            }
            _ => {
                c.insert("type".into(), json!("EDS"));
                c.insert(
                    "eds_cluster_config".into(),
                    json!({
                        "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                        "service_name": name,
                    }),
                );
                eds = Some(EdsSource {
                    service: service.hostname.clone(),
                    port: port.number,
                    labels: subset.map(|s| s.1.clone()).unwrap_or_default(),
                });
            }
        }
        load_balancer(&mut c, policy.load_balancer.as_ref());
    }
    let mut thresholds = unlimited();
    let mut http_common = Map::new();
    if let Some(pool) = &policy.connection_pool {
        let t = &mut thresholds["thresholds"][0];
        if let Some(tcp) = &pool.tcp {
            if let Some(v) = tcp.max_connections {
                t["max_connections"] = json!(v.max(0));
            }
            if let Some(d) = &tcp.connect_timeout {
                c.insert("connect_timeout".into(), json!(super::dur(d)));
            }
            if let Some(d) = &tcp.max_connection_duration {
                http_common.insert("max_connection_duration".into(), json!(super::dur(d)));
            }
        }
        if let Some(http) = &pool.http {
            if let Some(v) = http.http1_max_pending_requests {
                t["max_pending_requests"] = json!(v.max(0));
            }
            if let Some(v) = http.http2_max_requests {
                t["max_requests"] = json!(v.max(0));
            }
            if let Some(v) = http.max_retries {
                t["max_retries"] = json!(v.max(0));
            }
            if let Some(d) = &http.idle_timeout {
                http_common.insert("idle_timeout".into(), json!(super::dur(d)));
            }
        }
    }
    c.insert("circuit_breakers".into(), thresholds);
    if let Some(od) = &policy.outlier_detection {
        outlier(&mut c, od);
    }
    let mut options = Map::new();
    if !http_common.is_empty() {
        options.insert(
            "common_http_protocol_options".into(),
            Value::Object(http_common),
        );
    }
    let upgrade = policy
        .connection_pool
        .as_ref()
        .and_then(|p| p.http.as_ref())
        .and_then(|h| h.h2_upgrade_policy)
        .is_some_and(|u| u == weft_api::destination_rule::H2UpgradePolicy::UPGRADE);
    if port.protocol.is_http2() || (upgrade && port.protocol.is_http()) {
        options.insert(
            "explicit_http_config".into(),
            json!({"http2_protocol_options": {}}),
        );
    }
    if !options.is_empty() {
        options.insert(
            "@type".into(),
            json!("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
        );
        c.insert(
            "typed_extension_protocol_options".into(),
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options}),
        );
    }
    Generated {
        json: Value::Object(c),
        eds,
    }
}

fn load_balancer(c: &mut Map<String, Value>, lb: Option<&LoadBalancerSettings>) {
    // Istio's default when nothing (or UNSPECIFIED) is set.
    let mut policy = "LEAST_REQUEST";
    if let Some(lb) = lb {
        if let Some(simple) = lb.simple {
            policy = match simple {
                SimpleLb::ROUND_ROBIN => "ROUND_ROBIN",
                SimpleLb::RANDOM => "RANDOM",
                _ => "LEAST_REQUEST",
            };
        }
        if let Some(ch) = &lb.consistent_hash {
            if let Some(maglev) = &ch.maglev {
                policy = "MAGLEV";
                if let Some(size) = maglev.table_size {
                    c.insert("maglev_lb_config".into(), json!({"table_size": size}));
                }
            } else {
                policy = "RING_HASH";
                let size = ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .unwrap_or(1024);
                c.insert(
                    "ring_hash_lb_config".into(),
                    json!({"minimum_ring_size": size}),
                );
            }
        }
    }
    c.insert("lb_policy".into(), json!(policy));
}

/// Istio's mapping of `outlierDetection`: consecutive-error detectors are
/// enforced only when their threshold is set above 0, success-rate
/// ejection is off, and `minHealthPercent` (0 by default) becomes the
/// panic threshold.
fn outlier(c: &mut Map<String, Value>, od: &OutlierDetection) {
    let mut o = Map::new();
    let enforce = |v: u32| if v > 0 { 100 } else { 0 };
    let five = od
        .consecutive_5xx_errors
        .or(od.consecutive_errors.map(|v| v.max(0) as u32));
    if let Some(v) = five {
        o.insert("consecutive_5xx".into(), json!(v));
        o.insert("enforcing_consecutive_5xx".into(), json!(enforce(v)));
    }
    if let Some(v) = od.consecutive_gateway_errors {
        o.insert("consecutive_gateway_failure".into(), json!(v));
        o.insert(
            "enforcing_consecutive_gateway_failure".into(),
            json!(enforce(v)),
        );
    }
    if let Some(d) = &od.interval {
        o.insert("interval".into(), json!(super::dur(d)));
    }
    if let Some(d) = &od.base_ejection_time {
        o.insert("base_ejection_time".into(), json!(super::dur(d)));
    }
    if let Some(v) = od.max_ejection_percent {
        o.insert("max_ejection_percent".into(), json!(v.max(0)));
    }
    if od.split_external_local_origin_errors == Some(true) {
        o.insert("split_external_local_origin_errors".into(), json!(true));
        if let Some(v) = od.consecutive_local_origin_failures {
            o.insert("consecutive_local_origin_failure".into(), json!(v));
            o.insert(
                "enforcing_consecutive_local_origin_failure".into(),
                json!(enforce(v)),
            );
        }
    }
    o.insert("enforcing_success_rate".into(), json!(0));
    c.insert("outlier_detection".into(), Value::Object(o));
    c.insert(
        "common_lb_config".into(),
        json!({"healthy_panic_threshold": {"value": od.min_health_percent.unwrap_or(0).max(0)}}),
    );
}

/// `inbound|PORT||`: the application behind a Sidecar ingress listener,
/// at its `defaultEndpoint` (`127.0.0.1:PORT` unless given).
fn inbound(ctx: &Context, ingress: &weft_api::sidecar::IstioIngressListener) -> Generated {
    let port = ingress.port.number;
    let (host, target) = ingress
        .default_endpoint
        .as_deref()
        .and_then(|e| e.rsplit_once(':'))
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u32>().ok()?)))
        .unwrap_or_else(|| ("127.0.0.1".to_string(), port));
    let name = cluster_name("inbound", port, "", "");
    Generated {
        json: json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": ctx.mesh.connect_timeout,
            "circuit_breakers": unlimited(),
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": target}}}}
            ]}]},
        }),
        eds: None,
    }
}
