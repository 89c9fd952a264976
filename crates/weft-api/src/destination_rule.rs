//! `DestinationRule` (networking.istio.io): what happens to traffic once
//! routing has chosen a service: subsets, load balancing, connection pools,
//! outlier detection, upstream TLS.

use crate::Map;

use crate::common::{LabelSelector, PortSelector};
use crate::Duration;

model! {
    pub struct DestinationRule {
        pub host: String,
        /// Boxed here and in `Subset`: a policy is 1.5 KB inline and most
        /// rules and subsets set none.
        pub traffic_policy: Option<Box<TrafficPolicy>>,
        pub subsets: Vec<Subset>,
        pub export_to: Vec<String>,
        pub workload_selector: Option<LabelSelector>,
    }
}

model! {
    pub struct TrafficPolicy {
        pub load_balancer: Option<LoadBalancerSettings>,
        pub connection_pool: Option<ConnectionPoolSettings>,
        pub outlier_detection: Option<OutlierDetection>,
        pub tls: Option<ClientTlsSettings>,
        pub port_level_settings: Vec<PortTrafficPolicy>,
        pub tunnel: Option<TunnelSettings>,
        pub proxy_protocol: Option<ProxyProtocol>,
        pub retry_budget: Option<RetryBudget>,
    }
}

model! {
    pub struct PortTrafficPolicy {
        pub port: Option<PortSelector>,
        pub load_balancer: Option<LoadBalancerSettings>,
        pub connection_pool: Option<ConnectionPoolSettings>,
        pub outlier_detection: Option<OutlierDetection>,
        pub tls: Option<ClientTlsSettings>,
    }
}

model! {
    pub struct Subset {
        pub name: String,
        pub labels: Map<String, String>,
        pub traffic_policy: Option<Box<TrafficPolicy>>,
    }
}

model! {
    pub struct LoadBalancerSettings {
        pub simple: Option<SimpleLb>,
        pub consistent_hash: Option<ConsistentHashLb>,
        pub backend_utilization: Option<BackendUtilization>,
        pub locality_lb_setting: Option<LocalityLbSetting>,
        pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
        pub warmup_duration_secs: Option<Duration>,
        pub warmup: Option<Warmup>,
    }
}

proto_enum! {
    pub enum SimpleLb { UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST }
}

model! {
    pub struct ConsistentHashLb {
        pub http_header_name: Option<String>,
        pub http_cookie: Option<HttpCookie>,
        pub use_source_ip: Option<bool>,
        pub http_query_parameter_name: Option<String>,
        pub ring_hash: Option<RingHash>,
        pub maglev: Option<MagLev>,
        /// Deprecated: use `ringHash.minimumRingSize`.
        pub minimum_ring_size: Option<u64>,
    }
}

model! {
    pub struct HttpCookie {
        pub name: String,
        pub path: Option<String>,
        pub ttl: Option<Duration>,
        pub attributes: Vec<CookieAttribute>,
    }
}

model! {
    pub struct CookieAttribute {
        pub name: String,
        pub value: Option<String>,
    }
}

model! {
    pub struct RingHash {
        pub minimum_ring_size: Option<u64>,
    }
}

model! {
    pub struct MagLev {
        pub table_size: Option<u64>,
    }
}

model! {
    pub struct BackendUtilization {
        pub weight_expiration_period: Option<Duration>,
        pub weight_update_period: Option<Duration>,
        pub weight_stabilization_period: Option<Duration>,
        pub error_utilization_penalty_percent: Option<u32>,
        pub metric_names_for_computing_utilization: Vec<String>,
    }
}

model! {
    pub struct LocalityLbSetting {
        pub distribute: Vec<LocalityDistribute>,
        pub failover: Vec<LocalityFailover>,
        pub failover_priority: Vec<String>,
        pub enabled: Option<bool>,
    }
}

