//! Listeners (LDS) for a sidecar, and the route tables their HTTP
//! connection managers name.
//!
//! Two shapes, as Istio makes them:
//! - capture by iptables (no Sidecar egress `bind`): `virtualOutbound` on
//!   15001 hands each connection to the listener of its original
//!   destination — `0.0.0.0_PORT` for HTTP (route table `PORT`),
//!   `VIP_PORT` for TCP — none of them bound to the port themselves;
//! - `captureMode: NONE` (how `weft up` runs without iptables): each
//!   egress listener is bound at its `bind` address (127.0.0.1 unless
//!   given) and port, and each ingress listener at its `bind` (the
//!   workload's address unless given), forwarding to `inbound|PORT||`.

use std::collections::BTreeMap;

use weft_api::sidecar::OutboundMode;

use super::l4::{self, chain, tcp_proxy};
use super::pb::{self, hcm, listener, route as rt};
use super::{cluster_name, route, tls, Egress, Proxy, Scope, Table};
use crate::context::Context;
use crate::model::{Protocol, Service};
use weft_config::mesh::mtls::Mode;

use hcm::http_connection_manager::RouteSpecifier;

/// A sidecar's listeners, and the route tables they name (made by the
/// caller: see `route::outbound_table`).
pub(crate) fn sidecar<'a>(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope<'a>,
) -> (Vec<listener::Listener>, Vec<Table<'a>>) {
    let mut listeners = Vec::new();
    let mut routes: BTreeMap<String, Table<'a>> = BTreeMap::new();
    for egress in &scope.egress {
        match &egress.bind {
            Some(bind) => {
                bound_egress(ctx, proxy, scope, egress, bind, &mut listeners, &mut routes)
            }
            None => captured_egress(ctx, proxy, scope, egress, &mut listeners, &mut routes),
        }
    }
    // The workload's RequestAuthentications and AuthorizationPolicies
    // guard every inbound port.
    let applied = super::authz::applied(ctx, &proxy.namespace, &proxy.labels);
    for ingress in &scope.ingress {
        let port = ingress.port.number;
        let bind = ingress.bind.clone().unwrap_or_else(|| proxy.ip.clone());
        let cluster = cluster_name("inbound", port, "", "");
        let protocol = Protocol::parse(&ingress.port.protocol);
        let filters = if protocol.is_http() {
            // Inline, and not `route::host`: the attempt count is for
            // the client's side, as Istio's inbound host leaves it out.
            let table = rt::RouteConfiguration {
                virtual_hosts: vec![rt::VirtualHost {
                    name: format!("inbound|http|{port}"),
                    domains: vec!["*".into()],
                    routes: vec![route::route(
                        "default".into(),
                        route::prefix("/"),
                        rt::route::Action::Route(route::to_cluster(cluster.clone())),
                    )],
                    ..Default::default()
                }],
                ..route::table_without_hosts(&cluster)
            };
            vec![http_manager(
                ctx,
                proxy,
                &format!("inbound_{bind}_{port}"),
                RouteSpecifier::RouteConfig(table),
                Side::Inbound(super::authn::http_filters(
                    ctx,
                    &proxy.namespace,
                    &proxy.labels,
                    &applied,
                )),
            )]
        } else {
            let mut filters = super::authz::network_filters(&applied);
            filters.push(tcp_proxy(&format!("inbound_{bind}_{port}"), &cluster));
            filters
        };
        let mut mode = ctx.mtls_for(&proxy.namespace, &proxy.labels).at(port);
        if !proxy.workload_certs && mode == Mode::Permissive {
            // Nothing to terminate mTLS with: serve the plaintext half.
            mode = Mode::Disable;
        } else if !proxy.workload_certs && mode == Mode::Strict {
            tracing::error!(proxy = %proxy.id, port, "STRICT mTLS, and the proxy has no workload certificate: the port is not served until it has one");
        }
        listeners.push(inbound(
            mode,
            filters,
            at(format!("{bind}_{port}"), &bind, port),
        ));
    }
    // Istio's directions: what reports as the destination in metrics
    // is inbound, the rest is the application's outbound traffic.
    for l in &mut listeners {
        if l.traffic_direction == pb::core::TrafficDirection::Unspecified as i32 {
            l.traffic_direction = pb::core::TrafficDirection::Outbound as i32;
        }
    }
    (listeners, routes.into_values().collect())
}

