//! Envoy parity for the RBAC filters. The same configuration runs under
//! Envoy and weft, the same requests and connections go to both, and
//! the answers (status, body, content-type, gRPC status) and every
//! `rbac` statistic must be Envoy's:
//!
//! - the HTTP filter over xDS: ALLOW policies by path (exact, prefix),
//!   method, header present or absent, destination port, remote address
//!   (X-Forwarded-For, trusted hops) and peer address, `not_rule` /
//!   `not_id`, `and` / `or`; DENY and LOG policies; empty rules; shadow
//!   rules and stat prefixes; per-policy counters; a route that turns
//!   the filter off and one that replaces its rules; a request no route
//!   serves;
//! - mTLS principals: a listener that requires client certificates
//!   (SPIFFE URIs from a test CA) where only
//!   `spiffe://cluster.local/ns/default/sa/allowed` may call, the
//!   subject and DNS SANs as principal names, TLS without a client
//!   certificate, and plaintext;
//! - the network filter on tcp_proxy listeners (source CIDR, principal,
//!   shadow rules, path permissions that see no request, CONTINUOUS;
//!   header rules, which Envoy refuses there, are refused)
//!   and in front of an HTTP connection manager: a denied connection is
//!   closed without data (after the upstream's greeting, which Envoy
//!   relays before the client's first byte is judged).
//!
//! The mTLS and network half is `rbac/mtls_network.rs`.

mod support;

#[path = "rbac/mtls_network.rs"]
mod mtls_network;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::pair::{socket, HCM, ROUTER};
use support::scenario::both_sides;
use support::*;
use weft_xds::Kind;

const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const RBAC_PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

fn policy(permissions: Value, principals: Value) -> Value {
    json!({"permissions": permissions, "principals": principals})
}

fn any() -> Value {
    json!([{"any": true}])
}

fn path_prefix(p: &str) -> Value {
    json!({"url_path": {"path": {"prefix": p}}})
}

fn cidr(ip: &str, len: u32) -> Value {
    json!({"address_prefix": ip, "prefix_len": len})
}

fn rbac_filter(name: &str, config: Value) -> Value {
    let mut c = json!({"@type": RBAC});
    for (k, v) in config.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"name": name, "typed_config": c})
}

/// An HTTP listener with `filters` before the router, routes inline.
fn http_listener(name: &str, port: u16, filters: Vec<Value>, routes: Value, extra: Value) -> Value {
    let mut http_filters = filters;
    http_filters
        .push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    let mut hcm = json!({
        "@type": HCM,
        "stat_prefix": name,
        "http_filters": http_filters,
        "route_config": {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}
    });
    for (k, v) in extra.as_object().unwrap() {
        hcm[k] = v.clone();
    }
    json!({
        "name": name,
        "address": socket(port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]
    })
}

fn to_backend(prefix: &str) -> Value {
    json!({"match": {"prefix": prefix}, "route": {"cluster": "backend"}})
}

