//! What a gateway proxy (Istio's `router`) gets: a listener per port of
//! the Gateways whose selector matches it, route tables `http.PORT` made
//! of the VirtualServices bound to those Gateways, and clusters for
//! every service it can see.
//!
//! Hosts follow Istio's rules: a server's `hosts` entry `ns/host` admits
//! VirtualServices of namespace `ns` (`*` any, `.` the Gateway's own)
//! whose hosts overlap `host`; the virtual host is named by the narrower
//! of the two; VirtualServices for the same host are merged in order.

use std::collections::{BTreeMap, BTreeSet};

use weft_api::gateway::{Gateway, Server};
use weft_config::host;
use weft_xds::Kind;

use super::l4::{self, chain};
use super::listener::{self as listeners, http_manager, rds, Side};
use super::pb::{listener as lpb, route as rt};
use super::{route, secret, tls, Output, Proxy, Scope};
use crate::context::{bound_to, resolve_host, Context, Named};
use crate::model::{exported_to, Protocol};

fn selects(
    selector: &weft_api::Map<String, String>,
    labels: &weft_api::Map<String, String>,
) -> bool {
    weft_config::mesh::Selector::gateway(selector).matches(labels)
}

pub fn gateway(ctx: &Context, proxy: &Proxy) -> Output {
    let gateways: Vec<&Named<Gateway>> = ctx
        .gateways
        .iter()
        .filter(|g| selects(&g.spec.selector, &proxy.labels))
        .collect();
    let mut by_port: BTreeMap<u32, Vec<(&Named<Gateway>, &Server)>> = BTreeMap::new();
    for g in &gateways {
        for s in &g.spec.servers {
            by_port.entry(s.port.number).or_default().push((g, s));
        }
    }
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let mut credentials = BTreeSet::new();
    // The gateway workload's RequestAuthentications and
    // AuthorizationPolicies, on each HTTP server.
    let applied = super::authz::applied(ctx, &proxy.namespace, &proxy.labels);
    let authz = super::authn::http_filters(ctx, &proxy.namespace, &proxy.labels, &applied);
    for (port, servers) in &by_port {
        let (_, first) = servers[0];
        let protocol = Protocol::parse(&first.port.protocol);
        let bind = first.bind.clone().unwrap_or_else(|| "0.0.0.0".into());
        let name = format!("{bind}_{port}");
        let stat_prefix = format!("outbound_{name}");
        let mut listener = listeners::at(name, &bind, *port);
        // An HTTP server's `tls` only carries `httpsRedirect`.
        let is_tls = |s: &Server| {
            matches!(
                Protocol::parse(&s.port.protocol),
                Protocol::Https | Protocol::Tls
            )
        };
        if servers.iter().any(|(_, s)| is_tls(s)) {
            // TLS servers on one port: a filter chain each, chosen by
            // the name the client asks for (SNI); passthrough servers'
            // `tls` routes beside them.
            let mut chains = Vec::new();
            let mut passthrough = Vec::new();
            for (gw, s) in servers {
                match s.tls.as_ref() {
                    Some(t) if tls::terminates(t) => {
                        if let Some(c) =
                            terminated_chain(ctx, proxy, gw, s, t, &stat_prefix, &mut routes)
                        {
                            if chains.iter().any(|x: &lpb::FilterChain| {
                                x.filter_chain_match == c.filter_chain_match
                            }) {
                                tracing::warn!(proxy = %proxy.id, port, gateway = %format!("{}/{}", gw.namespace, gw.name), "two TLS servers on one port ask for the same names; the first is served");
                                continue;
                            }
                            credentials.extend(tls::server_credentials(t));
                            chains.push(c);
                        }
                    }
                    Some(_) => passthrough.push((*gw, *s)),
                    None => {
                        tracing::warn!(proxy = %proxy.id, port, "an {} server needs `tls`; not served", s.port.protocol)
                    }
                }
            }
            if !passthrough.is_empty() {
                chains.extend(passthrough_chains(
                    ctx,
                    proxy,
                    *port,
                    &passthrough,
                    &stat_prefix,
                ));
            }
            if chains.is_empty() {
                tracing::warn!(proxy = %proxy.id, port, "no TLS server or tls route to serve on this gateway port");
                continue;
            }
            listener.listener_filters = vec![l4::tls_inspector()];
            listener.filter_chains = chains;
        } else if protocol.is_http() {
            let table = format!("http.{port}");
            let redirect = servers
                .iter()
                .all(|(_, s)| s.tls.as_ref().and_then(|t| t.https_redirect) == Some(true));
            let mut t = http_table(ctx, proxy, &table, *port, servers);
            if redirect {
                // `httpsRedirect`: Envoy answers plaintext requests with a
                // 301 to the same URL over https.
                for vh in &mut t.virtual_hosts {
                    vh.require_tls = rt::virtual_host::TlsRequirementType::All as i32;
                }
            }
            routes.push(t);
            let hcm = http_manager(
                ctx,
                proxy,
                &stat_prefix,
                rds(&table),
                Side::Gateway(authz.clone()),
            );
            listener.filter_chains = vec![chain(None, vec![hcm])];
        } else {
            let Some(filter) = tcp_filter(ctx, proxy, *port, servers, &stat_prefix) else {
                continue;
            };
            listener.filter_chains = vec![chain(None, vec![filter])];
        }
        // A gateway's traffic is outbound, as istiod marks it (it
        // reports as the source in metrics).
        listener.traffic_direction = super::pb::core::TrafficDirection::Outbound as i32;
        listeners.push(listener);
    }
    let services = ctx
        .registry
        .services()
        .filter(|s| s.visible_from(&proxy.namespace))
        .collect();
    let scope = Scope {
        egress: Vec::new(),
        ingress: Vec::new(),
        outbound_mode: ctx.mesh.outbound_mode,
        services,
    };
    let mut out = super::output(ctx, super::clusters(ctx, proxy, &scope), listeners, routes);
    let (secrets, problems) = secret::resolve_all(ctx, &proxy.namespace, &credentials);
    for p in problems {
        tracing::error!(proxy = %proxy.id, "{p}: the servers naming it are not served until it is");
    }
    // And those its clusters originate TLS with (an egress gateway's
    // DestinationRule `credentialName`).
    let originating = secret::for_clusters(ctx, &proxy.id, &proxy.namespace, &scope.services);
    out.insert(
        Kind::Secret,
        secrets
            .into_iter()
            .chain(originating)
            .map(|s| (s.name.clone(), super::Resource::Secret(Box::new(s))))
            .collect(),
    );
    out
}

