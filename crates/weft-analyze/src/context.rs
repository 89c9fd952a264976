//! Indexes over the loaded resources that analyzers share: services by
//! host, workloads by labels, namespaces, gateways.

use std::collections::{BTreeMap, HashMap};

use weft_api::k8s_openapi::api::core::v1::PodSpec;
use weft_api::{Kind, Spec};
use weft_config::Resource;

use weft_config::mesh::{Protocol, Selector};
use weft_config::{host, ObjectRef};

use crate::SUPPRESS_ANNOTATION;

pub use weft_config::host::fqdn;

/// A port of a Kubernetes Service or ServiceEntry.
#[derive(Clone, Debug)]
pub struct ServicePort {
    pub number: u32,
    pub name: String,
    pub target: String,
    /// As the mesh model reads the port (`appProtocol`, the name, a
    /// ServiceEntry's `protocol`).
    pub protocol: Protocol,
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
            protocol: Protocol::of_service_port(
                u32::try_from(p.port).unwrap_or(0),
                p.name.as_deref().unwrap_or_default(),
                p.protocol.as_deref(),
                p.app_protocol.as_deref(),
            ),
        }
    }
}

/// Something traffic can be sent to: a Kubernetes Service or a ServiceEntry host.
#[derive(Clone, Debug)]
pub struct ServiceInfo<'a> {
    /// FQDN (Kubernetes services) or the host as written (ServiceEntry).
    pub host: String,
    pub resource: &'a Resource,
    pub namespace: String,
    pub ports: Vec<ServicePort>,
}

impl ServiceInfo<'_> {
    /// What picks its workloads — a Kubernetes Service's selector, a
    /// ServiceEntry's workloadSelector, each read as its kind reads it —
    /// or `None` when a ServiceEntry has none (its instances are its
    /// endpoints).
    pub fn selector(&self) -> Option<Selector<'_>> {
        match &self.resource.object.spec {
            Spec::Service(svc) => Some(Selector::service(
                svc.spec.as_ref().and_then(|s| s.selector.as_ref()),
            )),
            Spec::ServiceEntry(se) => se.workload_selector.as_ref().map(Selector::workload),
            _ => None,
        }
    }
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
    /// The pod spec (of the pod, or of the template that makes pods).
    pub pod: Option<&'a PodSpec>,
}

/// Analyzers run over every resource, and many of them look things up per
/// resource; these indexes keep each lookup to the few candidates that can
/// match, so analysis stays linear in the number of resources.
pub struct Context<'a> {
    pub resources: &'a [Resource],
    /// Kubernetes Services and ServiceEntry hosts, one entry per host.
    pub services: Vec<ServiceInfo<'a>>,
    pub workloads: Vec<Workload<'a>>,
    pub namespaces: HashMap<String, &'a Resource>,
    by_key: HashMap<(Kind, String, String), &'a Resource>,
    services_by_host: HashMap<String, Vec<usize>>,
    wildcard_services: Vec<usize>,
    services_by_ns: HashMap<String, Vec<usize>>,
    workloads_by_ns: HashMap<String, Vec<usize>>,
    /// DestinationRules by the FQDN of their host; wildcard hosts apart.
    rules_by_host: HashMap<String, Vec<&'a Resource>>,
    wildcard_rules: Vec<(String, &'a Resource)>,
}

