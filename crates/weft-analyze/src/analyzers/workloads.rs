//! Analyzers about services, workloads, namespaces and selectors.

use std::collections::{BTreeMap, HashMap};

use weft_api::{Kind, Spec};
use weft_config::mesh::{Protocol, Selector};
use weft_config::Resource;

use super::res_name;
use crate::context::ServicePort;
use crate::messages::*;
use crate::{Context, Diagnostic};

const SYSTEM_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    "local-path-storage",
];

pub(super) fn port_names(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for r in ctx.of_kind(Kind::Service) {
        if SYSTEM_NAMESPACES.contains(&r.object.namespace()) {
            continue;
        }
        let Spec::Service(svc) = &r.object.spec else {
            continue;
        };
        for (i, p) in svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            // As istioctl's port name analyzer, by the protocol the mesh
            // model reads from the port (appProtocol, name, UDP,
            // well-known ports), not by the name alone.
            let port = ServicePort::from_k8s(p);
            if port.protocol != Protocol::Unknown {
                continue;
            }
            out.push(Diagnostic::new(
                &PORT_NAME_NOT_UNDER_CONVENTION,
                r,
                Some(&format!("spec.ports[{i}].name")),
                vec![port.name, port.number.to_string(), port.target],
            ));
        }
    }
}

fn injection_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(v) = labels.get("istio-injection") {
        found.push(format!("istio-injection={v}"));
    }
    if let Some(v) = labels.get("istio.io/rev") {
        found.push(format!("istio.io/rev={v}"));
    }
    found
}

fn namespace_injected(ctx: &Context, ns: &str) -> Option<bool> {
    let r = ctx.namespaces.get(ns)?;
    let l = r.object.labels();
    Some(
        l.get("istio-injection").map(String::as_str) == Some("enabled")
            || l.contains_key("istio.io/rev")
                && l.get("istio-injection").map(String::as_str) != Some("disabled"),
    )
}

pub(super) fn injection(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for (name, r) in &ctx.namespaces {
        if SYSTEM_NAMESPACES.contains(&name.as_str()) {
            continue;
        }
        // Ambient namespaces are in the mesh without sidecars.
        if r.object.labels().get(DATAPLANE_MODE).map(String::as_str) == Some("ambient") {
            continue;
        }
        let labels = injection_labels(r.object.labels());
        if labels.is_empty() {
            out.push(Diagnostic::new(
                &NAMESPACE_NOT_INJECTED,
                r,
                Some("metadata"),
                vec![name.clone(), name.clone()],
            ));
        } else if labels.len() > 1 {
            out.push(Diagnostic::new(
                &NAMESPACE_MULTIPLE_INJECTION_LABELS,
                r,
                Some("metadata.labels"),
                vec![format!("[{}]", labels.join(" "))],
            ));
        }
    }
    for w in &ctx.workloads {
        if !w.is_pod || w.has_proxy || namespace_injected(ctx, &w.namespace) != Some(true) {
            continue;
        }
        let opted_out = w
            .annotations
            .get("sidecar.istio.io/inject")
            .map(String::as_str)
            == Some("false")
            || w.labels.get("sidecar.istio.io/inject").map(String::as_str) == Some("false");
        if !opted_out {
            out.push(Diagnostic::new(
                &POD_MISSING_PROXY,
                w.resource,
                None,
                vec![w.resource.object.name().to_string()],
            ));
        }
    }
}

