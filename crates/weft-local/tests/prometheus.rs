//! A real Prometheus (Debian's `prometheus`, which `scripts/test.sh`
//! installs) scraping the local mesh the way the tour does: its
//! only configuration is `weft control`'s HTTP service discovery
//! (`/debug/prometheus-targets`), which lists the control plane and every
//! proxy. After a known number of requests, Istio's dashboard queries
//! return the series and values the requests made.
//!
//! Skipped, saying so, only where `prometheus` is not installed and
//! `WEFT_REQUIRE_PROMETHEUS` is unset; `scripts/test.sh` sets it, so CI
//! cannot skip it.

mod common;

use common::example_copy;
use weft_testkit::envoy::{free_port, TempDir};
use weft_testkit::http::request;
use weft_testkit::wait::{wait_for, PATIENCE};

/// One instant query's single value (`None`: no series).
async fn query(port: u16, promql: &str) -> Result<Option<f64>, String> {
    let mut q = String::new();
    for b in promql.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    let r = request(
        "GET",
        &format!("http://127.0.0.1:{port}/api/v1/query?query={q}"),
        &[],
        false,
    )
    .await?;
    let v: serde_json::Value =
        serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    if v["status"] != "success" {
        return Err(format!("{promql}: {}", r.body));
    }
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    match result.as_slice() {
        [] => Ok(None),
        [one] => one["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{promql}: {}", r.body)),
        _ => Err(format!("{promql}: more than one series: {}", r.body)),
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_mesh_through_discovery_and_the_dashboards_queries_answer() {
    let Some(binary) = weft_local::prometheus::find_binary() else {
        assert!(
            std::env::var_os("WEFT_REQUIRE_PROMETHEUS").is_none(),
            "WEFT_REQUIRE_PROMETHEUS is set and no prometheus binary was found"
        );
        eprintln!("SKIPPED: no `prometheus` (apt install prometheus; scripts/test.sh does)");
        return;
    };
    let dir = TempDir::new("prom-mesh");
    let gw = free_port();
    example_copy(&dir.0, gw);
    let state = TempDir::new("prom-state");
    let mut opts = weft_local::Options::new(&dir.0);
    opts.control.xds = "127.0.0.1:0".parse().unwrap();
    opts.control.debug = "127.0.0.1:0".parse().unwrap();
    let mut ca = weft_control::ca::SecureOptions::new(&state.0);
    ca.address = "127.0.0.1:0".parse().unwrap();
    opts.control.ca = Some(ca);
    let mesh = weft_local::start(opts).await.unwrap();
    let problems = mesh.settle(PATIENCE).await;
    assert!(problems.is_empty(), "{problems:?}");

    // Prometheus knows nothing but the discovery URL: started as `weft
    // up` starts it.
    let prom_port = free_port();
    let prom_dir = TempDir::new("prometheus");
    let _prometheus = weft_local::prometheus::start(
        &binary,
        ([127, 0, 0, 1], prom_port).into(),
        mesh.control.debug,
        &prom_dir.0,
    )
    .unwrap();
    // Every proxy and the control plane are up as targets.
    wait_for(
        "Prometheus to scrape 8 targets",
        PATIENCE,
        async || match query(prom_port, "sum(up)").await? {
            Some(8.0) => Ok(()),
            other => Err(format!("sum(up) = {other:?}")),
        },
    )
    .await;
    // A known number of pages through the gateway.
    const PAGES: u32 = 12;
    for _ in 0..PAGES {
        let r = request(
            "GET",
            &format!("http://127.0.0.1:{gw}/productpage"),
            &[("host", "bookinfo.local")],
            false,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    }
    // productpage's sidecar counted each as the destination, from the
    // ingress gateway, over mutual TLS; the gateway counted each as the
    // source. Values as Prometheus stores them, by the labels the
    // service and workload dashboards select on.
    let expect = [
        (
            "sum(istio_requests_total{reporter=\"destination\",destination_workload=\"productpage-v1\",response_code=\"200\",connection_security_policy=\"mutual_tls\"})",
            f64::from(PAGES),
        ),
        (
            "sum(istio_requests_total{reporter=\"source\",destination_service=\"productpage.default.svc.cluster.local\",response_code=\"200\"})",
            f64::from(PAGES),
        ),
        (
            "sum(istio_request_duration_milliseconds_count{reporter=\"destination\",destination_workload=\"productpage-v1\"})",
            f64::from(PAGES),
        ),
        // Each page asks details once and reviews once.
        (
            "sum(istio_requests_total{reporter=\"source\",source_workload=\"productpage-v1\",destination_service_name=\"details\"})",
            f64::from(PAGES),
        ),
        // The control plane, as the control-plane dashboard selects it.
        ("sum(istio_build{component=\"pilot\",app=\"istiod\"})", 1.0),
        ("sum(pilot_xds{app=\"istiod\"})", 7.0),
    ];
    for (promql, want) in expect {
        wait_for(promql, PATIENCE, async || {
            match query(prom_port, promql).await? {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{other:?}, want {want}")),
            }
        })
        .await;
    }
    // The mesh dashboard's global request volume (`irate`: the last two
    // samples, so traffic must still be flowing) and success rate.
    wait_for(
        "the mesh dashboard's request volume",
        PATIENCE,
        async || {
            let r = request(
                "GET",
                &format!("http://127.0.0.1:{gw}/productpage"),
                &[("host", "bookinfo.local")],
                false,
            )
            .await?;
            if r.status != 200 {
                return Err(format!("the page: {}", r.status));
            }
            match query(
                prom_port,
                "round(sum(irate(istio_requests_total{reporter=\"source\"}[1m])), 0.001)",
            )
            .await?
            {
                Some(v) if v > 0.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let success = query(
        prom_port,
        "sum(rate(istio_requests_total{reporter=\"source\",response_code!~\"5.*\"}[1m])) / sum(rate(istio_requests_total{reporter=\"source\"}[1m]))",
    )
    .await
    .unwrap();
    assert_eq!(success, Some(1.0));
}
