use super::*;
use serde_json::json;

#[test]
fn decodes_istio_kinds_with_paths_in_errors() {
    let ok = decode(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}
    }))
    .unwrap();
    assert_eq!(ok.display_name(), "VirtualService bookinfo/reviews");
    let Spec::VirtualService(vs) = &ok.spec else {
        panic!()
    };
    assert_eq!(
        vs.http[0].route[0].destination.subset.as_deref(),
        Some("v1")
    );

    let err = decode(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r"},
        "spec": {"http": [{"route": [{"destination": {"host": "r"}, "wieght": 5}]}]}
    }))
    .unwrap_err();
    let DecodeError::Field { field, message, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(field, "spec.http[0].route[0].wieght");
    assert!(message.contains("unknown field `wieght`"), "{message}");
}

#[test]
fn unknown_and_removed_versions_are_explained() {
    let err = decode(json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}})).unwrap_err();
    assert!(err.to_string().contains("apps/v1"), "{err}");
    let err =
        decode(json!({"apiVersion": "networking.istio.io/v2", "kind": "Gateway"})).unwrap_err();
    assert!(
        err.to_string()
            .contains("served versions: v1, v1beta1, v1alpha3"),
        "{err}"
    );
    let err = decode(json!({"apiVersion": "example.com/v1", "kind": "Widget"})).unwrap_err();
    assert!(err.to_string().contains("unknown kind \"Widget\""), "{err}");
}

#[test]
fn kubernetes_gateway_is_not_istio_gateway() {
    let o = decode(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "g"}, "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})).unwrap();
    assert_eq!(o.kind, Kind::K8sGateway);
}

#[test]
fn native_kinds_decode_with_k8s_openapi() {
    let o = decode(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"},
        "spec": {"ports": [{"port": "eighty"}]}}),
    )
    .unwrap_err();
    let DecodeError::Field { field, .. } = o else {
        panic!()
    };
    assert_eq!(field, "spec.ports[0].port");
}

#[test]
fn paths_render_and_parse_back() {
    let path = vec![
        PathSeg::Key("metadata".into()),
        PathSeg::Key("annotations".into()),
        PathSeg::Key("sidecar.istio.io/inject".into()),
    ];
    let shown = display_path(&path);
    assert_eq!(shown, r#"metadata.annotations["sidecar.istio.io/inject"]"#);
    assert_eq!(weft_yaml::parse_path(&shown), path);
}
