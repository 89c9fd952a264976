//! VirtualService `tcp` and `tls` routes as Envoy filter chains, for a
//! sidecar's outbound TCP and TLS listeners and a gateway's TCP and
//! TLS-passthrough servers.
//!
//! - A `tls` route is chosen by the name the client asks for in its TLS
//!   hello (SNI): one filter chain per route with `server_names`, read
//!   by the listener's `tls_inspector`. A match without `sniHosts` means
//!   the VirtualService's hosts. A name an earlier chain took is not
//!   repeated (Envoy refuses two chains with the same match).
//! - A TLS port of a service no `tls` route names gets a chain for the
//!   service's own hostname, so a listener shared by several services
//!   (`0.0.0.0_443` for external hosts, or a bound egress port) sends
//!   each hello to the right one.
//! - A `tcp` route is chosen by port and client: the first route with a
//!   match that applies (or no match at all) takes the connection.
//! - `destinationSubnets` are decided where the destination address is
//!   known when the listener is made: a sidecar's `VIP_PORT` listener,
//!   whose connections all go to the service's address. On listeners
//!   shared by several destinations (`0.0.0.0_PORT`, a bound egress
//!   port, a gateway) such a match never applies (`support` says so), as
//!   does any `sourceSubnet` match.

use weft_api::virtual_service::{RouteDestination, VirtualService};

use super::pb::{self, listener, tcp_proxy as tcp};
use super::route::destination_cluster;
use super::{cluster_name, Proxy};
use crate::context::{bound_to, resolve_host, Context, Named};
use crate::model::{Protocol, Service};

use tcp::tcp_proxy::ClusterSpecifier;

/// The listener filter that reads SNI and ALPN from a TLS hello.
pub(crate) fn tls_inspector() -> listener::ListenerFilter {
    listener::ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener::listener_filter::ConfigType::TypedConfig(pb::any(
            &pb::tls_inspector::TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// A network filter named `name` configured by `config`.
pub(crate) fn filter<M: prost::Name>(name: &str, config: &M) -> listener::Filter {
    listener::Filter {
        name: name.to_string(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(pb::any(config))),
    }
}

/// A filter chain of `filters`, for connections `matched` (all when
/// none).
pub(crate) fn chain(
    matched: Option<listener::FilterChainMatch>,
    filters: Vec<listener::Filter>,
) -> listener::FilterChain {
    listener::FilterChain {
        filter_chain_match: matched,
        filters,
        ..Default::default()
    }
}

/// Connections whose TLS hello asks for one of `names`.
fn by_sni(names: Vec<String>) -> Option<listener::FilterChainMatch> {
    Some(listener::FilterChainMatch {
        server_names: names,
        ..Default::default()
    })
}

fn tcp_proxy_with(stat_prefix: &str, cluster: ClusterSpecifier) -> listener::Filter {
    filter(
        "envoy.filters.network.tcp_proxy",
        &tcp::TcpProxy {
            stat_prefix: stat_prefix.to_string(),
            cluster_specifier: Some(cluster),
            ..Default::default()
        },
    )
}

pub(crate) fn tcp_proxy(stat_prefix: &str, cluster: &str) -> listener::Filter {
    tcp_proxy_with(stat_prefix, ClusterSpecifier::Cluster(cluster.to_string()))
}

/// A tcp_proxy to a route's destinations (weighted when several carry
/// weight), each resolved in the VirtualService's namespace.
fn tcp_proxy_to(
    ctx: &Context,
    vs_ns: &str,
    dests: &[RouteDestination],
    port: u32,
    stat_prefix: &str,
) -> listener::Filter {
    let live: Vec<&RouteDestination> = if dests.len() > 1 {
        dests.iter().filter(|d| d.weight.unwrap_or(0) > 0).collect()
    } else {
        dests.iter().collect()
    };
    if let [only] = live.as_slice() {
        return tcp_proxy(
            stat_prefix,
            &destination_cluster(ctx, vs_ns, &only.destination, port),
        );
    }
    let clusters = live
        .iter()
        .map(|d| tcp::tcp_proxy::weighted_cluster::ClusterWeight {
            name: destination_cluster(ctx, vs_ns, &d.destination, port),
            weight: pb::count(d.weight.unwrap_or(0)),
            ..Default::default()
        })
        .collect();
    tcp_proxy_with(
        stat_prefix,
        ClusterSpecifier::WeightedClusters(tcp::tcp_proxy::WeightedCluster { clusters }),
    )
}

/// Whether a `tcp` or `tls` match's conditions hold for `proxy`'s
/// connections to `port` through `gateway` (`mesh` for sidecars).
struct Conditions<'a> {
    port: Option<u32>,
    destination_subnets: &'a [String],
    source_labels: &'a weft_api::Map<String, String>,
    gateways: &'a [String],
    source_namespace: Option<&'a String>,
}

impl Conditions<'_> {
    fn hold(&self, vs_ns: &str, proxy: &Proxy, at: &At) -> bool {
        let At {
            port,
            gateway,
            destination,
            ..
        } = *at;
        self.port.is_none_or(|p| p == port)
            && (self.destination_subnets.is_empty()
                || destination
                    .is_some_and(|d| self.destination_subnets.iter().any(|s| within(d, s))))
            && weft_config::mesh::Selector::condition(self.source_labels).matches(&proxy.labels)
            && (self.gateways.is_empty() || bound_to(self.gateways, vs_ns, gateway))
            && self
                .source_namespace
                .is_none_or(|ns| *ns == proxy.namespace)
    }
}

/// Whether `address` (an IP, or a CIDR a ServiceEntry gives as its
/// address) lies within `subnet` (an IP or a CIDR).
fn within(address: &str, subnet: &str) -> bool {
    fn net(s: &str) -> Option<ipnet::IpNet> {
        s.parse::<ipnet::IpNet>()
            .ok()
            .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
    }
    match (net(address), net(subnet)) {
        (Some(a), Some(s)) => s.contains(&a),
        _ => false,
    }
}

/// Where chains are made: the listener's port, what the proxy is bound
/// as (`mesh` for sidecars, `namespace/name` of a Gateway), the stats
/// prefix of their filters, and the address every connection to the
/// listener goes to, when there is one.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub port: u32,
    pub gateway: &'a str,
    pub stat_prefix: &'a str,
    pub destination: Option<&'a str>,
}

