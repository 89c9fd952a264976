//! Envoy parity for the external authorization filter
//! (`envoy.filters.http.ext_authz`) with an HTTP authorization service:
//! one bootstrap under Envoy and weft, a test authorizer here that
//! records every check it gets and decides by the check's headers, and
//! the same requests to both proxies.
//!
//! One connection manager holds several ext_authz filters (each its own
//! configuration: full header lists, defaults, a service that is down
//! with and without `failure_mode_allow`, Istio's CUSTOM shape gated on
//! RBAC shadow metadata); each route turns off all but one of them with
//! `ExtAuthzPerRoute {disabled: true}`.
//!
//! Compared: the client's status, headers and body (a denial's), what
//! the backend saw of the headers the filter adds, and what the
//! authorizer saw (method, path, headers). Normalized: `date` and the
//! value of `x-envoy-upstream-service-time` (times), `content-length`
//! of a backend's answer (it echoes the request, whose id differs), and
//! `x-test-id`, which each proxy's request carries with its own value
//! so the authorizer's record can be found.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use support::pair::{bootstrap, socket, static_cluster, Pair, HCM, ROUTER};
use support::*;

const EXT_AUTHZ: &str = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// Checks by `x-test-id`.
type Seen = Arc<Mutex<BTreeMap<String, Value>>>;

