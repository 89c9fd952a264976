//! The Kubernetes Gateway API kinds Istio implements (gateway.networking.k8s.io),
//! modelled for what weft reads from them: parents, listeners, hostnames,
//! matches and backends.
//!
//! Unlike the Istio kinds, these structs do not reject unknown fields: the
//! Gateway API schema is not part of the reference data here, and a field
//! we have not modelled must not turn a valid object into an error. Fields
//! we do model are still type-checked.

use serde::{Deserialize, Serialize};

macro_rules! gw_model {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[serde_with::skip_serializing_none]
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", default)]
        pub struct $name { $($body)* }
    };
}

gw_model! {
    pub struct GatewaySpec {
        pub gateway_class_name: String,
        pub listeners: Vec<Listener>,
        pub addresses: Vec<serde_json::Value>,
    }
}

gw_model! {
    pub struct Listener {
        pub name: String,
        pub hostname: Option<String>,
        pub port: u32,
        pub protocol: String,
        pub tls: Option<serde_json::Value>,
        pub allowed_routes: Option<serde_json::Value>,
    }
}

gw_model! {
    pub struct ParentReference {
        pub group: Option<String>,
        pub kind: Option<String>,
        pub namespace: Option<String>,
        pub name: String,
        pub section_name: Option<String>,
        pub port: Option<u32>,
    }
}

gw_model! {
    /// Spec of HTTPRoute and GRPCRoute (the fields weft reads are shared).
    pub struct RouteSpec {
        pub parent_refs: Vec<ParentReference>,
        pub hostnames: Vec<String>,
        pub rules: Vec<RouteRule>,
    }
}

gw_model! {
    pub struct RouteRule {
        pub name: Option<String>,
        pub matches: Vec<serde_json::Value>,
        pub filters: Vec<serde_json::Value>,
        pub backend_refs: Vec<BackendRef>,
        pub timeouts: Option<serde_json::Value>,
    }
}

gw_model! {
    pub struct BackendRef {
        pub group: Option<String>,
        pub kind: Option<String>,
        pub name: String,
        pub namespace: Option<String>,
        pub port: Option<u32>,
        pub weight: Option<i32>,
        pub filters: Vec<serde_json::Value>,
    }
}

gw_model! {
    pub struct GatewayClassSpec {
        pub controller_name: String,
        pub description: Option<String>,
    }
}

gw_model! {
    pub struct ReferenceGrantSpec {
        pub from: Vec<serde_json::Value>,
        pub to: Vec<serde_json::Value>,
    }
}
