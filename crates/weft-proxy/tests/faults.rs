//! The fault filter side by side with Envoy, configured over xDS: the
//! same per-route, per-virtual-host and filter-level faults on both
//! proxies, the same requests, the same answers and counters.
mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::scenario::{both_sides, burst, route, table};
use support::{echo_backend, Reply};
use weft_xds::Kind;

const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// The RDS listener with a fault filter (configured with `config`)
/// before the router.
fn fault_listener(port: u16, config: Value) -> Value {
    let mut l = support::xds::rds_listener("http", port, "local");
    let mut filter_config = json!({"@type": FAULT});
    for (k, v) in config.as_object().unwrap() {
        filter_config[k] = v.clone();
    }
    let filters = l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    filters.insert(
        0,
        json!({"name": "envoy.filters.http.fault", "typed_config": filter_config}),
    );
    l
}

/// A route on `prefix` to the backend with a per-route fault.
fn faulty(prefix: &str, fault: Value) -> Value {
    let mut f = json!({"@type": FAULT});
    for (k, v) in fault.as_object().unwrap() {
        f[k] = v.clone();
    }
    let mut r = route(prefix, "backend", json!({}));
    r["typed_per_filter_config"] = json!({"envoy.filters.http.fault": f});
    r
}

fn all() -> Value {
    json!({"numerator": 100})
}

