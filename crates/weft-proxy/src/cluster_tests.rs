use super::*;

#[test]
fn dns_lookup_family_picks_addresses_like_envoy() {
    use cfg::DnsLookupFamily::*;
    let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let v6: SocketAddr = "[::1]:1".parse().unwrap();
    let both = vec![v4, v6];
    assert_eq!(by_family(both.clone(), AUTO), vec![v6]);
    assert_eq!(by_family(vec![v4], AUTO), vec![v4]);
    assert_eq!(by_family(both.clone(), V4_PREFERRED), vec![v4]);
    assert_eq!(by_family(vec![v6], V4_PREFERRED), vec![v6]);
    assert_eq!(by_family(both.clone(), V4_ONLY), vec![v4]);
    assert_eq!(by_family(vec![v6], V4_ONLY), vec![]);
    assert_eq!(by_family(both.clone(), V6_ONLY), vec![v6]);
    assert_eq!(by_family(both.clone(), ALL), both);
}

async fn cluster(policy: &str, weights: &[u32]) -> Cluster {
    let endpoints: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}, load_balancing_weight: {w}}}",
                1000 + i
            )
        })
        .collect();
    let yaml = format!(
        "name: c\ntype: STATIC\nlb_policy: {policy}\nload_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{}]}}]}}\n",
        endpoints.join(", ")
    );
    let node = parse_cluster(&yaml);
    Cluster::compile(&node, "c", &Store::default()).unwrap()
}

/// Deserializes a cluster directly (the bootstrap path is tested in
/// weft-envoy).
fn parse_cluster(yaml: &str) -> cfg::Cluster {
    let boot = format!(
        "static_resources:\n  clusters:\n  - {}\n",
        yaml.trim_end().replace('\n', "\n    ")
    );
    weft_envoy::parse_bootstrap("t", &boot)
        .unwrap()
        .static_resources
        .clusters
        .remove(0)
}

fn counts(c: &Cluster, n: usize) -> Vec<usize> {
    let mut out = vec![0; c.endpoints().len()];
    for _ in 0..n {
        let e = c.pick(&PickContext::default()).unwrap();
        out[(e.addr.port() - 1000) as usize] += 1;
    }
    out
}

#[tokio::test]
async fn weighted_round_robin_is_exact() {
    let c = cluster("ROUND_ROBIN", &[1, 3]).await;
    assert_eq!(counts(&c, 400), vec![100, 300]);
}

#[tokio::test]
async fn random_follows_weights() {
    fastrand::seed(11);
    let c = cluster("RANDOM", &[1, 1, 2]).await;
    let got = counts(&c, 40_000);
    // Expected 10k/10k/20k; binomial sd ≈ 87 and 100, ±600 is > 5 sd.
    for (g, want) in got.iter().zip([10_000, 10_000, 20_000]) {
        assert!(g.abs_diff(want) < 600, "{got:?}");
    }
}

#[tokio::test]
async fn least_request_avoids_the_busy_endpoint() {
    fastrand::seed(5);
    let c = cluster("LEAST_REQUEST", &[1, 1, 1]).await;
    c.endpoints()[0].active.store(50, Ordering::Relaxed);
    let got = counts(&c, 3_000);
    // With two choices, endpoint 0 wins only when both picks are it:
    // about 1/9 of the time.
    assert!(got[0] < 500, "{got:?}");
    assert!(got[1] > 1_000 && got[2] > 1_000, "{got:?}");
}