/// An HTTP authorizer: `x-allow: yes` allows (with headers for
/// upstream and the client); otherwise it denies with
/// `x-test-status` (401 by default), a body and headers. It waits
/// `x-test-delay-ms` first.
async fn authorizer(seen: Seen) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for (k, v) in req.headers() {
                            headers
                                .entry(k.as_str().to_string())
                                .or_default()
                                .push(v.to_str().unwrap_or("").to_string());
                        }
                        let asked =
                            |k: &str| headers.get(k).and_then(|v| v.first()).map(String::as_str);
                        let record = json!({
                            "method": req.method().as_str(),
                            "path": req.uri().path_and_query().map(|p| p.as_str()),
                            "headers": headers,
                        });
                        if let Some(id) = asked("x-test-id") {
                            seen.lock().unwrap().insert(id.to_string(), record);
                        }
                        if let Some(ms) = asked("x-test-delay-ms").and_then(|s| s.parse().ok()) {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let resp = if asked("x-allow") == Some("yes") {
                            hyper::Response::builder()
                                .status(200)
                                .header("x-up", "from-authz")
                                .header("x-up-append", "appended")
                                .header("x-down-ok", "ok")
                                .header("x-other", "o")
                                .body(Full::new(Bytes::from_static(b"ignored")))
                        } else {
                            let status: u16 = asked("x-test-status")
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(401);
                            hyper::Response::builder()
                                .status(status)
                                .header("x-down", "d")
                                .header("www-authenticate", "Basic realm=\"authz\"")
                                .header("location", "/login")
                                .header("content-type", "text/html")
                                .header("x-other", "o")
                                .body(Full::new(Bytes::from_static(b"denied by authz")))
                        };
                        Ok::<_, Infallible>(resp.unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

/// The filters: each is on only where a route leaves it on.
const FILTERS: &[&str] = &[
    "authz-main",
    "authz-defaults",
    "authz-down-allow",
    "authz-down",
    "authz-gated",
];

fn http_service(cluster: &str, extra: Value) -> Value {
    let mut s =
        json!({"server_uri": {"uri": "http://authz.test", "cluster": cluster, "timeout": "0.5s"}});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

fn filters() -> Vec<Value> {
    let lists = json!({
        "path_prefix": "/check",
        "authorization_request": {
            "allowed_headers": {"patterns": [{"exact": "x-allow"}, {"prefix": "x-test-"}, {"prefix": "x-fwd"}]},
            "headers_to_add": [{"key": "x-added", "value": "by-proxy"}]
        },
        "authorization_response": {
            "allowed_upstream_headers": {"patterns": [{"exact": "x-up"}]},
            "allowed_upstream_headers_to_append": {"patterns": [{"exact": "x-up-append"}]},
            "allowed_client_headers": {"patterns": [{"exact": "x-down"}]},
            "allowed_client_headers_on_success": {"patterns": [{"exact": "x-down-ok"}]}
        }
    });
    let only_id = json!({"authorization_request": {"allowed_headers": {"patterns": [{"exact": "x-test-id"}]}}});
    let configs = [
        json!({"http_service": http_service("authz", lists.clone())}),
        json!({"http_service": http_service("authz", only_id.clone())}),
        json!({"http_service": http_service("down", json!({})),
               "failure_mode_allow": true, "failure_mode_allow_header_add": true}),
        json!({"http_service": http_service("down", json!({})),
               "status_on_error": {"code": "ServiceUnavailable"}}),
        // Istio's CUSTOM action: checked only where the RBAC filter's
        // shadow rules matched; the request headers in the filter-level
        // `allowed_headers`, where istiod writes them.
        json!({"http_service": http_service("authz", {
                   let mut l = lists;
                   l["authorization_request"].as_object_mut().unwrap().remove("allowed_headers");
                   l
               }),
               "allowed_headers": {"patterns": [{"exact": "x-allow"}, {"prefix": "x-test-"}, {"prefix": "x-fwd"}]},
               "filter_enabled_metadata": {"filter": "envoy.filters.http.rbac",
                   "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
                   "value": {"string_match": {"prefix": "istio-ext-authz"}}}}),
    ];
    let rbac = json!({"@type": RBAC,
        "shadow_rules": {"action": "DENY", "policies": {"istio-ext-authz-ns-default-custom": {
            "permissions": [{"url_path": {"path": {"prefix": "/gated/custom"}}}],
            "principals": [{"any": true}]}}},
        "shadow_rules_stat_prefix": "istio_ext_authz_"});
    let mut out = vec![json!({"name": "envoy.filters.http.rbac", "typed_config": rbac})];
    for (name, mut c) in FILTERS.iter().zip(configs) {
        c["@type"] = json!(EXT_AUTHZ);
        out.push(json!({"name": name, "typed_config": c}));
    }
    out.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    out
}

/// A route under `prefix` where only filter `on` (if any) checks.
fn route(prefix: &str, on: Option<&str>) -> Value {
    let mut off = serde_json::Map::new();
    for f in FILTERS.iter().filter(|f| Some(**f) != on) {
        off.insert(f.to_string(), json!({"@type": PER_ROUTE, "disabled": true}));
    }
    json!({"match": {"prefix": prefix}, "route": {"cluster": "backend"}, "typed_per_filter_config": off})
}

fn listener(port: u16) -> Value {
    let routes = vec![
        route("/main/off", None),
        route("/main", Some("authz-main")),
        route("/defaults", Some("authz-defaults")),
        route("/down-allow", Some("authz-down-allow")),
        route("/down", Some("authz-down")),
        route("/gated", Some("authz-gated")),
        json!({"match": {"prefix": "/", "headers": [{"name": "x-unrouted", "present_match": false}]},
               "route": {"cluster": "backend"}}),
    ];
    json!({
        "name": "ext_authz",
        "address": socket(port),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": HCM, "stat_prefix": "ext_authz",
                "http_filters": filters(),
                "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"],
                    "routes": routes}]}}}]}]
    })
}

