//! `weft control` on a directory: edits reach a connected proxy without
//! restarts; a half-written file or an object Istio would reject leaves
//! the last good configuration serving.

mod common;

use std::time::{Duration, Instant};

use common::{bookinfo, registry, weft_sidecar};
use weft_testkit::envoy::{free_port, TempDir};
use weft_testkit::http::request;
use weft_testkit::wait::{wait_for, PATIENCE};

const NODE: &str = "sidecar~127.0.0.3~client-weft.default~default.svc.cluster.local";

/// Asks reviews through the sidecar until `want` answers; returns how
/// long that took.
async fn until_backend(port: u16, want: &str) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("reviews to answer from {want}"),
        PATIENCE,
        async || {
            let url = format!("http://127.0.0.3:{port}/");
            match request("GET", &url, &[("host", "reviews")], false).await {
                Ok(r) => match r.headers.get("x-backend") {
                    Some(b) if b == want => Ok(()),
                    Some(b) => Err(format!("from {b}")),
                    None => Err(format!("status {}", r.status)),
                },
                Err(e) => Err(e),
            }
        },
    )
    .await;
    start.elapsed()
}

/// Waits until the control plane has published a snapshot newer than
/// `after` and the one proxy has accepted everything generated from it;
/// returns that snapshot's version.
async fn synced_after(server: &weft_control::server::AdsServer, after: u64) -> u64 {
    wait_for(
        &format!("a snapshot after version {after}, accepted by the proxy"),
        PATIENCE,
        async || {
            let version = server.snapshot().version;
            let status = server.status();
            let synced = version > after
                && status.len() == 1
                && status[0].snapshot == version
                && status[0]
                    .types
                    .values()
                    .all(|t| t.sent == t.acked && t.nack.is_none());
            if synced {
                Ok(version)
            } else {
                Err(format!("version {version}: {status:?}"))
            }
        },
    )
    .await
}

/// The same backend answers `n` times in a row.
async fn steady(port: u16, want: &str, n: usize) {
    for _ in 0..n {
        let url = format!("http://127.0.0.3:{port}/");
        let r = request("GET", &url, &[("host", "reviews")], false)
            .await
            .unwrap();
        assert_eq!(
            r.headers.get("x-backend").map(String::as_str),
            Some(want),
            "{r:?}"
        );
    }
}

fn route_to(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_apply_live_and_bad_edits_keep_the_last_good_config() {
    let backends = common::backends().await;
    let port = free_port();
    let dir = TempDir::new("control");
    std::fs::write(dir.0.join("registry.yaml"), registry(port, &backends)).unwrap();
    std::fs::write(
        dir.0.join("rules.yaml"),
        bookinfo("destination-rule-all.yaml"),
    )
    .unwrap();
    let vs = dir.0.join("reviews.yaml");
    std::fs::write(&vs, route_to("v1")).unwrap();

    let mut opts = weft_control::run::Options::new(&dir.0);
    opts.xds = "127.0.0.1:0".parse().unwrap();
    opts.debug = "127.0.0.1:0".parse().unwrap();
    let control = weft_control::run::start(opts).await.unwrap();
    let _weft = weft_sidecar(NODE, control.xds).await;
    until_backend(port, "reviews-v1").await;
    steady(port, "reviews-v1", 5).await;

    // An edit takes effect without restarting anything.
    std::fs::write(&vs, route_to("v2")).unwrap();
    let took = until_backend(port, "reviews-v2").await;
    eprintln!("edit → v2 served after {took:?}");
    steady(port, "reviews-v2", 5).await;

    // A half-written file (broken YAML) keeps the file's last good version.
    let before_bad = synced_after(&control.server, 0).await;
    std::fs::write(
        &vs,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: rev",
    )
    .unwrap();
    // An object Istio rejects (a broken regex) is left out.
    std::fs::write(
        dir.0.join("bad.yaml"),
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {regex: \"(\"}}]
    route:
    - destination: {host: ratings, subset: v1}
",
    )
    .unwrap();
    // Files that change nothing show nowhere that the watcher has read
    // them; a file written after them that does change something shows
    // in a new snapshot. Once the proxy has that snapshot, what it
    // serves shows that neither bad file changed the route.
    std::fs::write(
        dir.0.join("barrier.yaml"),
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: barrier, namespace: default}
spec:
  hosts: [barrier.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
",
    )
    .unwrap();
    synced_after(&control.server, before_bad).await;
    steady(port, "reviews-v2", 10).await;

    // The file is whole again, with a new route.
    std::fs::write(&vs, route_to("v3")).unwrap();
    until_backend(port, "reviews-v3").await;
    steady(port, "reviews-v3", 5).await;

    // The debug endpoint reports the proxy as synced (once it has
    // ACKed: it answers from the new route before it does).
    synced_after(&control.server, 0).await;
    let url = format!("http://{}/debug/syncz", control.debug);
    let r = request("GET", &url, &[], false).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let p = &doc["proxies"][0];
    assert_eq!(p["proxy"], NODE, "{doc}");
    for t in ["CDS", "EDS", "LDS", "RDS"] {
        assert_eq!(p["types"][t]["sent"], p["types"][t]["acked"], "{t}: {doc}");
        assert!(p["types"][t]["nack"].is_null(), "{t}: {doc}");
    }

    // An endpoint-only change (reviews-v3's instance now listens where
    // reviews-v1's does) is pushed as EDS alone.
    let sent = |doc: &serde_json::Value, t: &str| doc["proxies"][0]["types"][t]["sent"].clone();
    let before = doc;
    let mut moved = backends.clone();
    moved.insert("reviews-v3", backends["reviews-v1"]);
    std::fs::write(dir.0.join("registry.yaml"), registry(port, &moved)).unwrap();
    until_backend(port, "reviews-v1").await;
    let r = request("GET", &url, &[], false).await.unwrap();
    let after: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_ne!(sent(&after, "EDS"), sent(&before, "EDS"), "{after}");
    for t in ["CDS", "LDS", "RDS"] {
        assert_eq!(
            sent(&after, t),
            sent(&before, t),
            "{t} was pushed for an endpoint change: {after}"
        );
    }

    // Removing the VirtualService restores the default route (any version).
    std::fs::remove_file(&vs).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    wait_for(
        "reviews answered by two versions after the VirtualService was removed",
        PATIENCE,
        async || {
            let url = format!("http://127.0.0.3:{port}/");
            let r = request("GET", &url, &[("host", "reviews")], false)
                .await
                .unwrap();
            seen.insert(r.headers.get("x-backend").cloned().unwrap_or_default());
            if seen.len() >= 2 {
                Ok(())
            } else {
                Err(seen.clone())
            }
        },
    )
    .await;
}
