//! Gateway analyzers: conflicts, credentials, selectors and ports.

mod common;
use common::*;

fn gateway(name: &str, selector: &str, server: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {selector}\n  servers:\n{server}"
    )
}

const HTTP_80: &str =
    "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"a.example.com\"]\n";

#[test]
fn ist0145_two_gateways_same_selector_port_and_host() {
    let a = gateway("a", "{istio: ingressgateway}", HTTP_80);
    let b = gateway(
        "b",
        "{istio: ingressgateway}",
        &HTTP_80.replace("a.example.com", "*.example.com"),
    );
    expect(
        &docs(&[&a, &b]),
        &["IST0145 Gateway default/a", "IST0145 Gateway default/b"],
    );
    let d = diagnostics(&docs(&[&a, &b]), &Default::default());
    assert_eq!(
        d[0].text(),
        "Conflict with gateways default/b (workload selector istio=ingressgateway, port 80, hosts a.example.com)."
    );
    // Different host, different port, or different selector: no conflict.
    let other_host = gateway(
        "b",
        "{istio: ingressgateway}",
        &HTTP_80.replace("a.example.com", "b.example.com"),
    );
    let other_port = gateway(
        "b",
        "{istio: ingressgateway}",
        &HTTP_80.replace("number: 80", "number: 8080"),
    );
    let other_sel = gateway("b", "{istio: egressgateway}", HTTP_80);
    for b in [other_host, other_port, other_sel] {
        expect(&docs(&[&a, &b]), &[]);
    }
}

const TLS_SERVER: &str = "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"a.example.com\"]\n    tls: {mode: SIMPLE, credentialName: a-cert}\n";

fn secret(data: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: a-cert, namespace: istio-system}}\ntype: kubernetes.io/tls\nstringData:\n{data}")
}

const GOOD_PEM: &str = "  tls.crt: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"\n  tls.key: \"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\"\n";

#[test]
fn ist0101_missing_credential_and_ist0161_invalid_one() {
    let gw = gateway("a", "{istio: ingressgateway}", TLS_SERVER);
    expect(&gw, &["IST0101 Gateway default/a"]);
    expect(&docs(&[&gw, &secret(GOOD_PEM)]), &[]);
    let no_key = secret(
        "  tls.crt: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"\n",
    );
    expect(&docs(&[&gw, &no_key]), &["IST0161 Gateway default/a"]);
    let not_pem = secret("  tls.crt: hello\n  tls.key: world\n");
    expect(&docs(&[&gw, &not_pem]), &["IST0161 Gateway default/a"]);
}

#[test]
fn ist0138_one_certificate_in_two_gateways() {
    let a = gateway("a", "{istio: ingressgateway}", TLS_SERVER);
    let b = gateway(
        "b",
        "{istio: ingressgateway}",
        &TLS_SERVER.replace("a.example.com", "b.example.com"),
    );
    expect(
        &docs(&[&a, &b, &secret(GOOD_PEM)]),
        &["IST0138 Gateway default/a", "IST0138 Gateway default/b"],
    );
}

const GW_WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: my-gw}
spec:
  selector: {matchLabels: {app: my-gw}}
  template:
    metadata: {labels: {app: my-gw}, annotations: {sidecar.istio.io/inject: "false"}}
    spec: {containers: [{name: istio-proxy, image: proxy}]}
---
apiVersion: v1
kind: Service
metadata: {name: my-gw}
spec:
  selector: {app: my-gw}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

#[test]
fn ist0101_selector_matches_nothing_and_ist0162_port_not_on_service() {
    let on_service = gateway("a", "{app: my-gw}", HTTP_80);
    expect(&docs(&[GW_WORKLOAD, &on_service]), &[]);
    let target_port = gateway(
        "a",
        "{app: my-gw}",
        &HTTP_80.replace("number: 80", "number: 8080"),
    );
    expect(&docs(&[GW_WORKLOAD, &target_port]), &[]);
    let off_service = gateway(
        "a",
        "{app: my-gw}",
        &HTTP_80.replace("number: 80", "number: 81"),
    );
    expect(
        &docs(&[GW_WORKLOAD, &off_service]),
        &["IST0162 Gateway default/a"],
    );
    let no_workload = gateway("a", "{app: nobody}", HTTP_80);
    expect(
        &docs(&[GW_WORKLOAD, &no_workload]),
        &["IST0101 Gateway default/a"],
    );
    // The built-in ingress gateway is installed by weft itself.
    let builtin = gateway("a", "{istio: ingressgateway}", HTTP_80);
    expect(&docs(&[GW_WORKLOAD, &builtin]), &[]);
}
