//! RequestAuthentication and AuthorizationPolicy on Bookinfo's ingress
//! gateway, end to end: `weft control` fetches the issuers' keys (one by
//! `jwksUri`, one by OpenID discovery from its issuer URL) from an HTTP
//! server the test runs, inlines them into the gateway's JWT filter, and
//! the RBAC filter after it reads the verified payload. Served by an
//! Envoy gateway and then by a weft gateway on the same port: every
//! request must get the same answer from both, and the answer Istio
//! documents.

mod common;

use serde_json::json;
use weft_testkit::http::request;
use weft_testkit::jwt::{now, Issuer, KeyServer};
use weft_testkit::wait::{wait_for, PATIENCE};

const NODE: &str =
    "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local";

fn policies(jwks_uri: &str, discovery_issuer: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress-jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules:
  - issuer: issuer-a
    jwksUri: {jwks_uri}
    audiences: [bookinfo]
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
  - issuer: {discovery_issuer}
    spaceDelimitedClaims: [roles]
  # Nothing listens there: this issuer's keys cannot be fetched.
  - issuer: issuer-down
    jwksUri: http://127.0.0.1:1/jwks
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ingress-allow, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  rules:
  - from: [{{source: {{requestPrincipals: [issuer-a/alice]}}}}]
    to: [{{operation: {{paths: [/productpage]}}}}]
  - to: [{{operation: {{paths: [/api/*]}}}}]
    when:
    - key: request.auth.claims[scope]
      values: [write]
  - from: [{{source: {{requestPrincipals: ['{discovery_issuer}/*']}}}}]
    to: [{{operation: {{paths: [/login]}}}}]
    when:
    - key: request.auth.claims[roles]
      values: [admin]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_at_the_gateway_through_envoy_and_weft() {
    let a = Issuer::new("a1");
    let b = Issuer::new("b1");
    let keys_a = KeyServer::start().await;
    keys_a.put("/keys.json", a.jwks.clone());
    let keys_b = KeyServer::start().await;
    keys_b.publish(&b);

    let mesh = common::bookinfo_gateway_control(
        "control-jwt",
        &policies(&format!("{}/keys.json", keys_a.url()), &keys_b.url()),
    )
    .await;
    let (control, gw_port) = (&mesh.control, mesh.gw_port);
    // Two key sets were fetched (one by URL, one by discovery); the third
    // could not be, and says why.
    let jwksz = request(
        "GET",
        &format!("http://{}/debug/jwksz", control.debug),
        &[],
        false,
    )
    .await
    .unwrap();
    let sets: serde_json::Value = serde_json::from_str(&jwksz.body).unwrap();
    let failing: Vec<&serde_json::Value> = sets
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] != true)
        .collect();
    assert_eq!(sets.as_array().unwrap().len(), 3, "{sets:#}");
    assert_eq!(failing.len(), 1, "{sets:#}");
    assert!(
        failing[0]["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1/jwks"),
        "{sets:#}"
    );

    let ta = |claims: serde_json::Value| a.token(claims);
    let alice = ta(json!({"iss": "issuer-a", "sub": "alice", "aud": "bookinfo"}));
    let bob =
        ta(json!({"iss": "issuer-a", "sub": "bob", "aud": "bookinfo", "scope": "read write"}));
    let reader = ta(json!({"iss": "issuer-a", "sub": "carol", "aud": "bookinfo", "scope": "read"}));
    let wrong_aud = ta(json!({"iss": "issuer-a", "sub": "alice", "aud": "other"}));
    let expired =
        ta(json!({"iss": "issuer-a", "sub": "alice", "aud": "bookinfo", "exp": now() - 3600}));
    // Signed by b's key but claiming to be issuer-a.
    let forged = b.token(json!({"iss": "issuer-a", "sub": "alice", "aud": "bookinfo"}));
    let admin = b.token(json!({"iss": keys_b.url(), "sub": "dave", "roles": "user admin"}));
    let user = b.token(json!({"iss": keys_b.url(), "sub": "erin", "roles": "user"}));
    // The unreachable issuer fails closed: its tokens are refused.
    let down = a.token(json!({"iss": "issuer-down", "sub": "alice"}));
    // (path, token, Istio's answer)
    let cases: Vec<(&str, Option<&str>, u16)> = vec![
        ("/productpage", None, 403),
        ("/productpage", Some(&alice), 200),
        ("/productpage", Some(&bob), 403),
        // Envoy answers a token for another audience 403, not 401.
        ("/productpage", Some(&wrong_aud), 403),
        ("/productpage", Some(&expired), 401),
        ("/productpage", Some(&forged), 401),
        ("/productpage", Some("not.a.token"), 401),
        ("/api/v1/products", Some(&bob), 200),
        ("/api/v1/products", Some(&reader), 403),
        ("/api/v1/products", None, 403),
        ("/login", Some(&admin), 200),
        ("/login", Some(&user), 403),
        ("/login", Some(&alice), 403),
        ("/productpage", Some(&down), 401),
    ];
    let mut answers = Vec::new();
    for side in ["envoy", "weft"] {
        let gateway = common::Gateway::start(side, NODE, control.xds).await;
        let url = |p: &str| format!("http://127.0.0.1:{gw_port}{p}");
        let auth = |t: &str| format!("Bearer {t}");
        // Configured once alice's token gets through.
        wait_for(
            &format!("{side}: the gateway to serve"),
            PATIENCE,
            async || {
                let r = request(
                    "GET",
                    &url("/productpage"),
                    &[
                        ("host", "bookinfo.example"),
                        ("authorization", &auth(&alice)),
                    ],
                    false,
                )
                .await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("{}", r.status))
                }
            },
        )
        .await;
        let mut got = Vec::new();
        for (path, token, want) in &cases {
            let bearer = token.map(auth);
            let mut headers = vec![("host", "bookinfo.example")];
            if let Some(b) = &bearer {
                headers.push(("authorization", b));
            }
            let r = request("GET", &url(path), &headers, false).await.unwrap();
            assert_eq!(r.status, *want, "{side} {path} {token:?}: {r:?}");
            if r.status == 200 {
                // The token is not forwarded; the claim header is.
                let seen = r.seen().unwrap();
                assert!(seen["headers"].get("authorization").is_none(), "{seen}");
                if *token == Some(alice.as_str()) {
                    assert_eq!(seen["headers"]["x-jwt-sub"], json!(["alice"]));
                }
            }
            got.push((r.status, r.headers.get("www-authenticate").cloned()));
        }
        answers.push(got);
        gateway.stop(gw_port).await;
    }
    assert_eq!(answers[0], answers[1], "envoy ≠ weft");
}
