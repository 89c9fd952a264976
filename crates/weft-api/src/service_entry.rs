//! `ServiceEntry`, `WorkloadEntry` and `WorkloadGroup` (networking.istio.io):
//! services and workloads the mesh knows about without Kubernetes. They are
//! also how `weft up` describes a local mesh.

use crate::Map;

use crate::common::{Port, WorkloadSelector};

model! {
    pub struct ServiceEntry {
        pub hosts: Vec<String>,
        pub addresses: Vec<String>,
        pub ports: Vec<Port>,
        pub location: Option<Location>,
        pub resolution: Option<Resolution>,
        pub endpoints: Vec<WorkloadEntry>,
        pub workload_selector: Option<WorkloadSelector>,
        pub export_to: Vec<String>,
        pub subject_alt_names: Vec<String>,
    }
}

proto_enum! {
    pub enum Location { MESH_EXTERNAL, MESH_INTERNAL }
}

proto_enum! {
    pub enum Resolution { NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS }
}

model! {
    pub struct WorkloadEntry {
        pub address: Option<String>,
        pub ports: Map<String, u32>,
        pub labels: Map<String, String>,
        pub network: Option<String>,
        pub locality: Option<String>,
        pub weight: Option<u32>,
        pub service_account: Option<String>,
    }
}

model! {
    pub struct WorkloadGroup {
        pub metadata: Option<WorkloadGroupMeta>,
        pub template: WorkloadEntry,
        pub probe: Option<ReadinessProbe>,
    }
}

model! {
    pub struct WorkloadGroupMeta {
        pub labels: Map<String, String>,
        pub annotations: Map<String, String>,
    }
}

model! {
    pub struct ReadinessProbe {
        pub initial_delay_seconds: Option<i32>,
        pub timeout_seconds: Option<i32>,
        pub period_seconds: Option<i32>,
        pub success_threshold: Option<i32>,
        pub failure_threshold: Option<i32>,
        pub http_get: Option<HttpHealthCheckConfig>,
        pub tcp_socket: Option<TcpHealthCheckConfig>,
        pub exec: Option<ExecHealthCheckConfig>,
        pub grpc: Option<GrpcHealthCheckConfig>,
    }
}

model! {
    pub struct HttpHealthCheckConfig {
        pub path: Option<String>,
        pub port: u32,
        pub host: Option<String>,
        pub scheme: Option<String>,
        pub http_headers: Vec<HttpHeader>,
    }
}

model! {
    pub struct HttpHeader {
        pub name: Option<String>,
        pub value: Option<String>,
    }
}

model! {
    pub struct TcpHealthCheckConfig {
        pub host: Option<String>,
        pub port: u32,
    }
}

model! {
    pub struct ExecHealthCheckConfig {
        pub command: Vec<String>,
    }
}

model! {
    pub struct GrpcHealthCheckConfig {
        pub port: u32,
        pub service: Option<String>,
    }
}
