//! The control plane reads selectors through the shared mesh model
//! (weft_config::mesh): a Gateway without selector applies to every
//! gateway proxy, as Istio documents ("If selector is nil, the Gateway
//! will be applied to all workloads"); it used to apply to none.

use weft_control::context::{Context, Mesh};
use weft_control::{Proxy, ProxyKind};

fn gateway(selector: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  {selector}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: [\"*\"]
"
    )
}

fn listeners(yaml: &str, labels: &[(&str, &str)]) -> usize {
    let loaded = weft_config::load_str("gw.yaml", yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let ctx = Context::build(&loaded.resources, Mesh::default());
    let proxy = Proxy {
        id: "router~10.0.0.9~gw-1.default~default.svc.cluster.local".into(),
        kind: ProxyKind::Router,
        ip: "10.0.0.9".into(),
        name: "gw-1".into(),
        namespace: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        workload_certs: true,
        istio_filters: true,
    };
    let out = weft_control::gen::gateway(&ctx, &proxy);
    out.get(&weft_xds::Kind::Listener).map_or(0, |l| l.len())
}

#[test]
fn a_gateway_selector_picks_gateway_proxies_by_label_and_empty_picks_all() {
    let ingress = [("istio", "ingressgateway")];
    let sel = gateway("selector: {istio: ingressgateway}");
    assert_eq!(listeners(&sel, &ingress), 1);
    assert_eq!(listeners(&sel, &[("istio", "egressgateway")]), 0);
    for empty in ["selector: {}", ""] {
        assert_eq!(listeners(&gateway(empty), &ingress), 1, "{empty:?}");
        assert_eq!(listeners(&gateway(empty), &[]), 1, "{empty:?}");
    }
}
