//! MeshConfig's `extensionProviders` (the `mesh` key of the `istio`
//! ConfigMap): what AuthorizationPolicy's CUSTOM action names as its
//! external authorizer. The ext_authz providers are typed field by field;
//! the other provider kinds (tracing, access logging, metrics) are kept
//! as given for the telemetry work, so that a misspelt provider kind is
//! still an error.

use crate::{Duration, Map};

model! {
    pub struct MeshExtensionProvider {
        pub name: String,
        pub envoy_ext_authz_http: Option<ExtAuthzHttpProvider>,
        pub envoy_ext_authz_grpc: Option<ExtAuthzGrpcProvider>,
        pub zipkin: Option<serde_json::Value>,
        pub lightstep: Option<serde_json::Value>,
        pub datadog: Option<serde_json::Value>,
        pub stackdriver: Option<serde_json::Value>,
        pub opencensus: Option<serde_json::Value>,
        pub skywalking: Option<serde_json::Value>,
        pub opentelemetry: Option<serde_json::Value>,
        pub prometheus: Option<serde_json::Value>,
        pub envoy_file_access_log: Option<serde_json::Value>,
        pub envoy_http_als: Option<serde_json::Value>,
        pub envoy_tcp_als: Option<serde_json::Value>,
        pub envoy_otel_als: Option<serde_json::Value>,
        pub sds: Option<serde_json::Value>,
    }
}

model! {
    /// `envoyExtAuthzHttp`: an HTTP authorizer.
    pub struct ExtAuthzHttpProvider {
        /// `host` or `namespace/host` of a service in the registry.
        pub service: String,
        pub port: u32,
        pub timeout: Option<Duration>,
        pub path_prefix: Option<String>,
        pub fail_open: Option<bool>,
        pub clear_route_cache: Option<bool>,
        /// An HTTP status code, as a string (Istio's default "403").
        pub status_on_error: Option<String>,
        pub include_headers_in_check: Vec<String>,
        pub include_request_headers_in_check: Vec<String>,
        pub include_additional_headers_in_check: Map<String, String>,
        pub include_request_body_in_check: Option<RequestBody>,
        pub headers_to_upstream_on_allow: Vec<String>,
        pub headers_to_downstream_on_deny: Vec<String>,
        pub headers_to_downstream_on_allow: Vec<String>,
    }
}

model! {
    /// `envoyExtAuthzGrpc`: an authorizer speaking Envoy's
    /// `envoy.service.auth.v3.Authorization` gRPC service.
    pub struct ExtAuthzGrpcProvider {
        pub service: String,
        pub port: u32,
        pub timeout: Option<Duration>,
        pub fail_open: Option<bool>,
        pub clear_route_cache: Option<bool>,
        pub status_on_error: Option<String>,
        pub include_request_body_in_check: Option<RequestBody>,
    }
}

model! {
    /// `includeRequestBodyInCheck`.
    pub struct RequestBody {
        pub max_request_bytes: Option<u32>,
        pub allow_partial_message: Option<bool>,
        pub pack_as_bytes: Option<bool>,
    }
}
