//! Load balancing that depends on endpoint health and request keys,
//! side by side with Envoy over xDS: outlier detection (ejection, return,
//! panic mode, limits) and consistent hashing (the same key reaches the
//! same address).
mod support;

use serde_json::{json, Value};
use support::scenario::{both_sides, route, sequence, table};
use support::xds::{assignment, eds_cluster};
use support::{echo_backend, Reply};
use weft_xds::Kind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_like_envoy() {
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let sides = both_sides(&[a]).await;
    let cluster = |name: &str, od: Value| {
        let mut c = eds_cluster(name);
        c["outlier_detection"] = od;
        c
    };
    let vhost = |name: &str| json!({"name": name, "domains": [format!("{name}.test")], "routes": [route("/", name, json!({}))]});
    let mut t = table(vec![route("/", "backend", json!({}))]);
    for name in ["od", "single", "gw", "both"] {
        t["virtual_hosts"]
            .as_array_mut()
            .unwrap()
            .insert(0, vhost(name));
    }
    let resources = vec![
        (
            Kind::Cluster,
            cluster(
                "od",
                json!({"consecutive_5xx": 3, "interval": "0.5s", "base_ejection_time": "2s", "max_ejection_percent": 50}),
            ),
        ),
        (Kind::ClusterLoadAssignment, assignment("od", &[a, b])),
        (
            Kind::Cluster,
            cluster(
                "single",
                json!({"consecutive_5xx": 2, "max_ejection_percent": 100}),
            ),
        ),
        (Kind::ClusterLoadAssignment, assignment("single", &[a])),
        (
            Kind::Cluster,
            cluster(
                "gw",
                json!({"consecutive_5xx": 100, "consecutive_gateway_failure": 2, "max_ejection_percent": 100}),
            ),
        ),
        (Kind::ClusterLoadAssignment, assignment("gw", &[a, b])),
        (
            Kind::Cluster,
            cluster(
                "both",
                json!({"consecutive_5xx": 2, "max_ejection_percent": 10}),
            ),
        ),
        (Kind::ClusterLoadAssignment, assignment("both", &[a, b])),
        (Kind::RouteConfiguration, t),
    ];
    for s in &sides {
        s.apply(&resources).await;
    }
    let mut diffs = Vec::new();
    let mut compare = |what: &str, got: [String; 2]| {
        if got[0] != got[1] {
            diffs.push(format!("{what}:\n  envoy: {}\n  weft:  {}", got[0], got[1]));
        }
    };
    let fail_b = [("x-test-fail-on", "b;503")];
    let mut ejected = Vec::new();
    for s in &sides {
        let seq = sequence(s, "od.test", 12, &fail_b).await;
        let failed = seq.iter().filter(|r| r.starts_with("503")).count();
        // b fails 3 times in a row (every other request), then only a
        // answers.
        assert_eq!(failed, 3, "{}: {seq:?}", s.name);
        assert!(
            seq[seq.len() - 5..].iter().all(|r| r == "200 from a"),
            "{}: {seq:?}",
            s.name
        );
        ejected.push(format!(
            "enforced_5xx={} active={}",
            s.stat("cluster.od.outlier_detection.ejections_enforced_consecutive_5xx")
                .await,
            s.stat("cluster.od.outlier_detection.ejections_active")
                .await
        ));
    }
    compare(
        "od ejection counters",
        [ejected[0].clone(), ejected[1].clone()],
    );
    // b returns after its 2 s (at a sweep), on both.
    for s in &sides {
        let mut back = false;
        for _ in 0..100 {
            let seq = sequence(s, "od.test", 2, &[]).await;
            if seq.iter().any(|r| r == "200 from b") {
                back = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(back, "{}: b never came back", s.name);
    }

    // A single host ejected: panic mode sends to it anyway.
    let mut got = Vec::new();
    for s in &sides {
        let mut seq = sequence(s, "single.test", 2, &[("x-test-fail-on", "a;503")]).await;
        seq.extend(sequence(s, "single.test", 2, &[]).await);
        seq.push(format!(
            "enforced={}",
            s.stat("cluster.single.outlier_detection.ejections_enforced_total")
                .await
        ));
        got.push(format!("{seq:?}"));
    }
    compare("single host", [got[0].clone(), got[1].clone()]);

    // Gateway failures are detected but (by default) not enforced.
    let mut got = Vec::new();
    for s in &sides {
        let seq = sequence(s, "gw.test", 8, &fail_b).await;
        got.push(format!(
            "failed={} detected={} enforced={}",
            seq.iter().filter(|r| r.starts_with("503")).count(),
            s.stat("cluster.gw.outlier_detection.ejections_detected_consecutive_gateway_failure")
                .await,
            s.stat("cluster.gw.outlier_detection.ejections_enforced_total")
                .await
        ));
    }
    compare("gateway failures", [got[0].clone(), got[1].clone()]);

    // Everything fails: one host may go, the second would pass 10%.
    let mut got = Vec::new();
    for s in &sides {
        sequence(s, "both.test", 8, &[("x-test-status", "503")]).await;
        got.push(format!(
            "enforced={} overflow={} active={}",
            s.stat("cluster.both.outlier_detection.ejections_enforced_total")
                .await,
            s.stat("cluster.both.outlier_detection.ejections_overflow")
                .await,
            s.stat("cluster.both.outlier_detection.ejections_active")
                .await
        ));
    }
    compare("max_ejection_percent", [got[0].clone(), got[1].clone()]);
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy:\n{}",
        diffs.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_picks_the_same_hosts_as_envoy() {
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let c = echo_backend("c").await.port();
    let sides = both_sides(&[a]).await;
    let mut ring = eds_cluster("ring");
    ring["lb_policy"] = json!("RING_HASH");
    let mut mag = eds_cluster("mag");
    mag["lb_policy"] = json!("MAGLEV");
    let hashed = |prefix: &str, cluster: &str, policy: Value| {
        route(prefix, cluster, json!({"hash_policy": policy}))
    };
    let routes = vec![
        hashed(
            "/h/header",
            "ring",
            json!([{"header": {"header_name": "x-user"}}]),
        ),
        hashed(
            "/h/maglev",
            "mag",
            json!([{"header": {"header_name": "x-user"}}]),
        ),
        hashed(
            "/h/cookie",
            "ring",
            json!([{"cookie": {"name": "sticky", "ttl": "60s", "path": "/h"}}]),
        ),
        hashed(
            "/h/ip",
            "mag",
            json!([{"connection_properties": {"source_ip": true}}]),
        ),
        hashed(
            "/h/query",
            "ring",
            json!([{"query_parameter": {"name": "id"}}, {"header": {"header_name": "x-user"}}]),
        ),
        route("/", "backend", json!({})),
    ];
    for s in &sides {
        s.apply(&[
            (Kind::Cluster, ring.clone()),
            (Kind::ClusterLoadAssignment, assignment("ring", &[a, b, c])),
            (Kind::Cluster, mag.clone()),
            (Kind::ClusterLoadAssignment, assignment("mag", &[a, b, c])),
            (Kind::RouteConfiguration, table(routes.clone())),
        ])
        .await;
    }
    let backend = |r: &Reply| r.headers.get("x-backend").cloned().unwrap_or("-".into());
    let mut diffs = Vec::new();
    // The same keys land on the same addresses (both tables are built
    // from the backends' addresses, which both proxies share).
    for path in [
        "/h/header",
        "/h/maglev",
        "/h/query?id=7",
        "/h/query?id=8",
        "/h/ip",
    ] {
        let mut got = Vec::new();
        for s in &sides {
            let mut picks = Vec::new();
            for user in 0..30 {
                let user = format!("user-{user}");
                let r = s.request(path, &[("x-user", &user)]).await.unwrap();
                picks.push(backend(&r));
            }
            got.push(picks.join(","));
        }
        if got[0] != got[1] {
            diffs.push(format!("{path}:\n  envoy: {}\n  weft:  {}", got[0], got[1]));
        }
        let spread: std::collections::BTreeSet<&str> = got[1].split(',').collect();
        if path != "/h/ip" {
            assert_eq!(
                spread.len(),
                3,
                "{path}: keys spread over all hosts: {spread:?}"
            );
        } else {
            assert_eq!(spread.len(), 1, "{path}: one key, one host: {spread:?}");
        }
    }
    // A generated cookie: the same Set-Cookie shape, and sticking to it.
    let mut shapes = Vec::new();
    for s in &sides {
        let r = s.request("/h/cookie", &[]).await.unwrap();
        let set = r.headers.get("set-cookie").cloned().unwrap_or_default();
        let value = set
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        shapes.push(set.replace(&value, "VALUE"));
        let cookie = format!("sticky={value}");
        let first = backend(
            &s.request("/h/cookie", &[("cookie", &cookie)])
                .await
                .unwrap(),
        );
        for _ in 0..10 {
            let r = s
                .request("/h/cookie", &[("cookie", &cookie)])
                .await
                .unwrap();
            assert_eq!(backend(&r), first, "{}: the cookie sticks", s.name);
            assert!(!r.headers.contains_key("set-cookie"));
        }
    }
    if shapes[0] != shapes[1] {
        diffs.push(format!(
            "set-cookie:\n  envoy: {}\n  weft:  {}",
            shapes[0], shapes[1]
        ));
    }
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy:\n{}",
        diffs.join("\n")
    );
}
