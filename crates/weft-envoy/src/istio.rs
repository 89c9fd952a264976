//! The settings of Istio's own proxy filters, which istiod puts in every
//! sidecar and gateway: `istio.stats` (`stats.PluginConfig`: Istio's
//! standard metrics) and `istio.metadata_exchange`
//! (`io.istio.http.peer_metadata.Config`: who the peer is, from the
//! `x-envoy-peer-metadata` headers). [`crate::check`] refuses by name what
//! weft does not implement.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::core::Duration;

/// `stats.PluginConfig`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Do not take `destination_service` from the Host header (istiod
    /// sets it on inbound listeners and gateways).
    pub disable_host_header_fallback: bool,
    pub tcp_reporting_duration: Option<Duration>,
    pub metrics: Vec<MetricConfig>,
    /// Metrics of the user's own (CEL values): not implemented by weft.
    pub definitions: Vec<serde_json::Value>,
    /// `UNSPECIFIED` (from the listener's direction) or `SERVER_GATEWAY`.
    pub reporter: Option<String>,
    pub rotation_interval: Option<Duration>,
    pub graceful_deletion_interval: Option<Duration>,
}

/// `stats.MetricConfig`: an override of one metric, or of all.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricConfig {
    /// Tag name to a CEL expression for its value.
    pub dimensions: BTreeMap<String, String>,
    /// The metric's short name (`requests_total`); empty: every metric.
    pub name: String,
    pub tags_to_remove: Vec<String>,
    /// Declared by Istio, implemented by no proxy.
    #[serde(rename = "match")]
    pub match_: String,
    pub drop: bool,
}

/// `io.istio.http.peer_metadata.Config`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerMetadataConfig {
    pub downstream_discovery: Vec<DiscoveryMethod>,
    pub upstream_discovery: Vec<DiscoveryMethod>,
    pub downstream_propagation: Vec<PropagationMethod>,
    pub upstream_propagation: Vec<PropagationMethod>,
    pub shared_with_upstream: bool,
    pub additional_labels: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryMethod {
    pub baggage: Option<serde_json::Value>,
    pub workload_discovery: Option<serde_json::Value>,
    pub istio_headers: Option<IstioHeaders>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PropagationMethod {
    pub istio_headers: Option<IstioHeaders>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IstioHeaders {
    pub skip_external_clusters: bool,
}