/// A resolver whose answers the test changes.
fn scripted() -> (
    Resolver,
    Arc<std::sync::Mutex<std::io::Result<Vec<SocketAddr>>>>,
) {
    let answer: Arc<std::sync::Mutex<std::io::Result<Vec<SocketAddr>>>> =
        Arc::new(std::sync::Mutex::new(Ok(vec![])));
    let a = Arc::clone(&answer);
    let r: Resolver = Arc::new(move |_, port| {
        let got = match &*a.lock().unwrap() {
            Ok(ips) => Ok(ips
                .iter()
                .map(|ip: &SocketAddr| SocketAddr::new(ip.ip(), port))
                .collect()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        Box::pin(async move { got })
    });
    (r, answer)
}

fn addrs(c: &Cluster) -> Vec<String> {
    c.endpoints().iter().map(|e| e.addr.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn strict_dns_re_resolves_and_keeps_what_did_not_change() {
    let (resolver, answer) = scripted();
    let ip = |s: &str| -> SocketAddr { format!("{s}:0").parse().unwrap() };
    *answer.lock().unwrap() = Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    let node = parse_cluster(
        "name: d\ntype: STRICT_DNS\ndns_refresh_rate: 2s\nload_assignment: {cluster_name: d, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: svc.test, port_value: 80}}}}]}]}",
    );
    let c = Arc::new(Cluster::compile_with(&node, "d", &Store::default(), resolver).unwrap());
    assert!(c.endpoints().is_empty(), "compiling resolves nothing");
    assert!(!c.is_initialized());
    c.start_background();
    c.initialized().await;
    assert_eq!(addrs(&c), ["10.0.0.1:80", "10.0.0.2:80"]);
    let kept = Arc::clone(&c.endpoints()[1]);

    *answer.lock().unwrap() = Ok(vec![ip("10.0.0.2"), ip("10.0.0.3")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        addrs(&c),
        ["10.0.0.1:80", "10.0.0.2:80"],
        "not before the refresh rate"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(addrs(&c), ["10.0.0.2:80", "10.0.0.3:80"]);
    assert!(
        Arc::ptr_eq(&kept, &c.endpoints()[0]),
        "an address that stayed keeps its pool"
    );
    assert_eq!(c.stats.membership_total.get(), 2);

    // A failed lookup keeps the last answer.
    *answer.lock().unwrap() = Err(std::io::Error::other("SERVFAIL"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(addrs(&c), ["10.0.0.2:80", "10.0.0.3:80"]);

    // Dropping the cluster stops its refresh task.
    let weak = Arc::downgrade(&c);
    drop(c);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(weak.upgrade().is_none());
}

#[tokio::test(start_paused = true)]
async fn original_dst_adds_destinations_and_forgets_unused_ones() {
    let node = parse_cluster(
        "name: p\ntype: ORIGINAL_DST\nlb_policy: CLUSTER_PROVIDED\ncleanup_interval: 1s\noriginal_dst_lb_config: {use_http_header: true, upstream_port_override: 8080}",
    );
    let c = Arc::new(Cluster::compile(&node, "p", &Store::default()).unwrap());
    c.start_background();
    let dst: SocketAddr = "10.1.1.1:15001".parse().unwrap();
    let ctx = PickContext {
        original_dst: Some(dst),
        ..Default::default()
    };
    assert_eq!(c.pick(&ctx).unwrap().addr.to_string(), "10.1.1.1:8080");
    let mut h = HeaderMap::new();
    h.insert("x-envoy-original-dst-host", "10.2.2.2:9".parse().unwrap());
    let with_header = PickContext {
        original_dst: Some(dst),
        headers: Some(&h),
        hash: None,
    };
    assert_eq!(
        c.pick(&with_header).unwrap().addr.to_string(),
        "10.2.2.2:8080"
    );
    h.insert("x-envoy-original-dst-host", "nonsense".parse().unwrap());
    let bad = PickContext {
        original_dst: Some(dst),
        headers: Some(&h),
        hash: None,
    };
    assert!(c.pick(&bad).is_none(), "an unparsable header picks nothing");
    assert!(
        c.pick(&PickContext::default()).is_none(),
        "no destination, no host"
    );
    assert_eq!(c.endpoints().len(), 2);
    assert_eq!(c.stats.membership_total.get(), 2);
    // Used within the interval: kept; then unused for one: forgotten.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.endpoints().len(), 2);
    c.pick(&ctx).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(addrs(&c), ["10.1.1.1:8080"]);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(c.endpoints().is_empty());
}

#[tokio::test]
async fn empty_cluster_has_no_pick() {
    let boot = "static_resources:\n  clusters:\n  - {name: e, type: STATIC}\n";
    let cfg = weft_envoy::parse_bootstrap("t", boot).unwrap();
    let c = Cluster::compile(&cfg.static_resources.clusters[0], "e", &Store::default()).unwrap();
    assert!(c.pick(&PickContext::default()).is_none());
}

/// A ROUND_ROBIN cluster of `n` endpoints (ports 1000..) with outlier
/// detection set by `outlier` (YAML flow mapping).
async fn outlier_cluster(n: usize, outlier: &str) -> Arc<Cluster> {
    let endpoints: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}",
                1000 + i
            )
        })
        .collect();
    let yaml = format!(
        "name: c\ntype: STATIC\noutlier_detection: {outlier}\nload_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{}]}}]}}\n",
        endpoints.join(", ")
    );
    let c = Cluster::compile(&parse_cluster(&yaml), "c", &Store::default()).unwrap();
    Arc::new(c)
}

fn ports_picked(c: &Cluster, n: usize) -> std::collections::BTreeSet<u16> {
    (0..n)
        .map(|_| c.pick(&PickContext::default()).unwrap().addr.port())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_ejects_until_the_sweep_after_its_time() {
    use crate::outlier::Result::Status;
    let c = outlier_cluster(
        4,
        "{consecutive_5xx: 3, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50}",
    )
    .await;
    c.start_background();
    let bad = c.endpoints()[1].clone();
    c.report(&bad, Status(503));
    c.report(&bad, Status(200));
    c.report(&bad, Status(503));
    c.report(&bad, Status(500));
    assert_eq!(ports_picked(&c, 8).len(), 4, "a success broke the run");
    c.report(&bad, Status(502));
    assert!(!ports_picked(&c, 8).contains(&1001), "ejected");
    assert_eq!(c.stats.membership_healthy.get(), 3);
    // Back at the first sweep after 10 s (the one at 10 s), not before.
    tokio::time::sleep(Duration::from_millis(9_500)).await;
    assert!(!ports_picked(&c, 8).contains(&1001));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(ports_picked(&c, 8).contains(&1001), "returned");
    // Ejected again before a sweep found it healthy: twice as long.
    for _ in 0..3 {
        c.report(&bad, Status(503));
    }
    tokio::time::sleep(Duration::from_millis(19_000)).await;
    assert!(
        !ports_picked(&c, 8).contains(&1001),
        "second ejection is 20 s"
    );
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(ports_picked(&c, 8).contains(&1001));
    // Healthy sweeps wear the multiplier down: after 2 of them an
    // ejection is back to 10 s.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    for _ in 0..3 {
        c.report(&bad, Status(503));
    }
    tokio::time::sleep(Duration::from_millis(11_000)).await;
    assert!(ports_picked(&c, 8).contains(&1001));
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_and_panic_mode() {
    use crate::outlier::Result::{ConnectFailed, Status};
    let c = outlier_cluster(
        2,
        "{consecutive_5xx: 1, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 10}",
    )
    .await;
    let a = c.endpoints()[0].clone();
    c.report(&a, Status(503));
    // 1 of 2 would be 50% out, over the 10% allowed.
    assert_eq!(ports_picked(&c, 6), [1000, 1001].into());
    let half = outlier_cluster(
        2,
        "{consecutive_5xx: 1, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50}",
    )
    .await;
    let [a, b] = [half.endpoints()[0].clone(), half.endpoints()[1].clone()];
    half.report(&a, Status(503));
    assert_eq!(ports_picked(&half, 6), [1001].into());
    half.report(&b, ConnectFailed);
    // The second would pass 50%: refused.
    assert_eq!(ports_picked(&half, 6), [1001].into());
    let one = outlier_cluster(1, "{consecutive_5xx: 1, max_ejection_percent: 100}").await;
    let only = one.endpoints()[0].clone();
    one.report(&only, Status(500));
    assert!(only.outlier.ejected.load(Ordering::Relaxed));
    // Under the panic threshold (50%): balance over every host anyway.
    assert_eq!(ports_picked(&one, 3), [1000].into());
}

#[tokio::test(start_paused = true)]
async fn gateway_failures_are_detected_but_not_enforced_by_default() {
    use crate::outlier::Result::Status;
    let c = outlier_cluster(
        3,
        "{consecutive_5xx: 100, consecutive_gateway_failure: 2, max_ejection_percent: 100}",
    )
    .await;
    let bad = c.endpoints()[0].clone();
    c.report(&bad, Status(504));
    c.report(&bad, Status(503));
    assert!(!bad.outlier.ejected.load(Ordering::Relaxed));
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_the_outlier_among_enough_busy_hosts() {
    use crate::outlier::Result::Status;
    let c = outlier_cluster(
        5,
        "{interval: 1s, consecutive_5xx: 1000, max_ejection_percent: 100, success_rate_request_volume: 10}",
    )
    .await;
    c.start_background();
    let all = c.endpoints();
    for (i, e) in all.iter().enumerate() {
        for n in 0..20 {
            // Endpoint 3 fails half its requests; the others none.
            let status = if i == 3 && n % 2 == 0 { 503 } else { 200 };
            c.report(e, Status(status));
        }
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(all[3].outlier.ejected.load(Ordering::Relaxed));
    assert_eq!(
        all.iter()
            .filter(|e| e.outlier.ejected.load(Ordering::Relaxed))
            .count(),
        1
    );
}
