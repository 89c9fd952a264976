//! Configuration churn under load: an xDS push every 10 ms (endpoints
//! moving between backends, route weights changing, the cluster itself
//! replaced, another listener added and removed) while clients send
//! requests without pause. No request may fail: every configuration
//! pushed routes every request to a live backend.
//!
//! A second test kills and restarts the control plane under load while
//! one backend resets, stalls or fails every request it gets.
//!
//! `WEFT_CHAOS_SECS` sets how long each runs (default 5 s; the issue's
//! full minute: `WEFT_CHAOS_SECS=60`).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::pair::{socket, HCM, HTTP_OPTIONS, ROUTER};
use support::{echo_backend, free_port, get};
use weft_testkit::wait::{wait_until, PATIENCE};
use weft_testkit::xds::FakeXds;
use weft_xds::Kind;

fn bootstrap(admin: u16, xds: u16) -> String {
    json!({
        "node": {"id": "weft", "cluster": "test"},
        "admin": {"address": socket(admin)},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": socket(xds)}}]}]}
        }]}
    })
    .to_string()
}

/// How long each test runs: `WEFT_CHAOS_SECS`, 5 s by default.
fn chaos_secs() -> u64 {
    std::env::var("WEFT_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// weft with its configuration from `xds`.
async fn start_weft(xds: &FakeXds) -> weft_proxy::Running {
    let text = bootstrap(free_port(), xds.addr.port());
    let boot = weft_envoy::parse_bootstrap("test", &text).unwrap();
    let running = weft_proxy::start(weft_proxy::Snapshot::compile(&boot).await.unwrap())
        .await
        .unwrap();
    weft_proxy::xds::spawn(&running.shared, &boot).unwrap();
    running
}

fn cluster(name: &str, connect_ms: u64) -> serde_json::Value {
    json!({"name": name, "type": "EDS", "connect_timeout": format!("{}s", connect_ms as f64 / 1000.0),
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}})
}

fn assignment(name: &str, ports: &[u16]) -> serde_json::Value {
    let eps: Vec<_> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": socket(*p)}}))
        .collect();
    json!({"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]})
}

fn listener(name: &str, port: u16) -> serde_json::Value {
    json!({"name": name, "address": socket(port), "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {"@type": HCM, "stat_prefix": name,
            "rds": {"route_config_name": "local", "config_source": {"ads": {}, "resource_api_version": "V3"}},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    }]}]})
}

