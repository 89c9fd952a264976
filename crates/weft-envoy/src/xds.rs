//! Where dynamic configuration comes from: the bootstrap's
//! `dynamic_resources` (the ADS stream and which types travel on it), an
//! HTTP connection manager's `rds`, and an EDS cluster's
//! `eds_cluster_config`. weft's xDS client speaks ADS only, as Istio's
//! sidecars and gateways do; other config sources are refused by name in
//! [`crate::check`].

use serde::Deserialize;

use crate::Duration;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicResources {
    pub lds_config: Option<ConfigSource>,
    pub cds_config: Option<ConfigSource>,
    pub ads_config: Option<ApiConfigSource>,
}

/// `envoy.config.core.v3.ConfigSource`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigSource {
    pub ads: Option<serde_json::Value>,
    pub api_config_source: Option<Box<ApiConfigSource>>,
    pub path: Option<String>,
    pub path_config_source: Option<serde_json::Value>,
    #[serde(rename = "self")]
    pub self_: Option<serde_json::Value>,
    pub authorities: Vec<serde_json::Value>,
    /// How long a resource is waited for before whatever needs it goes
    /// on without it (Envoy: 15 s; `0s` waits for ever).
    pub initial_fetch_timeout: Option<Duration>,
    pub resource_api_version: Option<ApiVersion>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum ApiVersion {
    #[default]
    AUTO,
    V2,
    V3,
}

/// `envoy.config.core.v3.ApiConfigSource`, as `ads_config`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfigSource {
    pub api_type: ApiType,
    pub transport_api_version: Option<ApiVersion>,
    pub grpc_services: Vec<GrpcService>,
    pub cluster_names: Vec<String>,
    pub refresh_delay: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub rate_limit_settings: Option<serde_json::Value>,
    pub set_node_on_first_message_only: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ApiType {
    #[default]
    REST,
    GRPC,
    DELTA_GRPC,
    AGGREGATED_GRPC,
    AGGREGATED_DELTA_GRPC,
    REST_LEGACY,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcService {
    pub envoy_grpc: Option<EnvoyGrpc>,
    pub google_grpc: Option<serde_json::Value>,
    pub timeout: Option<Duration>,
    pub initial_metadata: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvoyGrpc {
    pub cluster_name: String,
    pub authority: Option<String>,
}

/// An HTTP connection manager's route table by name, from RDS.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rds {
    pub config_source: ConfigSource,
    pub route_config_name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdsClusterConfig {
    pub eds_config: Option<ConfigSource>,
    /// The ClusterLoadAssignment's name, when not the cluster's.
    pub service_name: Option<String>,
}

impl ApiConfigSource {
    /// Delta (incremental) rather than state-of-the-world.
    pub fn delta(&self) -> bool {
        matches!(
            self.api_type,
            ApiType::DELTA_GRPC | ApiType::AGGREGATED_DELTA_GRPC
        )
    }

    /// The static cluster the ADS stream goes to.
    pub fn cluster(&self) -> Option<&str> {
        self.grpc_services
            .first()
            .and_then(|g| g.envoy_grpc.as_ref())
            .map(|g| g.cluster_name.as_str())
    }
}

impl ConfigSource {
    /// Envoy's default initial fetch timeout is 15 s; `0s` disables it.
    pub fn initial_fetch_timeout(&self) -> Option<std::time::Duration> {
        match self.initial_fetch_timeout {
            Some(d) if d.0.is_zero() => None,
            Some(d) => Some(d.0),
            None => Some(std::time::Duration::from_secs(15)),
        }
    }
}
