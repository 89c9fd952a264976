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

use serde_json::{json, Value};
use weft_api::sidecar::OutboundMode;

use super::{cluster_name, Egress, Proxy, Scope, Table};
use crate::context::Context;
use crate::model::{Protocol, Service};

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// A sidecar's listeners, and the route tables they name (made by the
/// caller: see `route::outbound_table`).
pub(crate) fn sidecar<'a>(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope<'a>,
) -> (Vec<Value>, Vec<Table<'a>>) {
    let mut listeners = Vec::new();
    let mut routes: BTreeMap<String, Table<'a>> = BTreeMap::new();
    for egress in &scope.egress {
        match &egress.bind {
            Some(bind) => bound_egress(ctx, scope, egress, bind, &mut listeners, &mut routes),
            None => captured_egress(ctx, scope, egress, &mut listeners, &mut routes),
        }
    }
    for ingress in &scope.ingress {
        let port = ingress.port.number;
        let bind = ingress.bind.clone().unwrap_or_else(|| proxy.ip.clone());
        let cluster = cluster_name("inbound", port, "", "");
        let protocol = Protocol::parse(&ingress.port.protocol);
        let filter = if protocol.is_http() {
            hcm(
                ctx,
                &format!("inbound_{bind}_{port}"),
                json!({"route_config": {
                    "name": cluster,
                    "virtual_hosts": [{
                        "name": format!("inbound|http|{port}"),
                        "domains": ["*"],
                        "routes": [{"name": "default", "match": {"prefix": "/"},
                                    "route": {"cluster": cluster, "timeout": "0s"}}],
                    }],
                    "validate_clusters": false,
                }}),
            )
        } else {
            tcp_proxy(&format!("inbound_{bind}_{port}"), &cluster)
        };
        listeners.push(json!({
            "name": format!("{bind}_{port}"),
            "address": {"socket_address": {"address": bind, "port_value": port}},
            "filter_chains": [{"filters": [filter]}],
        }));
    }
    (listeners, routes.into_values().collect())
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
    scope: &Scope,
    egress: &Egress<'a>,
    bind: &str,
    listeners: &mut Vec<Value>,
    routes: &mut BTreeMap<String, Table<'a>>,
) {
    for (port, protocol) in ports(egress) {
        let name = format!("{bind}_{port}");
        let filter = if protocol.is_http() {
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
            hcm(ctx, &format!("outbound_{name}"), rds(&table))
        } else {
            // A bound TCP listener cannot tell services apart by
            // destination address: it forwards to the first service on
            // the port.
            let target = first_on(&egress.services, port).map_or_else(
                || fallback(scope.outbound_mode).to_string(),
                |s| cluster_name("outbound", port, "", &s.hostname),
            );
            tcp_proxy(&format!("outbound_{name}"), &target)
        };
        listeners.push(json!({
            "name": name,
            "address": {"socket_address": {"address": bind, "port_value": port}},
            "filter_chains": [{"filters": [filter]}],
        }));
    }
}

fn captured_egress<'a>(
    ctx: &Context,
    scope: &Scope,
    egress: &Egress<'a>,
    listeners: &mut Vec<Value>,
    routes: &mut BTreeMap<String, Table<'a>>,
) {
    listeners.push(json!({
        "name": "virtualOutbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
        "use_original_dst": true,
        "filter_chains": [{"filters": [tcp_proxy(fallback(scope.outbound_mode), fallback(scope.outbound_mode))]}],
    }));
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
            listeners.push(json!({
                "name": format!("0.0.0.0_{port}"),
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
                "bind_to_port": false,
                "filter_chains": [{"filters": [hcm(ctx, &format!("outbound_0.0.0.0_{port}"), rds(&table))]}],
            }));
        } else {
            for s in egress.services.iter().filter(|s| s.port(port).is_some()) {
                let Some(vip) = &s.address else { continue };
                let cluster = cluster_name("outbound", port, "", &s.hostname);
                listeners.push(json!({
                    "name": format!("{vip}_{port}"),
                    "address": {"socket_address": {"address": vip, "port_value": port}},
                    "bind_to_port": false,
                    "filter_chains": [{"filters": [tcp_proxy(&cluster, &cluster)]}],
                }));
            }
        }
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

pub(crate) fn rds(table: &str) -> Value {
    json!({"rds": {
        "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
        "route_config_name": table,
    }})
}

/// The HTTP connection manager Istio gives sidecars, with the filters
/// weft implements: fault, CORS, router.
fn hcm(ctx: &Context, stat_prefix: &str, routes: Value) -> Value {
    http_manager(ctx, stat_prefix, routes, false)
}

/// [`hcm`]; at the edge (`gateway`) the client's address is the remote
/// address, as Istio's gateways set it.
pub(crate) fn http_manager(
    ctx: &Context,
    stat_prefix: &str,
    routes: Value,
    gateway: bool,
) -> Value {
    let mut config = json!({
        "@type": HCM,
        "stat_prefix": stat_prefix,
        "use_remote_address": gateway,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "http_filters": [
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    });
    if let (Some(c), Some(r)) = (config.as_object_mut(), routes.as_object()) {
        c.extend(r.clone());
    }
    if !ctx.mesh.access_log_file.is_empty() {
        config["access_log"] = json!([access_log(&ctx.mesh.access_log_file)]);
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": config})
}

fn access_log(path: &str) -> Value {
    if path == "/dev/stdout" {
        json!({"name": "envoy.access_loggers.stdout", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}})
    } else {
        json!({"name": "envoy.access_loggers.file", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog", "path": path}})
    }
}

pub(crate) fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Value {
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster,
    }})
}
