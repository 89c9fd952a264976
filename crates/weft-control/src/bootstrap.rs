//! The Envoy bootstrap that connects a proxy to the control plane (what
//! Istio's pilot-agent writes for Envoy): the node id Istio uses for the
//! role, ADS over gRPC to the control plane, listeners and clusters from
//! it, and — when the node runs an agent — the `sds-grpc` cluster its
//! certificates come through (the agent's Unix socket). Envoy and weft's
//! proxy both run it unmodified.
//!
//! Written as typed `envoy-types` messages like everything else the
//! control plane generates, and turned into Envoy's JSON at the end.

use std::net::SocketAddr;
use std::path::PathBuf;

use envoy_types::pb::envoy::config::bootstrap::v3 as bootstrap;
use serde_json::Value;

use crate::gen::pb::{self, cluster, core, endpoint, upstream_http};
use crate::gen::ProxyKind;

/// Who the proxy is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub kind: ProxyKind,
    /// The workload (pod or WorkloadEntry) name.
    pub name: String,
    pub namespace: String,
    pub ip: String,
    /// The service account its workload certificate names
    /// (`spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT`); Istio's node
    /// metadata `SERVICE_ACCOUNT`. Kubernetes' `default` when `None`.
    pub service_account: Option<String>,
    /// The workload's labels: node metadata `LABELS`, which Istio's
    /// telemetry reads (`app`, `version`, the canonical service and
    /// revision, filled in as Istio's injector does when missing).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Identity {
    /// The service account, `default` when none is named.
    pub fn service_account(&self) -> &str {
        self.service_account.as_deref().unwrap_or("default")
    }

    /// Istio's node id: `sidecar~IP~NAME.NS~NS.svc.cluster.local` (or
    /// `router~...` for gateways).
    pub fn node_id(&self) -> String {
        let role = match self.kind {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Router => "router",
        };
        format!(
            "{role}~{}~{}.{}~{}.{}",
            self.ip,
            self.name,
            self.namespace,
            self.namespace,
            weft_config::host::SERVICE_DOMAIN
        )
    }
}

/// The workload's labels with the canonical service and revision Istio's
/// injector adds when they are missing: the name from
/// `app.kubernetes.io/name`, else `app`, else the workload's name; the
/// revision from `app.kubernetes.io/version`, else `version`, else
/// `latest`.
pub fn canonical_labels(who: &Identity) -> std::collections::BTreeMap<String, String> {
    let mut labels = who.labels.clone();
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).cloned());
    let name = first(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| who.name.clone());
    let revision = first(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".into());
    labels.insert("service.istio.io/canonical-name".into(), name);
    labels.insert("service.istio.io/canonical-revision".into(), revision);
    labels
}

/// Where a proxy's bootstrap points it.
#[derive(Clone, Debug)]
pub struct Options {
    /// The control plane's plaintext xDS address.
    pub xds: SocketAddr,
    /// The admin endpoint's port on 127.0.0.1 (0: any free port).
    pub admin: u16,
    /// The node agent's SDS socket (Istio's
    /// `./var/run/secrets/workload-spiffe-uds/socket`), when the proxy
    /// gets workload certificates; none leaves `sds-grpc` out.
    pub sds_socket: Option<PathBuf>,
    /// Istio's Prometheus port (15090): a listener on `0.0.0.0:PORT`
    /// answering `/stats/prometheus` from the admin endpoint, so a
    /// scraper reaches the proxy's metrics without the admin endpoint
    /// being exposed. 0, or an admin port of 0 (not known in advance):
    /// none.
    pub prometheus: u16,
}

/// The cluster behind the Prometheus listener: the admin endpoint.
const PROMETHEUS_STATS: &str = "prometheus_stats";