/// The filter chain of a server whose TLS the gateway terminates: its
/// hosts as the SNI it answers to (`*` answers any), its certificate,
/// and HTTP routes of its own (`https.PORT.NAME.GATEWAY.NS`, as Istio
/// names them) or, for a TLS server, its VirtualServices' `tcp` routes.
fn terminated_chain(
    ctx: &Context,
    proxy: &Proxy,
    gw: &Named<Gateway>,
    server: &Server,
    t: &weft_api::gateway::ServerTlsSettings,
    stat_prefix: &str,
    routes: &mut Vec<rt::RouteConfiguration>,
) -> Option<lpb::FilterChain> {
    let port = server.port.number;
    let protocol = Protocol::parse(&server.port.protocol);
    let http = protocol == Protocol::Https || protocol.is_http();
    let alpn: &[&str] = if http { &["h2", "http/1.1"] } else { &[] };
    let context = tls::server(t, alpn)?;
    let filter = if http {
        let table = format!(
            "https.{port}.{}.{}.{}",
            server.port.name, gw.name, gw.namespace
        );
        routes.push(http_table(ctx, proxy, &table, port, &[(gw, server)]));
        http_manager(
            ctx,
            proxy,
            stat_prefix,
            rds(&table),
            Side::Gateway(super::authn::http_filters(
                ctx,
                &proxy.namespace,
                &proxy.labels,
                &super::authz::applied(ctx, &proxy.namespace, &proxy.labels),
            )),
        )
    } else {
        tcp_filter(ctx, proxy, port, &[(gw, server)], stat_prefix)?
    };
    let mut names: Vec<String> = server
        .hosts
        .iter()
        .map(|h| h.split_once('/').map_or(h.as_str(), |(_, h)| h).to_string())
        .collect();
    if names.iter().any(|n| n == "*") {
        names.clear();
    }
    names.sort();
    names.dedup();
    Some(lpb::FilterChain {
        filter_chain_match: Some(lpb::FilterChainMatch {
            server_names: names,
            ..Default::default()
        }),
        transport_socket: Some(tls::downstream_socket(&context)),
        filters: vec![filter],
        ..Default::default()
    })
}

