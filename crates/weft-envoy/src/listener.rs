//! `envoy.config.listener.v3`: listeners, filter chains and their match.

use serde::Deserialize;

use crate::{Address, Duration, TypedConfig};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listener {
    pub name: String,
    pub address: Address,
    pub filter_chains: Vec<FilterChain>,
    pub default_filter_chain: Option<FilterChain>,
    pub listener_filters: Vec<ListenerFilter>,
    pub listener_filters_timeout: Option<Duration>,
    pub continue_on_listener_filters_timeout: bool,
    /// Set by Istio on capture listeners: hand connections to the listener
    /// bound to their original destination.
    pub use_original_dst: Option<bool>,
    /// Listeners that only receive hand-offs bind nothing.
    pub bind_to_port: Option<bool>,
    pub traffic_direction: Option<TrafficDirection>,
    pub per_connection_buffer_limit_bytes: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum TrafficDirection {
    #[default]
    UNSPECIFIED,
    INBOUND,
    OUTBOUND,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterChain {
    pub name: String,
    pub filter_chain_match: Option<FilterChainMatch>,
    pub filters: Vec<Filter>,
    pub transport_socket: Option<crate::core::TransportSocket>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterChainMatch {
    pub destination_port: Option<u32>,
    pub prefix_ranges: Vec<CidrRange>,
    pub source_type: Option<SourceType>,
    pub source_prefix_ranges: Vec<CidrRange>,
    pub source_ports: Vec<u32>,
    pub server_names: Vec<String>,
    pub transport_protocol: String,
    pub application_protocols: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum SourceType {
    #[default]
    ANY,
    SAME_IP_OR_LOOPBACK,
    EXTERNAL,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CidrRange {
    pub address_prefix: String,
    pub prefix_len: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    pub typed_config: TypedConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFilter {
    pub name: String,
    pub typed_config: TypedConfig,
}
