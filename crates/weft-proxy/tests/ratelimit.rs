//! The local rate limit filter side by side with Envoy over xDS: a
//! bucket on the connection manager and others per route (enforced, only
//! counted, disabled), the same requests, the same answers and counters.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::scenario::{both_sides, route, table};
use support::{echo_backend, Reply};
use weft_xds::Kind;

const LIMIT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

fn limit(config: Value) -> Value {
    let mut l = json!({"@type": LIMIT});
    for (k, v) in config.as_object().unwrap() {
        l[k] = v.clone();
    }
    l
}

/// A bucket of `n` tokens that does not refill during the test.
fn bucket(n: u32) -> Value {
    json!({"max_tokens": n, "tokens_per_fill": n, "fill_interval": "60s"})
}

fn all() -> Value {
    json!({"default_value": {"numerator": 100}})
}

fn limited(prefix: &str, config: Value) -> Value {
    let mut r = route(prefix, "backend", json!({}));
    r["typed_per_filter_config"] = json!({"envoy.filters.http.local_ratelimit": limit(config)});
    r
}

fn summary(r: &Result<Reply, String>) -> String {
    let Ok(r) = r else {
        return "connection failed".into();
    };
    let h = |k: &str| r.headers.get(k).cloned().unwrap_or("-".into());
    let what = match r.seen() {
        Some(seen) => format!(
            "from {} saw x-would-limit={}",
            seen["backend"],
            seen["headers"]["x-would-limit"][0].as_str().unwrap_or("-")
        ),
        None => format!("{:?}", r.body),
    };
    format!(
        "{} x-rl={} content-type={} {what}",
        r.status,
        h("x-rl"),
        h("content-type")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limits_match_envoy() {
    let a = echo_backend("a").await.port();
    let sides = both_sides(&[a]).await;
    let routes = vec![
        limited(
            "/rl/route",
            json!({"stat_prefix": "route_rl", "token_bucket": bucket(2),
                   "filter_enabled": all(), "filter_enforced": all(),
                   "status": {"code": "ServiceUnavailable"}}),
        ),
        limited(
            "/rl/count",
            json!({"stat_prefix": "count_rl", "token_bucket": bucket(1), "filter_enabled": all(),
                   "request_headers_to_add_when_not_enforced": [{"header": {"key": "x-would-limit", "value": "yes"}}]}),
        ),
        limited(
            "/rl/off",
            json!({"stat_prefix": "off_rl", "token_bucket": bucket(1)}),
        ),
        route("/", "backend", json!({})),
    ];
    for s in &sides {
        let mut l = support::xds::rds_listener("http", s.port, "local");
        let filters = l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            .as_array_mut()
            .unwrap();
        filters.insert(
            0,
            json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": limit(json!({
                "stat_prefix": "hcm_rl",
                "token_bucket": bucket(3),
                "filter_enabled": all(),
                "filter_enforced": all(),
                "response_headers_to_add": [{"header": {"key": "x-rl", "value": "limited"}}]
            }))}),
        );
        s.apply(&[
            (Kind::Listener, l),
            (Kind::RouteConfiguration, table(routes.clone())),
        ])
        .await;
    }
    let mut diffs = Vec::new();
    for (path, n) in [
        ("/plain", 5),
        ("/rl/route", 4),
        ("/rl/count", 3),
        ("/rl/off", 3),
    ] {
        let mut got = Vec::new();
        for s in &sides {
            let mut answers = Vec::new();
            for _ in 0..n {
                answers.push(summary(&s.request(path, &[]).await));
            }
            got.push(answers.join(" | "));
        }
        if got[0] != got[1] {
            diffs.push(format!("{path}:\n  envoy: {}\n  weft:  {}", got[0], got[1]));
        }
    }
    let mut stats = Vec::new();
    for s in &sides {
        let mut m = BTreeMap::new();
        for prefix in ["hcm_rl", "route_rl", "count_rl", "off_rl"] {
            for c in ["enabled", "ok", "rate_limited", "enforced"] {
                let name = format!("{prefix}.http_local_rate_limit.{c}");
                m.insert(name.clone(), s.stat(&name).await);
            }
        }
        stats.push(m);
    }
    if stats[0] != stats[1] {
        diffs.push(format!(
            "counters:\n  envoy: {:?}\n  weft:  {:?}",
            stats[0], stats[1]
        ));
    }
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy:\n{}",
        diffs.join("\n")
    );
    assert_eq!(stats[1]["hcm_rl.http_local_rate_limit.enforced"], 2);
}
