//! The iptables-shaped sidecar (no Sidecar resource): a TCP service
//! with a VIP gets its own `VIP_PORT` listener, external TLS hosts
//! without an address share `0.0.0.0_PORT` by SNI. (The bound shape is
//! proven against Envoy in `tests/l4.rs`.)

use serde_json::{json, Value};
use weft_xds::Kind;

use crate::context::{Context, Mesh};
use crate::gen::{self, Proxy};

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

fn listeners() -> Value {
    listeners_of(MESH)
}

fn listeners_of(mesh: &str) -> Value {
    let loaded = weft_config::load_str("mesh.yaml", mesh, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let ctx = Context::build(&loaded.resources, Mesh::default());
    let proxy = Proxy::from_node(
        "sidecar~10.1.0.1~client.default~default.svc.cluster.local",
        None,
        &ctx,
    )
    .unwrap();
    let out = gen::sidecar(&ctx, &proxy);
    serde_json::to_value(&out[&Kind::Listener]).unwrap()
}

fn filters(chain: &Value) -> &Value {
    &chain["filters"][0]["typed_config"]
}

#[test]
fn a_tcp_route_takes_the_vip_listener() {
    let l = listeners();
    let vip = &l["10.9.0.1_3306"];
    let chains = vip["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{vip:#}");
    assert!(vip.get("listener_filters").is_none(), "{vip:#}");
    // The port-3307 route does not apply on 3306; the weighted one does.
    assert_eq!(
        filters(&chains[0])["weighted_clusters"],
        json!({"clusters": [
            {"name": "outbound|3306|v1|db.default.svc.cluster.local", "weight": 20},
            {"name": "outbound|3306|v2|db.default.svc.cluster.local", "weight": 80},
        ]})
    );
}

#[test]
fn external_tls_hosts_share_a_listener_by_sni() {
    let l = listeners();
    let shared = &l["0.0.0.0_443"];
    assert_eq!(shared["bind_to_port"], false);
    assert_eq!(
        shared["listener_filters"][0]["name"],
        "envoy.filters.listener.tls_inspector"
    );
    let chains: Vec<(Value, Value)> = shared["filter_chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["filter_chain_match"]["server_names"].clone(),
                filters(c)["cluster"].clone(),
            )
        })
        .collect();
    assert_eq!(
        chains,
        [
            (
                json!(["api.example.com"]),
                json!("outbound|443||api.example.com")
            ),
            // The wildcard host's VirtualService sends one name elsewhere
            // and claims no other.
            (
                json!(["a.wild.example.com"]),
                json!("outbound|443||api.example.com")
            ),
            // Anything else: where unknown destinations go (ALLOW_ANY).
            (Value::Null, json!("PassthroughCluster")),
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
    let chains = vip["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{vip:#}");
    assert_eq!(
        filters(&chains[0])["cluster"],
        "outbound|3306|v2|db.default.svc.cluster.local",
        "{vip:#}"
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
