//! `weft control`'s own metrics at `/metrics` on the debug endpoint,
//! under istiod's names, and Prometheus service discovery of it and its
//! proxies at `/debug/prometheus-targets`: counts for a real proxy
//! connecting and taking configuration edits, and for a proxy that
//! rejects what it was sent.

mod common;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::protobuf::{value::Kind as V, Struct, Value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use weft_testkit::envoy::TempDir;
use weft_testkit::http::request;
use weft_testkit::wait::{wait_for, PATIENCE};

const NODE: &str = "sidecar~127.0.0.3~client-weft.default~default.svc.cluster.local";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn vs(name: &str, host: &str) -> String {
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  http:
  - route:
    - destination: {{host: {host}}}
"
    )
}

/// Rejected by Istio's admission rules: a negative weight.
const INVALID_VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [details]
  http:
  - route:
    - destination: {host: details}
      weight: -5
";

/// A scrape of `/metrics`: its content type, and each sample's value by
/// its series (`name{labels}` as written).
struct Scrape {
    content_type: String,
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.text))
    }
}

/// Checks `text` is Prometheus text exposition (0.0.4) as far as a
/// scraper reads it: every sample's family has one `# TYPE` before its
/// samples, names and label names are well formed, label values are
/// quoted, values are numbers, and each histogram's buckets are
/// cumulative up to `+Inf`, which equals its `_count`. The samples.
fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut last_bucket: BTreeMap<String, f64> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("type {kind}")));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("a second TYPE".into()));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value".into()))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|e| at(format!("value: {e}")))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').ok_or_else(|| at("unclosed".into()))?),
            None => (series, ""),
        };
        if !name_ok(name) {
            return Err(at("name".into()));
        }
        let mut le = None;
        let mut rest = labels;
        let mut others = Vec::new();
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").ok_or_else(|| at("label".into()))?;
            if !name_ok(k) {
                return Err(at(format!("label name {k:?}")));
            }
            // The value runs to the first unescaped quote.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| at("unquoted label value".into()))?;
            if k == "le" {
                le = Some(after[..end].to_string());
            } else {
                others.push(format!("{k}={}", &after[..end]));
            }
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(at(format!("no TYPE for {family}")));
        }
        let group = format!("{family}{{{}}}", others.join(","));
        if name.ends_with("_bucket") && family != name {
            let le = le.ok_or_else(|| at("a bucket without le".into()))?;
            let prev = last_bucket.insert(group.clone(), value).unwrap_or(0.0);
            if value < prev {
                return Err(at("buckets not cumulative".into()));
            }
            if le == "+Inf" {
                last_bucket.insert(format!("{group}+Inf"), value);
            }
        }
        if name.ends_with("_count") && family != name {
            let inf = last_bucket.get(&format!("{group}+Inf"));
            if inf != Some(&value) {
                return Err(at(format!("count {value} is not the +Inf bucket {inf:?}")));
            }
        }
        if samples.insert(series.to_string(), value).is_some() {
            return Err(at("a repeated series".into()));
        }
    }
    Ok(samples)
}

