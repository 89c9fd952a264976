//! AuthorizationPolicy's CUSTOM action on Bookinfo's ingress gateway, end
//! to end, as Istio's "External Authorization" task runs it: the mesh
//! config's `extensionProviders` names an HTTP authorizer (a service in
//! the registry: here an authorizer the test runs, deciding as Istio's
//! sample does — `x-ext-authz: allow` is allowed, anything else denied
//! with 403 and a body), and a CUSTOM policy sends the requests to
//! `/productpage` to it. Served by an Envoy gateway and then by a weft
//! gateway on the same port: the same answers from both.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use weft_testkit::http::request;
use weft_testkit::wait::{wait_for, PATIENCE};

const NODE: &str =
    "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local";

/// Istio's sample authorizer, over HTTP: allows `x-ext-authz: allow`,
/// says so in `x-ext-authz-check-result`, and records the paths it saw.
async fn authorizer() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        log.lock().unwrap().push(req.uri().path().to_string());
                        let allow = req
                            .headers()
                            .get("x-ext-authz")
                            .is_some_and(|v| v == "allow");
                        async move {
                            let r = if allow {
                                http::Response::builder()
                                    .header("x-ext-authz-check-result", "allowed")
                                    .body(Full::new(Bytes::new()))
                            } else {
                                http::Response::builder()
                                    .status(403)
                                    .header("x-ext-authz-check-result", "denied")
                                    .body(Full::new(Bytes::from_static(b"denied by ext_authz")))
                            };
                            Ok::<_, Infallible>(r.unwrap())
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

fn security(authz_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    extensionProviders:
    - name: sample-ext-authz-http
      envoyExtAuthzHttp:
        service: ext-authz.default.svc.cluster.local
        port: {authz_port}
        includeRequestHeadersInCheck: [x-ext-authz]
        headersToUpstreamOnAllow: [x-ext-authz-check-result]
        headersToDownstreamOnDeny: [x-ext-authz-check-result]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: default}}
spec:
  hosts: [ext-authz.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {authz_port}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: sample-ext-authz-http}}
  rules:
  - to: [{{operation: {{paths: [/productpage]}}}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_at_the_gateway_through_envoy_and_weft() {
    let (authz_port, seen) = authorizer().await;
    let mesh = common::bookinfo_gateway_control("control-custom", &security(authz_port)).await;
    let (control, gw_port) = (&mesh.control, mesh.gw_port);

    let mut answers = Vec::new();
    for side in ["envoy", "weft"] {
        let gateway = common::Gateway::start(side, NODE, control.xds).await;
        let url = |p: &str| format!("http://127.0.0.1:{gw_port}{p}");
        let get = |path: &'static str, decision: Option<&'static str>| {
            let url = url(path);
            async move {
                let mut headers = vec![("host", "bookinfo.example")];
                if let Some(d) = decision {
                    headers.push(("x-ext-authz", d));
                }
                request("GET", &url, &headers, false).await
            }
        };
        wait_for(
            &format!("{side}: the gateway to serve"),
            PATIENCE,
            async || {
                let r = get("/api/v1/products", None).await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("{}", r.status))
                }
            },
        )
        .await;
        seen.lock().unwrap().clear();

        let allowed = get("/productpage", Some("allow")).await.unwrap();
        assert_eq!(allowed.status, 200, "{side}: {allowed:?}");
        let backend_saw = allowed.seen().unwrap();
        assert_eq!(
            backend_saw["headers"]["x-ext-authz-check-result"],
            serde_json::json!(["allowed"]),
            "{side}: the authorizer's header goes upstream"
        );
        let denied = get("/productpage", Some("deny")).await.unwrap();
        assert_eq!(
            (denied.status, denied.body.as_str()),
            (403, "denied by ext_authz"),
            "{side}: {denied:?}"
        );
        assert_eq!(
            denied
                .headers
                .get("x-ext-authz-check-result")
                .map(String::as_str),
            Some("denied"),
            "{side}"
        );
        let unchecked = get("/api/v1/products", Some("deny")).await.unwrap();
        assert_eq!(
            unchecked.status, 200,
            "{side}: CUSTOM selects /productpage only"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["/productpage", "/productpage"],
            "{side}: only the selected requests are checked"
        );
        answers.push((allowed.status, denied.status, denied.body, unchecked.status));
        gateway.stop(gw_port).await;
    }
    assert_eq!(answers[0], answers[1], "envoy ≠ weft");
}