/// istio.io annotations weft knows, with the kinds they belong on
/// (empty: any kind).
const ANNOTATIONS: &[(&str, &[Kind])] = &[
    (
        "sidecar.istio.io/inject",
        &[
            Kind::Pod,
            Kind::Deployment,
            Kind::StatefulSet,
            Kind::DaemonSet,
            Kind::ReplicaSet,
            Kind::Job,
            Kind::CronJob,
        ],
    ),
    ("sidecar.istio.io/status", &[Kind::Pod]),
    ("sidecar.istio.io/proxyCPU", &[Kind::Pod]),
    ("sidecar.istio.io/proxyMemory", &[Kind::Pod]),
    ("sidecar.istio.io/proxyCPULimit", &[Kind::Pod]),
    ("sidecar.istio.io/proxyMemoryLimit", &[Kind::Pod]),
    ("sidecar.istio.io/logLevel", &[Kind::Pod]),
    ("sidecar.istio.io/componentLogLevel", &[Kind::Pod]),
    ("sidecar.istio.io/interceptionMode", &[Kind::Pod]),
    ("sidecar.istio.io/rewriteAppHTTPProbers", &[Kind::Pod]),
    ("sidecar.istio.io/userVolume", &[Kind::Pod]),
    ("sidecar.istio.io/userVolumeMount", &[Kind::Pod]),
    ("sidecar.istio.io/bootstrapOverride", &[Kind::Pod]),
    ("sidecar.istio.io/extraStatTags", &[Kind::Pod]),
    ("sidecar.istio.io/statsInclusionPrefixes", &[Kind::Pod]),
    ("sidecar.istio.io/agentLogLevel", &[Kind::Pod]),
    ("sidecar.istio.io/proxyImage", &[Kind::Pod]),
    ("proxy.istio.io/config", &[Kind::Pod]),
    ("prometheus.istio.io/merge-metrics", &[Kind::Pod]),
    (
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        &[Kind::Pod],
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        &[Kind::Pod],
    ),
    ("traffic.sidecar.istio.io/includeInboundPorts", &[Kind::Pod]),
    ("traffic.sidecar.istio.io/excludeInboundPorts", &[Kind::Pod]),
    (
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        &[Kind::Pod],
    ),
    (
        "traffic.sidecar.istio.io/includeOutboundPorts",
        &[Kind::Pod],
    ),
    ("traffic.sidecar.istio.io/kubevirtInterfaces", &[Kind::Pod]),
    ("status.sidecar.istio.io/port", &[Kind::Pod]),
    (
        "readiness.status.sidecar.istio.io/initialDelaySeconds",
        &[Kind::Pod],
    ),
    (
        "readiness.status.sidecar.istio.io/periodSeconds",
        &[Kind::Pod],
    ),
    (
        "readiness.status.sidecar.istio.io/failureThreshold",
        &[Kind::Pod],
    ),
    (
        "readiness.status.sidecar.istio.io/applicationPorts",
        &[Kind::Pod],
    ),
    ("inject.istio.io/templates", &[Kind::Pod]),
    ("istio.io/rev", &[]),
    ("istio.io/dry-run", &[Kind::AuthorizationPolicy]),
    ("networking.istio.io/exportTo", &[Kind::Service]),
    ("networking.istio.io/traffic-distribution", &[Kind::Service]),
    ("ambient.istio.io/redirection", &[Kind::Pod]),
    ("galley.istio.io/analyze-suppress", &[]),
    ("kubectl.kubernetes.io/default-container", &[]),
];

pub(super) fn annotations(ctx: &Context, out: &mut Vec<Diagnostic>) {
    // Each resource's own annotations, then the pod annotations carried by
    // pod templates (Deployments and the like).
    let own = ctx.resources.iter().map(|r| {
        (
            r,
            "metadata.annotations",
            r.object.annotations(),
            r.object.kind,
        )
    });
    let templates = ctx.workloads.iter().filter(|w| !w.is_pod).map(|w| {
        (
            w.resource,
            "spec.template.metadata.annotations",
            &w.annotations,
            Kind::Pod,
        )
    });
    for (r, base, anns, kind) in own.chain(templates) {
        for key in anns.keys() {
            let istio = key
                .split_once('/')
                .is_some_and(|(p, _)| p == "istio.io" || p.ends_with(".istio.io"));
            if !istio {
                continue;
            }
            let field = format!("{base}[{key:?}]");
            match ANNOTATIONS.iter().find(|(k, _)| k == key) {
                None => out.push(Diagnostic::new(
                    &UNKNOWN_ANNOTATION,
                    r,
                    Some(&field),
                    vec![key.clone()],
                )),
                Some((_, kinds)) if !kinds.is_empty() && !kinds.contains(&kind) => {
                    let names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
                    out.push(Diagnostic::new(
                        &MISPLACED_ANNOTATION,
                        r,
                        Some(&field),
                        vec![key.clone(), names.join(", ")],
                    ));
                }
                _ => {}
            }
            if key == "sidecar.istio.io/inject" && !matches!(anns[key].as_str(), "true" | "false") {
                out.push(Diagnostic::new(
                    &INVALID_ANNOTATION,
                    r,
                    Some(&field),
                    vec![key.clone(), "expected \"true\" or \"false\"".into()],
                ));
            }
        }
    }
}

