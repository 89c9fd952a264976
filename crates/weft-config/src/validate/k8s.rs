//! The few Kubernetes rules that matter to the mesh (the API server checks
//! the rest).

use weft_api::k8s_openapi::api::apps::v1::Deployment;
use weft_api::k8s_openapi::api::core::v1::Service;

use super::common::port;
use super::Report;

pub(super) fn service(r: &mut Report, svc: &Service) {
    let Some(spec) = &svc.spec else { return };
    let ports = spec.ports.as_deref().unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        port(r, &format!("{f}.port"), u32::try_from(p.port).unwrap_or(0));
        if ports.len() > 1 && p.name.as_deref().unwrap_or("").is_empty() {
            r.err(
                format!("{f}.name"),
                "ports of a multi-port Service must be named",
            );
        }
    }
}

pub(super) fn deployment(r: &mut Report, d: &Deployment) {
    let Some(spec) = &d.spec else {
        r.err("spec", "spec is required");
        return;
    };
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let template = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if selector.is_empty() && spec.selector.match_expressions.is_none() {
        r.err("spec.selector", "selector is required");
    }
    for (k, v) in &selector {
        if template.get(k) != Some(v) {
            r.err(
                "spec.template.metadata.labels",
                format!("selector {k}={v} does not match the template's labels"),
            );
        }
    }
}
