//! Gateway analyzers.

use std::collections::BTreeMap;

use weft_api::{Kind, Spec};
use weft_config::Resource;

use weft_config::host;
use weft_config::mesh::Selector;

use super::res_name;
use crate::messages::*;
use crate::{Context, Diagnostic};

/// Gateway selectors that the built-in ingress and egress gateways answer
/// to (what `weft up` and Istio's default profile install).
fn is_builtin_gateway(selector: &weft_api::Map<String, String>) -> bool {
    selector.len() == 1
        && matches!(
            selector.get("istio").map(String::as_str),
            Some("ingressgateway" | "egressgateway")
        )
}

fn gateways<'a>(
    ctx: &'a Context,
) -> impl Iterator<Item = (&'a Resource, &'a weft_api::gateway::Gateway)> + 'a {
    ctx.of_kind(Kind::Gateway)
        .filter_map(|r| match &r.object.spec {
            Spec::Gateway(g) => Some((r, &**g)),
            _ => None,
        })
}

pub(super) fn conflicting(ctx: &Context, out: &mut Vec<Diagnostic>) {
    let all: Vec<_> = gateways(ctx).collect();
    for (i, (a, ga)) in all.iter().enumerate() {
        for (b, gb) in all.iter().skip(i + 1) {
            if ga.selector != gb.selector {
                continue;
            }
            for (si, sa) in ga.servers.iter().enumerate() {
                for sb in &gb.servers {
                    if sa.port.number != sb.port.number {
                        continue;
                    }
                    let shared: Vec<&String> = sa
                        .hosts
                        .iter()
                        .filter(|h| {
                            let ha = h.split_once('/').map_or(h.as_str(), |x| x.1);
                            sb.hosts
                                .iter()
                                .any(|o| host::overlap(ha, o.split_once('/').map_or(o, |x| x.1)))
                        })
                        .collect();
                    if shared.is_empty() {
                        continue;
                    }
                    let sel: Vec<String> = ga
                        .selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let hosts: Vec<&str> = shared.iter().map(|s| s.as_str()).collect();
                    for (r, other) in [(a, b), (b, a)] {
                        out.push(Diagnostic::new(
                            &CONFLICTING_GATEWAYS,
                            r,
                            Some(&format!("spec.servers[{si}]")),
                            vec![
                                res_name(other),
                                sel.join(","),
                                sa.port.number.to_string(),
                                hosts.join(","),
                            ],
                        ));
                    }
                }
            }
        }
    }
}

pub(super) fn secrets(ctx: &Context, out: &mut Vec<Diagnostic>) {
    let mut by_cert: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for (r, g) in gateways(ctx) {
        for (i, s) in g.servers.iter().enumerate() {
            let Some(tls) = &s.tls else { continue };
            let names = tls
                .credential_name
                .iter()
                .chain(tls.credential_names.iter());
            for name in names {
                // Credentials live with the gateway workload; with the
                // built-in gateways that is istio-system, else the
                // Gateway's own namespace.
                let found = [r.object.namespace(), "istio-system"]
                    .iter()
                    .find_map(|ns| ctx.get(Kind::Secret, ns, name));
                let field = format!("spec.servers[{i}].tls");
                match found {
                    None => out.push(Diagnostic::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        Some(&field),
                        vec!["credentialName".into(), name.clone()],
                    )),
                    Some(secret) if !credential_usable(secret) => out.push(Diagnostic::new(
                        &INVALID_GATEWAY_CREDENTIAL,
                        r,
                        Some(&field),
                        vec![
                            r.object.name().to_string(),
                            r.object.namespace().to_string(),
                        ],
                    )),
                    Some(_) => {}
                }
                by_cert.entry(name.clone()).or_default().push(r);
            }
        }
    }
    for (_, list) in by_cert {
        let mut names: Vec<String> = list.iter().map(|r| res_name(r)).collect();
        names.dedup();
        if names.len() > 1 {
            for r in list {
                out.push(Diagnostic::new(
                    &GATEWAY_DUPLICATE_CERTIFICATE,
                    r,
                    Some("spec.servers"),
                    vec![names.join(",")],
                ));
            }
        }
    }
}

pub(super) fn selector_and_ports(ctx: &Context, out: &mut Vec<Diagnostic>) {
    if !ctx.has_workloads() {
        return;
    }
    for (r, g) in gateways(ctx) {
        if g.selector.is_empty() || is_builtin_gateway(&g.selector) {
            continue;
        }
        let matching: Vec<_> = ctx
            .workloads
            .iter()
            .filter(|w| Selector::gateway(&g.selector).matches(&w.labels))
            .collect();
        if matching.is_empty() {
            let sel: Vec<String> = g.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(Diagnostic::new(
                &REFERENCED_RESOURCE_NOT_FOUND,
                r,
                Some("spec.selector"),
                vec!["selector".into(), sel.join(",")],
            ));
            continue;
        }
        // Ports the Services in front of those workloads expose.
        let mut ports = Vec::new();
        let mut namespaces: Vec<&str> = matching.iter().map(|w| w.namespace.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        for s in namespaces.into_iter().flat_map(|ns| ctx.services_in(ns)) {
            let Some(sel) = s.selector() else { continue };
            if sel.is_empty() {
                continue;
            }
            if matching
                .iter()
                .any(|w| w.namespace == s.namespace && sel.matches(&w.labels))
            {
                ports.extend(
                    s.ports
                        .iter()
                        .flat_map(|p| [p.number.to_string(), p.target.clone()]),
                );
            }
        }
        if ports.is_empty() {
            continue;
        }
        for (i, s) in g.servers.iter().enumerate() {
            if !ports.contains(&s.port.number.to_string()) {
                let sel: Vec<String> = g.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push(Diagnostic::new(
                    &GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                    r,
                    Some(&format!("spec.servers[{i}].port")),
                    vec![s.port.number.to_string(), sel.join(",")],
                ));
            }
        }
    }
}

/// Whether a Secret holds what a gateway needs to serve TLS: a PEM
/// certificate and key under `tls.crt`/`tls.key` (kubernetes.io/tls) or
/// `cert`/`key` (Istio's generic form), or only a CA bundle (`ca.crt`,
/// `cacert`) for the `-cacert` secret of mutual TLS.
fn credential_usable(secret: &Resource) -> bool {
    let Spec::Secret(s) = &secret.object.spec else {
        return false;
    };
    let get = |k: &str| -> Option<Vec<u8>> {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|v| v.as_bytes().to_vec())
            })
    };
    let pem = |b: &[u8], what: &str| {
        let text = String::from_utf8_lossy(b);
        text.contains("-----BEGIN") && text.contains(what)
    };
    let pair = |cert: &str, key: &str| match (get(cert), get(key)) {
        (Some(c), Some(k)) => pem(&c, "CERTIFICATE") && pem(&k, "PRIVATE KEY"),
        _ => false,
    };
    let ca_only = ["ca.crt", "cacert"]
        .iter()
        .any(|k| get(k).is_some_and(|c| pem(&c, "CERTIFICATE")));
    pair("tls.crt", "tls.key") || pair("cert", "key") || ca_only
}
