//! The two sidecars' bootstraps, one file per side, run unchanged by
//! Envoy and by weft: the client side takes plaintext HTTP/1.1 on
//! 127.0.0.1 and sends it over mTLS to the server side, which checks the
//! client's SPIFFE identity and forwards in plaintext to the backend.
//! Istio's shape, minus what does not change the TLS cost (no RBAC, no
//! metadata exchange, no ALPN: the ALPN `istio-peer-exchange, istio`
//! only picks filter chains, and there is one).

use std::path::Path;

use serde_json::{json, Value};

use crate::pki::{Pki, CLIENT_ID, SERVER_ID};

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// The server name the client side sends (Istio sends its
/// `outbound_.PORT_._.HOST` form; the server side does not match on it).
pub const SNI: &str = "server.default.svc.cluster.local";

/// The ports of one run's pair of proxies.
#[derive(Clone, Copy)]
pub struct Ports {
    /// The client side's plaintext listener (what the application calls).
    pub outbound: u16,
    /// The server side's mTLS listener.
    pub inbound: u16,
    pub client_admin: u16,
    pub server_admin: u16,
    pub backend: u16,
}

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn file(p: &Path) -> Value {
    json!({"filename": p.display().to_string()})
}

fn hcm_to(prefix: &str, cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": prefix,
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]
        }
    })
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(port)}}]}]}
    })
}

/// Our certificate, the root, and the peer's identity as the one URI SAN
/// accepted (Istio's `match_typed_subject_alt_names`).
fn common(pki: &Pki, leaf: &crate::pki::Leaf, peer: &str) -> Value {
    json!({
        // Envoy's clients stop at TLS 1.2 unless told; Istio sets 1.3
        // as the maximum on both sides of ISTIO_MUTUAL.
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2",
            "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificates": [{"certificate_chain": file(&leaf.cert), "private_key": file(&leaf.key)}],
        "validation_context": {
            "trusted_ca": file(&pki.root),
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": peer}}]
        }
    })
}

/// The client-side sidecar: plaintext in, mTLS to the server side.
pub fn client(pki: &Pki, p: Ports) -> String {
    let mut upstream = cluster("server_sidecar", p.inbound);
    upstream["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": UPSTREAM_TLS, "sni": SNI,
            "common_tls_context": common(pki, &pki.client, SERVER_ID)}
    });
    json!({
        "admin": {"address": socket(p.client_admin)},
        "static_resources": {
            "listeners": [{"name": "outbound", "address": socket(p.outbound),
                "filter_chains": [{"filters": [hcm_to("outbound", "server_sidecar")]}]}],
            "clusters": [upstream]
        }
    })
    .to_string()
}

/// The server-side sidecar: mTLS in (a client certificate required and
/// its SPIFFE identity checked), plaintext to the backend.
pub fn server(pki: &Pki, p: Ports) -> String {
    json!({
        "admin": {"address": socket(p.server_admin)},
        "static_resources": {
            "listeners": [{"name": "inbound", "address": socket(p.inbound),
                "filter_chains": [{
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": DOWNSTREAM_TLS,
                        "require_client_certificate": true,
                        "common_tls_context": common(pki, &pki.server, CLIENT_ID)
                    }},
                    "filters": [hcm_to("inbound", "backend")]
                }]}],
            "clusters": [cluster("backend", p.backend)]
        }
    })
    .to_string()
}