/// The filter of the first `tcp` route of `vs` that applies.
pub(crate) fn tcp_route(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<VirtualService>,
    at: &At,
) -> Option<listener::Filter> {
    let route = vs.spec.tcp.iter().find(|r| {
        r.matches.is_empty()
            || r.matches.iter().any(|m| {
                m.source_subnet.is_none()
                    && Conditions {
                        port: m.port,
                        destination_subnets: &m.destination_subnets,
                        source_labels: &m.source_labels,
                        gateways: &m.gateways,
                        source_namespace: m.source_namespace.as_ref(),
                    }
                    .hold(&vs.namespace, proxy, at)
            })
    })?;
    (!route.route.is_empty())
        .then(|| tcp_proxy_to(ctx, &vs.namespace, &route.route, at.port, at.stat_prefix))
}

/// Filter chains by SNI for the `tls` routes of `vs` that apply, less
/// names in `taken` (which gains theirs). `allowed` narrows the names
/// (a gateway server's hosts); none is every name.
pub(crate) fn tls_chains(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<VirtualService>,
    at: &At,
    allowed: Option<&dyn Fn(&str) -> bool>,
    taken: &mut Vec<String>,
) -> Vec<listener::FilterChain> {
    let (port, stat_prefix) = (at.port, at.stat_prefix);
    let mut out = Vec::new();
    for route in &vs.spec.tls {
        let mut names: Vec<String> = Vec::new();
        for m in &route.matches {
            let applies = Conditions {
                port: m.port,
                destination_subnets: &m.destination_subnets,
                source_labels: &m.source_labels,
                gateways: &m.gateways,
                source_namespace: m.source_namespace.as_ref(),
            }
            .hold(&vs.namespace, proxy, at);
            if !applies {
                continue;
            }
            let sni: Vec<String> = if m.sni_hosts.is_empty() {
                vs.spec
                    .hosts
                    .iter()
                    .map(|h| resolve_host(h, &vs.namespace))
                    .collect()
            } else {
                m.sni_hosts.clone()
            };
            // Envoy has no catch-all server name: `*` cannot be a chain's.
            for n in sni.into_iter().filter(|n| n != "*") {
                if allowed.is_none_or(|ok| ok(&n)) && !taken.contains(&n) && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        if names.is_empty() || route.route.is_empty() {
            continue;
        }
        taken.extend(names.iter().cloned());
        let filter = tcp_proxy_to(ctx, &vs.namespace, &route.route, port, stat_prefix);
        out.push(chain(by_sni(names), vec![filter]));
    }
    out
}

/// What a sidecar's connection to `s` on `port` is forwarded with: the
/// first `tcp` route of its VirtualService that applies, else its own
/// cluster. `destination` is the address the listener's connections go
/// to, when it has one.
pub(crate) fn sidecar_tcp(
    ctx: &Context,
    proxy: &Proxy,
    s: &Service,
    port: u32,
    stat_prefix: &str,
    destination: Option<&str>,
) -> listener::Filter {
    ctx.virtual_service_for(&s.hostname, &proxy.namespace, "mesh")
        .and_then(|vs| {
            let at = At {
                port,
                gateway: "mesh",
                stat_prefix,
                destination,
            };
            tcp_route(ctx, proxy, vs, &at)
        })
        .unwrap_or_else(|| {
            tcp_proxy(
                stat_prefix,
                &cluster_name("outbound", port, "", &s.hostname),
            )
        })
}

/// The SNI filter chains of a sidecar's listener on a TLS `port` for
/// `services`: each service's `tls` routes, else (when `by_hostname`:
/// the listener is shared) its hostname to what [`sidecar_tcp`] forwards
/// it with. Names an earlier service took are left out. `destination`
/// is the address the listener's connections go to, when it has one.
pub(crate) fn sidecar_sni_chains(
    ctx: &Context,
    proxy: &Proxy,
    services: &[&Service],
    port: u32,
    stat_prefix: &str,
    by_hostname: bool,
    destination: Option<&str>,
) -> Vec<listener::FilterChain> {
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for s in services {
        if !s
            .port(port)
            .is_some_and(|p| matches!(p.protocol, Protocol::Tls | Protocol::Https))
        {
            continue;
        }
        let vs = ctx.virtual_service_for(&s.hostname, &proxy.namespace, "mesh");
        let routed = vs.is_some_and(|vs| !vs.spec.tls.is_empty());
        if let (true, Some(vs)) = (routed, vs) {
            let at = At {
                port,
                gateway: "mesh",
                stat_prefix,
                destination,
            };
            out.extend(tls_chains(ctx, proxy, vs, &at, None, &mut taken));
            continue;
        }
        if !by_hostname || s.hostname == "*" || taken.contains(&s.hostname) {
            continue;
        }
        taken.push(s.hostname.clone());
        let filter = sidecar_tcp(ctx, proxy, s, port, stat_prefix, destination);
        out.push(chain(by_sni(vec![s.hostname.clone()]), vec![filter]));
    }
    out
}

#[cfg(test)]
#[path = "l4_tests.rs"]
mod tests;
