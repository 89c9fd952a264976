//! The service registry as the control plane sees it: services with their
//! ports and protocols, the endpoints behind each port, and the workloads
//! proxies run for. Built from Kubernetes Services/Endpoints/Pods and from
//! ServiceEntry/WorkloadEntry alike (see `registry`), so everything after
//! this point is the same with or without Kubernetes.

use weft_api::Map;

/// The cluster DNS suffix of Kubernetes Services (the mesh model's).
pub use weft_config::host::SERVICE_DOMAIN as DOMAIN;

/// What a port speaks, chosen as Istio chooses it (the mesh model's
/// rules: a ServiceEntry's `protocol`, a Kubernetes port's `appProtocol`,
/// else the port name's prefix).
pub use weft_config::mesh::Protocol;

/// Istio's exportTo rule (the mesh model's).
pub use weft_config::mesh::export::exported_to;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Port {
    pub number: u32,
    pub name: String,
    pub protocol: Protocol,
}

/// How a proxy finds a service's instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Endpoints pushed by EDS (Kubernetes services, STATIC ServiceEntries).
    Eds,
    /// The proxy resolves the endpoints' (or the hosts') names itself.
    Dns,
    /// As DNS, one connection target at a time (LOGICAL_DNS).
    DnsRoundRobin,
    /// Forwarded to the address the client asked for (ORIGINAL_DST).
    Passthrough,
}

/// Where a service came from, for messages and for the few places where
/// Istio treats the two differently (short names resolve only for
/// Kubernetes services).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    Kubernetes,
    ServiceEntry,
}

#[derive(Clone, Debug, Hash)]
pub struct Service {
    /// FQDN for Kubernetes services, the host as written for ServiceEntries.
    pub hostname: String,
    pub namespace: String,
    pub ports: Vec<Port>,
    /// ClusterIP or the ServiceEntry's first address, if any.
    pub address: Option<String>,
    pub resolution: Resolution,
    /// `exportTo` as written (`*`, `.`, `~`, namespaces); empty is `*`.
    pub export_to: Vec<String>,
    pub mesh_external: bool,
    pub origin: Origin,
}

impl Service {
    pub fn port(&self, number: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// Whether a proxy in `namespace` may see this service (exportTo).
    pub fn visible_from(&self, namespace: &str) -> bool {
        exported_to(&self.export_to, &self.namespace, namespace)
    }
}

/// Labels as the registry keeps them: one allocation per distinct set,
/// shared by every workload and endpoint that has it (the instances of
/// a deployment mostly do), which is most of a large registry's memory
/// otherwise.
pub type Labels = std::sync::Arc<Map<String, String>>;

/// One instance of a service port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The service's hostname and namespace (shared, as labels are).
    pub service: std::sync::Arc<str>,
    pub namespace: std::sync::Arc<str>,
    /// The service port this instance serves.
    pub service_port: u32,
    pub address: String,
    /// Where the instance listens.
    pub port: u32,
    pub labels: Labels,
    pub weight: Option<u32>,
    pub locality: Option<String>,
    /// The instance's service account (a pod's, a WorkloadEntry's), whose
    /// SPIFFE identity a client verifies it by under mutual TLS; none for
    /// a host resolved by DNS.
    pub service_account: Option<std::sync::Arc<str>>,
    /// Whether it takes Istio's mutual TLS (a sidecar runs beside it):
    /// `weft_config::mesh::mtls::takes_istio_mtls`.
    pub istio_mtls: bool,
}

/// A workload a proxy may run for: a Pod or a WorkloadEntry.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub namespace: std::sync::Arc<str>,
    pub address: String,
    pub labels: Labels,
    pub service_account: std::sync::Arc<str>,
}
