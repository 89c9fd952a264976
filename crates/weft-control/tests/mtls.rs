//! Mutual TLS in what the control plane generates, as Istio documents
//! it: auto mTLS (clients use mesh TLS to endpoints with a sidecar that
//! accept it), PeerAuthentication on the inbound side, a
//! DestinationRule's client `tls`, and TLS termination on gateways with
//! `credentialName` Secrets served over SDS.

use serde_json::Value;
use weft_control::context::{Context, Mesh};
use weft_control::gen::{self, Proxy};
use weft_xds::Kind;

const REGISTRY: &str = "
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
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec:
  address: 10.0.0.2
  labels: {app: reviews, version: v2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3, namespace: default}
spec:
  address: 10.0.0.3
  serviceAccount: bookinfo-reviews
  labels: {app: reviews, version: v3}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v4, namespace: default}
spec:
  address: 10.0.0.4
  serviceAccount: bookinfo-reviews
  labels: {app: reviews, version: v4, security.istio.io/tlsMode: disabled}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTP}]
";

fn context(extra: &str) -> Context {
    let yaml = format!("{REGISTRY}\n---\n{extra}");
    let loaded = weft_config::load_str("mesh.yaml", &yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    Context::build(&loaded.resources, Mesh::default())
}

fn sidecar(ctx: &Context, id: &str) -> gen::Output {
    let proxy = Proxy::from_node(id, None, ctx).expect("node id");
    gen::sidecar(ctx, &proxy)
}

fn json(out: &gen::Output, kind: Kind, name: &str) -> Value {
    out.get(&kind)
        .and_then(|m| m.get(name))
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} {name}: {:?}",
                out.get(&kind).map(|m| m.keys().collect::<Vec<_>>())
            )
        })
        .to_json()
        .expect("decodes")
}

const CLIENT: &str = "sidecar~10.0.0.9~client.default~default.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";

#[test]
fn auto_mtls_to_endpoints_with_a_sidecar() {
    let ctx = context("");
    let out = sidecar(&ctx, CLIENT);
    let c = json(&out, Kind::Cluster, REVIEWS);
    let matches = c["transport_socket_matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 2, "{c:#}");
    assert_eq!(matches[0]["match"], serde_json::json!({"tlsMode": "istio"}));
    let tls = &matches[0]["transport_socket"]["typed_config"];
    assert_eq!(
        tls["sni"],
        "outbound_.9080_._.reviews.default.svc.cluster.local"
    );
    let common = &tls["common_tls_context"];
    assert_eq!(
        common["tls_certificate_sds_secret_configs"][0]["name"],
        "default"
    );
    let combined = &common["combined_validation_context"];
    assert_eq!(
        combined["validation_context_sds_secret_config"]["name"],
        "ROOTCA"
    );
    assert_eq!(
        combined["default_validation_context"]["match_typed_subject_alt_names"][0]["matcher"]
            ["exact"],
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    );
    assert_eq!(
        common["alpn_protocols"],
        serde_json::json!(["istio-peer-exchange", "istio"])
    );
    assert_eq!(
        matches[1]["transport_socket"]["name"],
        "envoy.transport_sockets.raw_buffer"
    );
    // Only endpoints with a sidecar are marked for mesh TLS: the
    // tlsMode label says so (v1) or not (v4); without it, a
    // WorkloadEntry naming a service account has one (v3), one naming
    // none does not (v2) — Istio's reading of WorkloadEntries.
    let eds = json(&out, Kind::ClusterLoadAssignment, REVIEWS);
    let endpoints = eds["endpoints"][0]["lb_endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 4, "{eds:#}");
    let marked: Vec<&Value> = endpoints
        .iter()
        .filter(|e| {
            e["metadata"]["filter_metadata"]["envoy.transport_socket_match"]["tlsMode"] == "istio"
        })
        .map(|e| &e["endpoint"]["address"]["socket_address"]["address"])
        .collect();
    assert_eq!(marked, ["10.0.0.1", "10.0.0.3"], "{eds:#}");
    // An external service gets no mesh TLS.
    let ext = json(&out, Kind::Cluster, "outbound|443||api.example.com");
    assert!(ext.get("transport_socket_matches").is_none(), "{ext:#}");
}

#[test]
fn a_disabled_peer_authentication_turns_auto_mtls_off_for_its_workloads() {
    let ctx = context(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: DISABLE}
",
    );
    let out = sidecar(&ctx, CLIENT);
    let eds = json(&out, Kind::ClusterLoadAssignment, REVIEWS);
    assert!(
        !eds.to_string().contains("tlsMode"),
        "no endpoint should be marked: {eds:#}"
    );
}

#[test]
fn destination_rule_tls_overrides_auto_mtls() {
    let ctx = context(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: DISABLE}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: ISTIO_MUTUAL, sni: my-sni}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE, subjectAltNames: [api.example.com]}
",
    );
    let out = sidecar(&ctx, CLIENT);
    let plain = json(&out, Kind::Cluster, REVIEWS);
    assert!(plain.get("transport_socket").is_none(), "{plain:#}");
    assert!(plain.get("transport_socket_matches").is_none(), "{plain:#}");
    let v1 = json(
        &out,
        Kind::Cluster,
        "outbound|9080|v1|reviews.default.svc.cluster.local",
    );
    assert_eq!(
        v1["transport_socket"]["typed_config"]["sni"], "my-sni",
        "{v1:#}"
    );
    let ext = json(&out, Kind::Cluster, "outbound|443||api.example.com");
    let tls = &ext["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"], "api.example.com", "{ext:#}");
    let v = &tls["common_tls_context"]["validation_context"];
    assert_eq!(
        v["trusted_ca"]["filename"],
        "/etc/ssl/certs/ca-certificates.crt"
    );
    assert_eq!(v["match_subject_alt_names"][0]["exact"], "api.example.com");
}