/// Istio's bootstrap listener on its Prometheus port: only
/// `/stats/prometheus`, forwarded to the admin endpoint.
fn prometheus_listener(port: u16) -> pb::listener::Listener {
    use pb::hcm::http_connection_manager::RouteSpecifier;
    use pb::route as rt;
    let route = rt::Route {
        r#match: Some(rt::RouteMatch {
            path_specifier: Some(rt::route_match::PathSpecifier::Prefix(
                "/stats/prometheus".into(),
            )),
            ..Default::default()
        }),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(rt::route_action::ClusterSpecifier::Cluster(
                PROMETHEUS_STATS.into(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    };
    let manager = pb::hcm::HttpConnectionManager {
        stat_prefix: "stats".into(),
        route_specifier: Some(RouteSpecifier::RouteConfig(rt::RouteConfiguration {
            virtual_hosts: vec![rt::VirtualHost {
                name: "backend".into(),
                domains: vec!["*".into()],
                routes: vec![route],
                ..Default::default()
            }],
            ..Default::default()
        })),
        http_filters: vec![pb::hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(pb::hcm::http_filter::ConfigType::TypedConfig(pb::any(
                &pb::router::Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    pb::listener::Listener {
        name: format!("0.0.0.0_{port}"),
        address: pb::socket_address("0.0.0.0", u32::from(port)),
        filter_chains: vec![pb::listener::FilterChain {
            filters: vec![pb::listener::Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(pb::listener::filter::ConfigType::TypedConfig(pb::any(
                    &manager,
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A cluster speaking HTTP/2 (gRPC) to one endpoint.
fn grpc_cluster(name: &str, address: core::Address) -> cluster::Cluster {
    use upstream_http::http_protocol_options::{
        explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
    };
    let options = upstream_http::HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Default::default())),
            },
        )),
        ..Default::default()
    };
    cluster::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: pb::seconds(1),
        typed_extension_protocol_options: pb::map([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pb::any(&options),
        )]),
        load_assignment: Some(endpoint::ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![endpoint::LocalityLbEndpoints {
                lb_endpoints: vec![endpoint::LbEndpoint {
                    host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                        endpoint::Endpoint {
                            address: Some(address),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The bootstrap for `who`, typed.
pub fn message(who: &Identity, opts: &Options) -> bootstrap::Bootstrap {
    use core::api_config_source::ApiType;
    use core::grpc_service::{EnvoyGrpc, TargetSpecifier};
    let ads = || core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    };
    let mut clusters = vec![grpc_cluster(
        "xds-grpc",
        pb::socket_address(&opts.xds.ip().to_string(), u32::from(opts.xds.port()))
            .expect("an address"),
    )];
    if let Some(path) = &opts.sds_socket {
        clusters.push(grpc_cluster(
            crate::gen::SDS_CLUSTER,
            core::Address {
                address: Some(core::address::Address::Pipe(core::Pipe {
                    path: path.display().to_string(),
                    mode: 0,
                })),
            },
        ));
    }
    let mut metadata = pb::strings(
        [
            ("NAMESPACE", who.namespace.as_str()),
            ("NAME", who.name.as_str()),
            ("WORKLOAD_NAME", who.name.as_str()),
            ("SERVICE_ACCOUNT", who.service_account()),
            // Istio's default cluster name, which its metrics report.
            ("CLUSTER_ID", "Kubernetes"),
            ("ISTIO_VERSION", concat!("weft-", env!("CARGO_PKG_VERSION"))),
        ]
        .into_iter()
        .chain(
            opts.sds_socket
                .is_none()
                .then_some((crate::gen::NO_WORKLOAD_CERTS, "none")),
        ),
    );
    // Only labels given: the control plane takes a proxy's labels from
    // `LABELS` when it is there, and from its registry otherwise.
    if !who.labels.is_empty() {
        metadata.fields.insert(
            "LABELS".into(),
            envoy_types::pb::google::protobuf::Value {
                kind: Some(envoy_types::pb::google::protobuf::value::Kind::StructValue(
                    pb::strings(
                        canonical_labels(who)
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    ),
                )),
            },
        );
    }
    let prometheus = (opts.prometheus != 0 && opts.admin != 0).then_some(opts.prometheus);
    let mut listeners = Vec::new();
    if let Some(port) = prometheus {
        listeners.push(prometheus_listener(port));
        let mut admin = grpc_cluster(
            PROMETHEUS_STATS,
            pb::socket_address("127.0.0.1", u32::from(opts.admin)).expect("an address"),
        );
        // The admin endpoint speaks HTTP/1.1.
        admin.typed_extension_protocol_options.clear();
        clusters.push(admin);
        metadata.fields.insert(
            "ENVOY_PROMETHEUS_PORT".into(),
            envoy_types::pb::google::protobuf::Value {
                kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
                    port.to_string(),
                )),
            },
        );
    }
    if opts.admin != 0 {
        // As pilot-agent sends its ProxyConfig: tools find the admin
        // endpoint through the control plane.
        use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
        let port = Value {
            kind: Some(Kind::NumberValue(f64::from(opts.admin))),
        };
        let config = Struct {
            fields: [("proxyAdminPort".to_string(), port)].into_iter().collect(),
        };
        metadata.fields.insert(
            "PROXY_CONFIG".into(),
            Value {
                kind: Some(Kind::StructValue(config)),
            },
        );
    }
    bootstrap::Bootstrap {
        node: Some(core::Node {
            id: who.node_id(),
            cluster: format!("{}.{}", who.name, who.namespace),
            metadata: Some(metadata),
            ..Default::default()
        }),
        admin: Some(bootstrap::Admin {
            address: pb::socket_address("127.0.0.1", u32::from(opts.admin)),
            ..Default::default()
        }),
        dynamic_resources: Some(bootstrap::bootstrap::DynamicResources {
            ads_config: Some(core::ApiConfigSource {
                api_type: ApiType::Grpc as i32,
                transport_api_version: core::ApiVersion::V3 as i32,
                grpc_services: vec![core::GrpcService {
                    target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                        cluster_name: "xds-grpc".into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                set_node_on_first_message_only: true,
                ..Default::default()
            }),
            cds_config: Some(ads()),
            lds_config: Some(ads()),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::bootstrap::StaticResources {
            clusters,
            listeners,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The bootstrap for `who` as Envoy's JSON.
pub fn envoy(who: &Identity, opts: &Options) -> Value {
    weft_xds::message::to_json(&message(who, opts))
        .expect("the bootstrap's messages are in weft-xds' descriptor set")
}
