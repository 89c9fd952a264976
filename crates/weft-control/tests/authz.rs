//! AuthorizationPolicy on the listeners the control plane generates:
//! which policies reach which workload (mesh-wide from the root
//! namespace, namespace-wide, by selector), and where the RBAC filters
//! go — an inbound HTTP port's connection manager before every other
//! filter, a TCP port's network filters before `tcp_proxy`.

use serde_json::Value;
use weft_control::context::{Context, Mesh};
use weft_control::gen::{self, Proxy};
use weft_xds::Kind;

const MESH: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 3306, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 10.0.0.1, serviceAccount: reviews, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:19080
  - port: {number: 3306, protocol: TCP, name: tcp}
    defaultEndpoint: 127.0.0.1:13306
  egress:
  - hosts: [./*]
";

fn listeners(policies: &str) -> (Value, Value) {
    let yaml = format!("{MESH}\n---\n{policies}");
    let loaded = weft_config::load_str("mesh.yaml", &yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let ctx = Context::build(&loaded.resources, Mesh::default());
    let proxy = Proxy::from_node(
        "sidecar~10.0.0.1~reviews-v1.default~default.svc.cluster.local",
        None,
        &ctx,
    )
    .unwrap();
    let out = gen::sidecar(&ctx, &proxy);
    let get = |name: &str| out[&Kind::Listener][name].to_json().unwrap();
    (get("10.0.0.1_9080"), get("10.0.0.1_3306"))
}

/// The filter names of each chain's first filter list (HTTP: the
/// connection manager's HTTP filters).
fn http_filters(l: &Value) -> Vec<String> {
    l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn network_filters(l: &Value) -> Vec<String> {
    l["filter_chains"][0]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

const ALLOW_PRODUCTPAGE: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}
    to:
    - operation: {methods: [GET]}
";

#[test]
fn no_policy_no_filter() {
    let (http, tcp) = listeners("");
    assert!(!http_filters(&http).iter().any(|f| f.contains("rbac")));
    assert_eq!(network_filters(&tcp), ["envoy.filters.network.tcp_proxy"]);
}

#[test]
fn allow_nothing_mesh_wide_then_a_workload_allow_and_a_namespace_deny() {
    let (http, tcp) = listeners(&format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-nothing, namespace: istio-system}}
spec: {{}}
---
{ALLOW_PRODUCTPAGE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: default}}
spec:
  action: DENY
  rules:
  - to:
    - operation: {{paths: [/admin*], ports: [\"3306\"]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: elsewhere, namespace: other}}
spec:
  action: DENY
  rules: [{{}}]
"
    ));
    // After the metadata exchange, DENY before ALLOW, both before
    // Istio's other filters.
    assert_eq!(
        http_filters(&http),
        [
            "istio.metadata_exchange",
            "envoy.filters.http.rbac",
            "envoy.filters.http.rbac",
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "istio.stats",
            "envoy.filters.http.router"
        ]
    );
    let filters = http["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].clone();
    let deny = &filters[1]["typed_config"]["rules"];
    assert_eq!(deny["action"], "DENY");
    let names: Vec<&String> = deny["policies"].as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        ["ns[default]-policy[no-admin]-rule[0]"],
        "the other namespace's policy does not apply"
    );
    let allow = &filters[2]["typed_config"]["rules"];
    let names: Vec<&String> = allow["policies"].as_object().unwrap().keys().collect();
    // allow-nothing adds no rule; the viewer's rule is the only way in.
    assert_eq!(names, ["ns[default]-policy[reviews-viewer]-rule[0]"]);
    // Every chain (mTLS and plaintext) carries the same filters.
    let chains = http["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[0]["filters"], chains[1]["filters"]);

    // TCP: the DENY rule keeps its port (its path cannot be seen); the
    // ALLOW rule's method cannot be seen, so it never matches.
    assert_eq!(
        network_filters(&tcp),
        [
            "envoy.filters.network.rbac",
            "envoy.filters.network.rbac",
            "envoy.filters.network.tcp_proxy"
        ]
    );
    let tcp_filters = &tcp["filter_chains"][0]["filters"];
    assert_eq!(tcp_filters[0]["typed_config"]["stat_prefix"], "tcp.");
    let deny = &tcp_filters[0]["typed_config"]["rules"]["policies"]
        ["ns[default]-policy[no-admin]-rule[0]"];
    assert_eq!(
        deny["permissions"][0]["and_rules"]["rules"][0]["or_rules"]["rules"][0]["destination_port"],
        3306,
        "{tcp:#}"
    );
    let allow = &tcp_filters[1]["typed_config"]["rules"];
    assert!(
        allow
            .get("policies")
            .is_none_or(|p| p.as_object().unwrap().is_empty()),
        "{tcp:#}"
    );
}

#[test]
fn a_selector_for_other_workloads_and_a_dry_run() {
    let (http, _) = listeners(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: try-deny
  namespace: default
  annotations: {istio.io/dry-run: \"true\"}
spec:
  action: DENY
  rules: [{}]
",
    );
    let filters = http["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].clone();
    let rbac = &filters[1]["typed_config"];
    assert!(
        rbac.get("rules").is_none(),
        "only the dry run applies: {rbac:#}"
    );
    let shadow: Vec<&String> = rbac["shadow_rules"]["policies"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(shadow, ["ns[default]-policy[try-deny]-rule[0]"]);
    assert_eq!(rbac["shadow_rules_stat_prefix"], "istio_dry_run_deny_");
}
