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

use super::l4::{self, tcp_proxy};
use super::{cluster_name, Egress, Proxy, Scope, Table};
use crate::context::Context;
use crate::model::{Protocol, Service};

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

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
            Some(bind) => {
                bound_egress(ctx, proxy, scope, egress, bind, &mut listeners, &mut routes)
            }
            None => captured_egress(ctx, proxy, scope, egress, &mut listeners, &mut routes),
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
    proxy: &Proxy,
    scope: &Scope,
    egress: &Egress<'a>,
    bind: &str,
    listeners: &mut Vec<Value>,
    routes: &mut BTreeMap<String, Table<'a>>,
) {
    for (port, protocol) in ports(egress) {
        let name = format!("{bind}_{port}");
        let stat_prefix = format!("outbound_{name}");
        let mut listener = json!({
            "name": name,
            "address": {"socket_address": {"address": bind, "port_value": port}},
        });
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
            listener["filter_chains"] = json!([{"filters": [hcm(ctx, &stat_prefix, rds(&table))]}]);
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
                listener["listener_filters"] = json!([l4::tls_inspector()]);
            }
            let default = first_on(&egress.services, port).map_or_else(
                || tcp_proxy(&stat_prefix, fallback(scope.outbound_mode)),
                |s| l4::sidecar_tcp(ctx, proxy, s, port, &stat_prefix, None),
            );
            chains.push(json!({"filters": [default]}));
            listener["filter_chains"] = Value::Array(chains);
        }
        listeners.push(listener);
    }
}

fn captured_egress<'a>(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope,
    egress: &Egress<'a>,
    listeners: &mut Vec<Value>,
    routes: &mut BTreeMap<String, Table<'a>>,
) {
    let fallback = fallback(scope.outbound_mode);
    listeners.push(json!({
        "name": "virtualOutbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
        "use_original_dst": true,
        "filter_chains": [{"filters": [tcp_proxy(fallback, fallback)]}],
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
            chains
                .push(json!({"filters": [l4::sidecar_tcp(ctx, proxy, s, port, &stat_prefix, to)]}));
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
            chains.push(json!({"filters": [tcp_proxy(&stat_prefix, fallback)]}));
            listeners.push(l4_listener(
                &format!("0.0.0.0_{port}"),
                "0.0.0.0",
                port,
                chains,
            ));
        }
    }
}

/// An unbound (captured) TCP listener; with `tls_inspector` when some
/// chain matches by SNI.
fn l4_listener(name: &str, address: &str, port: u32, chains: Vec<Value>) -> Value {
    let mut l = json!({
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "bind_to_port": false,
        "filter_chains": chains,
    });
    if l["filter_chains"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c.get("filter_chain_match").is_some()))
    {
        l["listener_filters"] = json!([l4::tls_inspector()]);
    }
    l
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
