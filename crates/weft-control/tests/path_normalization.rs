//! The mesh's `pathNormalization` on every connection manager the
//! control plane generates (sidecar inbound and outbound, gateways), as
//! istiod sets it: NONE turns `normalize_path` off explicitly, BASE (the
//! default) turns it on, MERGE_SLASHES adds `merge_slashes`, and
//! DECODE_AND_MERGE_SLASHES adds UNESCAPE_AND_FORWARD; escaped slashes
//! are otherwise kept (KEEP_UNCHANGED, set explicitly).

use std::collections::HashSet;

use serde_json::{json, Value};
use weft_control::context::{Context, Mesh, PathNormalization};
use weft_control::gen::{self, Proxy};
use weft_xds::Kind;

const CONFIG: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: 10.0.0.1
  serviceAccount: bookinfo-reviews
  labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:19080
  egress:
  - hosts: [./*]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: ['*']
  gateways: [istio-system/gw]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}
";

/// Every connection manager in the listeners the control plane makes
/// for a sidecar (inbound and outbound) and for a gateway, by listener.
fn managers(level: PathNormalization) -> Vec<(String, Value)> {
    let loaded = weft_config::load_str("mesh.yaml", CONFIG, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let mesh = Mesh {
        path_normalization: level,
        ..Mesh::default()
    };
    let ctx = Context::build(&loaded.resources, mesh);
    let sidecar = Proxy::from_node(
        "sidecar~10.0.0.1~reviews-v1.default~default.svc.cluster.local",
        None,
        &ctx,
    )
    .expect("node id");
    let labels = [("istio".to_string(), "ingressgateway".to_string())]
        .into_iter()
        .collect();
    let gateway = Proxy::from_node(
        "router~10.1.0.1~gw-1.istio-system~istio-system.svc.cluster.local",
        Some(labels),
        &ctx,
    )
    .expect("node id");
    let mut found = Vec::new();
    for out in [gen::sidecar(&ctx, &sidecar), gen::gateway(&ctx, &gateway)] {
        let clusters: HashSet<&str> = out
            .get(&Kind::Cluster)
            .map(|c| c.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for (name, resource) in out.get(&Kind::Listener).into_iter().flatten() {
            // What weft proxy makes of it, straight from the message and
            // from its JSON form, must agree and take the fields.
            let any = resource.to_any();
            match weft_xds::compare_decoders(&any.type_url, &any.value, &clusters) {
                Ok(got) => assert!(!got.starts_with("error at "), "{name}: {got}"),
                Err(e) => panic!("{name}: {e}"),
            }
            let listener = resource.to_json().expect("decodes");
            let chains = listener["filter_chains"].as_array().cloned();
            for chain in chains.into_iter().flatten() {
                for filter in chain["filters"].as_array().into_iter().flatten() {
                    if filter["name"] == "envoy.filters.network.http_connection_manager" {
                        found.push((name.clone(), filter["typed_config"].clone()));
                    }
                }
            }
        }
    }
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["10.0.0.1_9080", "0.0.0.0_9080", "0.0.0.0_80"] {
        assert!(
            names.contains(&want),
            "no connection manager on {want}: {names:?}"
        );
    }
    found
}

/// The three path fields of a connection manager, as proto3 JSON shows
/// them (an unset field is absent).
fn path_fields(m: &Value) -> Value {
    json!({
        "normalize_path": m.get("normalize_path"),
        "merge_slashes": m.get("merge_slashes"),
        "path_with_escaped_slashes_action": m.get("path_with_escaped_slashes_action"),
    })
}

#[test]
fn every_connection_manager_normalizes_paths_as_the_mesh_says() {
    let cases = [
        (
            PathNormalization::None,
            json!({"normalize_path": false, "merge_slashes": null,
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED"}),
        ),
        (
            PathNormalization::Base,
            json!({"normalize_path": true, "merge_slashes": null,
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED"}),
        ),
        (
            PathNormalization::MergeSlashes,
            json!({"normalize_path": true, "merge_slashes": true,
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED"}),
        ),
        (
            PathNormalization::DecodeAndMergeSlashes,
            json!({"normalize_path": true, "merge_slashes": true,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"}),
        ),
    ];
    for (level, want) in cases {
        for (listener, m) in managers(level) {
            assert_eq!(path_fields(&m), want, "{level:?} on {listener}: {m:#}");
        }
    }
}

#[test]
fn base_is_the_default() {
    assert_eq!(Mesh::default().path_normalization, PathNormalization::Base);
    for name in ["DEFAULT", "BASE"] {
        assert_eq!(
            PathNormalization::from_name(name),
            Some(PathNormalization::Base)
        );
    }
    assert_eq!(PathNormalization::from_name("base"), None);
}