pub(super) fn sidecar_selectors(ctx: &Context, out: &mut Vec<Diagnostic>) {
    let mut without: HashMap<&str, Vec<&Resource>> = HashMap::new();
    let mut per_workload: HashMap<(String, String), Vec<&Resource>> = HashMap::new();
    for r in ctx.of_kind(Kind::Sidecar) {
        let Spec::Sidecar(sc) = &r.object.spec else {
            continue;
        };
        let ns = r.object.namespace();
        if let Some(reason) = ambient_reason(ctx, ns, sc.workload_selector.as_ref()) {
            out.push(Diagnostic::new(
                &INEFFECTIVE_POLICY,
                r,
                None,
                vec![reason.into()],
            ));
        }
        match &sc.workload_selector {
            None => without.entry(ns).or_default().push(r),
            Some(sel) => {
                let matching: Vec<_> = ctx
                    .workloads_matching(ns, Selector::workload(sel))
                    .collect();
                if matching.is_empty() && ctx.has_workloads() {
                    out.push(Diagnostic::new(
                        &NO_MATCHING_WORKLOADS,
                        r,
                        Some("spec.workloadSelector"),
                        vec![super::labels_text(&sel.labels)],
                    ));
                }
                for w in matching {
                    per_workload
                        .entry((ns.to_string(), w.resource.object.name().to_string()))
                        .or_default()
                        .push(r);
                }
            }
        }
    }
    for (ns, list) in without {
        if list.len() > 1 {
            let names: Vec<String> = list.iter().map(|r| r.object.name().to_string()).collect();
            for r in list {
                out.push(Diagnostic::new(
                    &MULTIPLE_SIDECARS_WITHOUT_SELECTORS,
                    r,
                    None,
                    vec![format!("[{}]", names.join(" ")), ns.to_string()],
                ));
            }
        }
    }
    for ((ns, workload), list) in per_workload {
        if list.len() > 1 {
            let names: Vec<String> = list.iter().map(|r| r.object.name().to_string()).collect();
            for r in list {
                out.push(Diagnostic::new(
                    &CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
                    r,
                    Some("spec.workloadSelector"),
                    vec![
                        format!("[{}]", names.join(" ")),
                        ns.clone(),
                        workload.clone(),
                    ],
                ));
            }
        }
    }
}

pub(super) fn multi_service(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for w in ctx
        .workloads
        .iter()
        .filter(|w| matches!(w.resource.object.spec, Spec::Deployment(_)))
    {
        // port number → protocols seen across the services selecting w
        let mut protocols: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for s in ctx.kubernetes_services_selecting(w) {
            for p in &s.ports {
                let proto = match p.protocol {
                    Protocol::Unknown => "tcp",
                    known => known.name(),
                };
                let list = protocols.entry(p.number).or_default();
                if !list.contains(&proto) {
                    list.push(proto);
                }
            }
        }
        if let Some(d) = conflicting_ports(ctx, w) {
            out.push(d);
        }
        for (port, list) in protocols {
            if list.len() > 1 {
                out.push(Diagnostic::new(
                    &DEPLOYMENT_MULTIPLE_SERVICES,
                    w.resource,
                    None,
                    vec![res_name(w.resource), port.to_string(), list.join(",")],
                ));
            }
        }
    }
}

pub(super) fn service_entries(ctx: &Context, out: &mut Vec<Diagnostic>) {
    let mut by_host_port: BTreeMap<(String, u32), Vec<(&Resource, String)>> = BTreeMap::new();
    for r in ctx.of_kind(Kind::ServiceEntry) {
        let Spec::ServiceEntry(se) = &r.object.spec else {
            continue;
        };
        for p in &se.ports {
            let proto = p.protocol.to_ascii_uppercase();
            // Without an address, TCP traffic to the host can only be told
            // apart by port, which captures every host on that port.
            if se.addresses.is_empty()
                && matches!(proto.as_str(), "TCP" | "MONGO" | "MYSQL" | "REDIS" | "")
                && se.resolution != Some(weft_api::service_entry::Resolution::NONE)
            {
                out.push(Diagnostic::new(
                    &SERVICE_ENTRY_ADDRESSES_REQUIRED,
                    r,
                    Some("spec.addresses"),
                    vec![],
                ));
            }
            for h in &se.hosts {
                by_host_port
                    .entry((h.clone(), p.number))
                    .or_default()
                    .push((r, proto.clone()));
            }
        }
    }
    for ((host, port), list) in by_host_port {
        let mut protos: Vec<&str> = list.iter().map(|(_, p)| p.as_str()).collect();
        protos.sort();
        protos.dedup();
        if protos.len() > 1 {
            let names: Vec<String> = list.iter().map(|(r, _)| res_name(r)).collect();
            for (r, _) in &list {
                out.push(Diagnostic::new(
                    &CONFLICTING_SE_PROTOCOL,
                    r,
                    Some("spec.ports"),
                    vec![
                        names.join(","),
                        host.clone(),
                        port.to_string(),
                        protos.join(","),
                    ],
                ));
            }
        }
    }
}