async fn scrape(debug: std::net::SocketAddr) -> Scrape {
    let r = request("GET", &format!("http://{debug}/metrics"), &[], false)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let samples = parse(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    Scrape {
        content_type: r.headers.get("content-type").cloned().unwrap_or_default(),
        text: r.body,
        samples,
    }
}

/// Waits until a scrape shows `series` at `want`.
async fn until(debug: std::net::SocketAddr, series: &str, want: f64) -> Scrape {
    wait_for(&format!("{series} at {want}"), PATIENCE, async || {
        let s = scrape(debug).await;
        match s.samples.get(series) {
            Some(v) if *v == want => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(V::StringValue(s.into())),
    }
}

fn fields(kv: Vec<(&str, Value)>) -> Struct {
    Struct {
        fields: kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

/// A node as pilot-agent describes an Istio 1.24 sidecar.
fn istio_node() -> Node {
    let labels = fields(vec![("app", string("reviews")), ("version", string("v1"))]);
    Node {
        id: "sidecar~10.9.8.7~reviews-v1-abc.default~default.svc.cluster.local".into(),
        cluster: "reviews.default".into(),
        metadata: Some(fields(vec![
            ("ISTIO_VERSION", string("1.24.0")),
            ("INSTANCE_IPS", string("10.9.8.7,fe80::7")),
            (
                "ENVOY_PROMETHEUS_PORT",
                Value {
                    kind: Some(V::NumberValue(15090.0)),
                },
            ),
            ("NAMESPACE", string("default")),
            ("NAME", string("reviews-v1-abc")),
            ("WEFT_WORKLOAD_CERTS", string("none")),
            (
                "LABELS",
                Value {
                    kind: Some(V::StructValue(labels)),
                },
            ),
        ])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_proxies_pushes_config_events_and_rejections() {
    let dir = TempDir::new("metrics");
    std::fs::write(
        dir.0.join("registry.yaml"),
        common::registry(9080, &BTreeMap::new()),
    )
    .unwrap();
    let routes = dir.0.join("routes.yaml");
    std::fs::write(
        &routes,
        vs("reviews", "reviews") + &vs("ratings", "ratings"),
    )
    .unwrap();
    std::fs::write(dir.0.join("broken.yaml"), INVALID_VS).unwrap();
    let mut opts = weft_control::run::Options::new(&dir.0);
    opts.xds = "127.0.0.1:0".parse().unwrap();
    opts.debug = "127.0.0.1:0".parse().unwrap();
    let control = weft_control::run::start(opts).await.unwrap();
    let debug = control.debug;

    // Before any proxy: the configuration loaded, checked and counted.
    let s = scrape(debug).await;
    assert_eq!(s.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        s.get("pilot_k8s_cfg_events{type=\"VirtualService\",event=\"add\"}"),
        2.0
    );
    // Bookinfo's four ServiceEntries and the three client and gateway
    // WorkloadEntries.
    assert_eq!(
        s.get("pilot_k8s_cfg_events{type=\"ServiceEntry\",event=\"add\"}"),
        4.0
    );
    assert_eq!(
        s.get("pilot_k8s_cfg_events{type=\"WorkloadEntry\",event=\"add\"}"),
        3.0
    );
    assert_eq!(s.get("pilot_virt_services"), 2.0);
    assert_eq!(s.get("pilot_services"), 4.0);
    let vs_valid = "galley_validation_passed{group=\"networking.istio.io\",version=\"v1\",resource=\"virtualservices\"}";
    assert_eq!(s.get(vs_valid), 2.0);
    assert_eq!(
        s.get("galley_validation_failed{group=\"networking.istio.io\",version=\"v1\",resource=\"virtualservices\",reason=\"invalid_resource\"}"),
        1.0
    );
    assert_eq!(s.get("pilot_xds_pushes{type=\"lds\"}"), 0.0);
    assert_eq!(s.get("pilot_total_xds_rejects{type=\"cds\"}"), 0.0);
    assert_eq!(s.get("pilot_total_xds_internal_errors"), 0.0);
    assert_eq!(s.get("pilot_pushcontext_init_seconds_count"), 1.0);
    assert!(!s.text.contains("pilot_xds{"), "no proxy yet:\n{}", s.text);

    // A weft proxy connects and takes its configuration.
    let weft = common::weft_sidecar(NODE, control.xds).await;
    let s = until(debug, "pilot_xds{version=\"unknown\"}", 1.0).await;
    wait_for(
        "the proxy to accept its configuration",
        PATIENCE,
        async || {
            let status = control.server.status();
            let synced = status.len() == 1
                && status[0].types.len() >= 3
                && status[0]
                    .types
                    .values()
                    .all(|t| t.sent == t.acked && t.nack.is_none());
            if synced {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    let s_synced = scrape(debug).await;
    for ty in ["lds", "cds", "eds", "rds"] {
        let pushes = s_synced.get(&format!("pilot_xds_pushes{{type=\"{ty}\"}}"));
        assert!(pushes >= 1.0, "{ty}: {pushes}");
        let sizes = s_synced.get(&format!(
            "pilot_xds_config_size_bytes_count{{type=\"{ty}\"}}"
        ));
        assert_eq!(sizes, pushes, "{ty}: a size per push");
    }
    assert!(s_synced.get("pilot_xds_send_time_count") >= 4.0);
    drop(s);

    // An edit, an addition and a removal, in one file.
    std::fs::write(
        &routes,
        vs("reviews", "details") + &vs("productpage", "productpage"),
    )
    .unwrap();
    let s = until(
        debug,
        "pilot_k8s_cfg_events{type=\"VirtualService\",event=\"delete\"}",
        1.0,
    )
    .await;
    assert_eq!(
        s.get("pilot_k8s_cfg_events{type=\"VirtualService\",event=\"add\"}"),
        3.0
    );
    assert_eq!(
        s.get("pilot_k8s_cfg_events{type=\"VirtualService\",event=\"update\"}"),
        1.0
    );
    assert_eq!(s.get("pilot_virt_services"), 2.0);
    assert_eq!(s.get(vs_valid), 4.0);
    // The first load's 2 + 4 + 3 + 2 Sidecars config events, then 3.
    assert_eq!(
        s.get("pilot_push_triggers{type=\"config\"}"),
        2.0 + 2.0 + 3.0
    );
    assert_eq!(s.get("pilot_push_triggers{type=\"service\"}"), 4.0);
    assert_eq!(s.get("pilot_push_triggers{type=\"endpoint\"}"), 3.0);
    assert_eq!(s.get("pilot_debounce_time_count"), 1.0);
    assert_eq!(s.get("pilot_pushcontext_init_seconds_count"), 2.0);
    // The proxy was sent the new route tables: converged once.
    let s = until(debug, "pilot_proxy_convergence_time_count", 1.0).await;
    assert!(
        s.get("pilot_xds_pushes{type=\"rds\"}") > s_synced.get("pilot_xds_pushes{type=\"rds\"}"),
        "{}",
        s.text
    );

    // An Istio sidecar connects and rejects its clusters.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", control.xds))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut ads = AggregatedDiscoveryServiceClient::new(channel);
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    requests
        .send(DiscoveryRequest {
            node: Some(istio_node()),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut responses = ads
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let clusters = responses.message().await.unwrap().expect("a CDS response");
    requests
        .send(DiscoveryRequest {
            type_url: CDS.into(),
            response_nonce: clusters.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: "cluster outbound|9080||reviews: bad".into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let s = until(debug, "pilot_total_xds_rejects{type=\"cds\"}", 1.0).await;
    assert_eq!(s.get("pilot_xds_cds_reject"), 1.0);
    assert_eq!(s.get("pilot_total_xds_rejects{type=\"lds\"}"), 0.0);
    assert_eq!(s.get("pilot_xds{version=\"1.24.0\"}"), 1.0);
    assert_eq!(s.get("pilot_xds{version=\"unknown\"}"), 1.0);
    // An answer to a response it was never sent: an expired nonce.
    requests
        .send(DiscoveryRequest {
            type_url: CDS.into(),
            response_nonce: "stale".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    until(debug, "pilot_xds_expired_nonce{type=\"cds\"}", 1.0).await;

    // Service discovery: the control plane, then both proxies.
    let r = request(
        "GET",
        &format!("http://{debug}/debug/prometheus-targets"),
        &[],
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let got: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        got,
        serde_json::json!([
            {"targets": [debug.to_string()], "labels": {
                "__metrics_path__": "/metrics", "app": "istiod", "istio": "pilot",
                "namespace": "istio-system", "pod": format!("istiod-{host}")}},
            // The test bootstrap names no port: Istio's 15090 on the
            // node's IP.
            {"targets": ["127.0.0.3:15090"], "labels": {
                "__metrics_path__": "/stats/prometheus", "namespace": "default",
                "pod": "client-weft"}},
            {"targets": ["10.9.8.7:15090"], "labels": {
                "__metrics_path__": "/stats/prometheus", "namespace": "default",
                "pod": "reviews-v1-abc", "app": "reviews", "version": "v1"}},
        ])
    );

    // Gone: no longer counted, no longer a target.
    drop(requests);
    drop(responses);
    until(debug, "pilot_xds{version=\"1.24.0\"}", 0.0).await;
    weft.shared.shutdown();
    until(debug, "pilot_xds{version=\"unknown\"}", 0.0).await;
    let r = request(
        "GET",
        &format!("http://{debug}/debug/prometheus-targets"),
        &[],
        false,
    )
    .await
    .unwrap();
    let got: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn the_parser_check_rejects_what_a_scraper_would() {
    assert!(parse("# TYPE a counter\na 1\n").is_ok());
    for bad in [
        "a 1\n",
        "# TYPE a counter\na{b=1} 1\n",
        "# TYPE a counter\na x\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 1\n",
        "# TYPE a counter\n# TYPE a counter\na 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}
