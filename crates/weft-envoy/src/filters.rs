//! Network and HTTP filters: the HTTP connection manager with its router,
//! the TCP proxy, and per-cluster HTTP protocol options.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::route::RouteConfiguration;
use crate::{Duration, TypedConfig};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: CodecType,
    pub route_config: Option<RouteConfiguration>,
    /// The route table by name, from RDS (instead of `route_config`).
    pub rds: Option<crate::xds::Rds>,
    pub http_filters: Vec<HttpFilter>,
    pub access_log: Vec<AccessLog>,
    pub use_remote_address: Option<bool>,
    pub xff_num_trusted_hops: u32,
    pub skip_xff_append: bool,
    pub generate_request_id: Option<bool>,
    pub preserve_external_request_id: bool,
    pub server_name: Option<String>,
    pub upgrade_configs: Vec<UpgradeConfig>,
    pub stream_idle_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    /// How long a draining connection gets before it is closed (5 s).
    pub drain_timeout: Option<Duration>,
    pub common_http_protocol_options: Option<HttpProtocolOptionsCommon>,
    pub http_protocol_options: Option<Http1ProtocolOptions>,
    pub http2_protocol_options: Option<Http2ProtocolOptions>,
    /// RFC 3986 normalization of the path before routing and filters
    /// (off when unset: Envoy's runtime default is 0%).
    pub normalize_path: Option<bool>,
    /// Adjacent slashes in the path merged into one.
    pub merge_slashes: bool,
    /// What becomes of `%2F` and `%5C` (either case) in the path.
    pub path_with_escaped_slashes_action: PathWithEscapedSlashesAction,
    /// Envoy's not-implemented path transformations; modelled only so
    /// that weft can refuse them by name.
    pub path_normalization_options: Option<serde_json::Value>,
    pub max_request_headers_kb: Option<u32>,
    /// What becomes of `x-forwarded-client-cert` (SANITIZE by default).
    pub forward_client_cert_details: ForwardClientCertDetails,
    /// Which facts of the client certificate an element carries (for
    /// APPEND_FORWARD and SANITIZE_SET).
    pub set_current_client_cert_details: Option<SetCurrentClientCertDetails>,
}

/// Envoy's `ForwardClientCertDetails`: how the connection manager treats
/// the `x-forwarded-client-cert` header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum ForwardClientCertDetails {
    #[default]
    SANITIZE,
    FORWARD_ONLY,
    APPEND_FORWARD,
    SANITIZE_SET,
    ALWAYS_FORWARD_ONLY,
}

/// Envoy's `PathWithEscapedSlashesAction`: what the connection manager
/// does with escaped slashes (`%2F`, `%5C`, either case) in a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum PathWithEscapedSlashesAction {
    /// Envoy's choice, which is KEEP_UNCHANGED.
    #[default]
    IMPLEMENTATION_SPECIFIC_DEFAULT,
    KEEP_UNCHANGED,
    /// 400 (gRPC: status 13) when the path has one.
    REJECT_REQUEST,
    /// Unescaped, then a 307 to the path as it ends up.
    UNESCAPE_AND_REDIRECT,
    UNESCAPE_AND_FORWARD,
}

