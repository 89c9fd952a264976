//! Per-proxy xDS generation: what one proxy (sidecar or gateway) gets
//! from a [`Context`], as Envoy v3 resources with Istio's names
//! (`outbound|9080|v1|reviews.default.svc.cluster.local`, route tables
//! named by port, `inbound|9080||`, ...).
//!
//! Resources are the `envoy-types` (prost) messages the ADS server
//! encodes and sends as they are, written through the small layer in
//! `pb` that keeps the generators readable next to Envoy's and Istio's
//! documentation: a field Envoy does not have is a compile error.
//! [`Resource::to_json`] gives a resource's proto3 JSON, for
//! `/debug/config_dump` and tests.

use std::collections::BTreeMap;

use prost::Message;
use weft_api::sidecar::{CaptureMode, OutboundMode};
use weft_xds::Kind;

use crate::context::{resolve_host, Context};
use crate::model::{Port, Service};

mod authn;
pub(crate) mod authz;
mod cluster;
pub(crate) mod custom;
mod endpoint;
mod gateway;
mod l4;
mod listener;
pub(crate) mod pb;
mod policy;
mod route;
mod secret;
mod selection;
mod service;
mod telemetry;
mod tls;

pub use gateway::gateway;
pub(crate) use service::{inputs as service_inputs, parts as service_parts};
pub use tls::terminates;
pub(crate) use tls::SDS_CLUSTER;

/// What kind of proxy asks: a sidecar next to a workload, or a gateway
/// (Istio's `router`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Sidecar,
    Router,
}

/// A connected proxy, as its node id and metadata describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub id: String,
    pub kind: ProxyKind,
    pub ip: String,
    /// The workload (pod or WorkloadEntry) name.
    pub name: String,
    pub namespace: String,
    pub labels: weft_api::Map<String, String>,
    /// Whether the proxy can get a workload certificate (its node has an
    /// agent behind `sds-grpc`, as every Istio sidecar does). A proxy
    /// whose bootstrap says it has none ([`NO_WORKLOAD_CERTS`]) is not
    /// given configuration that waits for one: its auto mTLS and
    /// PERMISSIVE ports stay plaintext; STRICT ports still demand mTLS.
    pub workload_certs: bool,
    /// The proxy runs Istio's own filters (`istio.metadata_exchange`,
    /// `istio.stats`): weft's proxy and Istio's Envoy build do; a stock
    /// Envoy (which `weft bootstrap` can also join) has no such
    /// extensions and would refuse a listener naming them, so it gets
    /// none and reports no Istio metrics.
    pub istio_filters: bool,
}

/// Node metadata a bootstrap sets (to `"none"`) when the proxy has no
/// certificate source.
pub const NO_WORKLOAD_CERTS: &str = "WEFT_WORKLOAD_CERTS";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("node id {0:?} is not TYPE~IP~NAME.NAMESPACE~DOMAIN (TYPE sidecar or router)")]
    BadNodeId(String),
}

impl Proxy {
    /// Reads Istio's node id, `sidecar~10.1.2.3~details-v1.default~default.svc.cluster.local`.
    /// Labels come from the node metadata (`LABELS`, as pilot-agent sends
    /// them) or else from the workload the registry knows by that name.
    pub fn from_node(
        id: &str,
        metadata_labels: Option<weft_api::Map<String, String>>,
        ctx: &Context,
    ) -> Result<Proxy, ProxyError> {
        let bad = || ProxyError::BadNodeId(id.to_string());
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod, _domain] = parts[..] else {
            return Err(bad());
        };
        let kind = match kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            _ => return Err(bad()),
        };
        let (name, namespace) = pod.rsplit_once('.').ok_or_else(bad)?;
        if name.is_empty() || namespace.is_empty() {
            return Err(bad());
        }
        let labels = metadata_labels.unwrap_or_else(|| {
            ctx.workload(namespace, name, ip)
                .map(|w| (*w.labels).clone())
                .unwrap_or_default()
        });
        Ok(Proxy {
            id: id.to_string(),
            kind,
            ip: ip.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            labels,
            workload_certs: true,
            istio_filters: true,
        })
    }
}

