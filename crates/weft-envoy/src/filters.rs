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
    pub normalize_path: Option<bool>,
    pub merge_slashes: bool,
    pub max_request_headers_kb: Option<u32>,
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

/// `envoy.access_loggers.stdout` / `file` with the default format.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub name: String,
    pub typed_config: Option<serde_json::Value>,
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
