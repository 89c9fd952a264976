//! One namespace's part of the registry. Everything that makes a
//! service's instances is namespace-local — a ServiceEntry's
//! workloadSelector and a Service's selector pick workloads of their own
//! namespace, Endpoints and EndpointSlices name a Service of theirs — so
//! a namespace's services, endpoints and workloads depend on its objects
//! alone.

use std::sync::Arc;
use weft_api::Map;

use weft_api::k8s_openapi::api::core::v1::{Pod, ServicePort};
use weft_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::service_entry::{Location, Resolution as SeResolution, ServiceEntry};
use weft_api::{Object, Spec};

use super::namespace_of;
use weft_config::Resource;

use weft_config::host::service_hostname;
use weft_config::mesh::mtls::takes_istio_mtls;
use weft_config::mesh::Selector;

use crate::model::{Endpoint, Labels, Origin, Port, Protocol, Resolution, Service, Workload};

// A namespace is rebuilt whenever one of its instances changes, and hashing is
// much of that work: a fast non-cryptographic hasher (the keys are
// names from configuration, not from the network).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A hasher for digests that must be equal from one rebuild to the next.
fn digest_hasher() -> foldhash::fast::FoldHasher<'static> {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7765_6674).build_hasher()
}

/// One namespace's services, their endpoints and its workloads.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoint>,
    pub workloads: Vec<Workload>,
    /// Endpoint positions by service hostname and service port.
    pub(super) by_port: HashMap<Arc<str>, HashMap<u32, Vec<usize>>>,
    /// A hash of the instances of each hostname, all ports.
    pub(super) endpoint_digests: HashMap<Arc<str>, u64>,
}

/// One shared copy of each distinct string and label set of a registry.
#[derive(Default)]
struct Interner {
    strs: HashSet<Arc<str>>,
    labels: HashSet<Labels>,
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strs.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = s.into();
        self.strs.insert(Arc::clone(&a));
        a
    }

    fn labels(&mut self, l: &Map<String, String>) -> Labels {
        if let Some(a) = self.labels.get(l) {
            return Arc::clone(a);
        }
        let a = Arc::new(l.clone());
        self.labels.insert(Arc::clone(&a));
        a
    }
}

/// An address an Endpoints or EndpointSlice object lists, with the pod
/// it names (for its labels) and the ports it serves by name.
struct Listed {
    ip: String,
    pod: Option<String>,
    ports: Vec<(String, u32)>,
}

/// An instance behind a ServiceEntry: an inline endpoint or a selected
/// WorkloadEntry or Pod.
struct Instance<'a> {
    address: &'a str,
    labels: &'a Map<String, String>,
    /// Port name → port the instance listens on.
    ports: Option<&'a Map<String, u32>>,
    weight: Option<u32>,
    locality: Option<&'a str>,
    service_account: &'a str,
    istio_mtls: bool,
}

impl<'a> Instance<'a> {
    fn of(e: &'a weft_api::service_entry::WorkloadEntry) -> Instance<'a> {
        Instance {
            address: e.address.as_deref().unwrap_or_default(),
            labels: &e.labels,
            ports: Some(&e.ports),
            weight: e.weight,
            locality: e.locality.as_deref(),
            service_account: e.service_account.as_deref().unwrap_or("default"),
            istio_mtls: takes_istio_mtls(&e.labels, e.service_account.as_deref()),
        }
    }
}

/// Positions of items by namespace and by label, so that a selector
/// finds its workloads without looking at every workload of the mesh.
struct ByLabel<'a> {
    /// Namespace → label → value → positions.
    by_label: HashMap<&'a str, HashMap<&'a str, HashMap<&'a str, Vec<usize>>>>,
    by_ns: HashMap<&'a str, Vec<usize>>,
}

