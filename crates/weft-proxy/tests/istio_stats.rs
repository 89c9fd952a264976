//! Istio's standard metrics between two weft proxies over real sockets,
//! as a client sidecar (outbound) and a server sidecar (inbound) report
//! a call: the metadata exchange tells each who the other is, and each
//! proxy's `/stats/prometheus` shows `istio_requests_total` and the
//! histograms with Istio's labels, values and `unknown` rules. (Envoy
//! from PyPI has no `istio.stats` filter, so there is no parity run:
//! the label values are Istio's documented ones.)

mod support;

use serde_json::{json, Value};
use support::pair::{socket, start_weft, HCM, ROUTER};
use weft_testkit::http::{echo_backend, get};

const STATS: &str = "type.googleapis.com/stats.PluginConfig";
const MX: &str = "type.googleapis.com/io.istio.http.peer_metadata.Config";

fn node(id: &str, workload: &str, app: &str, version: &str) -> Value {
    json!({
        "id": id,
        "cluster": format!("{app}.default"),
        "metadata": {
            "NAME": format!("{workload}-abc12"), "NAMESPACE": "default", "WORKLOAD_NAME": workload,
            "CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.24.0",
            "LABELS": {"app": app, "version": version,
                       "service.istio.io/canonical-name": app,
                       "service.istio.io/canonical-revision": version}
        }
    })
}

fn cluster(name: &str, port: u16, service: &str) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "metadata": {"filter_metadata": {"istio": {"services": [
            {"host": format!("{service}.default.svc.cluster.local"), "name": service, "namespace": "default"}]}}},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(port)}}]}]}
    })
}

/// One sidecar: a listener of `direction` with the metadata exchange,
/// the stats filter and the router, to `cluster`.
fn sidecar(
    node: Value,
    direction: &str,
    listen: u16,
    admin: u16,
    cluster: Value,
    mx: Value,
    stats: Value,
) -> String {
    let name = cluster["name"].clone();
    let hcm = json!({
        "@type": HCM, "stat_prefix": "main",
        "http_filters": [
            {"name": "istio.metadata_exchange", "typed_config": mx},
            {"name": "istio.stats", "typed_config": stats},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name}}]}]}
    });
    json!({
        "node": node,
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{"name": direction, "address": socket(listen), "traffic_direction": direction,
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": [cluster]
        }
    })
    .to_string()
}

/// The value of the one sample of `metric` whose labels include all of
/// `want`, and that sample's line.
fn sample(text: &str, metric: &str, want: &[(&str, &str)]) -> (f64, String) {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {metric} with {want:?} in:\n{text}");
    let value = found[0].rsplit(' ').next().unwrap().parse().unwrap();
    (value, found[0].to_string())
}