/// The client certificate's facts set in the current element (`By` and
/// `Hash` always are).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SetCurrentClientCertDetails {
    /// A `BoolValue` in Envoy's proto: unset is false.
    pub subject: Option<bool>,
    pub cert: bool,
    pub chain: bool,
    pub dns: bool,
    pub uri: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum CodecType {
    #[default]
    AUTO,
    HTTP1,
    HTTP2,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFilter {
    pub name: String,
    pub typed_config: Option<TypedConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeConfig {
    pub upgrade_type: String,
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Router {
    pub suppress_envoy_headers: bool,
    pub start_child_span: bool,
}

/// An access logger: `envoy.access_loggers.file`, `stdout` or `stderr`
/// (its `typed_config` one of [`TypedConfig`]'s access log variants).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub name: String,
    pub typed_config: Option<TypedConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpProtocolOptionsCommon {
    pub idle_timeout: Option<Duration>,
    pub max_headers_count: Option<u32>,
    pub max_stream_duration: Option<Duration>,
    pub max_connection_duration: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http1ProtocolOptions {}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2ProtocolOptions {
    pub max_concurrent_streams: Option<u32>,
    pub initial_stream_window_size: Option<u32>,
    pub initial_connection_window_size: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpProxy {
    pub stat_prefix: String,
    pub cluster: Option<String>,
    pub weighted_clusters: Option<TcpWeightedClusters>,
    pub idle_timeout: Option<Duration>,
    pub access_log: Vec<AccessLog>,
    pub max_connect_attempts: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpWeightedClusters {
    pub clusters: Vec<TcpClusterWeight>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpClusterWeight {
    pub name: String,
    pub weight: u32,
}

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`: which HTTP
/// version a cluster speaks upstream.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpProtocolOptions {
    pub common_http_protocol_options: Option<HttpProtocolOptionsCommon>,
    pub explicit_http_config: Option<ExplicitHttpConfig>,
    pub use_downstream_protocol_config: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitHttpConfig {
    pub http_protocol_options: Option<Http1ProtocolOptions>,
    pub http2_protocol_options: Option<Http2ProtocolOptions>,
}

/// Keyed by extension name in `typed_extension_protocol_options`.
pub type ExtensionOptions = BTreeMap<String, TypedConfig>;

/// `envoy.extensions.filters.http.fault.v3.HTTPFault`: delays and aborts
/// injected into a share of requests (also per route, in
/// `typed_per_filter_config`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// Only requests routed to this cluster are faulted.
    pub upstream_cluster: Option<String>,
    /// Only requests matching all of these are faulted.
    pub headers: Vec<crate::route::HeaderMatcher>,
    pub downstream_nodes: Vec<String>,
    pub max_active_faults: Option<u32>,
    pub response_rate_limit: Option<serde_json::Value>,
    // Runtime keys: with no runtime layer (weft has none, and Envoy
    // without overrides) they change nothing.
    pub delay_percent_runtime: Option<String>,
    pub abort_percent_runtime: Option<String>,
    pub delay_duration_runtime: Option<String>,
    pub abort_http_status_runtime: Option<String>,
    pub max_active_faults_runtime: Option<String>,
    pub response_rate_limit_percent_runtime: Option<String>,
    pub abort_grpc_status_runtime: Option<String>,
    pub disable_downstream_cluster_stats: bool,
    pub filter_metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultDelay {
    pub fixed_delay: Option<Duration>,
    /// Delay by the request's `x-envoy-fault-delay-request` (ms).
    pub header_delay: Option<serde_json::Value>,
    pub percentage: Option<crate::FractionalPercent>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultAbort {
    pub http_status: Option<u32>,
    pub grpc_status: Option<u32>,
    /// Abort with the request's `x-envoy-fault-abort-request` status
    /// (or `x-envoy-fault-abort-grpc-request`).
    pub header_abort: Option<serde_json::Value>,
    pub percentage: Option<crate::FractionalPercent>,
}

/// `envoy.extensions.filters.http.cors.v3.CorsPolicy`: a route's, virtual
/// host's or table's CORS settings (the filter itself has none).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsPolicy {
    pub allow_origin_string_match: Vec<crate::StringMatcher>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: Option<bool>,
    /// 100% when neither this nor `shadow_enabled` is set.
    pub filter_enabled: Option<RuntimeFractionalPercent>,
    pub shadow_enabled: Option<RuntimeFractionalPercent>,
    pub allow_private_network_access: Option<bool>,
    /// True when unset.
    pub forward_not_matching_preflights: Option<bool>,
}

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`: a
/// token bucket per filter (or per route, in typed_per_filter_config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalRateLimit {
    pub stat_prefix: String,
    pub status: Option<HttpStatus>,
    pub token_bucket: Option<TokenBucket>,
    /// The share of requests the filter looks at (none when unset).
    pub filter_enabled: Option<RuntimeFractionalPercent>,
    /// The share of those it refuses when out of tokens (none when
    /// unset: they are only counted).
    pub filter_enforced: Option<RuntimeFractionalPercent>,
    pub request_headers_to_add_when_not_enforced: Vec<crate::HeaderValueOption>,
    pub response_headers_to_add: Vec<crate::HeaderValueOption>,
    pub descriptors: Vec<serde_json::Value>,
    pub stage: u32,
    pub local_rate_limit_per_downstream_connection: bool,
    pub enable_x_ratelimit_headers: Option<String>,
    pub always_consume_default_token_bucket: Option<bool>,
    pub rate_limited_as_resource_exhausted: bool,
    pub enable_retry_after_header: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenBucket {
    pub max_tokens: u32,
    /// 1 when unset.
    pub tokens_per_fill: Option<u32>,
    pub fill_interval: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeFractionalPercent {
    pub default_value: crate::FractionalPercent,
    pub runtime_key: String,
}

/// `envoy.type.v3.HttpStatus`: the code as its enum name
/// (`TooManyRequests`, what proto3 JSON writes) or number.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpStatus {
    pub code: serde_json::Value,
}

impl HttpStatus {
    /// The numeric status, when the code is one Envoy's enum has.
    pub fn number(&self) -> Option<u16> {
        const NAMES: &[(&str, u16)] = &[
            ("Continue", 100),
            ("OK", 200),
            ("Created", 201),
            ("Accepted", 202),
            ("NonAuthoritativeInformation", 203),
            ("NoContent", 204),
            ("ResetContent", 205),
            ("PartialContent", 206),
            ("MultiStatus", 207),
            ("AlreadyReported", 208),
            ("IMUsed", 226),
            ("MultipleChoices", 300),
            ("MovedPermanently", 301),
            ("Found", 302),
            ("SeeOther", 303),
            ("NotModified", 304),
            ("UseProxy", 305),
            ("TemporaryRedirect", 307),
            ("PermanentRedirect", 308),
            ("BadRequest", 400),
            ("Unauthorized", 401),
            ("PaymentRequired", 402),
            ("Forbidden", 403),
            ("NotFound", 404),
            ("MethodNotAllowed", 405),
            ("NotAcceptable", 406),
            ("ProxyAuthenticationRequired", 407),
            ("RequestTimeout", 408),
            ("Conflict", 409),
            ("Gone", 410),
            ("LengthRequired", 411),
            ("PreconditionFailed", 412),
            ("PayloadTooLarge", 413),
            ("URITooLong", 414),
            ("UnsupportedMediaType", 415),
            ("RangeNotSatisfiable", 416),
            ("ExpectationFailed", 417),
            ("MisdirectedRequest", 421),
            ("UnprocessableEntity", 422),
            ("Locked", 423),
            ("FailedDependency", 424),
            ("UpgradeRequired", 426),
            ("PreconditionRequired", 428),
            ("TooManyRequests", 429),
            ("RequestHeaderFieldsTooLarge", 431),
            ("InternalServerError", 500),
            ("NotImplemented", 501),
            ("BadGateway", 502),
            ("ServiceUnavailable", 503),
            ("GatewayTimeout", 504),
            ("HTTPVersionNotSupported", 505),
            ("VariantAlsoNegotiates", 506),
            ("InsufficientStorage", 507),
            ("LoopDetected", 508),
            ("NotExtended", 510),
            ("NetworkAuthenticationRequired", 511),
        ];
        match &self.code {
            serde_json::Value::String(s) => NAMES.iter().find(|(n, _)| n == s).map(|(_, c)| *c),
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| NAMES.iter().any(|(_, k)| k == c)),
            _ => None,
        }
    }
}
