//! `Telemetry` (telemetry.istio.io): metrics, access logs and tracing per
//! workload or mesh-wide.

use crate::Map;

use crate::common::{LabelSelector, PolicyTargetReference};
use crate::Duration;

model! {
    pub struct Telemetry {
        pub selector: Option<LabelSelector>,
        pub target_ref: Option<PolicyTargetReference>,
        pub target_refs: Vec<PolicyTargetReference>,
        pub tracing: Vec<Tracing>,
        pub metrics: Vec<Metrics>,
        pub access_logging: Vec<AccessLogging>,
    }
}

model! {
    pub struct ProviderRef {
        pub name: String,
    }
}

model! {
    pub struct WorkloadModeSelector {
        pub mode: Option<WorkloadMode>,
    }
}

proto_enum! {
    pub enum WorkloadMode { CLIENT_AND_SERVER, CLIENT, SERVER }
}

model! {
    pub struct Tracing {
        #[serde(rename = "match")]
        pub selector: Option<WorkloadModeSelector>,
        pub providers: Vec<ProviderRef>,
        pub random_sampling_percentage: Option<f64>,
        pub disable_span_reporting: Option<bool>,
        pub custom_tags: Map<String, CustomTag>,
        pub use_request_id_for_trace_sampling: Option<bool>,
        pub enable_istio_tags: Option<bool>,
        pub disable_context_propagation: Option<bool>,
    }
}

model! {
    pub struct CustomTag {
        pub literal: Option<TagLiteral>,
        pub environment: Option<TagEnvironment>,
        pub header: Option<TagHeader>,
        pub formatter: Option<TagFormatter>,
    }
}

model! {
    pub struct TagLiteral {
        pub value: String,
    }
}

model! {
    pub struct TagEnvironment {
        pub name: String,
        pub default_value: Option<String>,
    }
}

model! {
    pub struct TagHeader {
        pub name: String,
        pub default_value: Option<String>,
    }
}

model! {
    pub struct TagFormatter {
        pub value: String,
    }
}

model! {
    pub struct Metrics {
        pub providers: Vec<ProviderRef>,
        pub overrides: Vec<MetricsOverrides>,
        pub reporting_interval: Option<Duration>,
    }
}

model! {
    pub struct MetricsOverrides {
        #[serde(rename = "match")]
        pub selector: Option<MetricSelector>,
        pub disabled: Option<bool>,
        pub tag_overrides: Map<String, TagOverride>,
    }
}

model! {
    pub struct MetricSelector {
        pub metric: Option<IstioMetric>,
        pub custom_metric: Option<String>,
        pub mode: Option<WorkloadMode>,
    }
}

proto_enum! {
    pub enum IstioMetric {
        ALL_METRICS, REQUEST_COUNT, REQUEST_DURATION, REQUEST_SIZE, RESPONSE_SIZE,
        TCP_OPENED_CONNECTIONS, TCP_CLOSED_CONNECTIONS, TCP_SENT_BYTES, TCP_RECEIVED_BYTES,
        GRPC_REQUEST_MESSAGES, GRPC_RESPONSE_MESSAGES
    }
}

model! {
    pub struct TagOverride {
        pub operation: Option<TagOperation>,
        pub value: Option<String>,
    }
}

proto_enum! {
    pub enum TagOperation { UPSERT, REMOVE }
}

model! {
    pub struct AccessLogging {
        #[serde(rename = "match")]
        pub selector: Option<WorkloadModeSelector>,
        pub providers: Vec<ProviderRef>,
        pub disabled: Option<bool>,
        pub filter: Option<AccessLogFilter>,
    }
}

model! {
    pub struct AccessLogFilter {
        pub expression: Option<String>,
    }
}
