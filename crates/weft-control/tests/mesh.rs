//! The control plane end to end: `weft control`'s ADS server, a real
//! Envoy and weft's proxy both connected to it as sidecars (Sidecar
//! `captureMode: NONE`, each on its own loopback address), Bookinfo's
//! services as ServiceEntries with WorkloadEntries backed by echo
//! servers. Each scenario publishes a configuration, waits for both
//! proxies to ACK it, and checks that both route every request the way
//! Istio documents — and the same way as each other.

mod common;

use std::time::Duration;

use common::{bookinfo, registry, snapshot};
use weft_control::server::AdsServer;
use weft_testkit::envoy::{free_port, start_envoy, Envoy};
use weft_testkit::http::{request, Reply};

struct TestMesh {
    server: AdsServer,
    base: String,
    version: u64,
    port: u16,
    _envoy: Envoy,
    _weft: weft_proxy::Running,
}

const NODES: [&str; 2] = [
    "sidecar~127.0.0.2~client-envoy.default~default.svc.cluster.local",
    "sidecar~127.0.0.3~client-weft.default~default.svc.cluster.local",
];
const CLIENTS: [(&str, &str); 2] = [("envoy", "127.0.0.2"), ("weft", "127.0.0.3")];

impl TestMesh {
    async fn start() -> TestMesh {
        TestMesh::start_with("GRPC").await
    }

    /// Both proxies speaking `api_type` (GRPC or DELTA_GRPC).
    async fn start_with(api_type: &str) -> TestMesh {
        let backends = common::backends().await;
        // Bookinfo's port: the gateway's VirtualService names it.
        let port = 9080;
        let base = registry(port, &backends);
        let rules = bookinfo("destination-rule-all.yaml");
        let server = AdsServer::new(snapshot(&format!("{base}---\n{rules}"), 1));
        let (addr, _task) = server
            .clone()
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let envoy_admin = free_port();
        let envoy = start_envoy(
            &common::bootstrap(NODES[0], envoy_admin, addr, api_type),
            envoy_admin,
        )
        .await;
        let weft = common::weft_sidecar_with(NODES[1], addr, api_type).await;
        let mesh = TestMesh {
            server,
            base,
            version: 1,
            port,
            _envoy: envoy,
            _weft: weft,
        };
        mesh.wait_synced().await;
        mesh
    }

    /// Publishes the registry, Bookinfo's DestinationRules (unless
    /// `extra` brings its own) and `extra`, and waits until both
    /// proxies have accepted everything they were sent.
    async fn apply(&mut self, extra: &str) {
        self.version += 1;
        let yaml = if extra.contains("kind: DestinationRule") {
            format!("{}---\n{extra}", self.base)
        } else {
            let rules = bookinfo("destination-rule-all.yaml");
            format!("{}---\n{rules}\n---\n{extra}", self.base)
        };
        self.server.publish(snapshot(&yaml, self.version));
        self.wait_synced().await;
    }

    /// Waits until both proxies have accepted everything the current
    /// snapshot gives them (all four types); a NACK fails.
    async fn wait_synced(&self) {
        common::wait_synced(&self.server, self.version, &NODES, 4).await;
    }

