//! Indexes over the loaded resources that analyzers share: services by
//! host, workloads by labels, namespaces, gateways.

use std::collections::{BTreeMap, HashMap};

use weft_api::{Kind, Spec};
use weft_config::Resource;

use crate::{ResourceRef, SUPPRESS_ANNOTATION};

/// The cluster DNS suffix Istio assumes by default.
pub const DOMAIN: &str = "svc.cluster.local";

/// A port of a Kubernetes Service or ServiceEntry.
#[derive(Clone, Debug)]
pub struct ServicePort {
    pub number: u32,
    pub name: String,
    pub target: String,
    pub app_protocol: Option<String>,
}

impl ServicePort {
    pub fn from_k8s(p: &weft_api::k8s_openapi::api::core::v1::ServicePort) -> Self {
        use weft_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        ServicePort {
            number: u32::try_from(p.port).unwrap_or(0),
            name: p.name.clone().unwrap_or_default(),
            target: match &p.target_port {
                Some(IntOrString::Int(i)) => i.to_string(),
                Some(IntOrString::String(s)) => s.clone(),
                None => p.port.to_string(),
            },
            app_protocol: p.app_protocol.clone(),
        }
    }
}

/// Something traffic can be sent to: a Kubernetes Service or a ServiceEntry host.
#[derive(Clone, Debug)]
pub struct ServiceInfo<'a> {
    pub resource: &'a Resource,
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    /// Pod selector (Kubernetes Services) or workload selector (ServiceEntry).
    pub selector: Option<BTreeMap<String, String>>,
}

/// A set of pods (or a WorkloadEntry) with its labels.
#[derive(Clone, Debug)]
pub struct Workload<'a> {
    pub resource: &'a Resource,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Whether the pod spec already carries the proxy (`istio-proxy`).
    pub has_proxy: bool,
    /// Pods as written (not templates in a Deployment).
    pub is_pod: bool,
    pub annotations: BTreeMap<String, String>,
}

pub struct Context<'a> {
    pub resources: &'a [Resource],
    /// By FQDN (Kubernetes services) or host as written (ServiceEntry).
    pub services: HashMap<String, Vec<ServiceInfo<'a>>>,
    pub workloads: Vec<Workload<'a>>,
    pub namespaces: HashMap<String, &'a Resource>,
    by_key: HashMap<(Kind, String, String), &'a Resource>,
}

impl<'a> Context<'a> {
    pub fn new(resources: &'a [Resource]) -> Self {
        let mut ctx = Context {
            resources,
            services: HashMap::new(),
            workloads: Vec::new(),
            namespaces: HashMap::new(),
            by_key: HashMap::new(),
        };
        for r in resources {
            let o = &r.object;
            ctx.by_key
                .insert((o.kind, o.namespace().to_string(), o.name().to_string()), r);
            let ns = o.namespace().to_string();
            match &o.spec {
                Spec::Namespace(_) => {
                    ctx.namespaces.insert(o.name().to_string(), r);
                }
                Spec::Service(svc) => {
                    let spec = svc.spec.clone().unwrap_or_default();
                    let ports = spec
                        .ports
                        .unwrap_or_default()
                        .iter()
                        .map(ServicePort::from_k8s)
                        .collect();
                    ctx.services
                        .entry(format!("{}.{ns}.{DOMAIN}", o.name()))
                        .or_default()
                        .push(ServiceInfo {
                            resource: r,
                            namespace: ns.clone(),
                            ports,
                            selector: spec.selector,
                        });
                }
                Spec::ServiceEntry(se) => {
                    for h in &se.hosts {
                        ctx.services
                            .entry(h.clone())
                            .or_default()
                            .push(ServiceInfo {
                                resource: r,
                                namespace: ns.clone(),
                                ports: se
                                    .ports
                                    .iter()
                                    .map(|p| ServicePort {
                                        number: p.number,
                                        name: p.name.clone(),
                                        target: p.target_port.unwrap_or(p.number).to_string(),
                                        app_protocol: Some(p.protocol.clone()),
                                    })
                                    .collect(),
                                selector: se.workload_selector.as_ref().map(|s| s.labels.clone()),
                            });
                    }
                    for ep in &se.endpoints {
                        ctx.workloads.push(Workload {
                            resource: r,
                            namespace: ns.clone(),
                            labels: ep.labels.clone(),
                            has_proxy: true,
                            is_pod: false,
                            annotations: BTreeMap::new(),
                        });
                    }
                }
                Spec::WorkloadEntry(we) => ctx.workloads.push(Workload {
                    resource: r,
                    namespace: ns,
                    labels: we.labels.clone(),
                    has_proxy: true,
                    is_pod: false,
                    annotations: BTreeMap::new(),
                }),
                _ => {
                    if let Some((meta, pod)) = pod_template(&o.spec) {
                        let labels = meta.labels.clone().unwrap_or_default();
                        let has_proxy = pod
                            .map(|p| p.containers.iter().any(|c| c.name == "istio-proxy"))
                            .unwrap_or(false);
                        ctx.workloads.push(Workload {
                            resource: r,
                            namespace: ns,
                            labels,
                            has_proxy,
                            is_pod: matches!(o.spec, Spec::Pod(_)),
                            annotations: meta.annotations.clone().unwrap_or_default(),
                        });
                    }
                }
            }
        }
        ctx
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&'a Resource> {
        self.by_key
            .get(&(kind, namespace.to_string(), name.to_string()))
            .copied()
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &'a Resource> + '_ {
        self.resources.iter().filter(move |r| r.object.kind == kind)
    }

    /// Resolves a host as written in namespace `ns` to the services it
    /// names: short names (`reviews`) and `name.namespace[.svc]` are
    /// completed with the cluster domain; ServiceEntry hosts may be
    /// wildcards.
    pub fn lookup_host(&self, host: &str, ns: &str) -> Vec<&ServiceInfo<'a>> {
        let fqdn = fqdn(host, ns);
        if let Some(s) = self.services.get(&fqdn) {
            return s.iter().collect();
        }
        let mut out = Vec::new();
        for (h, infos) in &self.services {
            let covered =
                crate::analyzers::host_covers(h, &fqdn) || crate::analyzers::host_covers(&fqdn, h);
            if covered {
                out.extend(infos.iter());
            }
        }
        out
    }