/// One generated resource, as the message the ADS server sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Cluster(Box<pb::cluster::Cluster>),
    ClusterLoadAssignment(pb::endpoint::ClusterLoadAssignment),
    Listener(Box<pb::listener::Listener>),
    RouteConfiguration(Box<pb::route::RouteConfiguration>),
    Secret(Box<pb::tls::Secret>),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Cluster(_) => Kind::Cluster,
            Resource::ClusterLoadAssignment(_) => Kind::ClusterLoadAssignment,
            Resource::Listener(_) => Kind::Listener,
            Resource::RouteConfiguration(_) => Kind::RouteConfiguration,
            Resource::Secret(_) => Kind::Secret,
        }
    }

    /// The name other resources and xDS requests know it by.
    pub fn name(&self) -> &str {
        match self {
            Resource::Cluster(c) => &c.name,
            Resource::ClusterLoadAssignment(a) => &a.cluster_name,
            Resource::Listener(l) => &l.name,
            Resource::RouteConfiguration(r) => &r.name,
            Resource::Secret(s) => &s.name,
        }
    }

    /// The protobuf bytes of the message (an `Any`'s value).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Resource::Cluster(c) => c.encode_to_vec(),
            Resource::ClusterLoadAssignment(a) => a.encode_to_vec(),
            Resource::Listener(l) => l.encode_to_vec(),
            Resource::RouteConfiguration(r) => r.encode_to_vec(),
            Resource::Secret(s) => s.encode_to_vec(),
        }
    }

    /// The resource as xDS carries it.
    pub fn to_any(&self) -> pb::Any {
        pb::Any {
            type_url: self.kind().type_url(),
            value: self.encode(),
        }
    }

    /// The resource's proto3 JSON (proto field names, defaults left out,
    /// nested `Any`s expanded with `@type`), read from its bytes with
    /// the descriptors weft's proxy decodes xDS with.
    pub fn to_json(&self) -> Result<serde_json::Value, weft_xds::DecodeError> {
        weft_xds::to_json(&self.kind().type_url(), &self.encode()).map(|(_, _, json)| json)
    }
}

/// Resources for one proxy, by type and name.
pub type Output = BTreeMap<Kind, BTreeMap<String, Resource>>;

/// One outbound listener a sidecar gets: where it listens and which
/// services it routes.
pub(crate) struct Egress<'a> {
    /// None: capture by iptables (listeners not bound, reached through
    /// `virtualOutbound`).
    pub bind: Option<String>,
    pub port: Option<Port>,
    pub services: Vec<&'a Service>,
}

/// An outbound route table a sidecar's listeners name: a virtual host
/// per service on `port` that speaks HTTP there.
pub(crate) struct Table<'a> {
    pub name: String,
    pub port: u32,
    pub services: Vec<&'a Service>,
}

/// What the Sidecar resource (or its absence) gives a proxy.
pub(crate) struct Scope<'a> {
    pub egress: Vec<Egress<'a>>,
    pub ingress: Vec<&'a weft_api::sidecar::IstioIngressListener>,
    pub outbound_mode: OutboundMode,
    /// Every service some egress listener imports (clusters are made for
    /// these).
    pub services: Vec<&'a Service>,
}

/// Whether an egress `hosts` entry (`ns/dnsName`) imports a service.
fn imports(entry: &str, service: &Service, proxy_ns: &str) -> bool {
    let (ns, name) = entry.split_once('/').unwrap_or(("*", entry));
    let ns_ok = match ns {
        "*" => true,
        "." => service.namespace == proxy_ns,
        "~" => false,
        ns => service.namespace == ns,
    };
    ns_ok && weft_config::host::covers(&resolve_host(name, proxy_ns), &service.hostname)
}

pub(crate) fn scope<'a>(ctx: &'a Context, proxy: &Proxy) -> Scope<'a> {
    let visible: Vec<&Service> = ctx
        .registry
        .services()
        .filter(|s| s.visible_from(&proxy.namespace))
        .collect();
    let sidecar = ctx.sidecar_for(&proxy.namespace, &proxy.labels);
    let outbound_mode = sidecar
        .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
        .and_then(|p| p.mode)
        .unwrap_or(ctx.mesh.outbound_mode);
    let Some(sidecar) = sidecar.filter(|s| !s.spec.egress.is_empty()) else {
        return Scope {
            egress: vec![Egress {
                bind: None,
                port: None,
                services: visible.clone(),
            }],
            ingress: sidecar
                .map(|s| s.spec.ingress.iter().collect())
                .unwrap_or_default(),
            outbound_mode,
            services: visible,
        };
    };
    let mut all: Vec<&Service> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let egress = sidecar
        .spec
        .egress
        .iter()
        .map(|e| {
            let services: Vec<&Service> = visible
                .iter()
                .copied()
                .filter(|s| e.hosts.iter().any(|h| imports(h, s, &proxy.namespace)))
                .collect();
            for s in &services {
                if taken.insert(std::ptr::from_ref::<Service>(s)) {
                    all.push(s);
                }
            }
            let none = e.capture_mode == Some(CaptureMode::NONE);
            Egress {
                bind: e
                    .bind
                    .clone()
                    .or_else(|| none.then(|| "127.0.0.1".to_string())),
                port: e.port.as_ref().map(|p| Port {
                    number: p.number,
                    name: p.name.clone(),
                    protocol: crate::model::Protocol::parse(&p.protocol),
                }),
                services,
            }
        })
        .collect();
    Scope {
        egress,
        ingress: sidecar.spec.ingress.iter().collect(),
        outbound_mode,
        services: all,
    }
}

