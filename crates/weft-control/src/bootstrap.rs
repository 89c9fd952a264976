//! The Envoy bootstrap that connects a proxy to the control plane (what
//! Istio's pilot-agent writes for Envoy): the node id Istio uses for the
//! role, ADS over gRPC to the control plane, listeners and clusters from
//! it. Envoy and weft's proxy both run it unmodified.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::gen::ProxyKind;

/// Who the proxy is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub kind: ProxyKind,
    /// The workload (pod or WorkloadEntry) name.
    pub name: String,
    pub namespace: String,
    pub ip: String,
}

impl Identity {
    /// Istio's node id: `sidecar~IP~NAME.NS~NS.svc.cluster.local` (or
    /// `router~...` for gateways).
    pub fn node_id(&self) -> String {
        let role = match self.kind {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Router => "router",
        };
        format!(
            "{role}~{}~{}.{}~{}.{}",
            self.ip,
            self.name,
            self.namespace,
            self.namespace,
            weft_config::host::SERVICE_DOMAIN
        )
    }
}

/// The bootstrap for `who`, with its admin endpoint on 127.0.0.1:`admin`
/// (0: any free port).
pub fn envoy(who: &Identity, xds: SocketAddr, admin: u16) -> Value {
    json!({
        "node": {
            "id": who.node_id(),
            "cluster": format!("{}.{}", who.name, who.namespace),
            "metadata": {"NAMESPACE": who.namespace, "NAME": who.name},
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": true,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": xds.ip().to_string(), "port_value": xds.port()}}}}
            ]}]},
        }]},
    })
}
