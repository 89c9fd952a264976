//! Clusters (CDS) for a sidecar: one per imported service port
//! (`outbound|PORT||HOST`) and per DestinationRule subset
//! (`outbound|PORT|SUBSET|HOST`), with the rule's traffic policy in
//! Envoy's terms; `inbound|PORT||` for the workload's own ports; and the
//! fixed `PassthroughCluster` / `BlackHoleCluster`.

use weft_api::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection, SimpleLb,
    TrafficPolicy,
};

use super::pb::{self, cluster, core, endpoint, upstream_http};
use super::{cluster_name, tls, Proxy, Scope};
use crate::context::Context;
use crate::model::{Port, Resolution, Service};

use cluster::cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbConfig, LbPolicy};

/// Istio leaves Envoy's circuit breakers effectively off unless a
/// DestinationRule sets them.
const UNLIMITED: u32 = u32::MAX;

/// A generated cluster and, for EDS clusters, which endpoints it takes.
pub(crate) struct Generated {
    pub cluster: cluster::Cluster,
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
    pub tls: Option<ClientTlsSettings>,
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
        if p.tls.is_some() {
            self.tls = p.tls.clone();
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
            if pl.tls.is_some() {
                self.tls = pl.tls.clone();
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
pub(crate) fn fixed(ctx: &Context, proxy: &Proxy, scope: &Scope) -> Vec<Generated> {
    let mut out = Vec::new();
    for ingress in &scope.ingress {
        let mut g = inbound(ctx, ingress);
        let served = super::telemetry::served_by(ctx, proxy, ingress.port.number);
        if !served.is_empty() {
            g.cluster.metadata = Some(super::telemetry::services_metadata(&served));
        }
        out.push(g);
    }
    out.push(Generated {
        cluster: cluster::Cluster {
            name: "PassthroughCluster".into(),
            cluster_discovery_type: discovery(DiscoveryType::OriginalDst),
            connect_timeout: connect_timeout(ctx),
            lb_policy: LbPolicy::ClusterProvided as i32,
            circuit_breakers: Some(unlimited()),
            ..Default::default()
        },
        eds: None,
    });
    out.push(Generated {
        cluster: cluster::Cluster {
            name: "BlackHoleCluster".into(),
            cluster_discovery_type: discovery(DiscoveryType::Static),
            connect_timeout: connect_timeout(ctx),
            ..Default::default()
        },
        eds: None,
    });
    out
}

fn discovery(kind: DiscoveryType) -> Option<ClusterDiscoveryType> {
    Some(ClusterDiscoveryType::Type(kind as i32))
}

/// The mesh's `connectTimeout`. It is kept as proto3 JSON's text (what
/// `gen::dur` writes); text that is not a duration is Istio's default.
fn connect_timeout(ctx: &Context) -> Option<pb::Duration> {
    pb::parse_duration(&ctx.mesh.connect_timeout).or_else(|| pb::seconds(10))
}

fn unlimited() -> cluster::CircuitBreakers {
    cluster::CircuitBreakers {
        thresholds: vec![cluster::circuit_breakers::Thresholds {
            max_connections: pb::u32_value(UNLIMITED),
            max_pending_requests: pb::u32_value(UNLIMITED),
            max_requests: pb::u32_value(UNLIMITED),
            max_retries: pb::u32_value(UNLIMITED),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
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
    let mut c = cluster::Cluster {
        name: name.clone(),
        connect_timeout: connect_timeout(ctx),
        metadata: Some(super::telemetry::services_metadata(&[service])),
        ..Default::default()
    };
    let mut eds = None;
    let passthrough = service.resolution == Resolution::Passthrough
        || policy
            .load_balancer
            .as_ref()
            .and_then(|lb| lb.simple)
            .is_some_and(|s| s == SimpleLb::PASSTHROUGH);
    if passthrough {
        c.cluster_discovery_type = discovery(DiscoveryType::OriginalDst);
        c.lb_policy = LbPolicy::ClusterProvided as i32;
    } else {
        match service.resolution {
            Resolution::Dns | Resolution::DnsRoundRobin => {
                c.cluster_discovery_type = discovery(if service.resolution == Resolution::Dns {
                    DiscoveryType::StrictDns
                } else {
                    DiscoveryType::LogicalDns
                });
                c.dns_lookup_family = DnsLookupFamily::V4Only as i32;
                // Deprecated in Envoy for the DNS cluster extension's
                // setting, still honoured, and what Istio sets.
                #[allow(deprecated)]
                {
                    c.respect_dns_ttl = true;
                }
                let labels = subset.map(|s| s.1.clone()).unwrap_or_default();
                c.load_assignment = Some(endpoint::ClusterLoadAssignment {
                    cluster_name: name.clone(),
                    endpoints: super::endpoint::lb_endpoints(
                        ctx,
                        &service.hostname,
                        port.number,
                        &labels,
                    ),
                    ..Default::default()
                });
            }
            _ => {
                c.cluster_discovery_type = discovery(DiscoveryType::Eds);
                c.eds_cluster_config = Some(cluster::cluster::EdsClusterConfig {
                    eds_config: pb::ads(),
                    service_name: name.clone(),
                });
                eds = Some(EdsSource {
                    service: service.hostname.clone(),
                    port: port.number,
                    labels: subset.map(|s| s.1.clone()).unwrap_or_default(),
                });
            }
        }
        load_balancer(&mut c, policy.load_balancer.as_ref());
    }
    let mut breakers = unlimited();
    let mut http_common = core::HttpProtocolOptions::default();
    if let Some(pool) = &policy.connection_pool {
        let t = &mut breakers.thresholds[0];
        if let Some(tcp) = &pool.tcp {
            if let Some(v) = tcp.max_connections {
                t.max_connections = pb::u32_value(pb::count(v));
            }
            if let Some(d) = &tcp.connect_timeout {
                c.connect_timeout = pb::duration(d);
            }
            if let Some(d) = &tcp.max_connection_duration {
                http_common.max_connection_duration = pb::duration(d);
            }
        }
        if let Some(http) = &pool.http {
            if let Some(v) = http.http1_max_pending_requests {
                t.max_pending_requests = pb::u32_value(pb::count(v));
            }
            if let Some(v) = http.http2_max_requests {
                t.max_requests = pb::u32_value(pb::count(v));
            }
            if let Some(v) = http.max_retries {
                t.max_retries = pb::u32_value(pb::count(v));
            }
            if let Some(d) = &http.idle_timeout {
                http_common.idle_timeout = pb::duration(d);
            }
        }
    }
    c.circuit_breakers = Some(breakers);
    let auto = passthrough || !proxy.workload_certs;
    client_tls(ctx, &mut c, service, port.number, &policy, !auto);
    if let Some(od) = &policy.outlier_detection {
        outlier(&mut c, od);
    }
    let upgrade = policy
        .connection_pool
        .as_ref()
        .and_then(|p| p.http.as_ref())
        .and_then(|h| h.h2_upgrade_policy)
        .is_some_and(|u| u == weft_api::destination_rule::H2UpgradePolicy::UPGRADE);
    let http2 = port.protocol.is_http2() || (upgrade && port.protocol.is_http());
    if http2 || http_common != core::HttpProtocolOptions::default() {
        use upstream_http::http_protocol_options::{
            explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
        };
        let options = upstream_http::HttpProtocolOptions {
            common_http_protocol_options: (http_common != core::HttpProtocolOptions::default())
                .then_some(http_common),
            upstream_protocol_options: http2.then(|| {
                UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Default::default())),
                })
            }),
            ..Default::default()
        };
        c.typed_extension_protocol_options = pb::map([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pb::any(&options),
        )]);
    }
    Generated { cluster: c, eds }
}

/// A cluster's TLS: the DestinationRule's `tls` when it sets a mode;
/// else, with auto mTLS on, mutual TLS to the endpoints that have a
/// sidecar and accept it (their `tlsMode` metadata, see
/// `endpoint::lb_endpoints`) and plaintext to the rest — Istio's
/// `transport_socket_matches` — unless `auto_mtls` is off for this
/// cluster (an ORIGINAL_DST cluster, or a proxy without certificates).
fn client_tls(
    ctx: &Context,
    c: &mut cluster::Cluster,
    service: &Service,
    port: u32,
    policy: &Policy,
    auto_mtls: bool,
) {
    let sni = tls::mesh_sni(&c.name);
    let explicit = policy.tls.as_ref().filter(|t| t.mode.is_some());
    if let Some(t) = explicit {
        let sans = ctx.identities_of(&service.hostname, port);
        if let tls::Client::Tls(context) = tls::client(t, sni, &sans, &service.hostname) {
            c.transport_socket = Some(tls::upstream_socket(&context));
        }
        return;
    }
    if !ctx.mesh.enable_auto_mtls || !auto_mtls || service.mesh_external {
        return;
    }
    let sans = ctx.identities_of(&service.hostname, port);
    c.transport_socket_matches = vec![
        cluster::cluster::TransportSocketMatch {
            name: "tlsMode-istio".into(),
            r#match: Some(pb::strings([("tlsMode", "istio")])),
            transport_socket: Some(tls::upstream_socket(&tls::mesh_client(sni, &sans))),
        },
        cluster::cluster::TransportSocketMatch {
            name: "tlsMode-disabled".into(),
            r#match: Some(pb::Struct::default()),
            transport_socket: Some(tls::plaintext_socket()),
        },
    ];
}

fn load_balancer(c: &mut cluster::Cluster, lb: Option<&LoadBalancerSettings>) {
    // Istio's default when nothing (or UNSPECIFIED) is set.
    let mut policy = LbPolicy::LeastRequest;
    if let Some(lb) = lb {
        if let Some(simple) = lb.simple {
            policy = match simple {
                SimpleLb::ROUND_ROBIN => LbPolicy::RoundRobin,
                SimpleLb::RANDOM => LbPolicy::Random,
                _ => LbPolicy::LeastRequest,
            };
        }
        if let Some(ch) = &lb.consistent_hash {
            if let Some(maglev) = &ch.maglev {
                policy = LbPolicy::Maglev;
                if let Some(size) = maglev.table_size {
                    c.lb_config =
                        Some(LbConfig::MaglevLbConfig(cluster::cluster::MaglevLbConfig {
                            table_size: pb::u64_value(size),
                        }));
                }
            } else {
                policy = LbPolicy::RingHash;
                let size = ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .unwrap_or(1024);
                c.lb_config = Some(LbConfig::RingHashLbConfig(
                    cluster::cluster::RingHashLbConfig {
                        minimum_ring_size: pb::u64_value(size),
                        ..Default::default()
                    },
                ));
            }
        }
    }
    c.lb_policy = policy as i32;
}

/// Istio's mapping of `outlierDetection`: consecutive-error detectors are
/// enforced only when their threshold is set above 0, success-rate
/// ejection is off, and `minHealthPercent` (0 by default) becomes the
/// panic threshold.
fn outlier(c: &mut cluster::Cluster, od: &OutlierDetection) {
    let mut o = cluster::OutlierDetection::default();
    let enforce = |v: u32| pb::u32_value(if v > 0 { 100 } else { 0 });
    let five = od
        .consecutive_5xx_errors
        .or(od.consecutive_errors.map(pb::count));
    if let Some(v) = five {
        o.consecutive_5xx = pb::u32_value(v);
        o.enforcing_consecutive_5xx = enforce(v);
    }
    if let Some(v) = od.consecutive_gateway_errors {
        o.consecutive_gateway_failure = pb::u32_value(v);
        o.enforcing_consecutive_gateway_failure = enforce(v);
    }
    if let Some(d) = &od.interval {
        o.interval = pb::duration(d);
    }
    if let Some(d) = &od.base_ejection_time {
        o.base_ejection_time = pb::duration(d);
    }
    if let Some(v) = od.max_ejection_percent {
        o.max_ejection_percent = pb::u32_value(pb::count(v));
    }
    if od.split_external_local_origin_errors == Some(true) {
        o.split_external_local_origin_errors = true;
        if let Some(v) = od.consecutive_local_origin_failures {
            o.consecutive_local_origin_failure = pb::u32_value(v);
            o.enforcing_consecutive_local_origin_failure = enforce(v);
        }
    }
    o.enforcing_success_rate = pb::u32_value(0);
    c.outlier_detection = Some(o);
    c.common_lb_config = Some(cluster::cluster::CommonLbConfig {
        healthy_panic_threshold: Some(pb::types::Percent {
            value: f64::from(od.min_health_percent.unwrap_or(0).max(0)),
        }),
        ..Default::default()
    });
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
        cluster: cluster::Cluster {
            name: name.clone(),
            cluster_discovery_type: discovery(DiscoveryType::Static),
            connect_timeout: connect_timeout(ctx),
            circuit_breakers: Some(unlimited()),
            load_assignment: Some(endpoint::ClusterLoadAssignment {
                cluster_name: name,
                endpoints: vec![endpoint::LocalityLbEndpoints {
                    lb_endpoints: vec![super::endpoint::lb_endpoint(&host, target, None)],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
        eds: None,
    }
}
