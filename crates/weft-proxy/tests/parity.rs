//! Envoy parity: each scenario is one bootstrap run by Envoy and by weft,
//! the same requests sent to both, and what came back (status, which
//! backend answered, what it saw, the response headers that matter) must
//! be equal. Each request also states what it expects, so two proxies
//! that are wrong the same way still fail.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// `routes` is the `route_config` body (indented 10 spaces); `hcm` adds
/// fields to the HTTP connection manager (indented 10 spaces).
fn bootstrap(listen: u16, admin: u16, backends: &[(&str, u16)], hcm: &str, routes: &str) -> String {
    let mut clusters = String::new();
    for (name, port) in backends {
        if name.ends_with("_h2") {
            clusters.push_str(&format!(
                "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{http2_protocol_options: {{}}}}\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]\n"
            ));
            continue;
        }
        clusters.push_str(&format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]\n"
        ));
    }
    clusters.push_str("  - name: empty\n    type: STATIC\n    connect_timeout: 1s\n");
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: main
{hcm}          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": {ROUTER}}}}}]
          route_config:
{routes}
  clusters:
{clusters}"#
    )
}

struct Req {
    /// Downstream HTTP/2 (prior knowledge) instead of HTTP/1.1.
    h2: bool,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// `backend NAME`, or a status code as text for local replies.
    expect: &'static str,
}

const fn get(
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static str,
) -> Req {
    Req {
        h2: false,
        method: "GET",
        path,
        headers,
        expect,
    }
}

/// The parts of a reply both proxies must agree on; `proxy` is the
/// address the request was sent to, which differs between the two.
fn observe(r: &Reply, proxy: &str) -> Value {
    let keep_resp = |k: &str| {
        matches!(k, "location" | "content-type" | "x-backend" | "server")
            || k.starts_with("x-added")
    };
    let resp_headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .filter(|(k, _)| keep_resp(k))
        .map(|(k, v)| (k.clone(), json!(v.replace(proxy, "PROXY"))))
        .collect();
    let seen = r.seen().map(|s| {
        let h = &s["headers"];
        let keep: serde_json::Map<String, Value> = h
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "host"
                        | "x-forwarded-proto"
                        | "x-envoy-expected-rq-timeout-ms"
                        | "x-forwarded-for"
                ) || k.starts_with("x-test")
                    || k.starts_with("x-added")
            })
            .map(|(k, v)| (k.clone(), json!(v.to_string().replace(proxy, "PROXY"))))
            .collect();
        json!({
            "authority": json!(s["authority"].to_string().replace(proxy, "PROXY")),
            "version": s["version"],
            "method": s["method"],
            "path": s["path"],
            "headers": keep,
            "has_request_id": h.get("x-request-id").is_some(),
        })
    });
    json!({
        "status": r.status,
        "trailers": r.trailers,
        "response_headers": resp_headers,
        "seen": seen,
        "local_body": if r.seen().is_none() { json!(r.body) } else { Value::Null },
    })
}

async fn run_scenario(name: &str, routes: &str, requests: &[Req]) {
    run_scenario_with(name, "", routes, requests).await
}