/// The HTTP listeners of the matrix, for a proxy whose listeners are on
/// `ports` (in this order).
fn http_listeners(ports: &[u16]) -> Vec<Value> {
    let all = || json!([to_backend("/")]);
    let rbac = |config: Value| vec![rbac_filter("envoy.filters.http.rbac", config)];
    let header_present = |name: &str| json!({"header": {"name": name, "present_match": true}});
    let mut out = Vec::new();
    let mut add = |name: &str, filters: Vec<Value>, routes: Value, extra: Value| {
        let port = ports[out.len()];
        out.push(http_listener(name, port, filters, routes, extra));
    };
    add(
        "paths",
        rbac(json!({"rules": {"action": "ALLOW", "policies": {
            "exact": policy(json!([{"url_path": {"path": {"exact": "/exact"}}}]), any()),
            "prefix": policy(json!([path_prefix("/pre/")]), any()),
            "ci": policy(json!([{"url_path": {"path": {"exact": "/case", "ignore_case": true}}}]), any())
        }}})),
        all(),
        json!({}),
    );
    add(
        "methods",
        rbac(json!({"rules": {"policies": {
            "reads": policy(json!([
                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                {"or_rules": {"rules": [
                    {"header": {"name": ":method", "exact_match": "HEAD"}},
                    {"header": {"name": ":method", "prefix_match": "OPT"}}]}}
            ]), any())
        }}})),
        all(),
        json!({}),
    );
    add(
        "headers",
        rbac(json!({"rules": {"policies": {
            "token": policy(json!([header_present("x-token")]), any()),
            "unblocked": policy(json!([{"and_rules": {"rules": [
                path_prefix("/nb"),
                {"not_rule": header_present("x-block")}]}}]), any()),
            "absent": policy(json!([{"header": {"name": "x-absent", "present_match": false}}]),
                json!([{"header": {"name": "x-who", "safe_regex_match": {"regex": "a[0-9]+"}}}])),
            "inverted": policy(json!([{"header": {"name": "x-inv", "exact_match": "no", "invert_match": true}}]),
                json!([{"url_path": {"path": {"prefix": "/inv"}}}]))
        }}})),
        all(),
        json!({}),
    );
    // The fourth listener's own port.
    let own = ports[3];
    add(
        "ports",
        rbac(json!({"rules": {"policies": {
            "own": policy(json!([{"and_rules": {"rules": [path_prefix("/own"), {"destination_port": own}]}}]), any()),
            "range": policy(json!([{"and_rules": {"rules": [path_prefix("/range"),
                {"destination_port_range": {"start": own, "end": own + 1}}]}}]), any()),
            "other": policy(json!([{"and_rules": {"rules": [path_prefix("/other"), {"destination_port": 1}]}}]), any()),
            "local": policy(json!([{"and_rules": {"rules": [path_prefix("/ip"),
                {"destination_ip": cidr("127.0.0.0", 8)}]}}]), any())
        }}})),
        all(),
        json!({}),
    );
    let remote = json!({"rules": {"policies": {
        "ten": policy(json!([path_prefix("/remote")]), json!([{"remote_ip": cidr("10.0.0.0", 8)}])),
        "peer": policy(json!([path_prefix("/direct")]), json!([{"direct_remote_ip": cidr("127.0.0.1", 32)}])),
        "source": policy(json!([path_prefix("/source")]), json!([{"source_ip": cidr("10.0.0.0", 8)}])),
        "notdoc": policy(json!([path_prefix("/notdoc")]), json!([{"not_id": {"remote_ip": cidr("192.0.2.0", 24)}}])),
        "both": policy(json!([path_prefix("/both")]), json!([{"and_ids": {"ids": [
            {"remote_ip": cidr("10.0.0.0", 8)},
            {"or_ids": {"ids": [{"header": {"name": "x-team", "exact_match": "a"}},
                                {"header": {"name": "x-team", "exact_match": "b"}}]}}]}}]))
    }}});
    add("remote", rbac(remote.clone()), all(), json!({}));
    add(
        "hops",
        rbac(remote),
        all(),
        json!({"xff_num_trusted_hops": 1}),
    );
    add(
        "deny",
        rbac(json!({"rules": {"action": "DENY", "policies": {
            "admin": policy(json!([path_prefix("/admin")]), any()),
            "evil": policy(json!([header_present("x-evil")]), any())
        }}})),
        all(),
        json!({}),
    );
    add(
        "log",
        rbac(json!({"rules": {"action": "LOG", "policies": {
            "logged": policy(json!([path_prefix("/admin")]), any())
        }}})),
        all(),
        json!({}),
    );
    add("empty", rbac(json!({"rules": {}})), all(), json!({}));
    add(
        "shadow",
        vec![
            rbac_filter(
                "envoy.filters.http.rbac",
                json!({
                    "rules_stat_prefix": "rp",
                    "shadow_rules_stat_prefix": "sp.",
                    "track_per_rule_stats": true,
                    "rules": {"policies": {"allowAll": policy(any(), any())}},
                    "shadow_rules": {"action": "DENY", "policies": {
                        "shadowSecret": policy(json!([path_prefix("/s")]), any())
                    }}
                }),
            ),
            rbac_filter(
                "second",
                json!({
                    "rules_stat_prefix": "deny.",
                    "track_per_rule_stats": true,
                    "rules": {"action": "DENY", "policies": {
                        "noSecret": policy(json!([header_present("x-secret")]), any())
                    }},
                    "shadow_rules": {"policies": {
                        "onlyGet": policy(json!([{"header": {"name": ":method", "exact_match": "GET"}}]), any())
                    }}
                }),
            ),
        ],
        all(),
        json!({}),
    );
    let per_route = |rbac: Option<Value>| {
        let mut c = json!({"@type": RBAC_PER_ROUTE});
        if let Some(r) = rbac {
            c["rbac"] = r;
        }
        json!({"envoy.filters.http.rbac": c})
    };
    let mut open = to_backend("/open");
    open["typed_per_filter_config"] = per_route(None);
    let mut replaced = to_backend("/override");
    replaced["typed_per_filter_config"] = per_route(Some(json!({"rules": {"policies": {
        "key": policy(json!([header_present("x-key")]), any())
    }}})));
    add(
        "perroute",
        rbac(json!({"rules": {"policies": {
            "only": policy(json!([path_prefix("/only"), path_prefix("/nowhere")]), any())
        }}})),
        json!([open, replaced, to_backend("/only")]),
        json!({}),
    );
    assert_eq!(out[3]["name"], "ports");
    out
}

