//! `Sidecar` (networking.istio.io): the ingress and egress a sidecar
//! proxy handles. With `captureMode: NONE` and `bind`, it is how an
//! application reaches the mesh without iptables (what `weft up` uses).

use crate::common::{Port, WorkloadSelector};
use crate::destination_rule::ConnectionPoolSettings;
use crate::gateway::ServerTlsSettings;

model! {
    pub struct Sidecar {
        pub workload_selector: Option<WorkloadSelector>,
        pub ingress: Vec<IstioIngressListener>,
        pub egress: Vec<IstioEgressListener>,
        pub inbound_connection_pool: Option<ConnectionPoolSettings>,
        pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    }
}

model! {
    pub struct IstioIngressListener {
        pub port: Port,
        pub bind: Option<String>,
        pub capture_mode: Option<CaptureMode>,
        pub default_endpoint: Option<String>,
        pub tls: Option<ServerTlsSettings>,
        pub connection_pool: Option<ConnectionPoolSettings>,
    }
}

model! {
    pub struct IstioEgressListener {
        pub port: Option<Port>,
        pub bind: Option<String>,
        pub capture_mode: Option<CaptureMode>,
        pub hosts: Vec<String>,
    }
}

proto_enum! {
    pub enum CaptureMode { DEFAULT, IPTABLES, NONE }
}

model! {
    pub struct OutboundTrafficPolicy {
        pub mode: Option<OutboundMode>,
        pub egress_proxy: Option<crate::common::Destination>,
    }
}

proto_enum! {
    pub enum OutboundMode { REGISTRY_ONLY, ALLOW_ANY }
}