/// An inbound listener's filter chains for the port's mutual-TLS mode
/// (PeerAuthentication): DISABLE serves plaintext; STRICT only TLS
/// connections, terminated with the workload's certificate and a client
/// certificate from the mesh required; PERMISSIVE both on the one port,
/// told apart by the TLS inspector — a mesh client's hello (its ALPN
/// says `istio`) gets mutual TLS, anything else (plaintext, or an
/// application's own TLS) goes to the plaintext chain untouched.
fn inbound(
    mode: Mode,
    filters: Vec<listener::Filter>,
    mut l: listener::Listener,
) -> listener::Listener {
    let mtls = |alpn: &[&str]| listener::FilterChain {
        filter_chain_match: Some(listener::FilterChainMatch {
            transport_protocol: "tls".into(),
            application_protocols: alpn.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        transport_socket: Some(tls::downstream_socket(&tls::mesh_server())),
        filters: filters.clone(),
        ..Default::default()
    };
    l.filter_chains = match mode {
        Mode::Disable => vec![chain(None, filters.clone())],
        Mode::Strict => vec![mtls(&[])],
        Mode::Permissive => vec![mtls(&tls::MESH_ALPN), chain(None, filters.clone())],
    };
    if mode != Mode::Disable {
        l.listener_filters = vec![l4::tls_inspector()];
    }
    l.traffic_direction = pb::core::TrafficDirection::Inbound as i32;
    l
}

/// The distinct ports an egress listener serves, with the protocol of
/// the first service on each.
fn ports(egress: &Egress) -> Vec<(u32, Protocol)> {
    if let Some(p) = &egress.port {
        return vec![(p.number, p.protocol)];
    }
    let mut out: BTreeMap<u32, Protocol> = BTreeMap::new();
    for s in &egress.services {
        for p in &s.ports {
            out.entry(p.number).or_insert(p.protocol);
        }
    }
    out.into_iter().collect()
}

fn bound_egress<'a>(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope,
    egress: &Egress<'a>,
    bind: &str,
    listeners: &mut Vec<listener::Listener>,
    routes: &mut BTreeMap<String, Table<'a>>,
) {
    for (port, protocol) in ports(egress) {
        let name = format!("{bind}_{port}");
        let stat_prefix = format!("outbound_{name}");
        let mut listener = at(name, bind, port);
        if protocol.is_http() {
            let table = if routes.contains_key(&port.to_string()) {
                format!("{bind}:{port}")
            } else {
                port.to_string()
            };
            routes.insert(
                table.clone(),
                Table {
                    name: table.clone(),
                    port,
                    services: egress.services.clone(),
                },
            );
            listener.filter_chains = vec![chain(
                None,
                vec![hcm(ctx, proxy, &stat_prefix, rds(&table))],
            )];
        } else {
            // A bound listener cannot tell services apart by destination
            // address: TLS hellos go by SNI, the rest to the first
            // service on the port.
            let mut chains = l4::sidecar_sni_chains(
                ctx,
                proxy,
                &egress.services,
                port,
                &stat_prefix,
                true,
                None,
            );
            if !chains.is_empty() {
                listener.listener_filters = vec![l4::tls_inspector()];
            }
            let default = first_on(&egress.services, port).map_or_else(
                || tcp_proxy(&stat_prefix, fallback(scope.outbound_mode)),
                |s| l4::sidecar_tcp(ctx, proxy, s, port, &stat_prefix, None),
            );
            chains.push(chain(None, vec![default]));
            listener.filter_chains = chains;
        }
        listeners.push(listener);
    }
}

fn captured_egress<'a>(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope,
    egress: &Egress<'a>,
    listeners: &mut Vec<listener::Listener>,
    routes: &mut BTreeMap<String, Table<'a>>,
) {
    let fallback = fallback(scope.outbound_mode);
    listeners.push(listener::Listener {
        use_original_dst: pb::bool_value(true),
        filter_chains: vec![chain(None, vec![tcp_proxy(fallback, fallback)])],
        ..at("virtualOutbound".into(), "0.0.0.0", 15001)
    });
    for (port, protocol) in ports(egress) {
        if protocol.is_http() {
            let table = port.to_string();
            routes.insert(
                table.clone(),
                Table {
                    name: table.clone(),
                    port,
                    services: egress.services.clone(),
                },
            );
            let manager = hcm(ctx, proxy, &format!("outbound_0.0.0.0_{port}"), rds(&table));
            listeners.push(listener::Listener {
                bind_to_port: pb::bool_value(false),
                filter_chains: vec![chain(None, vec![manager])],
                ..at(format!("0.0.0.0_{port}"), "0.0.0.0", port)
            });
            continue;
        }
        let on_port: Vec<&Service> = egress
            .services
            .iter()
            .copied()
            .filter(|s| s.port(port).is_some())
            .collect();
        for s in &on_port {
            let Some(vip) = &s.address else { continue };
            let stat_prefix = format!("outbound|{port}||{}", s.hostname);
            let to = Some(vip.as_str());
            let mut chains =
                l4::sidecar_sni_chains(ctx, proxy, &[s], port, &stat_prefix, false, to);
            let default = l4::sidecar_tcp(ctx, proxy, s, port, &stat_prefix, to);
            chains.push(chain(None, vec![default]));
            listeners.push(l4_listener(&format!("{vip}_{port}"), vip, port, chains));
        }
        // Services without an address (external hosts, mostly) share
        // `0.0.0.0_PORT`, told apart by SNI; the rest goes where unknown
        // destinations go.
        let unaddressed: Vec<&Service> = on_port
            .into_iter()
            .filter(|s| s.address.is_none())
            .collect();
        let stat_prefix = format!("outbound_0.0.0.0_{port}");
        let mut chains =
            l4::sidecar_sni_chains(ctx, proxy, &unaddressed, port, &stat_prefix, true, None);
        if !chains.is_empty() {
            chains.push(chain(None, vec![tcp_proxy(&stat_prefix, fallback)]));
            listeners.push(l4_listener(
                &format!("0.0.0.0_{port}"),
                "0.0.0.0",
                port,
                chains,
            ));
        }
    }
}