model! {
    pub struct LocalityDistribute {
        pub from: Option<String>,
        pub to: Map<String, u32>,
    }
}

model! {
    pub struct LocalityFailover {
        pub from: Option<String>,
        pub to: Option<String>,
    }
}

model! {
    pub struct ZoneAwareLbSetting {
        pub enabled: Option<bool>,
        pub failover: Vec<LocalityFailover>,
        pub failover_priority: Vec<String>,
        pub min_cluster_size: Option<u32>,
    }
}

model! {
    pub struct Warmup {
        pub duration: Option<Duration>,
        pub minimum_percent: Option<f64>,
        pub aggression: Option<f64>,
    }
}

model! {
    pub struct ConnectionPoolSettings {
        pub tcp: Option<TcpSettings>,
        pub http: Option<HttpSettings>,
    }
}

model! {
    pub struct TcpSettings {
        pub max_connections: Option<i32>,
        pub connect_timeout: Option<Duration>,
        pub tcp_keepalive: Option<TcpKeepalive>,
        pub max_connection_duration: Option<Duration>,
        pub idle_timeout: Option<Duration>,
    }
}

model! {
    pub struct TcpKeepalive {
        pub probes: Option<u32>,
        pub time: Option<Duration>,
        pub interval: Option<Duration>,
    }
}

model! {
    pub struct HttpSettings {
        pub http1_max_pending_requests: Option<i32>,
        pub http2_max_requests: Option<i32>,
        pub max_requests_per_connection: Option<i32>,
        pub max_retries: Option<i32>,
        pub idle_timeout: Option<Duration>,
        pub h2_upgrade_policy: Option<H2UpgradePolicy>,
        pub use_client_protocol: Option<bool>,
        pub max_concurrent_streams: Option<i32>,
        pub http2_keep_alive: Option<Http2KeepAlive>,
    }
}

proto_enum! {
    pub enum H2UpgradePolicy { DEFAULT, DO_NOT_UPGRADE, UPGRADE }
}

model! {
    pub struct Http2KeepAlive {
        pub interval: Option<Duration>,
        pub timeout: Option<Duration>,
    }
}

model! {
    pub struct OutlierDetection {
        pub split_external_local_origin_errors: Option<bool>,
        pub consecutive_local_origin_failures: Option<u32>,
        pub consecutive_gateway_errors: Option<u32>,
        #[serde(rename = "consecutive5xxErrors")]
        pub consecutive_5xx_errors: Option<u32>,
        /// Deprecated: use `consecutive5xxErrors` or `consecutiveGatewayErrors`.
        pub consecutive_errors: Option<i32>,
        pub interval: Option<Duration>,
        pub base_ejection_time: Option<Duration>,
        pub max_ejection_percent: Option<i32>,
        pub min_health_percent: Option<i32>,

        pub outlier_detection_http_error_codes: Vec<u32>,
    }
}

model! {
    pub struct ClientTlsSettings {
        pub mode: Option<ClientTlsMode>,
        pub client_certificate: Option<String>,
        pub private_key: Option<String>,
        pub ca_certificates: Option<String>,
        pub credential_name: Option<String>,
        pub subject_alt_names: Vec<String>,
        pub sni: Option<String>,
        pub insecure_skip_verify: Option<bool>,
        pub ca_crl: Option<String>,
    }
}

proto_enum! {
    pub enum ClientTlsMode { DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL }
}

model! {
    pub struct TunnelSettings {
        pub protocol: Option<String>,
        pub target_host: String,
        pub target_port: u32,
    }
}

model! {
    pub struct ProxyProtocol {
        pub version: Option<ProxyProtocolVersion>,
    }
}

proto_enum! {
    pub enum ProxyProtocolVersion { V1, V2 }
}

model! {
    pub struct RetryBudget {
        pub percent: Option<f64>,
        pub min_retry_concurrency: Option<u32>,
        pub budget_interval: Option<Duration>,
    }
}