impl<'a> ByLabel<'a> {
    fn new(items: impl Iterator<Item = (&'a str, &'a Map<String, String>)>) -> ByLabel<'a> {
        let mut idx = ByLabel {
            by_label: HashMap::default(),
            by_ns: HashMap::default(),
        };
        for (i, (ns, labels)) in items.enumerate() {
            idx.by_ns.entry(ns).or_default().push(i);
            let in_ns = idx.by_label.entry(ns).or_default();
            for (k, v) in labels {
                in_ns
                    .entry(k.as_str())
                    .or_default()
                    .entry(v.as_str())
                    .or_default()
                    .push(i);
            }
        }
        idx
    }

    /// Candidates in `ns` for `selector` (every item of `ns` when it is
    /// empty and empty selects everything); callers still check every
    /// label.
    fn candidates(&self, ns: &str, selector: &Selector) -> &[usize] {
        if selector.selects_nothing() {
            return &[];
        }
        let found = match selector.labels().next() {
            Some((k, v)) => self
                .by_label
                .get(ns)
                .and_then(|m| m.get(k.as_str()))
                .and_then(|m| m.get(v.as_str())),
            None => self.by_ns.get(ns),
        };
        found.map_or(&[], Vec::as_slice)
    }
}

/// The workloads a ServiceEntry's selector may pick, with their indexes.
struct Workloads<'a> {
    entries: &'a [(&'a str, &'a weft_api::service_entry::WorkloadEntry)],
    entries_by: &'a ByLabel<'a>,
    pods: &'a [PodInfo<'a>],
    pods_by: &'a ByLabel<'a>,
}

struct PodInfo<'a> {
    pod: &'a Pod,
    namespace: &'a str,
    name: &'a str,
    ip: Option<&'a str>,
    labels: Map<String, String>,
    account: &'a str,
}