    /// The same request through both sidecars.
    async fn both(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> [Reply; 2] {
        let mut out = Vec::new();
        for (name, ip) in CLIENTS {
            let mut h = vec![("host", host)];
            h.extend_from_slice(headers);
            let url = format!("http://{ip}:{}{path}", self.port);
            let reply = request("GET", &url, &h, false)
                .await
                .unwrap_or_else(|e| panic!("{name}: {url}: {e}"));
            out.push(reply);
        }
        out.try_into().expect("two replies")
    }

    /// Which backend answered through each sidecar; asserts both agree.
    async fn backend(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let [e, w] = self.both(host, path, headers).await;
        let name = |r: &Reply| {
            r.headers
                .get("x-backend")
                .cloned()
                .unwrap_or(format!("status {}", r.status))
        };
        assert_eq!(
            name(&e),
            name(&w),
            "envoy and weft disagree on {host}{path} {headers:?}"
        );
        name(&w)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_traffic_management_through_envoy_and_weft() {
    let mut mesh = TestMesh::start().await;
    let port = mesh.port;
    let host = |svc: &str| format!("{svc}:{port}");

    // No VirtualService: any reviews version, by every name a client may use.
    for name in [
        "reviews",
        "reviews.default",
        "reviews.default.svc.cluster.local",
    ] {
        for r in mesh.both(&format!("{name}:{port}"), "/", &[]).await {
            let b = r.headers.get("x-backend").cloned().unwrap_or_default();
            assert!(b.starts_with("reviews-v"), "{name}: {} {b}", r.status);
        }
    }
    // Unknown hosts go to PassthroughCluster (ALLOW_ANY): nothing listens
    // at the original destination here, so both fail alike.
    let [e, w] = mesh.both("unknown.example", "/", &[]).await;
    assert_eq!(e.status, w.status);

    // All traffic to v1.
    mesh.apply(&bookinfo("virtual-service-all-v1.yaml")).await;
    for _ in 0..10 {
        assert_eq!(mesh.backend(&host("reviews"), "/", &[]).await, "reviews-v1");
    }
    assert_eq!(mesh.backend(&host("ratings"), "/", &[]).await, "ratings-v1");

    // A/B by header: jason → v2, everyone else → v3.
    mesh.apply(&bookinfo("virtual-service-reviews-jason-v2-v3.yaml"))
        .await;
    for _ in 0..5 {
        let jason = [("end-user", "jason")];
        assert_eq!(
            mesh.backend(&host("reviews"), "/", &jason).await,
            "reviews-v2"
        );
        assert_eq!(mesh.backend(&host("reviews"), "/", &[]).await, "reviews-v3");
        let other = [("end-user", "alice")];
        assert_eq!(
            mesh.backend(&host("reviews"), "/", &other).await,
            "reviews-v3"
        );
    }

    // Fault injection: ratings aborts jason's requests with 500.
    mesh.apply(&bookinfo("virtual-service-ratings-test-abort.yaml"))
        .await;
    let [e, w] = mesh
        .both(&host("ratings"), "/", &[("end-user", "jason")])
        .await;
    assert_eq!(
        (e.status, &e.body),
        (500, &"fault filter abort".to_string())
    );
    assert_eq!((w.status, &w.body), (e.status, &e.body));
    assert_eq!(mesh.backend(&host("ratings"), "/", &[]).await, "ratings-v1");

    // Canary: 80/20 between v1 and v2, checked over 300 requests per
    // proxy. The share of v1 has a standard deviation of 2.3 points at
    // this count; ±8 points is 3.5 of them.
    mesh.apply(&bookinfo("virtual-service-reviews-80-20.yaml"))
        .await;
    for (name, ip) in CLIENTS {
        let mut v1 = 0;
        for _ in 0..300 {
            let url = format!("http://{ip}:{}/", mesh.port);
            let r = request("GET", &url, &[("host", &host("reviews"))], false)
                .await
                .unwrap();
            match r.headers.get("x-backend").map(String::as_str) {
                Some("reviews-v1") => v1 += 1,
                Some("reviews-v2") => {}
                other => panic!("{name}: 80/20 sent to {other:?}"),
            }
        }
        let share = f64::from(v1) / 300.0;
        assert!((0.72..=0.88).contains(&share), "{name}: v1 share {share}");
    }

    // Every Bookinfo networking sample is accepted and ACKed by both.
    let mut files: Vec<_> =
        std::fs::read_dir(common::shared_dir().join("reference/istio/bookinfo/networking"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        mesh.apply(&text).await;
    }
    assert!(files.len() >= 20, "{files:?}");

    // The seeds' Ingress migration: `/receiveapi/` rewritten to `/`, and
    // a redirect.
    mesh.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: default}
spec:
  hosts: [details]
  http:
  - match: [{uri: {prefix: /receiveapi/}}]
    rewrite: {uri: /}
    route: [{destination: {host: details, subset: v1}}]
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: details.example}
  - route: [{destination: {host: details}}]
",
    )
    .await;
    let [e, w] = mesh.both(&host("details"), "/receiveapi/book/1", &[]).await;
    for r in [&e, &w] {
        assert_eq!(r.seen().expect("a backend answered")["path"], "/book/1");
    }
    let [e, w] = mesh.both(&host("details"), "/old", &[]).await;
    assert_eq!(e.status, 301);
    assert_eq!(
        e.headers.get("location"),
        Some(&"http://details.example/new".to_string())
    );
    assert_eq!(
        (w.status, w.headers.get("location")),
        (e.status, e.headers.get("location"))
    );

    // A delegate VirtualService of another namespace takes jason's
    // requests; its rules narrow the root's match.
    mesh.apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    delegate: {name: reviews-jason, namespace: team}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-jason, namespace: team}
spec:
  http:
  - match: [{uri: {prefix: /v3}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
",
    )
    .await;
    let jason = [("end-user", "jason")];
    for _ in 0..3 {
        assert_eq!(
            mesh.backend(&host("reviews"), "/", &jason).await,
            "reviews-v2"
        );
        assert_eq!(
            mesh.backend(&host("reviews"), "/v3/x", &jason).await,
            "reviews-v3"
        );
        assert_eq!(
            mesh.backend(&host("reviews"), "/v3/x", &[]).await,
            "reviews-v1"
        );
    }
}

/// The ingress gateway: Bookinfo's Gateway and VirtualService as
/// published, served by an Envoy gateway and then by a weft gateway on
/// the same port; both must answer every request alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_gateway_through_envoy_and_weft() {
    let backends = common::backends().await;
    let gw_port = free_port();
    let gateway_yaml =
        bookinfo("bookinfo-gateway.yaml").replace("number: 8080", &format!("number: {gw_port}"));
    let yaml = format!("{}---\n{}", registry(9080, &backends), gateway_yaml);
    let server = AdsServer::new(snapshot(&yaml, 1));
    let (addr, _task) = server
        .clone()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node = "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local";
    let requests = [
        ("/productpage", 200),
        ("/api/v1/products", 200),
        ("/api/v1/products/1/reviews", 200),
        ("/static/css/x.css", 200),
        ("/login", 200),
        ("/admin", 404),
    ];
    let mut answers: Vec<Vec<(u16, Option<String>)>> = Vec::new();
    for side in ["envoy", "weft"] {
        let gateway = common::Gateway::start(side, node, addr).await;
        let mut got = Vec::new();
        for (path, want) in requests {
            let url = format!("http://127.0.0.1:{gw_port}{path}");
            let mut reply = None;
            // The listener appears once the gateway has its configuration.
            for _ in 0..500 {
                match request("GET", &url, &[("host", "bookinfo.example")], false).await {
                    Ok(r) => {
                        reply = Some(r);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            let r = reply.unwrap_or_else(|| panic!("{side}: {url} never answered"));
            assert_eq!(r.status, want, "{side} {path}: {r:?}");
            if want == 200 {
                assert_eq!(
                    r.headers.get("x-backend").map(String::as_str),
                    Some("productpage-v1"),
                    "{side} {path}"
                );
                assert_eq!(r.seen().unwrap()["path"], path);
            }
            got.push((r.status, r.headers.get("x-backend").cloned()));
        }
        answers.push(got);
        gateway.stop(gw_port).await;
    }
    assert_eq!(answers[0], answers[1]);
}

/// The same control plane over incremental (delta) xDS: both proxies
/// follow routing changes and an endpoint change alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_over_delta_xds() {
    let mut mesh = TestMesh::start_with("DELTA_GRPC").await;
    let port = mesh.port;
    let host = |svc: &str| format!("{svc}:{port}");
    mesh.apply(&bookinfo("virtual-service-reviews-jason-v2-v3.yaml"))
        .await;
    for _ in 0..3 {
        let jason = [("end-user", "jason")];
        assert_eq!(
            mesh.backend(&host("reviews"), "/", &jason).await,
            "reviews-v2"
        );
        assert_eq!(mesh.backend(&host("reviews"), "/", &[]).await, "reviews-v3");
    }
    mesh.apply(&bookinfo("virtual-service-all-v1.yaml")).await;
    for _ in 0..3 {
        assert_eq!(mesh.backend(&host("reviews"), "/", &[]).await, "reviews-v1");
    }
}

/// A DestinationRule's circuit breaker and outlier detection, compiled by
/// the control plane and enforced by Envoy and weft alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rule_circuit_breaking_and_outlier_detection() {
    let mut mesh = TestMesh::start().await;
    let port = mesh.port;
    // The seeds' circuit breaker: one connection, one pending request.
    mesh.apply(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
",
    )
    .await;
    // Twenty requests at once, each held 300 ms by the backend: one is
    // served, one waits, the rest overflow with 503 at once. Both
    // proxies must shed load; how many exactly depends on how the
    // twenty connections interleave with the first one, so the shares
    // are compared, not the counts.
    let mut shares = Vec::new();
    for (name, ip) in CLIENTS {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let url = format!("http://{ip}:{port}/");
            tasks.push(tokio::spawn(async move {
                let h = [("host", "ratings"), ("x-test-delay-ms", "300")];
                request("GET", &url, &h, false).await.map(|r| r.status)
            }));
        }
        let mut ok = 0;
        let mut overflow = 0u32;
        for t in tasks {
            match t.await.unwrap() {
                Ok(200) => ok += 1,
                Ok(503) => overflow += 1,
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(
            ok >= 1 && overflow >= 10,
            "{name}: {ok} served, {overflow} shed"
        );
        shares.push(overflow);
    }
    eprintln!("503s of 20: envoy {} weft {}", shares[0], shares[1]);
    assert!(
        shares[0].abs_diff(shares[1]) <= 4,
        "503s: envoy {} weft {}",
        shares[0],
        shares[1]
    );

    // Outlier detection: reviews-v1 fails with 500 (not retried by
    // Istio's default policy); after its first failure it is ejected and
    // no later request reaches it.
    let fail = [("x-test-fail-on", "reviews-v1;500")];
    for (name, ip) in CLIENTS {
        let url = format!("http://{ip}:{port}/");
        let mut failed = 0;
        for _ in 0..30 {
            let mut h = vec![("host", "reviews")];
            h.extend_from_slice(&fail);
            let r = request("GET", &url, &h, false).await.unwrap();
            if r.status == 500 {
                failed += 1;
            } else {
                assert_eq!(r.status, 200, "{name}: {r:?}");
            }
        }
        // Exactly once: v1 is picked at some point ((2/3)^30 that it is
        // not), fails, and is never picked again.
        assert_eq!(failed, 1, "{name}: reviews-v1 failed {failed} times");
    }
}
