//! The CORS filter side by side with Envoy over xDS: policies on a route,
//! on the virtual host and merged from both; origins by exact, prefix,
//! regex and `*`; preflights answered, forwarded or refused; the filter
//! off or in shadow mode; the same requests, the same answers and
//! counters.

mod support;

use serde_json::{json, Value};
use support::scenario::{both_sides, route};
use support::{echo_backend, request, Reply};
use weft_xds::Kind;

const POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

fn policy(fields: Value) -> Value {
    let mut p = json!({"@type": POLICY});
    for (k, v) in fields.as_object().unwrap() {
        p[k] = v.clone();
    }
    json!({"envoy.filters.http.cors": p})
}

fn with_policy(mut r: Value, fields: Value) -> Value {
    r["typed_per_filter_config"] = policy(fields);
    r
}

fn none() -> Value {
    json!({"default_value": {"numerator": 0}})
}

fn all() -> Value {
    json!({"default_value": {"numerator": 100}})
}

fn routes() -> Value {
    let to_backend = |p: &str| route(p, "backend", json!({}));
    let mut own = with_policy(
        to_backend("/cors/route"),
        json!({
            "allow_origin_string_match": [{"exact": "https://a.example"}, {"prefix": "https://b."}],
            "allow_methods": "GET, POST",
            "allow_headers": "x-custom",
            "expose_headers": "x-exposed",
            "max_age": "600",
            "allow_credentials": true
        }),
    );
    own["response_headers_to_add"] =
        json!([{"header": {"key": "access-control-max-age", "value": "from-route"}}]);
    let routes = vec![
        own,
        // Only headers of its own: the origins come from the virtual host.
        with_policy(
            to_backend("/cors/merge"),
            json!({"allow_headers": "x-merge", "allow_credentials": true}),
        ),
        with_policy(
            to_backend("/cors/star"),
            json!({"allow_origin_string_match": [{"exact": "*"}]}),
        ),
        with_policy(
            to_backend("/cors/strict"),
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                   "allow_credentials": true,
                   "allow_private_network_access": true,
                   "forward_not_matching_preflights": false}),
        ),
        with_policy(
            to_backend("/cors/off"),
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                   "filter_enabled": none()}),
        ),
        with_policy(
            to_backend("/cors/shadow"),
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                   "filter_enabled": none(), "shadow_enabled": all()}),
        ),
        with_policy(
            to_backend("/cors/private"),
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                   "allow_private_network_access": true}),
        ),
        with_policy(
            json!({"match": {"prefix": "/cors/direct"},
                   "direct_response": {"status": 200, "body": {"inline_string": "direct"}}}),
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}],
                   "expose_headers": "x-direct"}),
        ),
        with_policy(
            route("/cors/gone", "nowhere", json!({})),
            json!({"allow_origin_string_match": [{"exact": "https://a.example"}]}),
        ),
        to_backend("/cors/vh"),
    ];
    json!({"name": "local", "virtual_hosts": [{
        "name": "all",
        "domains": ["*"],
        "typed_per_filter_config": policy(json!({
            "allow_origin_string_match": [
                {"safe_regex": {"regex": "https://[a-z]+\\.vh\\.example"}},
                {"exact": "https://a.example"}
            ],
            "allow_methods": "PUT",
            "expose_headers": "x-vh",
            "max_age": "60"
        })),
        "routes": routes
    }]})
}

fn summary(r: &Result<Reply, String>) -> String {
    let Ok(r) = r else {
        return "connection failed".into();
    };
    let mut parts = vec![r.status.to_string()];
    for (k, v) in &r.headers {
        if k.starts_with("access-control-") || k == "content-type" || k == "content-length" {
            parts.push(format!("{k}={v}"));
        }
    }
    match r.seen() {
        Some(seen) => parts.push(format!("backend saw {}", seen["method"])),
        None => parts.push(format!("{:?}", r.body)),
    }
    parts.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_matches_envoy() {
    let a = echo_backend("a").await.port();
    let sides = both_sides(&[a]).await;
    for s in &sides {
        let mut l = support::xds::rds_listener("http", s.port, "local");
        let filters = l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            .as_array_mut()
            .unwrap();
        filters.insert(
            0,
            json!({"name": "envoy.filters.http.cors", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}),
        );
        s.apply(&[(Kind::Listener, l), (Kind::RouteConfiguration, routes())])
            .await;
    }
    let preflight = |origin: &'static str| {
        vec![
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-private-network", "true"),
        ]
    };
    let asks: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("GET", vec![]),
        ("GET", vec![("origin", "https://a.example")]),
        ("GET", vec![("origin", "https://b.example")]),
        ("GET", vec![("origin", "https://x.vh.example")]),
        ("GET", vec![("origin", "https://evil.example")]),
        ("GET", vec![("origin", "")]),
        ("OPTIONS", preflight("https://a.example")),
        ("OPTIONS", preflight("https://x.vh.example")),
        ("OPTIONS", preflight("https://evil.example")),
        ("OPTIONS", vec![("origin", "https://a.example")]),
        (
            "OPTIONS",
            vec![
                ("origin", "https://a.example"),
                ("access-control-request-method", ""),
            ],
        ),
    ];
    let paths = [
        "/cors/route",
        "/cors/merge",
        "/cors/star",
        "/cors/strict",
        "/cors/off",
        "/cors/shadow",
        "/cors/private",
        "/cors/direct",
        "/cors/gone",
        "/cors/vh",
        "/plain",
    ];
    let mut diffs = Vec::new();
    let mut answers = 0;
    for path in paths {
        for (method, headers) in &asks {
            let mut got = Vec::new();
            for s in &sides {
                let url = format!("http://127.0.0.1:{}{path}", s.port);
                got.push(summary(&request(method, &url, headers, false).await));
            }
            if got[0] != got[1] {
                diffs.push(format!(
                    "{method} {path} {headers:?}:\n  envoy: {}\n  weft:  {}",
                    got[0], got[1]
                ));
            }
            if got[1].contains("access-control-allow-origin") {
                answers += 1;
            }
        }
    }
    let mut stats = Vec::new();
    for s in &sides {
        let mut m = Vec::new();
        for c in ["origin_valid", "origin_invalid"] {
            m.push(s.stat(&format!("http.http.cors.{c}")).await);
        }
        stats.push(m);
    }
    if stats[0] != stats[1] {
        diffs.push(format!(
            "counters (valid, invalid):\n  envoy: {:?}\n  weft:  {:?}",
            stats[0], stats[1]
        ));
    }
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy in {} cases:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // Not a vacuous comparison: CORS answers were given.
    assert!(answers > 20, "only {answers} CORS answers");
}