/// Status, the headers a fault reply sets, and the body of local replies.
fn fault_summary(r: &Result<Reply, String>) -> String {
    let Ok(r) = r else {
        return "connection failed".into();
    };
    let h = |k: &str| r.headers.get(k).cloned().unwrap_or("-".into());
    let body = match r.headers.get("x-backend") {
        Some(b) => format!("from {b}"),
        None => format!("{:?}", r.body),
    };
    format!(
        "{} content-type={} grpc-status={} grpc-message={} x-route={} {body}",
        r.status,
        h("content-type"),
        h("grpc-status"),
        h("grpc-message"),
        h("x-route"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_matches_envoy() {
    let a = echo_backend("a").await.port();
    let sides = both_sides(&[a]).await;
    let mut abort = faulty(
        "/f/abort",
        json!({"abort": {"http_status": 503, "percentage": all()}}),
    );
    abort["response_headers_to_add"] = json!([{"header": {"key": "x-route", "value": "r"}}]);
    let routes = vec![
        abort,
        faulty(
            "/f/grpc",
            json!({"abort": {"grpc_status": 14, "percentage": all()}}),
        ),
        faulty(
            "/f/delay",
            json!({"delay": {"fixed_delay": "0.2s", "percentage": all()}}),
        ),
        faulty(
            "/f/both",
            json!({"delay": {"fixed_delay": "0.1s", "percentage": all()},
                   "abort": {"http_status": 500, "percentage": all()}}),
        ),
        faulty("/f/nopct", json!({"abort": {"http_status": 500}})),
        faulty(
            "/f/headers",
            json!({"abort": {"http_status": 500, "percentage": all()},
                   "headers": [{"name": "x-fault", "exact_match": "yes"}]}),
        ),
        faulty(
            "/f/cluster",
            json!({"abort": {"http_status": 500, "percentage": all()}, "upstream_cluster": "other"}),
        ),
        faulty(
            "/f/half",
            json!({"abort": {"http_status": 503, "percentage": {"numerator": 50}}}),
        ),
        faulty(
            "/f/quarter",
            json!({"abort": {"http_status": 503, "percentage": {"numerator": 250000, "denominator": "MILLION"}}}),
        ),
        faulty(
            "/f/limited",
            json!({"delay": {"fixed_delay": "0.3s", "percentage": all()}, "max_active_faults": 1}),
        ),
        route("/", "backend", json!({})),
    ];
    let mut t = table(routes);
    t["virtual_hosts"].as_array_mut().unwrap().insert(
        0,
        json!({
            "name": "faulty-host",
            "domains": ["faulty.test"],
            "typed_per_filter_config": {"envoy.filters.http.fault": {
                "@type": FAULT, "abort": {"http_status": 502, "percentage": all()}
            }},
            "routes": [route("/", "backend", json!({}))]
        }),
    );
    let filter_level = json!({
        "abort": {"header_abort": {}, "percentage": all()},
        "delay": {"header_delay": {}, "percentage": all()}
    });
    for s in &sides {
        s.apply(&[
            (Kind::Listener, fault_listener(s.port, filter_level.clone())),
            (Kind::RouteConfiguration, t.clone()),
        ])
        .await;
    }

    // (path, host, headers)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("/f/abort", "x.test", &[]),
        ("/f/grpc", "x.test", &[("content-type", "application/grpc")]),
        ("/f/delay", "x.test", &[]),
        ("/f/both", "x.test", &[]),
        ("/f/nopct", "x.test", &[]),
        ("/f/headers", "x.test", &[]),
        ("/f/headers", "x.test", &[("x-fault", "yes")]),
        ("/f/cluster", "x.test", &[]),
        ("/", "faulty.test", &[]),
        ("/plain", "x.test", &[]),
        (
            "/plain",
            "x.test",
            &[("x-envoy-fault-abort-request", "418")],
        ),
        ("/plain", "x.test", &[("x-envoy-fault-abort-request", "99")]),
        (
            "/plain",
            "x.test",
            &[
                ("x-envoy-fault-abort-grpc-request", "8"),
                ("content-type", "application/grpc"),
            ],
        ),
        (
            "/plain",
            "x.test",
            &[
                ("x-envoy-fault-abort-request", "418"),
                ("x-envoy-fault-abort-request-percentage", "0"),
            ],
        ),
        (
            "/plain",
            "x.test",
            &[("x-envoy-fault-delay-request", "100")],
        ),
    ];
    let mut diffs = Vec::new();
    for (path, host, headers) in cases {
        let mut got = Vec::new();
        for s in &sides {
            let started = std::time::Instant::now();
            let r = support::call(&support::Call {
                method: "GET",
                port: s.port,
                path,
                host,
                headers,
                body: b"",
                h2: false,
            })
            .await;
            got.push(fault_summary(&r));
            // A delay cannot be much shorter than configured (a lower
            // bound, not a timing measurement; Envoy arms its timer from
            // its event loop's cached clock, which can be a few ms old).
            let delay_header = headers
                .iter()
                .any(|(k, _)| *k == "x-envoy-fault-delay-request");
            let least = match *path {
                "/f/delay" => 190,
                "/f/both" => 90,
                _ if delay_header => 90,
                _ => 0,
            };
            assert!(
                started.elapsed() >= std::time::Duration::from_millis(least),
                "{}: {path} was not delayed {least} ms",
                s.name
            );
        }
        if got[0] != got[1] {
            diffs.push(format!(
                "{host}{path} {headers:?}:\n  envoy: {}\n  weft:  {}",
                got[0], got[1]
            ));
        }
    }

    // max_active_faults 1: of 5 requests at once, one is delayed, the
    // other 4 pass undelayed and are counted as overflow.
    for s in &sides {
        let counts = burst(s, "/f/limited", 5, &[]).await;
        assert_eq!(counts.get(&200), Some(&5), "{}: {counts:?}", s.name);
    }

    // Percentages: 1,000 requests per route and proxy. The aborted count
    // is binomial (σ = 15.8 at 50%, 13.7 at 25%); ±5σ bands make a false
    // failure a one-in-a-million event while a wrong share (or a
    // denominator read wrong) falls far outside.
    for s in &sides {
        for (path, expect, band) in [("/f/half", 500, 80), ("/f/quarter", 250, 70)] {
            let mut aborted = 0;
            for _ in 0..1000 {
                let r = s.request(path, &[]).await.unwrap();
                if r.status == 503 {
                    aborted += 1;
                }
            }
            assert!(
                (expect - band..=expect + band).contains(&aborted),
                "{} {path}: {aborted} of 1000 aborted, expected {expect} ± {band}",
                s.name
            );
        }
    }

    let counters = [
        "http.http.fault.delays_injected",
        "http.http.fault.faults_overflow",
    ];
    let mut stats = Vec::new();
    for s in &sides {
        let mut m = BTreeMap::new();
        for c in counters {
            m.insert(c, s.stat(c).await);
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
    assert_eq!(stats[1]["http.http.fault.faults_overflow"], 4);
}
