//! The bootstraps, one per case, each run unchanged by Envoy and by
//! weft: a plaintext listener on 127.0.0.1 (no TLS: the filter's cost
//! is not hidden under the handshake's and the record layer's), an HTTP
//! connection manager whose filters are the case's auth filter then the
//! router, one route to the backend (a STATIC cluster on 127.0.0.1).

use serde_json::{json, Value};

use crate::{jwt, rbac, Case};

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// The ports of one run (one proxy runs at a time).
#[derive(Clone, Copy)]
pub struct Ports {
    /// The proxy's listener (what the application calls).
    pub listener: u16,
    pub admin: u16,
    pub backend: u16,
}

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// The auth filter of `case`, if it has one, as an `http_filters` entry.
fn auth_filter(case: Case, p: Ports, jwks: &Value) -> Option<Value> {
    match case {
        Case::Baseline => None,
        Case::Rbac(n) => Some(json!({"name": "envoy.filters.http.rbac",
            "typed_config": rbac::filter(n, p.listener)})),
        Case::Jwt(_) => Some(json!({"name": "envoy.filters.http.jwt_authn",
            "typed_config": jwt::filter(jwks)})),
    }
}

/// The whole bootstrap of `case` as JSON text. `jwks` is the JWT
/// provider's key set (unused by the other cases).
pub fn render(case: Case, p: Ports, jwks: &Value) -> String {
    let mut filters: Vec<Value> = auth_filter(case, p, jwks).into_iter().collect();
    filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    json!({
        "admin": {"address": socket(p.admin)},
        "static_resources": {
            "listeners": [{"name": "inbound", "address": socket(p.listener),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": "inbound",
                        "route_config": {"name": "inbound", "virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
                        "http_filters": filters
                    }
                }]}]}],
            "clusters": [{
                "name": "backend", "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": socket(p.backend)}}]}]}
            }]
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// weft refuses, by name, a field it does not implement: every
    /// case's bootstrap must pass its reading and checks (the keys are
    /// compiled later, by the proxy; the run checks that it starts).
    #[test]
    fn weft_reads_every_case() {
        let p = Ports {
            listener: 15006,
            admin: 15000,
            backend: 8080,
        };
        let jwks = json!({"keys": []});
        for case in crate::parse_cases(None) {
            let text = render(case, p, &jwks);
            if let Err(e) = weft_envoy::parse_bootstrap(&case.file(), &text) {
                panic!("{}: {e}", case.name());
            }
        }
    }
}