fn inbound_chains(policy: &str) -> Value {
    let sidecar_yaml = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:19080
  egress:
  - hosts: [./*]
";
    let ctx = context(&format!("{sidecar_yaml}\n---\n{policy}"));
    let out = sidecar(
        &ctx,
        "sidecar~10.0.0.1~reviews-v1.default~default.svc.cluster.local",
    );
    json(&out, Kind::Listener, "10.0.0.1_9080")
}

#[test]
fn peer_authentication_shapes_the_inbound_listener() {
    let permissive = inbound_chains("");
    let chains = permissive["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2, "{permissive:#}");
    assert_eq!(chains[0]["filter_chain_match"]["transport_protocol"], "tls");
    assert_eq!(
        chains[0]["transport_socket"]["typed_config"]["require_client_certificate"],
        true
    );
    assert!(chains[1].get("transport_socket").is_none());
    assert_eq!(
        permissive["listener_filters"][0]["name"],
        "envoy.filters.listener.tls_inspector"
    );

    let strict = inbound_chains(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
",
    );
    let chains = strict["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{strict:#}");
    assert!(chains[0]["transport_socket"].is_object());

    let disabled = inbound_chains(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls:
    \"9080\": {mode: DISABLE}
",
    );
    let chains = disabled["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{disabled:#}");
    assert!(chains[0].get("transport_socket").is_none());
    assert!(disabled.get("listener_filters").is_none());
}

const GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: a-cert, minProtocolVersion: TLSV1_2}
  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: MUTUAL, credentialName: b-cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [istio-system/gw]
  http:
  - route:
    - destination: {host: reviews, port: {number: 9080}}
";

fn secret(name: &str, with_ca: bool) -> String {
    // Not real certificates: the control plane only checks the PEM
    // framing; the proxy parses and checks the key (its own tests).
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let cert = b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let key = b64("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let ca = if with_ca {
        format!("  ca.crt: {cert}\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: istio-system}}
type: kubernetes.io/tls
data:
  tls.crt: {cert}
  tls.key: {key}
{ca}"
    )
}

fn gateway_output(extra: &str) -> gen::Output {
    let ctx = context(&format!("{GATEWAY}\n---\n{extra}"));
    let labels = [("istio".to_string(), "ingressgateway".to_string())]
        .into_iter()
        .collect();
    let proxy = Proxy::from_node(
        "router~10.1.0.1~gw-1.istio-system~istio-system.svc.cluster.local",
        Some(labels),
        &ctx,
    )
    .unwrap();
    gen::gateway(&ctx, &proxy)
}

#[test]
fn gateway_terminates_tls_per_server_by_sni_with_secrets_over_sds() {
    let out = gateway_output(&format!(
        "{}\n---\n{}",
        secret("a-cert", false),
        secret("b-cert", true)
    ));
    let l = json(&out, Kind::Listener, "0.0.0.0_443");
    let chains = l["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2, "{l:#}");
    assert_eq!(
        chains[0]["filter_chain_match"]["server_names"],
        serde_json::json!(["a.example.com"])
    );
    let a = &chains[0]["transport_socket"]["typed_config"];
    assert_eq!(
        a["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"],
        "kubernetes://a-cert"
    );
    assert_eq!(
        a["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"],
        "TLSv1_2"
    );
    let b = &chains[1]["transport_socket"]["typed_config"];
    assert_eq!(b["require_client_certificate"], true);
    assert_eq!(
        b["common_tls_context"]["combined_validation_context"]
            ["validation_context_sds_secret_config"]["name"],
        "kubernetes://b-cert-cacert"
    );
    // Each HTTPS server has its own route table.
    assert!(out[&Kind::RouteConfiguration].contains_key("https.443.https-a.gw.istio-system"));
    // The Secrets, served by name.
    let secrets: Vec<&String> = out[&Kind::Secret].keys().collect();
    assert_eq!(
        secrets,
        [
            "kubernetes://a-cert",
            "kubernetes://b-cert",
            "kubernetes://b-cert-cacert"
        ]
    );
    let s = json(&out, Kind::Secret, "kubernetes://a-cert");
    assert!(
        s["tls_certificate"]["certificate_chain"]["inline_bytes"].is_string(),
        "{s:#}"
    );
    // httpsRedirect: plaintext requests are sent to https.
    let http = json(&out, Kind::RouteConfiguration, "http.80");
    assert_eq!(http["virtual_hosts"][0]["require_tls"], "ALL", "{http:#}");
}

#[test]
fn a_missing_or_malformed_credential_is_not_served() {
    let bad = "apiVersion: v1
kind: Secret
metadata: {name: b-cert, namespace: istio-system}
type: kubernetes.io/tls
data:
  tls.crt: bm90IGEgY2VydGlmaWNhdGU=
  tls.key: bm90IGEga2V5
";
    let out = gateway_output(bad);
    assert!(
        out.get(&Kind::Secret).is_none_or(|s| s.is_empty()),
        "{:?}",
        out.get(&Kind::Secret).map(|s| s.keys().collect::<Vec<_>>())
    );
}

/// A DestinationRule's `credentialName` (TLS origination): the sidecar
/// gets the Secret of its own namespace over SDS from the control plane
/// — MUTUAL the certificate and the CA bundle, SIMPLE the CA bundle only
/// — and a Secret of another namespace is not served.
#[test]
fn destination_rule_credential_names_are_served_to_the_sidecar() {
    let in_default = secret("client-cred", true).replace("istio-system", "default");
    let ctx = context(&format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: external, namespace: default}}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {{mode: MUTUAL, credentialName: client-cred}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {{version: v1}}
    trafficPolicy:
      tls: {{mode: SIMPLE, credentialName: other-ns-cred}}
---
{in_default}
---
{}",
        secret("other-ns-cred", true)
    ));
    let out = sidecar(&ctx, CLIENT);
    let ext = json(&out, Kind::Cluster, "outbound|443||api.example.com");
    let common = &ext["transport_socket"]["typed_config"]["common_tls_context"];
    assert_eq!(
        common["tls_certificate_sds_secret_configs"][0]["name"], "kubernetes://client-cred",
        "{ext:#}"
    );
    assert_eq!(
        common["combined_validation_context"]["validation_context_sds_secret_config"]["name"],
        "kubernetes://client-cred-cacert",
        "{ext:#}"
    );
    let served: Vec<&String> = out.get(&Kind::Secret).unwrap().keys().collect();
    assert_eq!(
        served,
        [
            "kubernetes://client-cred",
            "kubernetes://client-cred-cacert"
        ],
        "the istio-system Secret is not the sidecar's to use"
    );
    let cert = json(&out, Kind::Secret, "kubernetes://client-cred");
    assert!(
        cert["tls_certificate"]["private_key"]["inline_bytes"].is_string(),
        "{cert:#}"
    );
    // SIMPLE names only the bundle (verifying the server).
    let v1 = json(
        &out,
        Kind::Cluster,
        "outbound|9080|v1|reviews.default.svc.cluster.local",
    );
    let common = &v1["transport_socket"]["typed_config"]["common_tls_context"];
    assert!(
        common.get("tls_certificate_sds_secret_configs").is_none(),
        "{v1:#}"
    );
    assert_eq!(
        common["combined_validation_context"]["validation_context_sds_secret_config"]["name"],
        "kubernetes://other-ns-cred-cacert"
    );
}

/// The connection manager of a listener's chain.
fn manager(chain: &Value) -> &Value {
    &chain["filters"][0]["typed_config"]
}

/// `x-forwarded-client-cert` as istiod sets it: a sidecar's inbound side
/// appends the mesh client's subject, URI and DNS SANs; its outbound
/// side keeps Envoy's default (SANITIZE); a gateway replaces the header
/// with its client's (SANITIZE_SET, certificate included) unless the
/// mesh's `gatewayTopology` says otherwise.
#[test]
fn client_cert_details_are_forwarded_as_istio_forwards_them() {
    let inbound = inbound_chains("");
    for chain in inbound["filter_chains"].as_array().unwrap() {
        let m = manager(chain);
        assert_eq!(m["forward_client_cert_details"], "APPEND_FORWARD", "{m:#}");
        assert_eq!(
            m["set_current_client_cert_details"],
            serde_json::json!({"subject": true, "uri": true, "dns": true}),
            "{m:#}"
        );
    }
    let out = sidecar(&context(""), CLIENT);
    let outbound = json(&out, Kind::Listener, "0.0.0.0_9080");
    let m = manager(&outbound["filter_chains"][0]);
    assert!(m.get("forward_client_cert_details").is_none(), "{m:#}");
    assert!(m.get("set_current_client_cert_details").is_none(), "{m:#}");

    let out = gateway_output(&secret("a-cert", false));
    let l = json(&out, Kind::Listener, "0.0.0.0_80");
    let m = manager(&l["filter_chains"][0]);
    assert_eq!(m["forward_client_cert_details"], "SANITIZE_SET", "{m:#}");
    assert_eq!(
        m["set_current_client_cert_details"],
        serde_json::json!({"subject": true, "cert": true, "uri": true, "dns": true}),
        "{m:#}"
    );

    let yaml = format!("{REGISTRY}\n---\n{GATEWAY}");
    let loaded = weft_config::load_str("mesh.yaml", &yaml, &Default::default());
    let mesh = Mesh {
        gateway_forward_client_cert: "ALWAYS_FORWARD_ONLY".into(),
        ..Mesh::default()
    };
    let ctx = Context::build(&loaded.resources, mesh);
    let labels = [("istio".to_string(), "ingressgateway".to_string())]
        .into_iter()
        .collect();
    let proxy = Proxy::from_node(
        "router~10.1.0.1~gw-1.istio-system~istio-system.svc.cluster.local",
        Some(labels),
        &ctx,
    )
    .unwrap();
    let out = gen::gateway(&ctx, &proxy);
    let l = json(&out, Kind::Listener, "0.0.0.0_80");
    let m = manager(&l["filter_chains"][0]);
    assert_eq!(
        m["forward_client_cert_details"], "ALWAYS_FORWARD_ONLY",
        "{m:#}"
    );
}