/// Method, path and headers of a request.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// What is compared of a reply and the check behind it.
fn summary(r: &Reply, check: Option<Value>) -> Value {
    let seen = r.seen();
    let mut headers = r.headers.clone();
    headers.remove("date");
    if seen.is_some() {
        headers.remove("content-length");
    }
    if let Some(t) = headers.get_mut("x-envoy-upstream-service-time") {
        *t = "N".into();
    }
    let backend = seen.as_ref().map(|s| {
        json!({
            "method": s["method"],
            "path": s["path"],
            "x-up": s["headers"]["x-up"],
            "x-up-append": s["headers"]["x-up-append"],
            "x-envoy-auth-failure-mode-allowed": s["headers"]["x-envoy-auth-failure-mode-allowed"],
            "authorization": s["headers"]["authorization"],
        })
    });
    let check = check.map(|mut c| {
        c["headers"].as_object_mut().unwrap().remove("x-test-id");
        c
    });
    json!({
        "status": r.status,
        "headers": headers,
        "body": if seen.is_some() { Value::Null } else { json!(r.body) },
        "backend": backend,
        "check": check,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ext_authz_matches_envoy() {
    let seen: Seen = Arc::default();
    let authz = authorizer(Arc::clone(&seen)).await;
    let backend = echo_backend("backend").await.port();
    // A port nothing listens on.
    let down = free_port();
    let pair = Pair::start(|listen, admin| {
        bootstrap(
            admin,
            vec![listener(listen)],
            &[
                static_cluster("backend", backend, false),
                static_cluster("authz", authz, false),
                static_cluster("down", down, false),
            ],
        )
    })
    .await;
    let allow = ("x-allow", "yes");
    let cases: Vec<Case> = vec![
        ("GET", "/main/a?q=1", vec![allow]),
        (
            "GET",
            "/main/a",
            vec![
                allow,
                ("authorization", "Bearer t"),
                ("x-fwd-a", "1"),
                ("x-fwd-a", "2"),
                ("x-not-forwarded", "n"),
                ("x-up", "from-client"),
                ("x-up-append", "from-client"),
            ],
        ),
        ("POST", "/main/post", vec![allow]),
        ("DELETE", "/main/x", vec![allow]),
        ("GET", "/main/a", vec![]),
        ("GET", "/main/a", vec![("x-test-status", "302")]),
        ("GET", "/main/a", vec![("x-test-status", "404")]),
        ("GET", "/main/a", vec![("x-test-status", "500")]),
        ("GET", "/main/a", vec![("x-test-status", "503")]),
        ("GET", "/main/a", vec![allow, ("x-test-delay-ms", "1500")]),
        ("GET", "/main/off", vec![]),
        (
            "GET",
            "/defaults/a",
            vec![allow, ("authorization", "Basic x")],
        ),
        ("GET", "/defaults/a", vec![("x-test-status", "403")]),
        ("GET", "/down-allow", vec![]),
        ("GET", "/down", vec![]),
        ("GET", "/gated/open", vec![]),
        ("GET", "/gated/custom", vec![]),
        ("GET", "/gated/custom", vec![allow]),
        ("GET", "/nowhere", vec![allow, ("x-unrouted", "1")]),
    ];
    let mut diffs = Vec::new();
    for (i, (method, path, headers)) in cases.iter().enumerate() {
        let mut got = Vec::new();
        for (who, port) in [("envoy", pair.envoy_port), ("weft", pair.weft_port)] {
            let id = format!("{who}-{i}");
            let mut h = headers.clone();
            h.push(("x-test-id", &id));
            let body: &[u8] = if *method == "POST" { b"hello" } else { b"" };
            let r = call(&Call {
                method,
                port,
                path,
                host: "app.test",
                headers: &h,
                body,
                h2: false,
            })
            .await
            .expect("a reply");
            let check = seen.lock().unwrap().get(&id).cloned();
            got.push(summary(&r, check));
        }
        if got[0] != got[1] {
            diffs.push(format!(
                "{method} {path} {headers:?}\n  envoy: {}\n  weft:  {}",
                got[0], got[1]
            ));
        }
    }
    pair.stop();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

mod grpc {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{HeaderValue as Hv, HeaderValueOption};
    use envoy_types::pb::envoy::r#type::v3::HttpStatus;
    use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
        Authorization, AuthorizationServer,
    };
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    use envoy_types::pb::envoy::service::auth::v3::{
        CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    };
    use envoy_types::pb::google::rpc::Status;

    struct Authz(Seen);

    fn hv(k: &str, v: &str) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(Hv {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tonic::async_trait]
    impl Authorization for Authz {
        async fn check(
            &self,
            req: tonic::Request<CheckRequest>,
        ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
            let a = req.into_inner().attributes.unwrap_or_default();
            let http = a.request.and_then(|r| r.http).unwrap_or_default();
            let id = http.headers.get("x-test-id").cloned().unwrap_or_default();
            let ext: BTreeMap<_, _> = a.context_extensions.into_iter().collect();
            self.0.lock().unwrap().insert(
                id,
                json!({"method": http.method, "path": http.path, "host": http.host,
                    "scheme": http.scheme, "protocol": http.protocol,
                    "context_extensions": ext,
                    "x-allow": http.headers.get("x-allow")}),
            );
            let allow = http.headers.get("x-allow").map(String::as_str) == Some("yes");
            let resp = if allow {
                CheckResponse {
                    status: Some(Status::default()),
                    http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                        headers: vec![hv("x-up", "from-grpc")],
                        headers_to_remove: vec!["x-drop".into()],
                        ..Default::default()
                    })),
                    ..Default::default()
                }
            } else {
                CheckResponse {
                    status: Some(Status {
                        code: 7,
                        ..Default::default()
                    }),
                    http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                        status: Some(HttpStatus { code: 418 }),
                        headers: vec![hv("x-down", "grpc")],
                        body: "denied by grpc".into(),
                    })),
                    ..Default::default()
                }
            };
            Ok(tonic::Response::new(resp))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_ext_authz_matches_envoy() {
        let seen: Seen = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authz = listener.local_addr().unwrap().port();
        let svc = AuthorizationServer::new(Authz(Arc::clone(&seen)));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        let backend = echo_backend("backend").await.port();
        let make = |listen: u16, admin: u16| {
            let ext = json!({"@type": EXT_AUTHZ, "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "1s"}});
            let routes = json!([
                {"match": {"prefix": "/ext"}, "route": {"cluster": "backend"},
                 "typed_per_filter_config": {"envoy.filters.http.ext_authz": {"@type": PER_ROUTE,
                    "check_settings": {"context_extensions": {"k": "v"}}}}},
                {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}
            ]);
            let l = json!({"name": "g", "address": socket(listen),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {"@type": HCM, "stat_prefix": "g",
                        "http_filters": [{"name": "envoy.filters.http.ext_authz", "typed_config": ext},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}}}]}]});
            bootstrap(
                admin,
                vec![l],
                &[
                    static_cluster("backend", backend, false),
                    static_cluster("authz", authz, true),
                ],
            )
        };
        let pair = Pair::start(make).await;
        let cases: Vec<Case> = vec![
            ("GET", "/a?x=1", vec![("x-allow", "yes"), ("x-drop", "d")]),
            ("GET", "/a", vec![]),
            ("POST", "/ext", vec![("x-allow", "yes")]),
        ];
        let mut diffs = Vec::new();
        let mut statuses = Vec::new();
        for (i, (method, path, headers)) in cases.iter().enumerate() {
            let mut got = Vec::new();
            for (who, port) in [("envoy", pair.envoy_port), ("weft", pair.weft_port)] {
                let id = format!("{who}-{i}");
                let mut h = headers.clone();
                h.push(("x-test-id", &id));
                let r = call(&Call {
                    method,
                    port,
                    path,
                    host: "app.test",
                    headers: &h,
                    body: b"",
                    h2: false,
                })
                .await
                .expect("a reply");
                let check = seen.lock().unwrap().get(&id).cloned();
                let mut s = summary(&r, None);
                s["backend"]["x-drop"] = r
                    .seen()
                    .map_or(Value::Null, |b| b["headers"]["x-drop"].clone());
                s["check"] = check.unwrap_or(Value::Null);
                got.push(s);
            }
            statuses.push(got[0]["status"].clone());
            if got[0] != got[1] {
                diffs.push(format!(
                    "{method} {path} {headers:?}\n  envoy: {}\n  weft:  {}",
                    got[0], got[1]
                ));
            }
        }
        pair.stop();
        // Envoy really asked the service (not the failure path).
        assert_eq!(statuses, [json!(200), json!(418), json!(200)]);
        assert!(
            diffs.is_empty(),
            "{} differences:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }
}