const HTTP_LISTENERS: usize = 11;

/// One request of the matrix: listener, method, path, headers, HTTP/2.
type Ask = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    bool,
);

fn asks() -> Vec<Ask> {
    let get = |l: &'static str, p: &'static str| (l, "GET", p, vec![], false);
    let with = |l: &'static str,
                m: &'static str,
                p: &'static str,
                h: Vec<(&'static str, &'static str)>| { (l, m, p, h, false) };
    vec![
        get("paths", "/exact"),
        get("paths", "/exact/more"),
        get("paths", "/exact?q=1"),
        get("paths", "/pre/x"),
        get("paths", "/pre"),
        get("paths", "/CASE"),
        get("paths", "/nope"),
        with(
            "paths",
            "POST",
            "/nope",
            vec![("content-type", "application/grpc")],
        ),
        ("paths", "GET", "/nope", vec![], true),
        with("methods", "GET", "/", vec![]),
        with("methods", "HEAD", "/", vec![]),
        with("methods", "OPTIONS", "/", vec![]),
        with("methods", "POST", "/", vec![]),
        with("methods", "DELETE", "/", vec![]),
        get("headers", "/"),
        with("headers", "GET", "/", vec![("x-token", "")]),
        with("headers", "GET", "/", vec![("x-token", "t")]),
        get("headers", "/nb"),
        with("headers", "GET", "/nb", vec![("x-block", "1")]),
        with("headers", "GET", "/", vec![("x-who", "a12")]),
        with(
            "headers",
            "GET",
            "/",
            vec![("x-who", "a12"), ("x-absent", "here")],
        ),
        with("headers", "GET", "/", vec![("x-who", "b12")]),
        get("headers", "/inv"),
        with("headers", "GET", "/inv", vec![("x-inv", "no")]),
        with("headers", "GET", "/inv", vec![("x-inv", "yes")]),
        get("ports", "/own"),
        get("ports", "/range"),
        get("ports", "/other"),
        get("ports", "/ip"),
        get("remote", "/remote"),
        with(
            "remote",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "10.1.2.3")],
        ),
        with(
            "remote",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "10.1.2.3, 192.0.2.1")],
        ),
        with(
            "remote",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "192.0.2.1,10.9.9.9")],
        ),
        with(
            "remote",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "garbage")],
        ),
        get("remote", "/direct"),
        with(
            "remote",
            "GET",
            "/direct",
            vec![("x-forwarded-for", "10.1.2.3")],
        ),
        with(
            "remote",
            "GET",
            "/source",
            vec![("x-forwarded-for", "10.1.2.3")],
        ),
        get("remote", "/notdoc"),
        with(
            "remote",
            "GET",
            "/notdoc",
            vec![("x-forwarded-for", "192.0.2.7")],
        ),
        with(
            "remote",
            "GET",
            "/both",
            vec![("x-forwarded-for", "10.0.0.1"), ("x-team", "b")],
        ),
        with(
            "remote",
            "GET",
            "/both",
            vec![("x-forwarded-for", "10.0.0.1"), ("x-team", "c")],
        ),
        with("remote", "GET", "/both", vec![("x-team", "a")]),
        with(
            "hops",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "10.1.2.3, 192.0.2.1")],
        ),
        with(
            "hops",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "192.0.2.1, 10.1.2.3")],
        ),
        with(
            "hops",
            "GET",
            "/remote",
            vec![("x-forwarded-for", "10.1.2.3")],
        ),
        get("deny", "/"),
        get("deny", "/admin/x"),
        with("deny", "GET", "/", vec![("x-evil", "1")]),
        get("log", "/"),
        get("log", "/admin"),
        get("empty", "/"),
        get("shadow", "/"),
        get("shadow", "/s/x"),
        with("shadow", "POST", "/s", vec![]),
        with("shadow", "GET", "/", vec![("x-secret", "1")]),
        get("perroute", "/only"),
        get("perroute", "/open"),
        get("perroute", "/override"),
        with("perroute", "GET", "/override", vec![("x-key", "k")]),
        get("perroute", "/missing"),
        get("perroute", "/nowhere"),
    ]
}

/// What parity compares of an answer: the status, and for a local
/// reply its body and content type (a backend's answer echoes headers
/// that differ between the proxies).
fn summary(r: &Result<Reply, String>) -> String {
    let Ok(r) = r else {
        return "no answer".into();
    };
    let mut parts = vec![r.status.to_string()];
    match r.seen() {
        Some(_) => parts.push("from the backend".into()),
        None => {
            parts.push(format!("{:?}", r.body));
            for k in ["content-type", "grpc-status", "grpc-message"] {
                if let Some(v) = r.headers.get(k).or_else(|| r.trailers.get(k)) {
                    parts.push(format!("{k}={v}"));
                }
            }
        }
    }
    parts.join(" ")
}