    /// Workloads in `ns` whose labels include all of `selector`.
    pub fn workloads_matching<'s>(
        &'s self,
        ns: &'s str,
        selector: &'s BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'s Workload<'a>> + 's {
        self.workloads.iter().filter(move |w| {
            w.namespace == ns && selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        })
    }

    /// Whether any pods or pod templates were given at all; checks that
    /// something selects no workload are only meaningful then.
    pub fn has_workloads(&self) -> bool {
        !self.workloads.is_empty()
    }

    pub(crate) fn suppressed_by_annotation(&self, r: &ResourceRef, code: &str) -> bool {
        let kind = match weft_api::KINDS.iter().find(|k| k.name == r.kind) {
            Some(k) => k.kind,
            None => return false,
        };
        let Some(res) = self.get(kind, &r.namespace, &r.name) else {
            return false;
        };
        res.object
            .annotations()
            .get(SUPPRESS_ANNOTATION)
            .is_some_and(|v| {
                v.split(',')
                    .any(|c| c.trim() == "*" || c.trim().eq_ignore_ascii_case(code))
            })
    }
}

/// `reviews` in `bookinfo` → `reviews.bookinfo.svc.cluster.local`;
/// `reviews.bookinfo` and `reviews.bookinfo.svc` likewise; anything else as is.
pub fn fqdn(host: &str, ns: &str) -> String {
    if host.contains('*') {
        return host.to_string();
    }
    match host.split('.').count() {
        1 => format!("{host}.{ns}.{DOMAIN}"),
        2 => format!("{host}.{DOMAIN}"),
        3 if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host.to_string(),
    }
}

type PodTemplate<'s> = (
    &'s weft_api::ObjectMeta,
    Option<&'s weft_api::k8s_openapi::api::core::v1::PodSpec>,
);

/// The pod metadata and spec of pods and of everything that creates pods.
fn pod_template(spec: &Spec) -> Option<PodTemplate<'_>> {
    fn tpl(t: &weft_api::k8s_openapi::api::core::v1::PodTemplateSpec) -> Option<PodTemplate<'_>> {
        Some((t.metadata.as_ref()?, t.spec.as_ref()))
    }
    match spec {
        Spec::Pod(p) => Some((&p.metadata, p.spec.as_ref())),
        Spec::Deployment(d) => tpl(&d.spec.as_ref()?.template),
        Spec::StatefulSet(d) => tpl(&d.spec.as_ref()?.template),
        Spec::DaemonSet(d) => tpl(&d.spec.as_ref()?.template),
        Spec::ReplicaSet(d) => tpl(d.spec.as_ref()?.template.as_ref()?),
        Spec::Job(d) => tpl(&d.spec.as_ref()?.template),
        Spec::CronJob(d) => tpl(&d.spec.as_ref()?.job_template.spec.as_ref()?.template),
        _ => None,
    }
}