/// What generation reads from a proxy: proxies with the same shape get
/// the same resources (the server encodes them once per snapshot). The
/// address matters only to ingress listeners bound at the workload's own
/// address.
pub fn shape(ctx: &Context, proxy: &Proxy) -> String {
    let uses_ip = proxy.kind == ProxyKind::Sidecar
        && ctx
            .sidecar_for(&proxy.namespace, &proxy.labels)
            .is_some_and(|s| s.spec.ingress.iter().any(|i| i.bind.is_none()));
    format!(
        "{:?}|{}|{:?}|{}|{}|{}",
        proxy.kind,
        proxy.namespace,
        proxy.labels,
        if uses_ip { proxy.ip.as_str() } else { "" },
        proxy.workload_certs,
        proxy.istio_filters
    )
}

/// Everything a sidecar gets.
pub fn sidecar(ctx: &Context, proxy: &Proxy) -> Output {
    let scope = scope(ctx, proxy);
    let clusters = clusters(ctx, proxy, &scope);
    let (listeners, tables) = sidecar_listeners(ctx, proxy, &scope);
    let routes = tables
        .iter()
        .map(|t| route_table(ctx, proxy, t, scope.outbound_mode))
        .collect();
    let mut out = output(ctx, clusters, listeners, routes);
    out.insert(
        Kind::Secret,
        sidecar_secrets(ctx, proxy, &scope)
            .into_iter()
            .map(|s| (s.name.clone(), Resource::Secret(Box::new(s))))
            .collect(),
    );
    out
}

/// The secrets (DestinationRule `credentialName`s) a sidecar's clusters
/// originate TLS with.
pub(crate) fn sidecar_secrets(ctx: &Context, proxy: &Proxy, scope: &Scope) -> Vec<pb::tls::Secret> {
    secret::for_clusters(ctx, &proxy.id, &proxy.namespace, &scope.services)
}

/// The fixed clusters and those of every service in scope.
fn clusters(ctx: &Context, proxy: &Proxy, scope: &Scope) -> Vec<cluster::Generated> {
    let mut out = cluster::fixed(ctx, proxy, scope);
    for s in &scope.services {
        out.extend(cluster::for_service(ctx, proxy, s));
    }
    out
}

/// One of a sidecar's outbound route tables, whole.
pub(crate) fn route_table(
    ctx: &Context,
    proxy: &Proxy,
    t: &Table,
    mode: OutboundMode,
) -> pb::route::RouteConfiguration {
    route::outbound_table(ctx, proxy, &t.name, t.port, &t.services, mode)
}

/// A sidecar's listeners and the route tables they name.
pub(crate) fn sidecar_listeners<'a>(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope<'a>,
) -> (Vec<pb::listener::Listener>, Vec<Table<'a>>) {
    listener::sidecar(ctx, proxy, scope)
}

/// The clusters a sidecar has whatever services it imports (no EDS).
pub(crate) fn sidecar_fixed_clusters(
    ctx: &Context,
    proxy: &Proxy,
    scope: &Scope,
) -> Vec<pb::cluster::Cluster> {
    cluster::fixed(ctx, proxy, scope)
        .into_iter()
        .map(|c| c.cluster)
        .collect()
}

/// A route table with no virtual hosts, and the virtual host that ends
/// every outbound table: what a table is assembled from besides the
/// services' own virtual hosts.
pub(crate) fn table_parts(
    name: &str,
    mode: OutboundMode,
) -> (pb::route::RouteConfiguration, pb::route::VirtualHost) {
    (route::table_without_hosts(name), route::fallback_host(mode))
}

/// Clusters (with the endpoints of the EDS ones), listeners and route
/// tables, by type and name.
pub(crate) fn output(
    ctx: &Context,
    clusters: Vec<cluster::Generated>,
    listeners: Vec<pb::listener::Listener>,
    routes: Vec<pb::route::RouteConfiguration>,
) -> Output {
    fn by_name(resources: impl Iterator<Item = Resource>) -> BTreeMap<String, Resource> {
        resources.map(|r| (r.name().to_string(), r)).collect()
    }
    let endpoints = endpoint::for_clusters(ctx, &clusters);
    let mut out = Output::new();
    out.insert(
        Kind::Cluster,
        by_name(
            clusters
                .into_iter()
                .map(|c| Resource::Cluster(Box::new(c.cluster))),
        ),
    );
    out.insert(
        Kind::ClusterLoadAssignment,
        by_name(endpoints.into_iter().map(Resource::ClusterLoadAssignment)),
    );
    out.insert(
        Kind::Listener,
        by_name(
            listeners
                .into_iter()
                .map(|l| Resource::Listener(Box::new(l))),
        ),
    );
    out.insert(
        Kind::RouteConfiguration,
        by_name(
            routes
                .into_iter()
                .map(|r| Resource::RouteConfiguration(Box::new(r))),
        ),
    );
    out
}

/// Istio's cluster name for a service port and subset.
pub fn cluster_name(direction: &str, port: u32, subset: &str, host: &str) -> String {
    format!("{direction}|{port}|{subset}|{host}")
}

/// A duration as proto3 JSON writes it (`"0.250s"`): Istio's YAML allows
/// `1m` or `100ms`, Envoy's JSON only seconds. (Mesh-wide settings are
/// kept in this form: see `Mesh::connect_timeout`.)
pub(crate) fn dur(d: &weft_api::Duration) -> String {
    let d = d.as_std();
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}