/// Every `rbac` statistic a proxy lists, by name.
async fn rbac_stats(admin: u16, marker: &str) -> BTreeMap<String, String> {
    let r = get(&format!("http://127.0.0.1:{admin}/stats"), &[])
        .await
        .unwrap_or_else(|e| panic!("/stats on {admin}: {e}"));
    r.body
        .lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `rbac` samples of a proxy's /stats/prometheus (labels sorted:
/// their order is not what parity is about).
async fn rbac_prometheus(admin: u16) -> Vec<String> {
    let r = get(&format!("http://127.0.0.1:{admin}/stats/prometheus"), &[])
        .await
        .unwrap_or_else(|e| panic!("/stats/prometheus on {admin}: {e}"));
    let mut out: Vec<String> = r
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("rbac"))
        .map(|l| match (l.find('{'), l.rfind('}')) {
            (Some(a), Some(b)) => {
                let mut labels: Vec<&str> = l[a + 1..b].split(',').collect();
                labels.sort();
                format!("{}{{{}}}{}", &l[..a], labels.join(","), &l[b + 1..])
            }
            _ => l.to_string(),
        })
        .collect();
    out.sort();
    out
}

async fn prometheus_diffs(diffs: &mut Vec<String>, admins: [u16; 2]) {
    let (e, w) = (
        rbac_prometheus(admins[0]).await,
        rbac_prometheus(admins[1]).await,
    );
    for l in e.iter().filter(|l| !w.contains(l)) {
        diffs.push(format!("prometheus: envoy has {l}"));
    }
    for l in w.iter().filter(|l| !e.contains(l)) {
        diffs.push(format!("prometheus: weft has {l}"));
    }
}

/// Polls until both proxies list the same statistics (Envoy may count
/// a closed connection's last read a little after the client saw the
/// close); the two lists as they last were.
async fn same_stats(
    admins: [u16; 2],
    marker: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut last = Default::default();
    let start = std::time::Instant::now();
    while start.elapsed() < weft_testkit::wait::PATIENCE {
        let e = rbac_stats(admins[0], marker).await;
        let w = rbac_stats(admins[1], marker).await;
        if e == w {
            return (e, w);
        }
        last = (e, w);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

fn stat_diffs(
    diffs: &mut Vec<String>,
    (envoy, weft): &(BTreeMap<String, String>, BTreeMap<String, String>),
) {
    let names: std::collections::BTreeSet<&String> = envoy.keys().chain(weft.keys()).collect();
    for n in names {
        let (e, w) = (envoy.get(n), weft.get(n));
        if e != w {
            diffs.push(format!("stat {n}: envoy {e:?}, weft {w:?}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_rbac_matches_envoy_over_xds() {
    let backend = echo_backend("backend").await.port();
    let sides = both_sides(&[backend]).await;
    let mut ports: Vec<Vec<u16>> = Vec::new();
    for s in &sides {
        let p: Vec<u16> = (0..HTTP_LISTENERS).map(|_| free_port()).collect();
        let listeners = http_listeners(&p);
        assert_eq!(listeners.len(), HTTP_LISTENERS);
        let resources: Vec<(Kind, Value)> =
            listeners.into_iter().map(|l| (Kind::Listener, l)).collect();
        s.apply(&resources).await;
        ports.push(p);
    }
    let names: Vec<String> = http_listeners(&ports[0])
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    let mut diffs = Vec::new();
    let mut denied = 0;
    for (listener, method, path, headers, h2) in asks() {
        let i = names.iter().position(|n| n == listener).unwrap();
        let mut got = Vec::new();
        for p in &ports {
            let r = call(&Call {
                method,
                port: p[i],
                path,
                host: "rbac.test",
                headers: &headers,
                body: b"",
                h2,
            })
            .await;
            got.push(summary(&r));
        }
        if got[0] != got[1] {
            diffs.push(format!(
                "{listener}: {method} {path} {headers:?} (h2: {h2}):\n  envoy: {}\n  weft:  {}",
                got[0], got[1]
            ));
        }
        if got[1].contains("RBAC: access denied") {
            denied += 1;
        }
    }
    let stats = same_stats([sides[0].admin, sides[1].admin], ".rbac.").await;
    stat_diffs(&mut diffs, &stats);
    prometheus_diffs(&mut diffs, [sides[0].admin, sides[1].admin]).await;
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy in {} cases:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // Not vacuous: requests were denied and counted.
    assert!(denied > 15, "only {denied} denials");
    assert!(stats.1.len() > 40, "{:?}", stats.1);
}