/// A listener named `name` at `address:port`, with nothing else yet.
pub(crate) fn at(name: String, address: &str, port: u32) -> listener::Listener {
    listener::Listener {
        name,
        address: pb::socket_address(address, port),
        ..Default::default()
    }
}

/// An unbound (captured) TCP listener; with `tls_inspector` when some
/// chain matches by SNI.
fn l4_listener(
    name: &str,
    address: &str,
    port: u32,
    chains: Vec<listener::FilterChain>,
) -> listener::Listener {
    let sni = chains.iter().any(|c| c.filter_chain_match.is_some());
    listener::Listener {
        bind_to_port: pb::bool_value(false),
        filter_chains: chains,
        listener_filters: if sni {
            vec![l4::tls_inspector()]
        } else {
            Vec::new()
        },
        ..at(name.to_string(), address, port)
    }
}

fn first_on<'a>(services: &[&'a Service], port: u32) -> Option<&'a Service> {
    services.iter().copied().find(|s| s.port(port).is_some())
}

fn fallback(mode: OutboundMode) -> &'static str {
    match mode {
        OutboundMode::ALLOW_ANY => "PassthroughCluster",
        OutboundMode::REGISTRY_ONLY => "BlackHoleCluster",
    }
}

/// Route table `table`, from the ADS stream.
pub(crate) fn rds(table: &str) -> RouteSpecifier {
    RouteSpecifier::Rds(hcm::Rds {
        config_source: pb::ads(),
        route_config_name: table.to_string(),
    })
}

/// A sidecar's outbound HTTP connection manager.
fn hcm(
    ctx: &Context,
    proxy: &Proxy,
    stat_prefix: &str,
    routes: RouteSpecifier,
) -> listener::Filter {
    http_manager(ctx, proxy, stat_prefix, routes, Side::Outbound)
}

/// Which of Istio's HTTP connection managers, with the authorization
/// filters (AuthorizationPolicy's RBAC) of the workload it guards.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Side {
    /// A sidecar's, for its application's requests.
    Outbound,
    /// A sidecar's, for requests to its workload.
    Inbound(Vec<hcm::HttpFilter>),
    /// A gateway's.
    Gateway(Vec<hcm::HttpFilter>),
}