async fn run_scenario_with(name: &str, hcm: &str, routes: &str, requests: &[Req]) {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let dead = free_port();
    let backends = [
        ("a", a.port()),
        ("b", b.port()),
        ("b_h2", b.port()),
        ("dead", dead),
    ];
    let (el, ea) = (free_port(), free_port());
    let envoy = start_envoy(&bootstrap(el, ea, &backends, hcm, routes), ea).await;

    let (wl, wa) = (free_port(), free_port());
    let text = bootstrap(wl, wa, &backends, hcm, routes);
    let boot = weft_envoy::parse_bootstrap(name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let snapshot = weft_proxy::Snapshot::compile(&boot)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let weft = weft_proxy::start(snapshot).await.unwrap();

    for r in requests {
        let send = |port: u16| async move {
            let url = format!("http://127.0.0.1:{port}{}", r.path);
            // The same Host for both proxies, whatever port each listens on.
            let mut headers = r.headers.to_vec();
            if !headers.iter().any(|(k, _)| *k == "host") {
                headers.push(("host", "parity.test"));
            }
            request(r.method, &url, &headers, r.h2)
                .await
                .unwrap_or_else(|e| panic!("{name} {} {}: {e}", r.method, r.path))
        };
        let from_envoy = send(el).await;
        let from_weft = send(wl).await;
        let (oe, ow) = (
            observe(&from_envoy, &format!("127.0.0.1:{el}")),
            observe(&from_weft, &format!("127.0.0.1:{wl}")),
        );
        assert_eq!(
            ow,
            oe,
            "{name}: {} {} {:?}\n weft: {}\nenvoy: {}",
            r.method,
            r.path,
            r.headers,
            serde_json::to_string_pretty(&ow).unwrap(),
            serde_json::to_string_pretty(&oe).unwrap()
        );
        if r.h2 && r.headers.contains(&("te", "trailers")) {
            // HTTP/2 end to end: the backend's trailers must arrive.
            assert_eq!(
                from_weft.trailers.get("grpc-status").map(String::as_str),
                Some("0"),
                "{name}: {} trailers lost",
                r.path
            );
        }
        let got = match from_envoy.headers.get("x-backend") {
            Some(b) => format!("backend {b}"),
            None => from_envoy.status.to_string(),
        };
        assert_eq!(
            got, r.expect,
            "{name}: {} {} (the scenario's own expectation)",
            r.method, r.path
        );
    }
    weft.shared.shutdown();
    drop(envoy);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_matching() {
    run_scenario(
        "path_matching",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {path: /exact}, route: {cluster: a}}
              - {match: {path: /ci, case_sensitive: false}, route: {cluster: b}}
              - {match: {safe_regex: {regex: "/items/[0-9]+"}}, route: {cluster: b}}
              - {match: {path_separated_prefix: /sep}, route: {cluster: b}}
              - {match: {prefix: /api/}, route: {cluster: b}}
              - {match: {prefix: /A, case_sensitive: false}, route: {cluster: b}}
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            get("/exact", &[], "backend a"),
            get("/exact/", &[], "backend a"),
            get("/CI", &[], "backend b"),
            get("/items/42", &[], "backend b"),
            get("/items/42x", &[], "backend a"),
            get("/items/42?x=1", &[], "backend b"),
            get("/sep", &[], "backend b"),
            get("/sep/deeper", &[], "backend b"),
            get("/separate", &[], "backend a"),
            get("/api/v1?q=2", &[], "backend b"),
            // Not /api/, but the case-insensitive /A prefix below takes it.
            get("/api", &[], "backend b"),
            get("/aBC", &[], "backend b"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_query_matching() {
    run_scenario(
        "header_and_query_matching",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /, headers: [{name: end-user, string_match: {exact: jason}}]}, route: {cluster: b}}
              - {match: {prefix: /, headers: [{name: x-test-pre, string_match: {prefix: be}}]}, route: {cluster: b}}
              - {match: {prefix: /, headers: [{name: x-test-suf, string_match: {suffix: ta}}]}, route: {cluster: b}}
              - {match: {prefix: /, headers: [{name: x-test-has, string_match: {contains: mid}}]}, route: {cluster: b}}
              - {match: {prefix: /, headers: [{name: x-test-re, safe_regex_match: {regex: "v[0-9]"}}]}, route: {cluster: b}}
              - {match: {prefix: /, headers: [{name: x-test-present, present_match: true}]}, route: {cluster: b}}
              - {match: {prefix: /inv, headers: [{name: x-test-inv, string_match: {exact: "yes"}, invert_match: true}]}, route: {cluster: b}}
              - {match: {prefix: /q, query_parameters: [{name: user, string_match: {exact: jason}}]}, route: {cluster: b}}
              - {match: {prefix: /p, query_parameters: [{name: debug, present_match: true}]}, route: {cluster: b}}
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            get("/", &[("end-user", "jason")], "backend b"),
            get("/", &[("end-user", "jasonx")], "backend a"),
            get("/", &[("x-test-pre", "beta")], "backend b"),
            get("/", &[("x-test-suf", "beta")], "backend b"),
            get("/", &[("x-test-has", "amidst")], "backend b"),
            get("/", &[("x-test-re", "v1")], "backend b"),
            get("/", &[("x-test-re", "v10")], "backend a"),
            get("/", &[("x-test-present", "")], "backend b"),
            get("/inv", &[("x-test-inv", "no")], "backend b"),
            get("/inv", &[("x-test-inv", "yes")], "backend a"),
            // A missing header fails a value match whether inverted or not.
            get("/inv", &[], "backend a"),
            get("/q?user=jason", &[], "backend b"),
            get("/q?user=jasonx&x=1", &[], "backend a"),
            get("/p?debug", &[], "backend b"),
            get("/p?nodebug=1", &[], "backend a"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_domains() {
    run_scenario(
        "virtual_host_domains",
        r#"            virtual_hosts:
            - {name: exact, domains: [shop.example.com], routes: [{match: {prefix: /}, route: {cluster: b}}]}
            - {name: wild, domains: ["*.example.org"], routes: [{match: {prefix: /}, direct_response: {status: 201, body: {inline_string: wild}}}]}
            - {name: pre, domains: ["api.*"], routes: [{match: {prefix: /}, direct_response: {status: 202, body: {inline_string: pre}}}]}
            - {name: port, domains: ["ported.test:8080"], routes: [{match: {prefix: /}, direct_response: {status: 203}}]}
"#,
        &[
            get("/", &[("host", "shop.example.com")], "backend b"),
            get("/", &[("host", "SHOP.example.com")], "backend b"),
            get("/", &[("host", "www.example.org")], "201"),
            get("/", &[("host", "api.anything")], "202"),
            get("/", &[("host", "ported.test:8080")], "203"),
            get("/", &[("host", "ported.test")], "404"),
            get("/", &[("host", "nowhere.test")], "404"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_direct_responses() {
    run_scenario(
        "redirects_and_direct_responses",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {path: /old}, redirect: {path_redirect: /new}}
              - {match: {prefix: /moved/}, redirect: {prefix_rewrite: /here/, response_code: FOUND}}
              - {match: {prefix: /secure}, redirect: {https_redirect: true}}
              - {match: {prefix: /elsewhere}, redirect: {host_redirect: blog.example.com, port_redirect: 8443, response_code: TEMPORARY_REDIRECT}}
              - {match: {prefix: /strip}, redirect: {path_redirect: /clean, strip_query: true, response_code: SEE_OTHER}}
              - {match: {prefix: /perm}, redirect: {scheme_redirect: https, host_redirect: x.test, response_code: PERMANENT_REDIRECT}}
              - {match: {prefix: /health}, direct_response: {status: 200, body: {inline_string: "ok\n"}}}
              - {match: {prefix: /teapot}, direct_response: {status: 418}}
"#,
        &[
            get("/old", &[("host", "h.test")], "301"),
            get("/old?a=1", &[("host", "h.test")], "301"),
            get("/moved/x/y?z=1", &[("host", "h.test")], "302"),
            get("/secure/p", &[("host", "h.test")], "301"),
            get("/elsewhere/p", &[("host", "h.test:9000")], "307"),
            get("/strip?a=1", &[("host", "h.test")], "303"),
            get("/perm", &[("host", "h.test:80")], "308"),
            get("/health", &[], "200"),
            get("/teapot", &[], "418"),
            get("/unrouted", &[], "404"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_forwarded_headers() {
    run_scenario(
        "rewrites_and_forwarded_headers",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /receiveapi/}, route: {cluster: b, prefix_rewrite: /}}
              - {match: {prefix: /v1/}, route: {cluster: b, prefix_rewrite: /v2/, host_rewrite_literal: internal.test}}
              - {match: {prefix: /re/}, route: {cluster: b, regex_rewrite: {pattern: {regex: "^/re/([a-z]+)/(.*)$"}, substitution: "/\\2/\\1"}}}
              - {match: {prefix: /slow}, route: {cluster: a, timeout: 2.5s}}
              - {match: {prefix: /notimeout}, route: {cluster: a, timeout: 0s}}
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            get("/receiveapi/orders?id=7", &[("host", "demo.test")], "backend b"),
            get("/v1/items", &[("host", "demo.test")], "backend b"),
            get("/re/abc/rest/of/path", &[], "backend b"),
            get("/slow", &[], "backend a"),
            get("/notimeout", &[], "backend a"),
            get("/", &[("x-forwarded-proto", "https"), ("x-forwarded-for", "10.0.0.1")], "backend a"),
            Req { h2: false, method: "POST", path: "/post", headers: &[("content-type", "text/plain")], expect: "backend a" },
            Req { h2: false, method: "DELETE", path: "/thing/1", headers: &[], expect: "backend a" },
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_operations_at_every_level() {
    run_scenario(
        "header_operations_at_every_level",
        r#"            name: rc
            request_headers_to_add:
            - {header: {key: x-added-rc, value: rc}}
            - {header: {key: x-added-over, value: from-rc}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
            response_headers_to_add: [{header: {key: x-added-resp-rc, value: rc}}]
            request_headers_to_remove: [x-test-drop-rc]
            virtual_hosts:
            - name: all
              domains: ["*"]
              request_headers_to_add:
              - {header: {key: x-added-vh, value: vh}}
              - {header: {key: x-added-over, value: from-vh}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
              response_headers_to_add: [{header: {key: x-added-resp-vh, value: vh}}]
              response_headers_to_remove: [x-backend-remove-me]
              routes:
              - match: {prefix: /w}
                route:
                  weighted_clusters:
                    clusters:
                    - name: b
                      weight: 100
                      request_headers_to_add: [{header: {key: x-added-wc, value: wc}}]
                      response_headers_to_add: [{header: {key: x-added-resp-wc, value: wc}}]
                    - {name: a, weight: 0}
              - match: {prefix: /}
                route: {cluster: a}
                request_headers_to_add:
                - {header: {key: x-added-route, value: route}}
                - {header: {key: x-added-absent, value: route}, append_action: ADD_IF_ABSENT}
                - {header: {key: x-added-over, value: from-route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
                request_headers_to_remove: [x-test-drop]
                response_headers_to_add: [{header: {key: x-added-resp-route, value: route}, append_action: APPEND_IF_EXISTS_OR_ADD}]
"#,
        &[
            get("/", &[], "backend a"),
            get("/", &[("x-test-drop", "1"), ("x-test-drop-rc", "1"), ("x-test-keep", "1"), ("x-added-absent", "client")], "backend a"),
            get("/w", &[], "backend b"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures() {
    run_scenario(
        "upstream_failures",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /empty}, route: {cluster: empty}}
              - {match: {prefix: /dead}, route: {cluster: dead}}
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            get("/empty", &[], "503"),
            get("/dead", &[], "503"),
            get("/", &[], "backend a"),
        ],
    )
    .await;
}

const fn h2(
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static str,
) -> Req {
    Req {
        h2: true,
        method: "GET",
        path,
        headers,
        expect,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_downstream() {
    run_scenario(
        "http2_downstream",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /b, headers: [{name: x-test-v, string_match: {exact: "2"}}]}, route: {cluster: b, prefix_rewrite: /two}}
              - {match: {prefix: /r}, redirect: {path_redirect: /x}}
              - {match: {prefix: /d}, direct_response: {status: 200, body: {inline_string: direct}}}
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            h2("/", &[], "backend a"),
            h2("/b", &[("x-test-v", "2")], "backend b"),
            h2("/r", &[], "301"),
            h2("/d", &[], "200"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_address_and_request_ids() {
    run_scenario_with(
        "remote_address_and_request_ids",
        "          use_remote_address: true\n",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            get("/", &[], "backend a"),
            get("/", &[("x-forwarded-for", "10.1.2.3")], "backend a"),
            get("/", &[("x-request-id", "client-chosen")], "backend a"),
        ],
    )
    .await;
}

/// Masks what legitimately differs between two runs: start time,
/// duration, upstream service time and generated request ids.
fn mask_log_line(line: &str) -> String {
    let re = regex::Regex::new(
        r#"^\[[^\]]+\] ("[^"]*" \d+ \S+ \d+ \d+) \d+ (\S+) ("[^"]*" "[^"]*") "([^"]*)" ("[^"]*" "[^"]*")$"#,
    )
    .unwrap();
    let c = re
        .captures(line)
        .unwrap_or_else(|| panic!("not Envoy's default access log format: {line}"));
    let upstream_time = if &c[2] == "-" { "-" } else { "N" };
    let id = if c[4].is_empty() || &c[4] == "-" {
        &c[4]
    } else {
        "ID"
    };
    format!(
        "[T] {} D {upstream_time} {} \"{id}\" {}",
        &c[1], &c[3], &c[5]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_default_format() {
    let a = echo_backend("a").await;
    let backends = [("a", a.port()), ("dead", free_port())];
    let routes = r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /direct}, direct_response: {status: 200, body: {inline_string: hello}}}
              - {match: {prefix: /empty}, route: {cluster: empty}}
              - {match: {prefix: /dead}, route: {cluster: dead}}
              - {match: {prefix: /a}, route: {cluster: a}}
"#;
    let dir = TempDir::new("access-log");
    let hcm = |file: &str| {
        format!(
            "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n",
            dir.0.join(file).display()
        )
    };
    let (el, ea) = (free_port(), free_port());
    let envoy = start_envoy(&bootstrap(el, ea, &backends, &hcm("envoy.log"), routes), ea).await;
    let (wl, wa) = (free_port(), free_port());
    let boot =
        weft_envoy::parse_bootstrap("t", &bootstrap(wl, wa, &backends, &hcm("weft.log"), routes))
            .unwrap();
    let weft = weft_proxy::start(weft_proxy::Snapshot::compile(&boot).await.unwrap())
        .await
        .unwrap();
    let requests: &[(&str, &[(&str, &str)])] = &[
        ("/direct", &[("user-agent", "parity/1")]),
        ("/nothing-here", &[]),
        ("/empty", &[]),
        ("/dead", &[]),
        (
            "/a/x?y=1",
            &[("x-forwarded-for", "10.0.0.9"), ("x-request-id", "abc-123")],
        ),
    ];
    for port in [el, wl] {
        for (path, headers) in requests {
            let mut h = headers.to_vec();
            h.push(("host", "log.test"));
            request("GET", &format!("http://127.0.0.1:{port}{path}"), &h, false)
                .await
                .unwrap();
        }
    }
    // Envoy flushes its access log file every 10 s, and on exit.
    envoy.quit(ea).await;
    let read = |file: &str| std::fs::read_to_string(dir.0.join(file)).unwrap_or_default();
    for _ in 0..100 {
        if read("envoy.log").lines().count() >= requests.len()
            && read("weft.log").lines().count() >= requests.len()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (e, w) = (read("envoy.log"), read("weft.log"));
    let e: Vec<String> = e.lines().map(mask_log_line).collect();
    let w: Vec<String> = w.lines().map(mask_log_line).collect();
    assert_eq!(w, e, "weft's access log lines differ from Envoy's");
    assert_eq!(e.len(), requests.len());
    assert!(e[1].contains("404 NR"), "{}", e[1]);
    assert!(e[2].contains("503 UH"), "{}", e[2]);
    assert!(e[3].contains("503 UF"), "{}", e[3]);
    weft.shared.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades() {
    let a = echo_backend("a").await;
    let backends = [("a", a.port())];
    let routes = r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /off}, route: {cluster: a, upgrade_configs: [{upgrade_type: websocket, enabled: false}]}}
              - {match: {prefix: /}, route: {cluster: a}}
"#;
    for (hcm, cases) in [
        (
            "          upgrade_configs: [{upgrade_type: websocket}]\n",
            [("/ws", true), ("/off", false)],
        ),
        ("", [("/ws", false), ("/off", false)]),
    ] {
        let (el, ea) = (free_port(), free_port());
        let envoy = start_envoy(&bootstrap(el, ea, &backends, hcm, routes), ea).await;
        let (wl, wa) = (free_port(), free_port());
        let boot =
            weft_envoy::parse_bootstrap("t", &bootstrap(wl, wa, &backends, hcm, routes)).unwrap();
        let weft = weft_proxy::start(weft_proxy::Snapshot::compile(&boot).await.unwrap())
            .await
            .unwrap();
        for (path, upgrades) in cases {
            let from_envoy = websocket_roundtrip(el, path).await;
            let from_weft = websocket_roundtrip(wl, path).await;
            assert_eq!(from_weft, from_envoy, "{hcm:?} {path}");
            assert_eq!(
                from_envoy.1.is_some(),
                upgrades,
                "{hcm:?} {path}: {from_envoy:?}"
            );
            if upgrades {
                assert_eq!(from_envoy.1.as_deref(), Some("ping"));
            }
        }
        weft.shared.shutdown();
        drop(envoy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_cluster_and_weights() {
    let a = tcp_echo_backend("a").await;
    let b = tcp_echo_backend("b").await;
    let boot = |listen: u16, admin: u16| {
        format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          weighted_clusters: {{clusters: [{{name: b, weight: 1}}]}}
  clusters:
  - {{name: a, type: STATIC, connect_timeout: 1s, load_assignment: {{cluster_name: a, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}}}
  - {{name: b, type: STATIC, connect_timeout: 1s, load_assignment: {{cluster_name: b, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}}}
"#,
            a.port(),
            b.port()
        )
    };
    let (el, ea) = (free_port(), free_port());
    let envoy = start_envoy(&boot(el, ea), ea).await;
    let (wl, wa) = (free_port(), free_port());
    let parsed = weft_envoy::parse_bootstrap("t", &boot(wl, wa)).unwrap();
    let weft = weft_proxy::start(weft_proxy::Snapshot::compile(&parsed).await.unwrap())
        .await
        .unwrap();
    let payload = vec![b'x'; 100_000];
    for _ in 0..3 {
        let from_envoy = tcp_exchange(el, &payload).await;
        let from_weft = tcp_exchange(wl, &payload).await;
        assert_eq!(from_weft.len(), from_envoy.len());
        assert_eq!(from_weft, from_envoy);
        assert!(
            from_envoy.starts_with("b\n"),
            "the only weighted cluster is b"
        );
        assert_eq!(
            from_envoy.len(),
            2 + payload.len(),
            "every byte comes back after the half-close"
        );
    }
    weft.shared.shutdown();
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream() {
    run_scenario(
        "http2_upstream",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /}, route: {cluster: b_h2}}
"#,
        &[
            get("/over-h2?x=1", &[("x-test-a", "1")], "backend b"),
            h2("/h2-both-ways", &[], "backend b"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_trailers_pass_through() {
    run_scenario(
        "grpc_trailers_pass_through",
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: /pkg.Svc/, grpc: {}}, route: {cluster: b_h2}}
              - {match: {prefix: /}, route: {cluster: a}}
"#,
        &[
            h2(
                "/pkg.Svc/Call",
                &[
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("x-test-trailers", "yes"),
                ],
                "backend b",
            ),
            h2(
                "/pkg.Svc/Call",
                &[
                    ("content-type", "application/json"),
                    ("x-test-trailers", "yes"),
                ],
                "backend a",
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers() {
    let a = echo_backend("a").await;
    let backends = [("a", a.port())];
    let routes = r#"            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: a}}]}
"#;
    let (el, ea) = (free_port(), free_port());
    let envoy = start_envoy(&bootstrap(el, ea, &backends, "", routes), ea).await;
    let (wl, wa) = (free_port(), free_port());
    let boot = weft_envoy::parse_bootstrap("t", &bootstrap(wl, wa, &backends, "", routes)).unwrap();
    let weft = weft_proxy::start(weft_proxy::Snapshot::compile(&boot).await.unwrap())
        .await
        .unwrap();
    // Envoy's default limit is 60 KiB of request headers.
    for size in [50 * 1024, 70 * 1024] {
        let big = "x".repeat(size);
        let status = |port: u16| {
            let big = big.clone();
            async move {
                request(
                    "GET",
                    &format!("http://127.0.0.1:{port}/"),
                    &[("host", "h"), ("x-test-big", &big)],
                    false,
                )
                .await
                .map(|r| r.status)
                .unwrap_or(0)
            }
        };
        let (e, w) = (status(el).await, status(wl).await);
        assert_eq!(w, e, "{size} bytes of header");
    }
    // The proxy still serves other requests afterwards.
    assert_eq!(get_status(wl).await, 200);
    weft.shared.shutdown();
    drop(envoy);
}

async fn get_status(port: u16) -> u16 {
    request(
        "GET",
        &format!("http://127.0.0.1:{port}/"),
        &[("host", "h")],
        false,
    )
    .await
    .map(|r| r.status)
    .unwrap_or(0)
}
