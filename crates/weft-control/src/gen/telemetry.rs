//! Istio's telemetry filters in every HTTP connection manager, as istiod
//! puts them there: `istio.metadata_exchange` first (so each proxy of a
//! call learns who the other is) and `istio.stats` just before the
//! router (Istio's standard metrics). Their settings are Istio's own
//! protobuf messages, declared here with Istio's names and field
//! numbers (envoy-types does not carry them), so a misspelt field is a
//! compile error and the bytes are what istiod sends.

use super::pb::{self, hcm};
use super::Proxy;
use crate::context::Context;
use crate::model::Service;

/// `stats.PluginConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatsConfig {
    #[prost(bool, tag = "6")]
    pub disable_host_header_fallback: bool,
}

impl prost::Name for StatsConfig {
    const NAME: &'static str = "PluginConfig";
    const PACKAGE: &'static str = "stats";

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// `io.istio.http.peer_metadata.Config`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PeerMetadataConfig {
    #[prost(message, repeated, tag = "1")]
    pub downstream_discovery: Vec<DiscoveryMethod>,
    #[prost(message, repeated, tag = "2")]
    pub upstream_discovery: Vec<DiscoveryMethod>,
    #[prost(message, repeated, tag = "3")]
    pub downstream_propagation: Vec<PropagationMethod>,
    #[prost(message, repeated, tag = "4")]
    pub upstream_propagation: Vec<PropagationMethod>,
}

impl prost::Name for PeerMetadataConfig {
    const NAME: &'static str = "Config";
    const PACKAGE: &'static str = "io.istio.http.peer_metadata";

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// `Config.DiscoveryMethod` (a oneof).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DiscoveryMethod {
    #[prost(oneof = "Discovery", tags = "2, 3")]
    pub method: Option<Discovery>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Discovery {
    #[prost(message, tag = "2")]
    WorkloadDiscovery(Empty),
    #[prost(message, tag = "3")]
    IstioHeaders(IstioHeaders),
}

/// `Config.PropagationMethod` (a oneof of one).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PropagationMethod {
    #[prost(message, optional, tag = "1")]
    pub istio_headers: Option<IstioHeaders>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct IstioHeaders {
    #[prost(bool, tag = "1")]
    pub skip_external_clusters: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Empty {}

/// Which connection manager the filters are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    SidecarInbound,
    SidecarOutbound,
    Gateway,
}

fn filter(name: &str, config: pb::Any) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: name.to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The metadata exchange: a server reads the caller's headers (or looks
/// it up by address) and answers with its own; a client (sidecar
/// outbound, gateway) sends its own and reads the answer.
pub(crate) fn exchange(class: Class) -> hcm::HttpFilter {
    let discovery = || {
        vec![
            DiscoveryMethod {
                method: Some(Discovery::IstioHeaders(IstioHeaders::default())),
            },
            DiscoveryMethod {
                method: Some(Discovery::WorkloadDiscovery(Empty {})),
            },
        ]
    };
    let propagation = || {
        vec![PropagationMethod {
            istio_headers: Some(IstioHeaders::default()),
        }]
    };
    let config = match class {
        Class::SidecarInbound => PeerMetadataConfig {
            downstream_discovery: discovery(),
            downstream_propagation: propagation(),
            ..Default::default()
        },
        Class::SidecarOutbound | Class::Gateway => PeerMetadataConfig {
            upstream_discovery: discovery(),
            upstream_propagation: propagation(),
            ..Default::default()
        },
    };
    filter("istio.metadata_exchange", pb::any(&config))
}

/// The standard metrics. Inbound and at gateways the Host header is not
/// a fallback for `destination_service` (it comes from outside the
/// mesh there, or names this very workload).
pub(crate) fn stats(class: Class) -> hcm::HttpFilter {
    filter(
        "istio.stats",
        pb::any(&StatsConfig {
            disable_host_header_fallback: class != Class::SidecarOutbound,
        }),
    )
}

/// A cluster's `filter_metadata.istio.services`: what Istio's stats name
/// `destination_service` (the host), `destination_service_name` (a
/// Kubernetes service's name; for other hosts the proxy takes the host's
/// first label) and its namespace.
pub(crate) fn services_metadata(services: &[&Service]) -> pb::core::Metadata {
    use envoy_types::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
    let list = services
        .iter()
        .map(|s| {
            let mut entry = vec![
                ("host", s.hostname.as_str()),
                ("namespace", s.namespace.as_str()),
            ];
            // `NAME.NS.svc.cluster.local`: a Kubernetes service.
            let tail = format!(".{}.svc.{}", s.namespace, weft_config::host::SERVICE_DOMAIN);
            let k8s = s.hostname.strip_suffix(&tail).filter(|n| !n.contains('.'));
            if let Some(name) = k8s {
                entry.push(("name", name));
            }
            Value {
                kind: Some(Kind::StructValue(pb::strings(entry))),
            }
        })
        .collect();
    let istio = Struct {
        fields: [(
            "services".to_string(),
            Value {
                kind: Some(Kind::ListValue(ListValue { values: list })),
            },
        )]
        .into_iter()
        .collect(),
    };
    pb::core::Metadata {
        filter_metadata: [("istio".to_string(), istio)].into_iter().collect(),
        ..Default::default()
    }
}

/// The services in the proxy's namespace that have it as an instance on
/// `port` (its inbound cluster's services).
pub(crate) fn served_by<'a>(ctx: &'a Context, proxy: &Proxy, port: u32) -> Vec<&'a Service> {
    ctx.registry
        .services()
        .filter(|s| s.namespace == proxy.namespace)
        .filter(|s| {
            s.ports.iter().any(|p| {
                ctx.registry
                    .endpoints_of(&s.hostname, p.number)
                    .any(|e| e.address == proxy.ip && e.port == port)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_settings_are_istios_messages_on_the_wire() {
        // Field 6, varint 1.
        assert_eq!(
            StatsConfig {
                disable_host_header_fallback: true
            }
            .encode_to_vec(),
            vec![0x30, 0x01]
        );
        let f = exchange(Class::SidecarInbound);
        let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = f.config_type else {
            panic!("typed")
        };
        assert_eq!(
            any.type_url,
            "type.googleapis.com/io.istio.http.peer_metadata.Config"
        );
        // downstream_discovery (1) × 2: {istio_headers (3): {}}, then
        // {workload_discovery (2): {}}; downstream_propagation (3):
        // {istio_headers (1): {}}.
        assert_eq!(
            any.value,
            vec![0x0a, 0x02, 0x1a, 0x00, 0x0a, 0x02, 0x12, 0x00, 0x1a, 0x02, 0x0a, 0x00]
        );
    }
}
