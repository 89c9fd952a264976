//! Service-by-service generation must give exactly what generating the
//! whole sidecar gives, after every kind of edit: each step below is
//! compared resource by resource (decoded), with the memo carried from
//! step to step as the server carries it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use weft_xds::Kind;

use super::super::encode::{ByKind, Cache, Encoded};
use crate::context::{Context, Mesh};
use crate::gen::{self, Proxy};

fn example() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/bookinfo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable") + "\n---\n")
        .collect()
}

/// A TCP service with a VIP, a second HTTP port, and a VirtualService
/// that splits, mirrors and hashes by cookie.
const EXTRA: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  addresses: [10.9.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3306, name: tcp, protocol: TCP}, {number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.9.1.1}, {address: 10.9.1.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}}
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  http:
  - route:
    - {destination: {host: db, subset: v2}, weight: 70}
    - {destination: {host: ratings}, weight: 30}
    mirror: {host: details}
";

fn ctx(yaml: &str, mesh: Mesh) -> Context {
    let loaded = weft_config::load_str("mesh.yaml", yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    Context::build(&loaded.resources, mesh)
}

fn proxies(ctx: &Context) -> Vec<Proxy> {
    [
        // Bound egress through its Sidecar (as `weft up` runs it).
        "sidecar~127.0.0.13~reviews-v1.default~default.svc.cluster.local",
        // No Sidecar applies: iptables shape, every visible service.
        "sidecar~10.1.0.9~client.other~other.svc.cluster.local",
    ]
    .iter()
    .map(|id| Proxy::from_node(id, None, ctx).expect("node id"))
    .collect()
}

fn decoded(encoded: &Encoded) -> BTreeMap<(Kind, String), Value> {
    let mut out = BTreeMap::new();
    for (kind, t) in encoded {
        for (name, res) in t.iter() {
            let (_, _, json) = weft_xds::to_json(&kind.type_url(), &res.value).expect("decodes");
            out.insert((*kind, name.clone()), json);
        }
    }
    out
}

fn whole(ctx: &Context, proxy: &Proxy) -> BTreeMap<(Kind, String), Value> {
    let mut cache = Cache::default();
    let mut by_kind = ByKind::new();
    for (kind, resources) in gen::sidecar(ctx, proxy) {
        for (name, resource) in resources {
            let res = cache.share(1, kind, resource.encode());
            by_kind.entry(kind).or_default().insert(name, res);
        }
    }
    decoded(&cache.finish("whole", 1, by_kind))
}

fn edit(yaml: &str, from: &str, to: &str) -> String {
    assert!(yaml.contains(from), "the example has {from:?}");
    yaml.replacen(from, to, 1)
}

#[test]
fn service_by_service_equals_whole_after_every_edit() {
    let base = example() + EXTRA;
    let weights = edit(&base, "weight: 70", "weight: 20");
    let weights = edit(&weights, "weight: 30", "weight: 80");
    let address = edit(&weights, "address: 10.9.1.2", "address: 10.9.1.3");
    let rule = edit(
        &address,
        "subsets: [{name: v2, labels: {version: v2}}]",
        "subsets: [{name: v2, labels: {version: v2}}, {name: v1, labels: {version: v1}}]",
    );
    // A service no VirtualService routes: only its DestinationRule says
    // how its clusters look.
    let rule = edit(
        &rule,
        "  host: details\n  subsets:",
        "  host: details\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}\n  subsets:",
    );
    let gone = edit(
        &rule,
        "hosts: [db.default.svc.cluster.local]",
        "hosts: [db2.default.svc.cluster.local]",
    );
    // Two services answering to one VIP: the table keeps the first's.
    let clash = gone.clone()
        + "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db3, namespace: default}
spec:
  hosts: [db3.default.svc.cluster.local]
  addresses: [10.9.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.9.1.9}]
";
    let steps = [
        (base.clone(), Mesh::default()),
        (weights, Mesh::default()),
        (address, Mesh::default()),
        (rule, Mesh::default()),
        (gone, Mesh::default()),
        (clash.clone(), Mesh::default()),
        (
            clash,
            Mesh {
                connect_timeout: "3s".into(),
                ..Mesh::default()
            },
        ),
        (base, Mesh::default()),
    ];
    let mut cache = Cache::default();
    for (version, (yaml, mesh)) in steps.into_iter().enumerate() {
        let ctx = ctx(&yaml, mesh);
        for proxy in proxies(&ctx) {
            let shape = gen::shape(&ctx, &proxy);
            let by_kind = super::sidecar(&mut cache, &shape, version as u64 + 1, &ctx, &proxy);
            // As the server does: indexing the shape's resources is what
            // keeps its memo for the next snapshot.
            let parts = decoded(&cache.finish(&shape, version as u64 + 1, by_kind));
            let expected = whole(&ctx, &proxy);
            assert_eq!(
                parts.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "step {version}, {}: the same resources",
                proxy.id
            );
            for (k, v) in &expected {
                assert_eq!(&parts[k], v, "step {version}, {}: {k:?}", proxy.id);
            }
        }
    }
}
