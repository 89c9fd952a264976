//! The service registry as the control plane sees it: services with their
//! ports and protocols, the endpoints behind each port, and the workloads
//! proxies run for. Built from Kubernetes Services/Endpoints/Pods and from
//! ServiceEntry/WorkloadEntry alike (see `registry`), so everything after
//! this point is the same with or without Kubernetes.

use weft_api::Map;

/// The cluster DNS suffix Istio assumes by default.
pub const DOMAIN: &str = "svc.cluster.local";

/// What a port speaks, chosen as Istio chooses it: a ServiceEntry's
/// `protocol`, a Kubernetes port's `appProtocol`, else the port name's
/// prefix (`http`, `http-web`, `grpc-api`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Mysql,
    Redis,
    Udp,
    /// Unnamed or unknown: Istio sniffs these; weft treats them as TCP
    /// (see `Protocol::from_name`).
    Unknown,
}

impl Protocol {
    /// A protocol name as written in `protocol`, `appProtocol` or a port
    /// name prefix (case-insensitive).
    pub fn parse(name: &str) -> Protocol {
        match name.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http2" | "h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "mongo" => Protocol::Mongo,
            "mysql" => Protocol::Mysql,
            "redis" => Protocol::Redis,
            "udp" => Protocol::Udp,
            _ => Protocol::Unknown,
        }
    }

    /// Istio's port naming convention: `<protocol>[-<suffix>]`.
    pub fn from_name(port_name: &str) -> Protocol {
        if port_name.to_ascii_lowercase().starts_with("grpc-web") {
            return Protocol::GrpcWeb;
        }
        Protocol::parse(port_name.split('-').next().unwrap_or_default())
    }

    /// Routed by the HTTP connection manager (route tables, VirtualService
    /// `http` rules).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// The upstream must be spoken to in HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

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

/// Istio's exportTo rule, shared by services, VirtualServices and
/// DestinationRules: empty or `*` is everywhere, `.` the owner's own
/// namespace, `~` nowhere.
pub fn exported_to(export_to: &[String], owner: &str, namespace: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || (e == "." && owner == namespace) || e == namespace)
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