impl<'a> Context<'a> {
    pub fn new(resources: &'a [Resource]) -> Self {
        let mut ctx = Context {
            resources,
            services: Vec::new(),
            workloads: Vec::new(),
            namespaces: HashMap::new(),
            by_key: HashMap::new(),
            services_by_host: HashMap::new(),
            wildcard_services: Vec::new(),
            services_by_ns: HashMap::new(),
            workloads_by_ns: HashMap::new(),
            rules_by_host: HashMap::new(),
            wildcard_rules: Vec::new(),
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
                    ctx.services.push(ServiceInfo {
                        host: host::service_hostname(o.name(), &ns),
                        resource: r,
                        namespace: ns.clone(),
                        ports,
                    });
                }
                Spec::ServiceEntry(se) => {
                    for h in &se.hosts {
                        ctx.services.push(ServiceInfo {
                            host: h.clone(),
                            resource: r,
                            namespace: ns.clone(),
                            ports: se
                                .ports
                                .iter()
                                .map(|p| ServicePort {
                                    number: p.number,
                                    name: p.name.clone(),
                                    target: p.target_port.unwrap_or(p.number).to_string(),
                                    protocol: Protocol::parse(&p.protocol),
                                })
                                .collect(),
                        });
                    }
                    for ep in &se.endpoints {
                        ctx.workloads.push(Workload {
                            resource: r,
                            namespace: ns.clone(),
                            labels: ep.labels.clone().into(),
                            has_proxy: true,
                            is_pod: false,
                            annotations: BTreeMap::new(),
                            pod: None,
                        });
                    }
                }
                Spec::WorkloadEntry(we) => ctx.workloads.push(Workload {
                    resource: r,
                    namespace: ns,
                    labels: we.labels.clone().into(),
                    has_proxy: true,
                    is_pod: false,
                    annotations: BTreeMap::new(),
                    pod: None,
                }),
                Spec::DestinationRule(dr) => {
                    let host = fqdn(&dr.host, &ns);
                    if host.contains('*') {
                        ctx.wildcard_rules.push((host, r));
                    } else {
                        ctx.rules_by_host.entry(host).or_default().push(r);
                    }
                }
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
                            pod,
                        });
                    }
                }
            }
        }
        for (i, s) in ctx.services.iter().enumerate() {
            if s.host.contains('*') {
                ctx.wildcard_services.push(i);
            } else {
                ctx.services_by_host
                    .entry(s.host.clone())
                    .or_default()
                    .push(i);
            }
            ctx.services_by_ns
                .entry(s.namespace.clone())
                .or_default()
                .push(i);
        }
        for (i, w) in ctx.workloads.iter().enumerate() {
            ctx.workloads_by_ns
                .entry(w.namespace.clone())
                .or_default()
                .push(i);
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
        if let Some(found) = self.services_by_host.get(&fqdn) {
            return found.iter().map(|&i| &self.services[i]).collect();
        }
        if fqdn.contains('*') {
            // A wildcard names every service under it; rare enough to scan.
            return self
                .services
                .iter()
                .filter(|s| host::overlap(&s.host, &fqdn))
                .collect();
        }
        self.wildcard_services
            .iter()
            .map(|&i| &self.services[i])
            .filter(|s| host::covers(&s.host, &fqdn))
            .collect()
    }

    /// Services (Kubernetes and ServiceEntry) defined in `ns`.
    pub fn services_in<'s>(&'s self, ns: &str) -> impl Iterator<Item = &'s ServiceInfo<'a>> + 's {
        self.services_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .map(|&i| &self.services[i])
    }

    /// Kubernetes Services in the workload's namespace whose selector
    /// picks the workload.
    pub fn kubernetes_services_selecting<'s>(
        &'s self,
        w: &'s Workload<'a>,
    ) -> impl Iterator<Item = &'s ServiceInfo<'a>> + 's {
        self.services_in(&w.namespace).filter(move |s| {
            matches!(s.resource.object.spec, Spec::Service(_))
                && s.selector().is_some_and(|sel| sel.matches(&w.labels))
        })
    }

    /// DestinationRules whose host covers `fqdn`.
    pub fn destination_rules_for<'s>(
        &'s self,
        fqdn: &'s str,
    ) -> impl Iterator<Item = &'a Resource> + 's {
        let wildcard = self
            .wildcard_rules
            .iter()
            .filter(move |(h, _)| host::overlap(h, fqdn))
            .map(|(_, r)| *r);
        let exact: Box<dyn Iterator<Item = &'a Resource>> = if fqdn.contains('*') {
            Box::new(
                self.rules_by_host
                    .iter()
                    .filter(move |(h, _)| host::covers(fqdn, h))
                    .flat_map(|(_, rs)| rs.iter().copied()),
            )
        } else {
            Box::new(self.rules_by_host.get(fqdn).into_iter().flatten().copied())
        };
        exact.chain(wildcard)
    }

    /// Workloads in `ns` that `selector` picks.
    pub fn workloads_matching<'s>(
        &'s self,
        ns: &str,
        selector: Selector<'s>,
    ) -> impl Iterator<Item = &'s Workload<'a>> + 's {
        self.workloads_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .map(|&i| &self.workloads[i])
            .filter(move |w| selector.matches(&w.labels))
    }

    /// Whether any pods or pod templates were given at all; checks that
    /// something selects no workload are only meaningful then.
    pub fn has_workloads(&self) -> bool {
        !self.workloads.is_empty()
    }

    pub(crate) fn suppressed_by_annotation(&self, r: &ObjectRef, code: &str) -> bool {
        let Some(kind) = r.known else { return false };
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

type PodTemplate<'s> = (&'s weft_api::ObjectMeta, Option<&'s PodSpec>);

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
