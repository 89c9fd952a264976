//! `envoy.config.cluster.v3` and `endpoint.v3`: clusters and their
//! static endpoints.

use serde::Deserialize;

use crate::filters::ExtensionOptions;
use crate::{Address, Duration};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: DiscoveryType,
    pub connect_timeout: Option<Duration>,
    pub lb_policy: LbPolicy,
    pub load_assignment: Option<ClusterLoadAssignment>,
    pub typed_extension_protocol_options: ExtensionOptions,
    pub dns_lookup_family: Option<DnsLookupFamily>,
    pub dns_refresh_rate: Option<Duration>,
    pub respect_dns_ttl: bool,
    pub eds_cluster_config: Option<crate::xds::EdsClusterConfig>,
    pub per_connection_buffer_limit_bytes: Option<u32>,
    /// Read by filters: Istio's stats take `destination_service` from
    /// `filter_metadata.istio.services`.
    pub metadata: Option<Metadata>,
    /// ORIGINAL_DST: how often unused destinations are forgotten (5 s).
    pub cleanup_interval: Option<Duration>,
    pub original_dst_lb_config: Option<OriginalDstLbConfig>,
    pub circuit_breakers: Option<CircuitBreakers>,
    pub outlier_detection: Option<Box<OutlierDetection>>,
    pub common_lb_config: Option<CommonLbConfig>,
    pub ring_hash_lb_config: Option<RingHashLbConfig>,
    pub maglev_lb_config: Option<MaglevLbConfig>,
    pub transport_socket: Option<crate::core::TransportSocket>,
    /// Per-endpoint transport sockets, chosen by endpoint metadata under
    /// `envoy.transport_socket_match`; the first match wins, none falls
    /// back to `transport_socket`.
    pub transport_socket_matches: Vec<TransportSocketMatch>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSocketMatch {
    pub name: String,
    /// Key/value pairs the endpoint's metadata must all have (empty:
    /// every endpoint). Keys are kept snake_case whichever way the
    /// resource was read (the JSON form's normalizer renames them; the
    /// proxy compares metadata keys in that form).
    #[serde(rename = "match", deserialize_with = "snake_keys")]
    pub match_: serde_json::Map<String, serde_json::Value>,
    pub transport_socket: Option<crate::core::TransportSocket>,
}

fn snake_keys<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    let m = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (crate::snake_case(&k), v))
        .collect())
}

/// `envoy.config.core.v3.Metadata`: values by filter name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metadata {
    pub filter_metadata: serde_json::Map<String, serde_json::Value>,
    pub typed_filter_metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingHashLbConfig {
    pub minimum_ring_size: Option<crate::Int64>,
    pub maximum_ring_size: Option<crate::Int64>,
    pub hash_function: Option<RingHashFunction>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum RingHashFunction {
    #[default]
    XX_HASH,
    MURMUR_HASH_2,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaglevLbConfig {
    pub table_size: Option<crate::Int64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommonLbConfig {
    /// Below this share of available hosts, balance over all of them
    /// (50% by default).
    pub healthy_panic_threshold: Option<crate::Percent>,
}

/// `envoy.config.cluster.v3.OutlierDetection`; unset fields take
/// Envoy's defaults (see weft-proxy's outlier module).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub enforcing_consecutive_5xx: Option<u32>,
    pub enforcing_success_rate: Option<u32>,
    pub success_rate_minimum_hosts: Option<u32>,
    pub success_rate_request_volume: Option<u32>,
    pub success_rate_stdev_factor: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    pub split_external_local_origin_errors: bool,
    pub consecutive_local_origin_failure: Option<u32>,
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
    pub enforcing_local_origin_success_rate: Option<u32>,
    pub failure_percentage_threshold: Option<u32>,
    pub enforcing_failure_percentage: Option<u32>,
    pub enforcing_failure_percentage_local_origin: Option<u32>,
    pub failure_percentage_minimum_hosts: Option<u32>,
    pub failure_percentage_request_volume: Option<u32>,
    pub max_ejection_time: Option<Duration>,
    pub max_ejection_time_jitter: Option<Duration>,
    pub successful_active_health_check_uneject_host: Option<bool>,
    pub always_eject_one_host: Option<bool>,
}

/// `envoy.config.cluster.v3.CircuitBreakers`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakers {
    pub thresholds: Vec<Thresholds>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub priority: RoutingPriority,
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    /// Publish the remaining capacity as gauges (accepted; weft's
    /// `remaining_*` gauges are not published yet, which changes no
    /// traffic).
    pub track_remaining: bool,
    pub max_connection_pools: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum RoutingPriority {
    #[default]
    DEFAULT,
    HIGH,
}

/// ORIGINAL_DST clusters: where the destination may come from besides
/// the downstream connection.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginalDstLbConfig {
    /// Take the destination from a request header
    /// (`x-envoy-original-dst-host` unless `http_header_name`).
    pub use_http_header: bool,
    pub http_header_name: Option<String>,
    pub upstream_port_override: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum DiscoveryType {
    #[default]
    STATIC,
    STRICT_DNS,
    LOGICAL_DNS,
    EDS,
    ORIGINAL_DST,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum LbPolicy {
    #[default]
    ROUND_ROBIN,
    LEAST_REQUEST,
    RANDOM,
    RING_HASH,
    MAGLEV,
    CLUSTER_PROVIDED,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum DnsLookupFamily {
    #[default]
    AUTO,
    V4_ONLY,
    V6_ONLY,
    V4_PREFERRED,
    ALL,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterLoadAssignment {
    pub cluster_name: String,
    pub endpoints: Vec<LocalityLbEndpoints>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalityLbEndpoints {
    pub locality: Option<serde_json::Value>,
    pub lb_endpoints: Vec<LbEndpoint>,
    pub load_balancing_weight: Option<u32>,
    pub priority: u32,
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LbEndpoint {
    pub endpoint: Endpoint,
    pub load_balancing_weight: Option<u32>,
    pub health_status: Option<String>,
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Endpoint {
    pub address: Address,
    pub hostname: String,
}
