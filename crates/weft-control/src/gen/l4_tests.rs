//! The iptables-shaped sidecar (no Sidecar resource): a TCP service
//! with a VIP gets its own `VIP_PORT` listener, external TLS hosts
//! without an address share `0.0.0.0_PORT` by SNI. (The bound shape is
//! proven against Envoy in `tests/l4.rs`.)

use std::collections::BTreeMap;

use prost::{Message, Name};
use weft_xds::Kind;

use super::pb::listener::{filter::ConfigType, FilterChain, Listener};
use super::pb::tcp_proxy::tcp_proxy::{
    weighted_cluster::ClusterWeight, ClusterSpecifier, WeightedCluster,
};
use super::pb::tcp_proxy::TcpProxy;
use crate::context::{Context, Mesh};
use crate::gen::{self, Proxy, Resource};

const MESH: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  addresses: [10.9.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3306, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.9.1.1, labels: {version: v1}}, {address: 10.9.1.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 3307}]
    route: [{destination: {host: db, subset: v1}}]
  - route:
    - {destination: {host: db, subset: v1}, weight: 20}
    - {destination: {host: db, subset: v2}, weight: 80}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com, '*.wild.example.com']
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild, namespace: default}
spec:
  hosts: ['*.wild.example.com']
  tls:
  - match: [{sniHosts: [a.wild.example.com]}]
    route: [{destination: {host: api.example.com}}]
";

fn listeners() -> BTreeMap<String, Listener> {
    listeners_of(MESH)
}

fn listeners_of(mesh: &str) -> BTreeMap<String, Listener> {
    let loaded = weft_config::load_str("mesh.yaml", mesh, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let ctx = Context::build(&loaded.resources, Mesh::default());
    let proxy = Proxy::from_node(
        "sidecar~10.1.0.1~client.default~default.svc.cluster.local",
        None,
        &ctx,
    )
    .unwrap();
    let mut out = gen::sidecar(&ctx, &proxy);
    out.remove(&Kind::Listener)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, r)| match r {
            Resource::Listener(l) => (name, *l),
            other => panic!("{name}: not a listener: {other:?}"),
        })
        .collect()
}

/// The tcp_proxy a chain's first filter is.
fn tcp_proxy(chain: &FilterChain) -> TcpProxy {
    let Some(ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no typed_config: {chain:?}");
    };
    assert_eq!(any.type_url, TcpProxy::type_url());
    TcpProxy::decode(any.value.as_slice()).expect("a TcpProxy")
}

fn to(cluster: &str) -> Option<ClusterSpecifier> {
    Some(ClusterSpecifier::Cluster(cluster.to_string()))
}

#[test]
fn a_tcp_route_takes_the_vip_listener() {
    let l = listeners();
    let vip = &l["10.9.0.1_3306"];
    let chains = &vip.filter_chains;
    assert_eq!(chains.len(), 1, "{vip:#?}");
    assert!(vip.listener_filters.is_empty(), "{vip:#?}");
    // The port-3307 route does not apply on 3306; the weighted one does.
    let weight = |name: &str, weight| ClusterWeight {
        name: name.to_string(),
        weight,
        ..Default::default()
    };
    assert_eq!(
        tcp_proxy(&chains[0]).cluster_specifier,
        Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: vec![
                weight("outbound|3306|v1|db.default.svc.cluster.local", 20),
                weight("outbound|3306|v2|db.default.svc.cluster.local", 80),
            ],
        }))
    );
}

#[test]
fn external_tls_hosts_share_a_listener_by_sni() {
    let l = listeners();
    let shared = &l["0.0.0.0_443"];
    assert_eq!(shared.bind_to_port.as_ref().map(|b| b.value), Some(false));
    assert_eq!(
        shared.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let chains: Vec<(Option<Vec<String>>, Option<ClusterSpecifier>)> = shared
        .filter_chains
        .iter()
        .map(|c| {
            (
                c.filter_chain_match
                    .as_ref()
                    .map(|m| m.server_names.clone()),
                tcp_proxy(c).cluster_specifier,
            )
        })
        .collect();
    let names = |n: &str| Some(vec![n.to_string()]);
    assert_eq!(
        chains,
        [
            (
                names("api.example.com"),
                to("outbound|443||api.example.com")
            ),
            // The wildcard host's VirtualService sends one name elsewhere
            // and claims no other.
            (
                names("a.wild.example.com"),
                to("outbound|443||api.example.com")
            ),
            // Anything else: where unknown destinations go (ALLOW_ANY).
            (None, to("PassthroughCluster")),
        ]
    );
}

#[test]
fn destination_subnets_are_decided_by_the_vip_a_listener_serves() {
    // Before the weighted route: one for a subnet the VIP is not in, one
    // for the subnet it is in.
    let mesh = MESH.replace(
        "  - match: [{port: 3307}]\n",
        "  - match: [{destinationSubnets: [10.8.0.0/16, 10.9.0.2]}]
    route: [{destination: {host: db, subset: v1}}]
  - match: [{destinationSubnets: [10.9.0.0/24]}]
    route: [{destination: {host: db, subset: v2}}]
  - match: [{port: 3307}]\n",
    );
    assert_ne!(mesh, MESH);
    let l = listeners_of(&mesh);
    let vip = &l["10.9.0.1_3306"];
    let chains = &vip.filter_chains;
    assert_eq!(chains.len(), 1, "{vip:#?}");
    assert_eq!(
        tcp_proxy(&chains[0]).cluster_specifier,
        to("outbound|3306|v2|db.default.svc.cluster.local"),
        "{vip:#?}"
    );
}

#[test]
fn within_reads_addresses_and_subnets() {
    use super::within;
    assert!(within("10.9.0.1", "10.9.0.0/24"));
    assert!(within("10.9.0.1", "10.9.0.1"));
    assert!(!within("10.9.0.1", "10.9.0.2"));
    assert!(!within("10.9.1.1", "10.9.0.0/24"));
    assert!(within("10.9.0.0/28", "10.9.0.0/24"));
    assert!(!within("10.9.0.0/16", "10.9.0.0/24"));
    assert!(within("2001:db8::1", "2001:db8::/32"));
    assert!(!within("10.9.0.1", "2001:db8::/32"));
    assert!(!within("db.example", "10.0.0.0/8"));
}