/// The HTTP connection manager Istio gives sidecars and gateways, with
/// the filters weft implements: fault, CORS, router. At the edge
/// (`Gateway`) the client's address is the remote address, as Istio's
/// gateways set it.
///
/// `x-forwarded-client-cert` as Istio sets it: a sidecar's inbound side
/// appends the mesh client's element (subject, URI and DNS SANs) to the
/// header and forwards it; a gateway replaces it (SANITIZE_SET, or the
/// mesh's `gatewayTopology.forwardClientCertDetails`) with the client
/// certificate's subject, the certificate and its SANs; the outbound
/// side keeps Envoy's default, SANITIZE.
pub(crate) fn http_manager(
    ctx: &Context,
    proxy: &Proxy,
    stat_prefix: &str,
    routes: RouteSpecifier,
    side: Side,
) -> listener::Filter {
    use hcm::http_connection_manager::{ForwardClientCertDetails, SetCurrentClientCertDetails};
    let gateway = matches!(side, Side::Gateway(_));
    let (forward, details) = match &side {
        Side::Outbound => (ForwardClientCertDetails::Sanitize, None),
        Side::Inbound(_) => (
            ForwardClientCertDetails::AppendForward,
            Some(SetCurrentClientCertDetails {
                subject: pb::bool_value(true),
                uri: true,
                dns: true,
                ..Default::default()
            }),
        ),
        Side::Gateway(_) => (
            // The mesh configuration's name was checked when it was read.
            ForwardClientCertDetails::from_str_name(&ctx.mesh.gateway_forward_client_cert)
                .unwrap_or(ForwardClientCertDetails::SanitizeSet),
            Some(SetCurrentClientCertDetails {
                subject: pb::bool_value(true),
                cert: true,
                uri: true,
                dns: true,
                ..Default::default()
            }),
        ),
    };
    let http_filter = |name: &str, config: pb::Any| hcm::HttpFilter {
        name: name.to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    };
    use super::telemetry::{self, Class};
    let (class, authz) = match side {
        Side::Inbound(f) => (Class::SidecarInbound, f),
        Side::Gateway(f) => (Class::Gateway, f),
        Side::Outbound => (Class::SidecarOutbound, Vec::new()),
    };
    let (normalize_path, merge_slashes, escaped_slashes) = path_normalization(ctx);
    let config = hcm::HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        normalize_path: pb::bool_value(normalize_path),
        merge_slashes,
        path_with_escaped_slashes_action: escaped_slashes as i32,
        use_remote_address: pb::bool_value(gateway),
        forward_client_cert_details: forward as i32,
        set_current_client_cert_details: details,
        upgrade_configs: vec![hcm::http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        // Istio's order: the metadata exchange first (so policies could
        // see the peer), authorization (a denied request meets no fault
        // and no CORS handling), fault, CORS, the standard metrics, the
        // router.
        http_filters: proxy
            .istio_filters
            .then(|| telemetry::exchange(class))
            .into_iter()
            .chain(authz)
            .chain([
                http_filter(
                    "envoy.filters.http.fault",
                    pb::any(&pb::fault::HttpFault::default()),
                ),
                http_filter("envoy.filters.http.cors", pb::any(&pb::cors::Cors {})),
            ])
            .chain(proxy.istio_filters.then(|| telemetry::stats(class)))
            .chain([http_filter(
                "envoy.filters.http.router",
                pb::any(&pb::router::Router::default()),
            )])
            .collect(),
        route_specifier: Some(routes),
        access_log: if ctx.mesh.access_log_file.is_empty() {
            Vec::new()
        } else {
            vec![access_log(&ctx.mesh.access_log_file)]
        },
        ..Default::default()
    };
    l4::filter("envoy.filters.network.http_connection_manager", &config)
}

/// The connection manager's path settings for the mesh's
/// `pathNormalization`, as istiod sets them on every connection manager
/// (`normalize_path` explicitly false under NONE; escaped slashes kept
/// unless DECODE_AND_MERGE_SLASHES).
fn path_normalization(
    ctx: &Context,
) -> (
    bool,
    bool,
    hcm::http_connection_manager::PathWithEscapedSlashesAction,
) {
    use crate::context::PathNormalization as Level;
    use hcm::http_connection_manager::PathWithEscapedSlashesAction as Action;
    match ctx.mesh.path_normalization {
        Level::None => (false, false, Action::KeepUnchanged),
        Level::Base => (true, false, Action::KeepUnchanged),
        Level::MergeSlashes => (true, true, Action::KeepUnchanged),
        Level::DecodeAndMergeSlashes => (true, true, Action::UnescapeAndForward),
    }
}

fn access_log(path: &str) -> pb::accesslog::AccessLog {
    let (name, config) = if path == "/dev/stdout" {
        (
            "envoy.access_loggers.stdout",
            pb::any(&pb::stream_log::StdoutAccessLog::default()),
        )
    } else {
        (
            "envoy.access_loggers.file",
            pb::any(&pb::file_log::FileAccessLog {
                path: path.to_string(),
                ..Default::default()
            }),
        )
    };
    pb::accesslog::AccessLog {
        name: name.to_string(),
        config_type: Some(pb::accesslog::access_log::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}