/// IST0137: Services selecting one Deployment that send different service
/// ports to the same target port.
fn conflicting_ports(ctx: &Context, w: &crate::context::Workload) -> Option<Diagnostic> {
    // target port → (service names, service ports)
    let mut by_target: BTreeMap<&str, (Vec<&str>, Vec<u32>)> = BTreeMap::new();
    for s in ctx.kubernetes_services_selecting(w) {
        for p in &s.ports {
            let (names, ports) = by_target.entry(p.target.as_str()).or_default();
            if !names.contains(&s.resource.object.name()) {
                names.push(s.resource.object.name());
            }
            if !ports.contains(&p.number) {
                ports.push(p.number);
            }
        }
    }
    let (target, (names, ports)) = by_target
        .into_iter()
        .find(|(_, (names, ports))| names.len() > 1 && ports.len() > 1)?;
    let ports: Vec<String> = ports.iter().map(u32::to_string).collect();
    Some(Diagnostic::new(
        &DEPLOYMENT_CONFLICTING_PORTS,
        w.resource,
        None,
        vec![
            res_name(w.resource),
            format!("[{}]", names.join(" ")),
            target.to_string(),
            format!("[{}]", ports.join(" ")),
        ],
    ))
}

/// The UID Istio's proxy runs as; its own traffic bypasses capture.
const PROXY_UID: i64 = 1337;

pub(super) fn application_uid(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for w in &ctx.workloads {
        let Some(pod) = w.pod else { continue };
        let base = if w.is_pod {
            "spec"
        } else {
            "spec.template.spec"
        };
        let mut fields = Vec::new();
        if pod.security_context.as_ref().and_then(|c| c.run_as_user) == Some(PROXY_UID) {
            fields.push(format!("{base}.securityContext.runAsUser"));
        }
        for (i, c) in pod.containers.iter().enumerate() {
            if c.name == "istio-proxy" {
                continue;
            }
            if c.security_context.as_ref().and_then(|s| s.run_as_user) == Some(PROXY_UID) {
                fields.push(format!("{base}.containers[{i}].securityContext.runAsUser"));
            }
        }
        for f in fields {
            out.push(Diagnostic::new(
                &INVALID_APPLICATION_UID,
                w.resource,
                Some(&f),
                vec![],
            ));
        }
    }
}

pub(super) fn external_name_ports(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for r in ctx.of_kind(Kind::Service) {
        let Spec::Service(svc) = &r.object.spec else {
            continue;
        };
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() != Some("ExternalName") {
            continue;
        }
        // Without a service IP the proxy can only tell TCP services apart
        // by SNI, so the port must say it carries TLS (or a protocol it
        // can sniff), not plain or unknown TCP.
        let bad = spec.ports.iter().flatten().position(|p| {
            matches!(
                ServicePort::from_k8s(p).protocol,
                Protocol::Unknown | Protocol::Tcp
            )
        });
        if let Some(i) = bad {
            out.push(Diagnostic::new(
                &EXTERNAL_NAME_INVALID_PORT_NAME,
                r,
                Some(&format!("spec.ports[{i}].name")),
                vec![],
            ));
        }
    }
}

/// The label that puts a namespace or pod in the ambient data plane.
const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";

/// Why a Sidecar has no effect in ambient mode, if it has none: ambient
/// workloads run without a sidecar proxy to configure.
fn ambient_reason(
    ctx: &Context,
    ns: &str,
    selector: Option<&weft_api::common::WorkloadSelector>,
) -> Option<&'static str> {
    let ambient = |labels: &BTreeMap<String, String>| {
        labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient")
    };
    match selector {
        None => ctx
            .namespaces
            .get(ns)
            .filter(|n| ambient(n.object.labels()))
            .map(|_| "namespace is in ambient mode, the policy has no impact"),
        Some(sel) => {
            let ns_ambient = ctx
                .namespaces
                .get(ns)
                .is_some_and(|n| ambient(n.object.labels()));
            let mut selected = ctx
                .workloads_matching(ns, Selector::workload(sel))
                .peekable();
            selected.peek()?;
            selected
                .all(|w| {
                    ambient(&w.labels) || (ns_ambient && !w.labels.contains_key(DATAPLANE_MODE))
                })
                .then_some("selected workload is in ambient mode, the policy has no impact")
        }
    }
}