#[tokio::test]
async fn client_and_server_report_the_call_with_istios_labels() {
    let backend = echo_backend("reviews").await;
    let free = weft_testkit::envoy::free_port;
    let (server_port, server_admin, client_port, client_admin) = (free(), free(), free(), free());
    let server = start_weft(&sidecar(
        node("sidecar~10.0.0.2~reviews-v2-abc12.default~default.svc.cluster.local", "reviews-v2", "reviews", "v2"),
        "INBOUND",
        server_port,
        server_admin,
        cluster("inbound|9080||", backend.port(), "reviews"),
        json!({"@type": MX, "downstream_discovery": [{"istio_headers": {}}, {"workload_discovery": {}}],
               "downstream_propagation": [{"istio_headers": {}}]}),
        json!({"@type": STATS, "disable_host_header_fallback": true}),
    ))
    .await;
    let client = start_weft(&sidecar(
        node("sidecar~10.0.0.1~productpage-v1-abc12.default~default.svc.cluster.local", "productpage-v1", "productpage", "v1"),
        "OUTBOUND",
        client_port,
        client_admin,
        cluster("outbound|9080||reviews.default.svc.cluster.local", server_port, "reviews"),
        json!({"@type": MX, "upstream_discovery": [{"istio_headers": {}}, {"workload_discovery": {}}],
               "upstream_propagation": [{"istio_headers": {}}]}),
        json!({"@type": STATS}),
    ))
    .await;
    let url = format!("http://127.0.0.1:{client_port}/reviews/0");
    let host = [("host", "reviews:9080")];
    for _ in 0..3 {
        let r = get(&url, &host).await.unwrap();
        assert_eq!(r.status, 200);
        // Neither the application nor the caller sees the exchange.
        let seen = r.seen().expect("the backend answered");
        assert!(
            seen["headers"].get("x-envoy-peer-metadata").is_none(),
            "{seen}"
        );
        assert!(!r.headers.contains_key("x-envoy-peer-metadata"));
    }
    let r = get(&url, &[("host", "reviews:9080"), ("x-test-status", "503")])
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    // Reports are made when a response is done; the last one may still
    // be finishing when the client has read it.
    let scrape = |port: u16| async move {
        get(&format!("http://127.0.0.1:{port}/stats/prometheus"), &[])
            .await
            .unwrap()
            .body
    };
    let mut server_text = scrape(server_admin).await;
    let mut client_text = scrape(client_admin).await;
    for _ in 0..50 {
        if server_text.contains("response_code=\"503\"")
            && client_text.contains("response_code=\"503\"")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        server_text = scrape(server_admin).await;
        client_text = scrape(client_admin).await;
    }

    // The server: reporter destination, the caller known by the exchange,
    // plaintext so no principals and `none`.
    let (n, line) = sample(
        &server_text,
        "istio_requests_total",
        &[("response_code", "200")],
    );
    assert_eq!(n, 3.0);
    let expected_server = "istio_requests_total{reporter=\"destination\",source_workload=\"productpage-v1\",source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",source_workload_namespace=\"default\",source_principal=\"unknown\",source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\",destination_workload=\"reviews-v2\",destination_workload_namespace=\"default\",destination_principal=\"unknown\",destination_app=\"reviews\",destination_version=\"v2\",destination_service=\"reviews.default.svc.cluster.local\",destination_canonical_service=\"reviews\",destination_canonical_revision=\"v2\",destination_service_name=\"reviews\",destination_service_namespace=\"default\",destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"none\"} 3";
    assert_eq!(line, expected_server);
    assert_eq!(
        sample(
            &server_text,
            "istio_requests_total",
            &[("response_code", "503")]
        )
        .0,
        1.0
    );
    // The client: reporter source, the server known by its answer.
    let (n, line) = sample(
        &client_text,
        "istio_requests_total",
        &[("response_code", "200")],
    );
    assert_eq!(n, 3.0);
    let expected_client = "istio_requests_total{reporter=\"source\",source_workload=\"productpage-v1\",source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",source_workload_namespace=\"default\",source_principal=\"unknown\",source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\",destination_workload=\"reviews-v2\",destination_workload_namespace=\"default\",destination_principal=\"unknown\",destination_app=\"reviews\",destination_version=\"v2\",destination_service=\"reviews.default.svc.cluster.local\",destination_canonical_service=\"reviews\",destination_canonical_revision=\"v2\",destination_service_name=\"reviews\",destination_service_namespace=\"default\",destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"unknown\"} 3";
    assert_eq!(line, expected_client);
    // The histograms: four requests in all, each with a body and head.
    for text in [&server_text, &client_text] {
        let count = |m: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{m}_count{{")))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum::<u64>()
        };
        assert_eq!(count("istio_request_duration_milliseconds"), 4);
        assert_eq!(count("istio_response_bytes"), 4);
        let (inf, _) = sample(
            text,
            "istio_request_duration_milliseconds_bucket",
            &[("response_code", "200"), ("le", "+Inf")],
        );
        assert_eq!(inf, 3.0);
        let (bytes, _) = sample(
            text,
            "istio_response_bytes_sum",
            &[("response_code", "200")],
        );
        assert!(bytes > 3.0 * 100.0, "heads and echoed bodies: {bytes}");
        assert!(text.contains("istio_build{component=\"proxy\",tag=\"1.24.0\"} 1"));
    }
    // A caller outside the mesh: no exchange, so Istio's unknowns.
    let r = get(
        &format!("http://127.0.0.1:{server_port}/direct"),
        &[("host", "reviews:9080")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        !r.headers.contains_key("x-envoy-peer-metadata"),
        "no answer to a caller that sent none"
    );
    let mut text = scrape(server_admin).await;
    for _ in 0..50 {
        if text.contains("source_workload=\"unknown\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = scrape(server_admin).await;
    }
    let (n, line) = sample(
        &text,
        "istio_requests_total",
        &[("source_workload", "unknown")],
    );
    assert_eq!(n, 1.0);
    assert!(line.contains("source_canonical_service=\"unknown\",source_canonical_revision=\"latest\",source_workload_namespace=\"unknown\",source_principal=\"unknown\",source_app=\"unknown\",source_version=\"unknown\",source_cluster=\"unknown\""), "{line}");
    drop((server, client));
}
