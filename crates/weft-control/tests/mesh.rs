//! The control plane end to end: `weft control`'s ADS server, a real
//! Envoy and weft's proxy both connected to it as sidecars (Sidecar
//! `captureMode: NONE`, each on its own loopback address), Bookinfo's
//! services as ServiceEntries with WorkloadEntries backed by echo
//! servers. Each scenario publishes a configuration, waits for both
//! proxies to ACK it, and checks that both route every request the way
//! Istio documents — and the same way as each other.

mod common;

use std::time::Duration;

use common::{bookinfo, registry, snapshot, weft_sidecar};
use weft_control::server::AdsServer;
use weft_testkit::envoy::{free_port, start_envoy, Envoy};
use weft_testkit::http::{request, Reply};
use weft_testkit::xds::ads_bootstrap;
use weft_xds::Kind;

const WAIT: Duration = Duration::from_secs(20);

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
        let backends = common::backends().await;
        let port = free_port();
        let base = registry(port, &backends) + "---\n" + &bookinfo("destination-rule-all.yaml");
        let server = AdsServer::new(snapshot(&base, 1));
        let (addr, _task) = server
            .clone()
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let envoy_admin = free_port();
        let envoy = start_envoy(&ads_bootstrap(NODES[0], envoy_admin, addr), envoy_admin).await;
        let weft = weft_sidecar(NODES[1], addr).await;
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

    /// Publishes the base registry plus `extra` and waits until both
    /// proxies have accepted everything they were sent.
    async fn apply(&mut self, extra: &str) {
        self.version += 1;
        let yaml = format!("{}---\n{extra}", self.base);
        self.server.publish(snapshot(&yaml, self.version));
        self.wait_synced().await;
    }

    async fn wait_synced(&self) {
        let want = self.version.to_string();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = self.server.status();
            let done = NODES.iter().all(|node| {
                status.iter().any(|p| {
                    &p.id == node
                        && p.types.len() == 4
                        && p.types.values().all(|t| t.sent == t.acked && t.nack.is_none())
                        // Route tables change with every scenario here.
                        && p.types.get(&Kind::RouteConfiguration).is_some_and(|t| t.acked == want)
                })
            });
            if done {
                return;
            }
            for p in &status {
                for (kind, t) in &p.types {
                    assert!(
                        t.nack.is_none(),
                        "{} NACKed {}: {:?}",
                        p.id,
                        kind.xds(),
                        t.nack
                    );
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxies did not sync version {want}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
}
