//! VirtualService and DestinationRule analyzers.

use std::collections::BTreeMap;

use weft_api::common::Destination;
use weft_api::destination_rule::{ClientTlsMode, ClientTlsSettings};
use weft_api::virtual_service::VirtualService;
use weft_api::{Kind, Spec};
use weft_config::Resource;

use weft_config::host;

use super::res_name;
use crate::context::fqdn;
use crate::messages::*;
use crate::{Context, Diagnostic};
use weft_config::mesh::Selector;

fn virtual_services<'a>(
    ctx: &'a Context,
) -> impl Iterator<Item = (&'a Resource, &'a VirtualService)> + 'a {
    ctx.resources.iter().filter_map(|r| match &r.object.spec {
        Spec::VirtualService(vs) => Some((r, &**vs)),
        _ => None,
    })
}

/// Every destination of a VirtualService with its field path.
fn destinations(vs: &VirtualService) -> Vec<(String, &Destination)> {
    let mut out = Vec::new();
    for (i, h) in vs.http.iter().enumerate() {
        for (j, d) in h.route.iter().enumerate() {
            out.push((
                format!("spec.http[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
        if let Some(m) = &h.mirror {
            out.push((format!("spec.http[{i}].mirror"), m));
        }
        for (j, m) in h.mirrors.iter().enumerate() {
            out.push((
                format!("spec.http[{i}].mirrors[{j}].destination"),
                &m.destination,
            ));
        }
    }
    for (i, t) in vs.tcp.iter().enumerate() {
        for (j, d) in t.route.iter().enumerate() {
            out.push((
                format!("spec.tcp[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
    }
    for (i, t) in vs.tls.iter().enumerate() {
        for (j, d) in t.route.iter().enumerate() {
            out.push((
                format!("spec.tls[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
    }
    out
}

pub(super) fn destination_hosts(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for (r, vs) in virtual_services(ctx) {
        let ns = r.object.namespace();
        for (field, d) in destinations(vs) {
            if d.host.is_empty() {
                continue; // schema error already
            }
            let found = ctx.lookup_host(&d.host, ns);
            if found.is_empty() {
                out.push(Diagnostic::new(
                    &REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    Some(&format!("{field}.host")),
                    vec!["host".into(), d.host.clone()],
                ));
                continue;
            }
            let svc = found[0];
            let is_k8s = matches!(svc.resource.object.spec, Spec::Service(_));
            if d.port.is_none() && is_k8s && svc.ports.len() > 1 {
                let ports: Vec<String> = svc.ports.iter().map(|p| p.number.to_string()).collect();
                out.push(Diagnostic::new(
                    &VS_DESTINATION_PORT_SELECTOR_REQUIRED,
                    r,
                    Some(&field),
                    vec![d.host.clone(), format!("[{}]", ports.join(" "))],
                ));
            }
            if let Some(p) = &d.port {
                if !svc.ports.is_empty() && !svc.ports.iter().any(|sp| sp.number == p.number) {
                    out.push(Diagnostic::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        Some(&format!("{field}.port.number")),
                        vec!["host:port".into(), format!("{}:{}", d.host, p.number)],
                    ));
                }
            }
        }
    }
}

/// Subset names DestinationRules define for a host as seen from `ns`.
fn subsets_for<'a>(ctx: &'a Context, host: &str, ns: &str) -> Vec<&'a str> {
    let want = fqdn(host, ns);
    ctx.destination_rules_for(&want)
        .filter_map(|r| match &r.object.spec {
            Spec::DestinationRule(dr) => Some(dr.subsets.iter().map(|s| s.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect()
}

pub(super) fn destination_subsets(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for (r, vs) in virtual_services(ctx) {
        let ns = r.object.namespace();
        for (field, d) in destinations(vs) {
            let Some(subset) = &d.subset else { continue };
            let known = subsets_for(ctx, &d.host, ns);
            if !known.contains(&subset.as_str()) {
                out.push(Diagnostic::new(
                    &REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    Some(&format!("{field}.subset")),
                    vec![
                        "host+subset in destinationrule".into(),
                        format!("{}+{}", d.host, subset),
                    ],
                ));
            }
        }
    }
}

/// Resolves a gateway reference in a VirtualService of namespace `ns`.
fn gateway_ref<'a>(ctx: &'a Context, gw: &str, ns: &str) -> (String, String, Option<&'a Resource>) {
    let (gns, name) = gw.split_once('/').unwrap_or((ns, gw));
    (
        gns.to_string(),
        name.to_string(),
        ctx.get(Kind::Gateway, gns, name),
    )
}

/// Istio names the Gateways it generates for Kubernetes Gateways so.
const INTERNAL_GATEWAY_SUFFIX: &str = "-istio-autogenerated-k8s-gateway";

pub(super) fn gateway_refs(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for (r, vs) in virtual_services(ctx) {
        let ns = r.object.namespace();
        let mut refs: Vec<(String, &str)> = vs
            .gateways
            .iter()
            .enumerate()
            .map(|(i, g)| (format!("spec.gateways[{i}]"), g.as_str()))
            .collect();
        for (i, h) in vs.http.iter().enumerate() {
            for (j, m) in h.matches.iter().enumerate() {
                for (k, g) in m.gateways.iter().enumerate() {
                    refs.push((format!("spec.http[{i}].match[{j}].gateways[{k}]"), g));
                }
            }
        }
        for (field, gw) in refs {
            if gw == "mesh" {
                continue;
            }
            let (gns, name, found) = gateway_ref(ctx, gw, ns);
            if name.ends_with(INTERNAL_GATEWAY_SUFFIX) {
                // Generated from a Kubernetes Gateway; never in the files.
                out.push(Diagnostic::new(
                    &REFERENCED_INTERNAL_GATEWAY,
                    r,
                    Some(&field),
                    vec![res_name(r), format!("{gns}/{name}")],
                ));
                continue;
            }
            let Some(g) = found else {
                out.push(Diagnostic::new(
                    &REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    Some(&field),
                    vec!["gateway".into(), format!("{gns}/{name}")],
                ));
                continue;
            };
            if !field.starts_with("spec.gateways") {
                continue;
            }
            let Spec::Gateway(gspec) = &g.object.spec else {
                continue;
            };
            let missing: Vec<&String> = vs
                .hosts
                .iter()
                .filter(|h| {
                    !gspec.servers.iter().any(|s| {
                        s.hosts.iter().any(|sh| {
                            let (sns, shost) = sh.split_once('/').unwrap_or(("*", sh));
                            let ns_ok = sns == "*"
                                || (sns == "." && g.object.namespace() == ns)
                                || sns == ns;
                            ns_ok && host::overlap(shost, h)
                        })
                    })
                })
                .collect();
            if !missing.is_empty() {
                let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                out.push(Diagnostic::new(
                    &VS_HOST_NOT_IN_GATEWAY,
                    r,
                    Some(&field),
                    vec![
                        format!("[{}]", list.join(" ")),
                        res_name(r),
                        format!("{gns}/{name}"),
                    ],
                ));
            }
        }
    }
}

pub(super) fn conflicting_mesh_hosts(ctx: &Context, out: &mut Vec<Diagnostic>) {
    // host FQDN → VirtualServices bound to the mesh gateway defining it
    let mut by_host: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for (r, vs) in virtual_services(ctx) {
        let mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
        if !mesh || vs.hosts.is_empty() {
            continue;
        }
        for h in &vs.hosts {
            let list = by_host.entry(fqdn(h, r.object.namespace())).or_default();
            if !list.iter().any(|x| std::ptr::eq(*x, r)) {
                list.push(r);
            }
        }
    }
    for (host, list) in by_host {
        if list.len() < 2 {
            continue;
        }
        let names: Vec<String> = list.iter().map(|r| res_name(r)).collect();
        for r in &list {
            out.push(Diagnostic::new(
                &CONFLICTING_MESH_GATEWAY_VS_HOSTS,
                r,
                Some("spec.hosts"),
                vec![names.join(","), host.clone()],
            ));
        }
    }
}

pub(super) fn ineffective_matches(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for (r, vs) in virtual_services(ctx) {
        // The first rule that matches everything makes all later rules dead.
        let mut catch_all: Option<usize> = None;
        let mut seen: Vec<(usize, String)> = Vec::new();
        for (i, h) in vs.http.iter().enumerate() {
            let field = format!("spec.http[{i}]");
            let rule = h.name.clone().unwrap_or_else(|| i.to_string());
            if let Some(c) = catch_all {
                out.push(Diagnostic::new(
                    &VS_UNREACHABLE_RULE,
                    r,
                    Some(&field),
                    vec![
                        rule,
                        format!(
                            "only the last rule can have no matches; rule {c} matches all traffic"
                        ),
                    ],
                ));
                continue;
            }
            if h.matches.is_empty() || h.matches.iter().any(|m| m.is_catch_all()) {
                catch_all = Some(i);
            }
            for (j, m) in h.matches.iter().enumerate() {
                // Two matches are the same when everything but their
                // names (which do not take part in matching) is equal.
                let mut unnamed = m.clone();
                unnamed.name = None;
                unnamed.stat_prefix = None;
                let key = serde_json::to_string(&unnamed).unwrap_or_default();
                if let Some((earlier, _)) = seen.iter().find(|(_, k)| *k == key) {
                    let earlier_rule = vs.http[*earlier]
                        .name
                        .clone()
                        .unwrap_or_else(|| earlier.to_string());
                    out.push(Diagnostic::new(
                        &VS_INEFFECTIVE_MATCH,
                        r,
                        Some(&format!("{field}.match[{j}]")),
                        vec![
                            rule.clone(),
                            m.name.clone().unwrap_or_else(|| j.to_string()),
                            earlier_rule,
                        ],
                    ));
                } else {
                    seen.push((i, key));
                }
            }
        }
    }
}

pub(super) fn destination_rules(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for r in ctx.of_kind(Kind::DestinationRule) {
        let Spec::DestinationRule(dr) = &r.object.spec else {
            continue;
        };
        let ns = r.object.namespace();
        let services = ctx.lookup_host(&dr.host, ns);
        if services.is_empty() && !dr.host.contains('*') {
            out.push(Diagnostic::new(
                &UNKNOWN_DR_HOST,
                r,
                Some("spec.host"),
                vec![dr.host.clone()],
            ));
        }
        // Subsets select pods among the service's pods.
        if ctx.has_workloads() {
            for svc in &services {
                // A service that selects nothing (a Kubernetes Service
                // without selector) has its pods named elsewhere.
                let Some(selector) = svc.selector().filter(|s| !s.selects_nothing()) else {
                    continue;
                };
                for (i, s) in dr.subsets.iter().enumerate() {
                    let subset = Selector::condition(&s.labels);
                    if !ctx
                        .workloads_matching(&svc.namespace, selector)
                        .any(|w| subset.matches(&w.labels))
                    {
                        out.push(Diagnostic::new(
                            &DR_SUBSET_NOT_SELECT_PODS,
                            r,
                            Some(&format!("spec.subsets[{i}]")),
                            vec![s.name.clone()],
                        ));
                    }
                }
            }
        }
        let name = r.object.name().to_string();
        let check =
            |tls: &ClientTlsSettings, field: &str, port: Option<u32>, out: &mut Vec<Diagnostic>| {
                let mode = tls.mode.unwrap_or_default();
                if matches!(mode, ClientTlsMode::SIMPLE | ClientTlsMode::MUTUAL)
                    && tls.ca_certificates.is_none()
                    && tls.credential_name.is_none()
                    && tls.insecure_skip_verify != Some(true)
                {
                    let mut args = vec![
                        name.clone(),
                        ns.to_string(),
                        mode.as_str().into(),
                        dr.host.clone(),
                    ];
                    let message = match port {
                        None => &NO_SERVER_CERT_VERIFICATION_DR,
                        Some(p) => {
                            args.push(p.to_string());
                            &NO_SERVER_CERT_VERIFICATION_PORT
                        }
                    };
                    out.push(Diagnostic::new(message, r, Some(field), args));
                }
            };
        if let Some(tp) = &dr.traffic_policy {
            if let Some(tls) = &tp.tls {
                check(tls, "spec.trafficPolicy.tls", None, out);
            }
            for (i, pl) in tp.port_level_settings.iter().enumerate() {
                if let (Some(tls), Some(port)) = (&pl.tls, &pl.port) {
                    check(
                        tls,
                        &format!("spec.trafficPolicy.portLevelSettings[{i}].tls"),
                        Some(port.number),
                        out,
                    );
                }
            }
        }
    }
}

fn is_mesh_bound(vs: &VirtualService) -> bool {
    vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")
}

/// IST0140: a gateway-only VirtualService sends to a host without a subset
/// while a mesh VirtualService for that host splits by subset; gateways
/// only apply the VirtualServices bound to them, so the split is lost.
pub(super) fn ingress_subsets(ctx: &Context, out: &mut Vec<Diagnostic>) {
    // host FQDN → mesh VirtualServices for it that route by subset
    let mut subset_routed: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for (r, vs) in virtual_services(ctx) {
        if !is_mesh_bound(vs) || !destinations(vs).iter().any(|(_, d)| d.subset.is_some()) {
            continue;
        }
        for h in &vs.hosts {
            subset_routed
                .entry(fqdn(h, r.object.namespace()))
                .or_default()
                .push(r);
        }
    }
    if subset_routed.is_empty() {
        return;
    }
    for (r, vs) in virtual_services(ctx) {
        if is_mesh_bound(vs) {
            continue;
        }
        let ns = r.object.namespace();
        for (field, d) in destinations(vs) {
            if d.subset.is_some() {
                continue;
            }
            for mesh_vs in subset_routed.get(&fqdn(&d.host, ns)).into_iter().flatten() {
                out.push(Diagnostic::new(
                    &INGRESS_ROUTE_RULES_NOT_AFFECTED,
                    r,
                    Some(&field),
                    vec![res_name(mesh_vs), res_name(r)],
                ));
            }
        }
    }
}
