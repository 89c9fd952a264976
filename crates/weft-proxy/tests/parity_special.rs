//! Envoy parity for what a request table cannot express: access log
//! lines, WebSocket upgrades, raw TCP proxying and oversized headers.
//! Each test runs Envoy and weft on the same bootstrap and compares.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::pair::{bootstrap, http_bootstrap, socket, static_cluster, yaml, Pair, TCP_PROXY};
use support::*;

/// One route sending everything to cluster `a`, and the bootstrap for it.
fn to_a(listen: u16, admin: u16, hcm: &Value, a: u16) -> String {
    let routes = yaml(
        "virtual_hosts: [{name: all, domains: [\"*\"], routes: [{match: {prefix: /}, route: {cluster: a}}]}]",
    );
    http_bootstrap(
        listen,
        admin,
        hcm,
        &routes,
        &[static_cluster("a", a, false)],
    )
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
    let dead = free_port();
    let routes = yaml(
        r#"
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - {match: {prefix: /direct}, direct_response: {status: 200, body: {inline_string: hello}}}
  - {match: {prefix: /empty}, route: {cluster: empty}}
  - {match: {prefix: /dead}, route: {cluster: dead}}
  - {match: {prefix: /a}, route: {cluster: a}}
"#,
    );
    let dir = TempDir::new("access-log");
    // Each proxy logs to a file named after its admin port.
    let log = |admin: u16| dir.0.join(format!("{admin}.log"));
    let pair = Pair::start(|listen, admin| {
        let hcm = json!({"access_log": [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": log(admin).display().to_string(),
            }
        }]});
        let clusters = [
            static_cluster("a", a.port(), false),
            static_cluster("dead", dead, false),
            json!({"name": "empty", "type": "STATIC", "connect_timeout": "1s"}),
        ];
        http_bootstrap(listen, admin, &hcm, &routes, &clusters)
    })
    .await;
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
    for port in [pair.envoy_port, pair.weft_port] {
        for (path, headers) in requests {
            let mut h = headers.to_vec();
            h.push(("host", "log.test"));
            request("GET", &format!("http://127.0.0.1:{port}{path}"), &h, false)
                .await
                .unwrap();
        }
    }
    let (envoy_log, weft_log) = (log(pair.envoy_admin), log(pair.weft_admin));
    // Envoy flushes its access log file every 10 s, and on exit.
    let Pair {
        envoy,
        envoy_admin,
        weft,
        ..
    } = pair;
    envoy.quit(envoy_admin).await;
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    for _ in 0..100 {
        if read(&envoy_log).lines().count() >= requests.len()
            && read(&weft_log).lines().count() >= requests.len()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (e, w) = (read(&envoy_log), read(&weft_log));
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
    let routes = yaml(
        r#"
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - {match: {prefix: /off}, route: {cluster: a, upgrade_configs: [{upgrade_type: websocket, enabled: false}]}}
  - {match: {prefix: /}, route: {cluster: a}}
"#,
    );
    for (hcm, cases) in [
        (
            json!({"upgrade_configs": [{"upgrade_type": "websocket"}]}),
            [("/ws", true), ("/off", false)],
        ),
        (json!({}), [("/ws", false), ("/off", false)]),
    ] {
        let pair = Pair::start(|listen, admin| {
            http_bootstrap(
                listen,
                admin,
                &hcm,
                &routes,
                &[static_cluster("a", a.port(), false)],
            )
        })
        .await;
        for (path, upgrades) in cases {
            let from_envoy = websocket_roundtrip(pair.envoy_port, path).await;
            let from_weft = websocket_roundtrip(pair.weft_port, path).await;
            assert_eq!(from_weft, from_envoy, "{hcm} {path}");
            assert_eq!(
                from_envoy.1.is_some(),
                upgrades,
                "{hcm} {path}: {from_envoy:?}"
            );
            if upgrades {
                assert_eq!(from_envoy.1.as_deref(), Some("ping"));
            }
        }
        pair.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_cluster_and_weights() {
    let a = tcp_echo_backend("a").await;
    let b = tcp_echo_backend("b").await;
    let pair = Pair::start(|listen, admin| {
        let listener = json!({
            "name": "tcp",
            "address": socket(listen),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": TCP_PROXY,
                    "stat_prefix": "tcp",
                    "weighted_clusters": {"clusters": [{"name": "b", "weight": 1}]}
                }
            }]}]
        });
        let clusters = [
            static_cluster("a", a.port(), false),
            static_cluster("b", b.port(), false),
        ];
        bootstrap(admin, vec![listener], &clusters)
    })
    .await;
    let payload = vec![b'x'; 100_000];
    for _ in 0..3 {
        let from_envoy = tcp_exchange(pair.envoy_port, &payload).await;
        let from_weft = tcp_exchange(pair.weft_port, &payload).await;
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
    pair.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers() {
    let a = echo_backend("a").await;
    let pair = Pair::start(|listen, admin| to_a(listen, admin, &json!({}), a.port())).await;
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
        let (e, w) = (status(pair.envoy_port).await, status(pair.weft_port).await);
        assert_eq!(w, e, "{size} bytes of header");
    }
    // The proxy still serves other requests afterwards.
    assert_eq!(get_status(pair.weft_port).await, 200);
    pair.stop();
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