impl Namespace {
    /// From the objects of one namespace, in order.
    pub fn build(resources: &[&Resource]) -> Namespace {
        let mut reg = Namespace::default();
        let mut interner = Interner::default();
        let pods: Vec<PodInfo> = resources
            .iter()
            .filter_map(|r| match &r.object.spec {
                Spec::Pod(p) => Some(PodInfo {
                    pod: p,
                    namespace: namespace_of(&r.object),
                    name: r.object.name(),
                    ip: p.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
                    labels: r.object.labels().clone().into(),
                    account: p
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.as_deref())
                        .unwrap_or("default"),
                }),
                _ => None,
            })
            .collect();
        let mut workload_entries = Vec::new();
        for r in resources {
            let o = &r.object;
            let ns = namespace_of(o);
            if let Spec::WorkloadEntry(we) = &o.spec {
                let address = we.address.clone().unwrap_or_default();
                workload_entries.push((ns, &**we));
                reg.workloads.push(Workload {
                    name: o.name().to_string(),
                    namespace: interner.str(ns),
                    address,
                    labels: interner.labels(&we.labels),
                    service_account: interner
                        .str(we.service_account.as_deref().unwrap_or("default")),
                });
            }
        }
        for p in &pods {
            if let Some(ip) = p.ip {
                let account = p.account;
                reg.workloads.push(Workload {
                    name: p.name.to_string(),
                    namespace: interner.str(p.namespace),
                    address: ip.to_string(),
                    labels: interner.labels(&p.labels),
                    service_account: interner.str(account),
                });
            }
        }
        let pods_by = ByLabel::new(pods.iter().map(|p| (p.namespace, &p.labels)));
        let entries_by = ByLabel::new(workload_entries.iter().map(|(ns, we)| (*ns, &we.labels)));
        let mut slices_seen: HashMap<(String, String), bool> = HashMap::default();
        for r in resources {
            match &r.object.spec {
                Spec::Endpoints(_) => {
                    slices_seen.insert(
                        (
                            namespace_of(&r.object).to_string(),
                            r.object.name().to_string(),
                        ),
                        true,
                    );
                }
                Spec::EndpointSlice(_) => {
                    if let Some(svc) = r.object.labels().get("kubernetes.io/service-name") {
                        slices_seen
                            .insert((namespace_of(&r.object).to_string(), svc.clone()), true);
                    }
                }
                _ => {}
            }
        }
        for r in resources {
            let o = &r.object;
            let ns = namespace_of(o);
            match &o.spec {
                Spec::Service(svc) => {
                    let spec = svc.spec.clone().unwrap_or_default();
                    let k8s_ports = spec.ports.unwrap_or_default();
                    let hostname = service_hostname(o.name(), ns);
                    let headless = spec.cluster_ip.as_deref() == Some("None");
                    reg.services.push(Service {
                        hostname: hostname.clone(),
                        namespace: ns.to_string(),
                        ports: k8s_ports.iter().map(k8s_port).collect(),
                        address: spec.cluster_ip.filter(|ip| ip != "None" && !ip.is_empty()),
                        resolution: if headless {
                            Resolution::Passthrough
                        } else {
                            Resolution::Eds
                        },
                        export_to: export_to_annotation(o),
                        mesh_external: false,
                        origin: Origin::Kubernetes,
                    });
                    let listed = slices_seen.contains_key(&(ns.to_string(), o.name().to_string()));
                    let selector = Selector::service(spec.selector.as_ref());
                    if !listed {
                        for p in pods_by
                            .candidates(ns, &selector)
                            .iter()
                            .map(|i| &pods[*i])
                            .filter(|p| selector.matches(&p.labels))
                        {
                            let Some(ip) = p.ip else { continue };
                            for sp in &k8s_ports {
                                let Some(port) = pod_target_port(p.pod, sp) else {
                                    continue;
                                };
                                reg.endpoints.push(Endpoint {
                                    service: interner.str(&hostname),
                                    namespace: interner.str(ns),
                                    service_port: u32::try_from(sp.port).unwrap_or(0),
                                    address: ip.to_string(),
                                    port,
                                    labels: interner.labels(&p.labels),
                                    weight: None,
                                    locality: None,
                                    service_account: Some(interner.str(p.account)),
                                    istio_mtls: takes_istio_mtls(&p.labels, None),
                                });
                            }
                        }
                    }
                }
                Spec::ServiceEntry(se) => {
                    let workloads = Workloads {
                        entries: &workload_entries,
                        entries_by: &entries_by,
                        pods: &pods,
                        pods_by: &pods_by,
                    };
                    reg.add_service_entry(o, se, &workloads, &mut interner);
                }
                _ => {}
            }
        }
        // Endpoints and EndpointSlices name their service; their ports are
        // matched to the service's by name.
        let ports_of: HashMap<(String, String), Vec<Port>> = reg
            .services
            .iter()
            .filter(|s| s.origin == Origin::Kubernetes)
            .map(|s| {
                let name = s.hostname.split('.').next().unwrap_or_default().to_string();
                ((s.namespace.clone(), name), s.ports.clone())
            })
            .collect();
        let by_name: HashMap<(&str, &str), usize> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.namespace, p.name), i))
            .collect();
        let by_ip: HashMap<(&str, &str), usize> = pods
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some(((p.namespace, p.ip?), i)))
            .collect();
        let pod_of = |ns: &str, ip: &str, target: Option<&str>| {
            match target {
                Some(name) => by_name.get(&(ns, name)),
                None => by_ip.get(&(ns, ip)),
            }
            .map(|i| &pods[*i])
        };
        let no_labels = weft_api::Map::new();
        for r in resources {
            let o = &r.object;
            let ns = namespace_of(o);
            let (svc_name, addrs): (String, Vec<Listed>) = match &o.spec {
                Spec::Endpoints(e) => {
                    let mut out = Vec::new();
                    for subset in e.subsets.iter().flatten() {
                        let ports: Vec<(String, u32)> = subset
                            .ports
                            .iter()
                            .flatten()
                            .map(|p| (p.name.clone().unwrap_or_default(), p.port.max(0) as u32))
                            .collect();
                        for a in subset.addresses.iter().flatten() {
                            let target = a
                                .target_ref
                                .as_ref()
                                .filter(|t| t.kind.as_deref() == Some("Pod"))
                                .and_then(|t| t.name.clone());
                            out.push(Listed {
                                ip: a.ip.clone(),
                                pod: target,
                                ports: ports.clone(),
                            });
                        }
                    }
                    (o.name().to_string(), out)
                }
                Spec::EndpointSlice(s) => {
                    let Some(name) = o.labels().get("kubernetes.io/service-name") else {
                        continue;
                    };
                    let ports: Vec<(String, u32)> = s
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.port? as u32)))
                        .collect();
                    let mut out = Vec::new();
                    for ep in &s.endpoints {
                        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                            continue;
                        }
                        let target = ep
                            .target_ref
                            .as_ref()
                            .filter(|t| t.kind.as_deref() == Some("Pod"))
                            .and_then(|t| t.name.clone());
                        for a in &ep.addresses {
                            out.push(Listed {
                                ip: a.clone(),
                                pod: target.clone(),
                                ports: ports.clone(),
                            });
                        }
                    }
                    (name.clone(), out)
                }
                _ => continue,
            };
            let Some(svc_ports) = ports_of.get(&(ns.to_string(), svc_name.clone())) else {
                continue;
            };
            let hostname = service_hostname(&svc_name, ns);
            for Listed { ip, pod, ports } in addrs {
                let pod = pod_of(ns, &ip, pod.as_deref());
                let labels = interner.labels(pod.map_or(&no_labels, |p| &p.labels));
                // Istio's default for an address no pod explains.
                let account = interner.str(pod.map_or("default", |p| p.account));
                let istio_mtls = pod.is_some_and(|p| takes_istio_mtls(&p.labels, None));
                for (port_name, port) in &ports {
                    let Some(sp) = svc_ports.iter().find(|p| {
                        &p.name == port_name || (svc_ports.len() == 1 && ports.len() == 1)
                    }) else {
                        continue;
                    };
                    reg.endpoints.push(Endpoint {
                        service: interner.str(&hostname),
                        namespace: interner.str(ns),
                        service_port: sp.number,
                        address: ip.clone(),
                        port: *port,
                        labels: Arc::clone(&labels),
                        weight: None,
                        locality: None,
                        service_account: Some(Arc::clone(&account)),
                        istio_mtls,
                    });
                }
            }
        }
        for (i, e) in reg.endpoints.iter().enumerate() {
            reg.by_port
                .entry(Arc::clone(&e.service))
                .or_default()
                .entry(e.service_port)
                .or_default()
                .push(i);
        }
        let mut digests: HashMap<&Arc<str>, foldhash::fast::FoldHasher> = HashMap::default();
        for e in &reg.endpoints {
            std::hash::Hash::hash(e, digests.entry(&e.service).or_insert_with(digest_hasher));
        }
        reg.endpoint_digests = digests
            .into_iter()
            .map(|(k, h)| (Arc::clone(k), std::hash::Hasher::finish(&h)))
            .collect();
        // Kept until the namespace next changes: without the slack that
        // growing by doubling leaves.
        reg.services.shrink_to_fit();
        reg.endpoints.shrink_to_fit();
        reg.workloads.shrink_to_fit();
        reg
    }

    fn add_service_entry(
        &mut self,
        o: &Object,
        se: &ServiceEntry,
        w: &Workloads,
        interner: &mut Interner,
    ) {
        let ns = namespace_of(o);
        let resolution = match se.resolution.unwrap_or_default() {
            SeResolution::NONE => Resolution::Passthrough,
            SeResolution::STATIC => Resolution::Eds,
            SeResolution::DNS | SeResolution::DYNAMIC_DNS => Resolution::Dns,
            SeResolution::DNS_ROUND_ROBIN => Resolution::DnsRoundRobin,
        };
        let ports: Vec<Port> = se
            .ports
            .iter()
            .map(|p| Port {
                number: p.number,
                name: p.name.clone(),
                protocol: Protocol::parse(&p.protocol),
            })
            .collect();
        // Instances: inline endpoints, or the workloads the selector picks.
        let mut instances: Vec<Instance> = se.endpoints.iter().map(Instance::of).collect();
        if let Some(sel) = se.workload_selector.as_ref().map(Selector::workload) {
            for i in w.entries_by.candidates(ns, &sel) {
                let (_, we) = w.entries[*i];
                if sel.matches(&we.labels) {
                    instances.push(Instance::of(we));
                }
            }
            for i in w.pods_by.candidates(ns, &sel) {
                let p = &w.pods[*i];
                if let (true, Some(ip)) = (sel.matches(&p.labels), p.ip) {
                    instances.push(Instance {
                        address: ip,
                        labels: &p.labels,
                        ports: None,
                        weight: None,
                        locality: None,
                        service_account: p.account,
                        istio_mtls: takes_istio_mtls(&p.labels, None),
                    });
                }
            }
        }
        let namespace = interner.str(ns);
        for host in &se.hosts {
            let service = interner.str(host);
            self.services.push(Service {
                hostname: host.clone(),
                namespace: ns.to_string(),
                ports: ports.clone(),
                address: se.addresses.first().cloned(),
                resolution,
                export_to: se.export_to.clone(),
                mesh_external: se.location.unwrap_or_default() == Location::MESH_EXTERNAL,
                origin: Origin::ServiceEntry,
            });
            for sp in &se.ports {
                let default_port = sp.target_port.unwrap_or(sp.number);
                if instances.is_empty() && resolution == Resolution::Dns && !host.contains('*') {
                    // A DNS entry without endpoints resolves its own host.
                    self.endpoints.push(Endpoint {
                        service: Arc::clone(&service),
                        namespace: Arc::clone(&namespace),
                        service_port: sp.number,
                        address: host.clone(),
                        port: sp.number,
                        labels: interner.labels(&weft_api::Map::new()),
                        weight: None,
                        locality: None,
                        service_account: None,
                        istio_mtls: false,
                    });
                }
                for i in &instances {
                    self.endpoints.push(Endpoint {
                        service: Arc::clone(&service),
                        namespace: Arc::clone(&namespace),
                        service_port: sp.number,
                        address: i.address.to_string(),
                        port: i
                            .ports
                            .and_then(|p| p.get(&sp.name))
                            .copied()
                            .unwrap_or(default_port),
                        labels: interner.labels(i.labels),
                        weight: i.weight,
                        locality: i.locality.map(str::to_string),
                        service_account: Some(interner.str(i.service_account)),
                        istio_mtls: i.istio_mtls,
                    });
                }
            }
        }
    }
}

/// `networking.istio.io/exportTo` on a Kubernetes Service.
fn export_to_annotation(o: &Object) -> Vec<String> {
    o.meta
        .annotations()
        .and_then(|a| a.get("networking.istio.io/exportTo"))
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

fn k8s_port(p: &ServicePort) -> Port {
    let name = p.name.clone().unwrap_or_default();
    let number = u32::try_from(p.port).unwrap_or(0);
    let protocol = Protocol::of_service_port(
        number,
        &name,
        p.protocol.as_deref(),
        p.app_protocol.as_deref(),
    );
    Port {
        number,
        name,
        protocol,
    }
}

/// The pod port a service port's targetPort names (a number, or a
/// container port's name).
fn pod_target_port(pod: &Pod, sp: &ServicePort) -> Option<u32> {
    match &sp.target_port {
        None => u32::try_from(sp.port).ok(),
        Some(IntOrString::Int(i)) => u32::try_from(*i).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|cp| cp.name.as_deref() == Some(name))
            .and_then(|cp| u32::try_from(cp.container_port).ok()),
    }
}