/// VirtualServices bound to `gw` that a server's `ns/host` entry admits,
/// with the domain each of their hosts is served under.
fn bound<'a>(
    ctx: &'a Context,
    gw: &Named<Gateway>,
    server: &Server,
) -> Vec<(&'a Named<weft_api::virtual_service::VirtualService>, String)> {
    let gw_name = format!("{}/{}", gw.namespace, gw.name);
    let mut out = Vec::new();
    for vs in &ctx.virtual_services {
        if !bound_to(&vs.spec.gateways, &vs.namespace, &gw_name)
            || !exported_to(&vs.spec.export_to, &vs.namespace, &gw.namespace)
        {
            continue;
        }
        for entry in &server.hosts {
            let (ns, pattern) = entry.split_once('/').unwrap_or(("*", entry));
            let ns_ok = match ns {
                "*" => true,
                "." => vs.namespace == gw.namespace,
                ns => vs.namespace == ns,
            };
            if !ns_ok {
                continue;
            }
            for h in &vs.spec.hosts {
                let h = resolve_host(h, &vs.namespace);
                if !host::overlap(pattern, &h) {
                    continue;
                }
                let domain = if host::covers(pattern, &h) {
                    h
                } else {
                    pattern.to_string()
                };
                if !out
                    .iter()
                    .any(|(v, d): &(&Named<_>, String)| std::ptr::eq(*v, vs) && *d == domain)
                {
                    out.push((vs, domain));
                }
            }
        }
    }
    out
}

fn http_table(
    ctx: &Context,
    proxy: &Proxy,
    name: &str,
    port: u32,
    servers: &[(&Named<Gateway>, &Server)],
) -> rt::RouteConfiguration {
    // Domain → routes, merged in VirtualService order.
    let mut hosts: Vec<(String, Vec<rt::Route>)> = Vec::new();
    for (gw, server) in servers {
        let gw_name = format!("{}/{}", gw.namespace, gw.name);
        for (vs, domain) in bound(ctx, gw, server) {
            let routes = route::vs_routes(ctx, proxy, vs, port, &gw_name);
            match hosts.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, r)) => r.extend(routes),
                None => hosts.push((domain, routes)),
            }
        }
    }
    let virtual_hosts = hosts
        .into_iter()
        .map(|(domain, routes)| {
            let domains = if domain == "*" {
                vec![domain.clone()]
            } else {
                vec![domain.clone(), format!("{domain}:{port}")]
            };
            route::host(format!("{domain}:{port}"), domains, routes)
        })
        .collect();
    rt::RouteConfiguration {
        virtual_hosts,
        ..route::table_without_hosts(name)
    }
}

/// The first VirtualService `tcp` route bound to a server on `port`
/// that applies, as a tcp_proxy.
fn tcp_filter(
    ctx: &Context,
    proxy: &Proxy,
    port: u32,
    servers: &[(&Named<Gateway>, &Server)],
    stat_prefix: &str,
) -> Option<lpb::Filter> {
    for (gw, server) in servers {
        let gw_name = format!("{}/{}", gw.namespace, gw.name);
        for (vs, _) in bound(ctx, gw, server) {
            let at = l4::At {
                port,
                gateway: &gw_name,
                stat_prefix,
                // A gateway's connections come to its own address, not to
                // a destination's: subnet matches do not apply.
                destination: None,
            };
            if let Some(f) = l4::tcp_route(ctx, proxy, vs, &at) {
                return Some(f);
            }
        }
    }
    tracing::warn!(proxy = %proxy.id, port, "no VirtualService tcp route for this gateway port");
    None
}

/// A PASSTHROUGH server's filter chains: the `tls` routes of the
/// VirtualServices bound to it, for the names its `hosts` admit.
fn passthrough_chains(
    ctx: &Context,
    proxy: &Proxy,
    port: u32,
    servers: &[(&Named<Gateway>, &Server)],
    stat_prefix: &str,
) -> Vec<lpb::FilterChain> {
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for (gw, server) in servers {
        let gw_name = format!("{}/{}", gw.namespace, gw.name);
        let mut seen: Vec<*const Named<weft_api::virtual_service::VirtualService>> = Vec::new();
        for (vs, _) in bound(ctx, gw, server) {
            if seen.contains(&std::ptr::from_ref(vs)) {
                continue;
            }
            seen.push(std::ptr::from_ref(vs));
            let admits = |name: &str| {
                server.hosts.iter().any(|entry| {
                    let pattern = entry.split_once('/').map_or(entry.as_str(), |(_, h)| h);
                    host::overlap(pattern, name)
                })
            };
            let at = l4::At {
                port,
                gateway: &gw_name,
                stat_prefix,
                // A gateway's connections come to its own address, not to
                // a destination's: subnet matches do not apply.
                destination: None,
            };
            out.extend(l4::tls_chains(
                ctx,
                proxy,
                vs,
                &at,
                Some(&admits),
                &mut taken,
            ));
        }
    }
    out
}
