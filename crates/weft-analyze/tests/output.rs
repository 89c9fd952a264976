//! The message table against Istio's, the analyzer registry, suppressions
//! and the machine-readable output shape.

mod common;
use common::*;

use std::path::PathBuf;

use weft_analyze::{messages, Level, Options, OutputMessage, Suppression, ANALYZERS};

fn shared_dir() -> PathBuf {
    match std::env::var("WEFT_SHARED") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

#[test]
fn message_table_matches_istio_messages_yaml() {
    let path = shared_dir().join("reference/istio/messages.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); set WEFT_SHARED", path.display()));
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("messages.yaml parses");
    let list = doc
        .get("messages")
        .and_then(|m| m.as_sequence())
        .expect("messages.yaml has a messages list");
    let mut checked = 0;
    for m in messages::ALL {
        let istio = list
            .iter()
            .find(|e| e.get("code").and_then(|c| c.as_str()) == Some(m.code))
            .unwrap_or_else(|| panic!("{} is not in Istio's messages.yaml", m.code));
        let field = |k: &str| istio.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        assert_eq!(m.name, field("name"), "{}: name", m.code);
        assert_eq!(m.level.to_string(), field("level"), "{}: level", m.code);
        assert_eq!(
            m.template,
            field("template").trim_end(),
            "{}: template",
            m.code
        );
        checked += 1;
    }
    assert!(checked >= 45, "only {checked} messages checked");
}

#[test]
fn every_message_has_an_analyzer_and_every_analyzer_code_is_known() {
    for m in messages::ALL {
        if m.code == "IST0001" {
            continue; // internal errors come from weft itself
        }
        assert!(
            ANALYZERS
                .iter()
                .any(|a| a.codes.iter().any(|c| c.code == m.code)),
            "no analyzer reports {}",
            m.code
        );
    }
    for a in ANALYZERS {
        for c in a.codes {
            assert!(
                messages::by_code(c.code).is_some(),
                "{}: {}",
                a.name,
                c.code
            );
        }
    }
}

const CONFLICT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.shop.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: shop, annotations: {galley.istio.io/analyze-suppress: "IST0109"}}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.shop.svc.cluster.local}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
"#;

#[test]
fn suppression_by_annotation_flag_and_namespace() {
    // b suppresses IST0109 on itself only.
    expect(CONFLICT, &["IST0109 VirtualService shop/a"]);
    let flag = Options {
        suppressions: vec![Suppression::parse("IST0109=VirtualService a.shop").unwrap()],
        ..Default::default()
    };
    assert!(diagnostics(CONFLICT, &flag).is_empty());
    let glob = Options {
        suppressions: vec![Suppression::parse("IST01*=VirtualService *").unwrap()],
        ..Default::default()
    };
    assert!(diagnostics(CONFLICT, &glob).is_empty());
    let other_ns = Options {
        namespace: Some("default".into()),
        ..Default::default()
    };
    assert!(diagnostics(CONFLICT, &other_ns).is_empty());
    assert!(Suppression::parse("IST9999=Pod x").is_err());
    assert!(Suppression::parse("no-equals-sign").is_err());
}

#[test]
fn suppression_annotation_on_a_gateway_api_gateway_is_its_own() {
    // An Istio Gateway and a Kubernetes Gateway share the kind name; the
    // annotation on one must not silence the other.
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web}
spec:
  selector: {app: nobody}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, annotations: {galley.istio.io/analyze-suppress: "*"}}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Pod
metadata: {name: p, labels: {app: p}}
spec: {containers: [{name: c, image: c}]}
"#;
    expect(yaml, &["IST0101 Gateway default/web"]);
}

#[test]
fn json_output_has_istioctl_fields() {
    let d = diagnostics(CONFLICT, &Default::default());
    let out: Vec<OutputMessage> = d.iter().map(OutputMessage::from).collect();
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!({
            "code": "IST0109",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0109/",
            "level": "Error",
            "message": "The VirtualServices shop/a,shop/b associated with mesh gateway define the same host reviews.shop.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
            "origin": "VirtualService shop/a",
            "reference": "t.yaml:6",
        })
    );
    assert!(Level::Error > Level::Warning && Level::Warning > Level::Info);
}
