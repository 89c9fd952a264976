//! External authorization: the `envoy.filters.http.ext_authz` filter's
//! settings (`envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`) and
//! its per-route `ExtAuthzPerRoute`.
//!
//! A request is checked by an HTTP service (the request's method and
//! path, selected headers, to a cluster) or a gRPC one
//! (`envoy.service.auth.v3.Authorization/Check`), which allows it
//! (possibly adding headers) or denies it (with its status, headers and
//! body). Istio's CUSTOM action gates the filter on RBAC shadow
//! metadata with `filter_enabled_metadata`. [`crate::check`] refuses by
//! name what weft does not implement.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::filters::{HttpStatus, RuntimeFractionalPercent};
use crate::rbac::MetadataMatcher;
use crate::xds::{ApiVersion, GrpcService};
use crate::{Duration, HeaderValue, StringMatcher};

/// `ExtAuthz`: the filter's settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtAuthz {
    /// One of the two services.
    pub grpc_service: Option<GrpcService>,
    pub http_service: Option<HttpService>,
    /// The gRPC service's API: V3 (AUTO, unset, is taken as V3).
    pub transport_api_version: ApiVersion,
    /// A failed check (the service unreachable, too slow, a 5xx) lets
    /// the request on.
    pub failure_mode_allow: bool,
    /// ... with `x-envoy-auth-failure-mode-allowed: true`.
    pub failure_mode_allow_header_add: bool,
    /// The status of a failed check's reply (403 by default).
    pub status_on_error: Option<HttpStatus>,
    /// Buffer the request body and send it with the check.
    pub with_request_body: Option<BufferSettings>,
    /// Route again after the authorizer changed the request's headers.
    pub clear_route_cache: bool,
    /// Dynamic metadata namespaces passed to a gRPC service.
    pub metadata_context_namespaces: Vec<String>,
    /// The peer's certificate in a gRPC check.
    pub include_peer_certificate: bool,
    pub stat_prefix: String,
    /// Only requests whose dynamic metadata matches are checked.
    pub filter_enabled_metadata: Option<MetadataMatcher>,
    /// The share of requests checked (only the default value: weft has
    /// no runtime).
    pub filter_enabled: Option<RuntimeFractionalPercent>,
    /// Requests the filter is disabled for are denied.
    pub deny_at_disable: Option<RuntimeFeatureFlag>,
    /// The request headers sent to the authorizer (Envoy's newer place
    /// for `http_service.authorization_request.allowed_headers`, which
    /// istiod writes); HTTP service only in weft.
    pub allowed_headers: Option<ListStringMatcher>,
    /// Refused by weft (named in [`crate::check`]).
    pub disallowed_headers: Option<serde_json::Value>,
    pub validate_mutations: bool,
    pub typed_metadata_context_namespaces: Vec<String>,
    pub route_metadata_context_namespaces: Vec<String>,
    pub route_typed_metadata_context_namespaces: Vec<String>,
    pub bootstrap_metadata_labels_key: String,
    pub include_tls_session: bool,
    pub charge_cluster_response_stats: Option<bool>,
    pub encode_raw_headers: bool,
    pub decoder_header_mutation_rules: Option<serde_json::Value>,
    pub enable_dynamic_metadata_ingestion: Option<bool>,
    pub filter_metadata: Option<serde_json::Value>,
    pub emit_filter_state_stats: bool,
    pub max_denied_response_body_bytes: u32,
    pub enforce_response_header_limits: bool,
    pub shadow_mode: bool,
    pub emit_client_span: Option<bool>,
}

/// `envoy.config.core.v3.RuntimeFeatureFlag`: the default value is
/// what weft uses (it has no runtime).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeFeatureFlag {
    pub default_value: Option<bool>,
    pub runtime_key: String,
}

/// `BufferSettings`: how much of the body goes with the check.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSettings {
    pub max_request_bytes: u32,
    pub allow_partial_message: bool,
    pub pack_as_bytes: bool,
}

/// `HttpService`: the authorizer as a plain HTTP server.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpService {
    pub server_uri: Option<HttpUri>,
    /// Put before the request's path in the check.
    pub path_prefix: String,
    pub authorization_request: Option<AuthorizationRequest>,
    pub authorization_response: Option<AuthorizationResponse>,
    /// Refused by weft.
    pub path_override: String,
    pub retry_policy: Option<serde_json::Value>,
}

/// `envoy.config.core.v3.HttpUri`: where the check goes (the cluster;
/// the URI is informational) and how long it may take.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpUri {
    pub uri: String,
    pub cluster: String,
    pub timeout: Option<Duration>,
}

/// `AuthorizationRequest`: which of the request's headers the check
/// carries, and headers added to it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationRequest {
    pub allowed_headers: Option<ListStringMatcher>,
    pub headers_to_add: Vec<HeaderValue>,
}

/// `AuthorizationResponse`: which of the authorizer's headers go where.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationResponse {
    /// Set on the request sent upstream (allowed).
    pub allowed_upstream_headers: Option<ListStringMatcher>,
    /// Appended to the request sent upstream (allowed).
    pub allowed_upstream_headers_to_append: Option<ListStringMatcher>,
    /// On the client's reply (denied).
    pub allowed_client_headers: Option<ListStringMatcher>,
    /// On the client's response (allowed).
    pub allowed_client_headers_on_success: Option<ListStringMatcher>,
    /// Refused by weft.
    pub dynamic_metadata_from_headers: Option<serde_json::Value>,
}

/// `envoy.type.matcher.v3.ListStringMatcher`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListStringMatcher {
    pub patterns: Vec<StringMatcher>,
}

/// `ExtAuthzPerRoute`: exactly one of the two.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtAuthzPerRoute {
    pub disabled: bool,
    pub check_settings: Option<CheckSettings>,
}

/// `CheckSettings`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckSettings {
    /// Passed to a gRPC service in the check's attributes.
    pub context_extensions: BTreeMap<String, String>,
    pub disable_request_body_buffering: bool,
    /// Refused by weft.
    pub with_request_body: Option<serde_json::Value>,
    pub grpc_service: Option<serde_json::Value>,
    pub http_service: Option<serde_json::Value>,
    pub emit_client_span: Option<bool>,
}