fn routes(weight_one: u32) -> serde_json::Value {
    json!({"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "one", "weight": weight_one}, {"name": "two", "weight": 100 - weight_one}
        ]}}}
    ]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_every_10ms_under_load_fail_no_request() {
    let secs = chaos_secs();
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let xds = FakeXds::start().await;
    let port = free_port();
    let extra = free_port();
    xds.set(Kind::Cluster, cluster("one", 1000));
    xds.set(Kind::Cluster, cluster("two", 1000));
    xds.set(Kind::ClusterLoadAssignment, assignment("one", &[a]));
    xds.set(Kind::ClusterLoadAssignment, assignment("two", &[b]));
    xds.set(Kind::Listener, listener("http", port));
    xds.set(Kind::RouteConfiguration, routes(50));
    let v = xds.push();

    let running = start_weft(&xds).await;
    for kind in [Kind::Listener, Kind::RouteConfiguration] {
        xds.wait_ack("weft", kind, &v, Duration::from_secs(20))
            .await
            .unwrap();
    }

    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (done, ok, failures) = (done.clone(), ok.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                match get(&format!("http://127.0.0.1:{port}/"), &[]).await {
                    Ok(r) if r.status == 200 && r.headers.contains_key("x-backend") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", r.status, r.body)),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }

    let start = Instant::now();
    let mut pushes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    // Pushes go on for `secs`, and on a loaded machine until the clients
    // have had 100 answers during them (the proxy was pushed to while
    // serving, not while idle).
    while start.elapsed() < Duration::from_secs(secs)
        || (ok.load(Ordering::Relaxed) <= 100
            && start.elapsed() < Duration::from_secs(secs) + PATIENCE)
    {
        tick.tick().await;
        pushes += 1;
        match pushes % 4 {
            // Endpoints move: each cluster gets the other backend or both.
            0 => {
                let (x, y) = if pushes.is_multiple_of(8) {
                    (a, b)
                } else {
                    (b, a)
                };
                xds.set(Kind::ClusterLoadAssignment, assignment("one", &[x, y]));
                xds.set(Kind::ClusterLoadAssignment, assignment("two", &[y]));
            }
            1 => xds.set(Kind::RouteConfiguration, routes((pushes % 101) as u32)),
            // The cluster itself replaced (its endpoints are known).
            2 => xds.set(Kind::Cluster, cluster("one", 1000 + pushes % 500)),
            _ => {
                if pushes % 8 == 3 {
                    xds.set(Kind::Listener, listener("extra", extra));
                } else {
                    xds.remove(Kind::Listener, "extra");
                }
            }
        }
        xds.push();
    }
    // weft kept up: the last push is ACKed (so the pushes were applied,
    // not queued behind the load).
    let last = xds.version();
    xds.wait_ack("weft", Kind::Cluster, &last, PATIENCE)
        .await
        .unwrap();
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let served = ok.load(Ordering::Relaxed);
    let nacks: Vec<_> = xds
        .received()
        .into_iter()
        .filter(|r| r.request.error_detail.is_some())
        .collect();
    assert!(nacks.is_empty(), "weft refused a valid update: {nacks:?}");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during {pushes} pushes: {:?}",
        failures.len(),
        served + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(served > 100, "only {served} requests in {secs} s");
    eprintln!("{served} requests, {pushes} pushes, none failed");
    running.shared.shutdown();
}

/// A cluster of two good backends and one that fails every request sent
/// to it — by reset, stall or 503, in turn — under a retry policy that
/// avoids hosts already tried and outlier detection that ejects the bad
/// one. The configuration means every request to succeed; it must, while
/// the control plane dies, stays away, and comes back with a new route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restarts_and_failing_upstreams_fail_no_request() {
    let secs = chaos_secs();
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let bad = echo_backend("bad").await.port();
    let port = free_port();
    let resources = |xds: &FakeXds, generation: u32| {
        let mut c = cluster("one", 1000);
        c["outlier_detection"] = json!({"consecutive_5xx": 2, "interval": "0.5s",
            "base_ejection_time": "1s", "max_ejection_percent": 50});
        // Envoy's default allows 3 retries at once per cluster; a third
        // of these requests needs one, so more are allowed.
        c["circuit_breakers"] = json!({"thresholds": [{"max_retries": 1000}]});
        xds.set(Kind::Cluster, c);
        xds.set(Kind::ClusterLoadAssignment, assignment("one", &[a, b, bad]));
        xds.set(Kind::Listener, listener("http", port));
        xds.set(Kind::RouteConfiguration, json!({"name": "local", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "response_headers_to_add": [{"header": {"key": "x-generation", "value": generation.to_string()}}],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "one",
                "retry_policy": {"retry_on": "5xx,reset,connect-failure", "num_retries": 2,
                    "per_try_timeout": "0.5s",
                    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                    "host_selection_retry_max_attempts": "5"}}}]}]}));
    };
    let xds = FakeXds::start().await;
    resources(&xds, 1);
    let v = xds.push();
    let running = start_weft(&xds).await;
    xds.wait_ack(
        "weft",
        Kind::RouteConfiguration,
        &v,
        Duration::from_secs(20),
    )
    .await
    .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let generations = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (done, generations, failures) = (done.clone(), generations.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let mut n = i;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let how = ["reset", "stall", "503"][n % 3];
                let ask = format!("bad;{how}");
                match get(
                    &format!("http://127.0.0.1:{port}/"),
                    &[("x-test-fail-on", &ask)],
                )
                .await
                {
                    Ok(r)
                        if r.status == 200
                            && r.headers.get("x-backend").is_some_and(|b| b != "bad") =>
                    {
                        let g = r.headers.get("x-generation").cloned().unwrap_or_default();
                        *generations.lock().unwrap().entry(g).or_insert(0u64) += 1;
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{how}: {} {}", r.status, r.body)),
                    Err(e) => failures.lock().unwrap().push(format!("{how}: {e}")),
                }
            }
        }));
    }
    let phase = Duration::from_millis(secs * 1000 / 3);
    // Each phase with a control plane lasts its share of `secs`, and on
    // a loaded machine until more than 50 requests were served from the
    // generation it configured.
    let served_from = |generation: &'static str| {
        let generations = generations.clone();
        async move {
            wait_until(
                &format!("50 requests served from generation {generation}"),
                PATIENCE,
                || async {
                    generations
                        .lock()
                        .unwrap()
                        .get(generation)
                        .is_some_and(|n| *n > 50)
                },
            )
            .await
        }
    };
    tokio::time::sleep(phase).await;
    served_from("1").await;
    // The control plane dies; weft serves what it has.
    let addr = xds.addr;
    xds.stop();
    drop(xds);
    tokio::time::sleep(phase).await;
    // It comes back with a changed route; weft reconnects and converges
    // while the load goes on.
    let back = FakeXds::start_on(addr).await;
    resources(&back, 2);
    let v = back.push();
    back.wait_ack(
        "weft",
        Kind::RouteConfiguration,
        &v,
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(phase).await;
    served_from("2").await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let generations = generations.lock().unwrap().clone();
    let served: u64 = generations.values().sum();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        served + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(
        generations.get("1").is_some_and(|n| *n > 50),
        "{generations:?}"
    );
    assert!(
        generations.get("2").is_some_and(|n| *n > 50),
        "{generations:?}"
    );
    let nacks: Vec<_> = back
        .received()
        .into_iter()
        .filter(|r| r.request.error_detail.is_some())
        .collect();
    assert!(nacks.is_empty(), "weft refused a valid update: {nacks:?}");
    eprintln!("{served} requests through a control-plane restart and a failing backend, none failed: {generations:?}");
    running.shared.shutdown();
}
