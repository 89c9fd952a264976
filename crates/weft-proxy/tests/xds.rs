//! Live configuration over ADS, side by side with Envoy: each proxy
//! connects to its own fake control plane (weft-testkit's real gRPC
//! server) holding the same resources — only the listener's port
//! differs — and both must ACK the same versions, NACK the same bad
//! updates, and route each request alike after every push.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::xds::{assignment, eds_cluster, rds_listener, routes, Side, WAIT};
use support::{echo_backend, free_port, get};
use weft_testkit::wait::{wait_for, PATIENCE};
use weft_testkit::xds::FakeXds;
use weft_xds::Kind;

/// The dynamic resources /config_dump lists: kind, name, state, version.
async fn dynamic_summary(admin: u16) -> Vec<String> {
    let r = get(&format!("http://127.0.0.1:{admin}/config_dump"), &[])
        .await
        .unwrap();
    let dump: Value = serde_json::from_str(&r.body).unwrap();
    let mut out = Vec::new();
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    for c in dump["configs"].as_array().unwrap() {
        let t = c["@type"].as_str().unwrap_or_default();
        if t.ends_with("ClustersConfigDump") {
            for e in c["dynamic_active_clusters"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push(format!(
                    "cluster {} active {}",
                    s(&e["cluster"]["name"]),
                    s(&e["version_info"])
                ));
            }
        } else if t.ends_with("ListenersConfigDump") {
            for e in c["dynamic_listeners"].as_array().into_iter().flatten() {
                let (state, st) = if e["active_state"].is_object() {
                    ("active", &e["active_state"])
                } else {
                    ("warming", &e["warming_state"])
                };
                out.push(format!(
                    "listener {} {state} {}",
                    s(&e["name"]),
                    s(&st["version_info"])
                ));
            }
        } else if t.ends_with("RoutesConfigDump") {
            for e in c["dynamic_route_configs"].as_array().into_iter().flatten() {
                out.push(format!(
                    "route {} {}",
                    s(&e["route_config"]["name"]),
                    s(&e["version_info"])
                ));
            }
        }
    }
    out.sort();
    out
}

/// Envoy and weft, each on its own control plane with the standard
/// resources (backend `a`), both in sync.
async fn synced_sides(a: u16) -> [Side; 2] {
    let sides = [
        Side::new("envoy", a).await.start().await,
        Side::new("weft", a).await.start().await,
    ];
    for s in &sides {
        s.synced().await;
    }
    sides
}

/// The backend that answered, or the status when none did.
fn answered(r: &Result<support::Reply, String>) -> String {
    match r {
        Ok(r) => match r.headers.get("x-backend") {
            Some(b) => format!("{} from {b}", r.status),
            None => r.status.to_string(),
        },
        Err(_) => "connection failed".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_and_envoy_follow_the_same_pushes() {
    follow_the_same_pushes(false).await
}

/// The same sequence over incremental xDS: responses carry only what
/// changed, removals come as removed_resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_xds_follows_the_same_pushes() {
    follow_the_same_pushes(true).await
}

async fn follow_the_same_pushes(delta: bool) {
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let start = |side: Side| async move {
        if delta {
            side.start_delta().await
        } else {
            side.start().await
        }
    };
    let sides = [
        start(Side::new("envoy", a).await).await,
        start(Side::new("weft", a).await).await,
    ];
    for s in &sides {
        s.synced().await;
    }
    let both = |path: &'static str| {
        let sides = &sides;
        async move {
            let mut out = Vec::new();
            for s in sides {
                out.push(answered(&s.get(path).await));
            }
            out
        }
    };
    assert_eq!(both("/").await, ["200 from a", "200 from a"]);
    // Over delta xDS each resource has its own version (here a digest of
    // its bytes); the listeners' differ by design (their ports), so only
    // their presence is compared.
    let masked = |dump: Vec<String>| -> Vec<String> {
        dump.into_iter()
            .map(|l| match l.strip_prefix("listener http active ") {
                Some(_) if delta => "listener http active *".to_string(),
                _ => l,
            })
            .collect()
    };
    let dumps = [
        masked(dynamic_summary(sides[0].admin).await),
        masked(dynamic_summary(sides[1].admin).await),
    ];
    assert_eq!(
        dumps[0], dumps[1],
        "/config_dump's dynamic resources (Envoy, weft)"
    );
    let listener = if delta { "*" } else { "v1" };
    assert!(
        dumps[1].contains(&format!("listener http active {listener}")),
        "{dumps:?}"
    );

    // New endpoints (EDS only).
    for s in &sides {
        s.xds
            .set(Kind::ClusterLoadAssignment, assignment("backend", &[b]));
        s.xds.push();
        s.synced().await;
    }
    assert_eq!(both("/").await, ["200 from b", "200 from b"]);

    // A new route table (RDS only) applies to the next request.
    for s in &sides {
        let direct = json!({"match": {"path": "/direct"}, "direct_response": {"status": 201}});
        s.xds
            .set(Kind::RouteConfiguration, routes("local", vec![direct]));
        s.xds.push();
        s.synced().await;
    }
    assert_eq!(both("/direct").await, ["201", "201"]);
    assert_eq!(both("/other").await, ["200 from b", "200 from b"]);

    // A listener whose inline routes name a cluster that does not exist
    // is refused by both, on its own: a new listener in the same update
    // is applied, and what was accepted keeps serving.
    let mut added = Vec::new();
    for s in &sides {
        let port = free_port();
        s.xds
            .set(Kind::Listener, rds_listener("added", port, "local"));
        added.push(port);
        let mut bad = rds_listener("bad", free_port(), "x");
        let hcm = &mut bad["filter_chains"][0]["filters"][0]["typed_config"];
        hcm.as_object_mut().unwrap().remove("rds");
        hcm["route_config"] = json!({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "nowhere"}}
        ]}]});
        s.xds.set(Kind::Listener, bad);
        s.xds.push();
        let detail = s
            .xds
            .wait_nack(s.name, Kind::Listener, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(detail.contains("nowhere"), "{}: {detail}", s.name);
        if s.name == "weft" {
            assert!(
                detail.contains("Listener \"bad\"") && detail.contains("route.cluster"),
                "weft names the resource and field: {detail}"
            );
        }
        s.xds.remove(Kind::Listener, "bad");
    }
    assert_eq!(both("/other").await, ["200 from b", "200 from b"]);
    let mut from_added = Vec::new();
    for port in &added {
        // The NACK may come before the listener is bound; poll.
        from_added.push(
            wait_for(
                &format!("a listener on {port}"),
                PATIENCE,
                async || match answered(
                    &support::get(&format!("http://127.0.0.1:{port}/other"), &[]).await,
                ) {
                    failed if failed == "connection failed" => Err(failed),
                    got => Ok(got),
                },
            )
            .await,
        );
    }
    assert_eq!(
        from_added,
        ["200 from b", "200 from b"],
        "the listener applied beside the refused one"
    );
    for s in &sides {
        s.xds.remove(Kind::Listener, "added");
    }

    // A cluster that cannot be built (a STATIC endpoint that is no IP) is
    // refused on its own by both; a new cluster beside it is added.
    for s in &sides {
        let static_cluster = |name: &str, address: &str| {
            json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": address, "port_value": b}}}}]}]}})
        };
        s.xds
            .set(Kind::Cluster, static_cluster("beside", "127.0.0.1"));
        s.xds
            .set(Kind::Cluster, static_cluster("unbuildable", "not-an-ip"));
        s.xds.push();
        let detail = s
            .xds
            .wait_nack(s.name, Kind::Cluster, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(detail.contains("not-an-ip"), "{}: {detail}", s.name);
        wait_for(
            &format!("{}: the cluster beside the refused one added", s.name),
            PATIENCE,
            async || {
                let clusters = get(&format!("http://127.0.0.1:{}/clusters", s.admin), &[])
                    .await
                    .unwrap()
                    .body;
                assert!(
                    !clusters.contains("unbuildable::"),
                    "{}: {clusters}",
                    s.name
                );
                if clusters.contains("beside::") {
                    Ok(())
                } else {
                    Err(clusters)
                }
            },
        )
        .await;
        s.xds.remove(Kind::Cluster, "unbuildable");
        s.xds.remove(Kind::Cluster, "beside");
    }
    assert_eq!(both("/other").await, ["200 from b", "200 from b"]);

    // A state-of-the-world LDS response without the listener removes it.
    for s in &sides {
        s.xds.remove(Kind::Listener, "http");
        let v = s.xds.push();
        s.xds
            .wait_ack(s.name, Kind::Listener, &v, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Envoy closes the socket once the listener has drained; poll.
    for s in &sides {
        wait_for(
            &format!("{}: the removed listener to stop serving", s.name),
            PATIENCE,
            async || match s.get("/").await {
                Err(_) => Ok(()),
                Ok(r) => Err(r.status),
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_keeps_serving_while_the_control_plane_is_away() {
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let side = Side::new("weft", a).await.start().await;
    side.synced().await;
    assert_eq!(answered(&side.get("/").await), "200 from a");

    let addr = side.xds.addr;
    side.xds.stop();
    for _ in 0..5 {
        assert_eq!(answered(&side.get("/").await), "200 from a");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A control plane back on the same port, with other endpoints: weft
    // reconnects, resubscribes and converges.
    let back = FakeXds::start_on(addr).await;
    back.set(Kind::Cluster, eds_cluster("backend"));
    back.set(Kind::ClusterLoadAssignment, assignment("backend", &[b]));
    back.set(Kind::Listener, rds_listener("http", side.port, "local"));
    back.set(Kind::RouteConfiguration, routes("local", vec![]));
    let v = back.push();
    back.wait_ack(
        "weft",
        Kind::ClusterLoadAssignment,
        &v,
        Duration::from_secs(40),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answered(&side.get("/").await), "200 from b");
    // It re-sent the versions it held when it reconnected.
    let first = back
        .received()
        .into_iter()
        .find(|r| r.request.type_url == Kind::Cluster.type_url())
        .unwrap();
    assert_eq!(first.request.version_info, "v1");
    assert!(first.request.response_nonce.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_clusters_warm_before_they_serve() {
    let a = echo_backend("a").await.port();
    let sides = synced_sides(a).await;
    // A listener whose route table the control plane does not have yet
    // is not started; a cluster without endpoints is not used yet.
    let late_ports: Vec<u16> = sides.iter().map(|_| free_port()).collect();
    for (s, port) in sides.iter().zip(&late_ports) {
        s.xds
            .set(Kind::Listener, rds_listener("late", *port, "late"));
        s.xds.set(Kind::Cluster, eds_cluster("fresh"));
        let v = s.xds.push();
        s.xds
            .wait_ack(s.name, Kind::Listener, &v, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (s, port) in sides.iter().zip(&late_ports) {
        let r = get(&format!("http://127.0.0.1:{port}/"), &[]).await;
        assert!(
            r.is_err(),
            "{} serves a listener still warming: {r:?}",
            s.name
        );
    }
    // The route table arrives (pointing at the fresh cluster, whose
    // endpoints arrive with it): the listener starts and routes.
    for s in &sides {
        let mut rt = routes("late", vec![]);
        rt["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = json!("fresh");
        s.xds.set(Kind::RouteConfiguration, rt);
        s.xds
            .set(Kind::ClusterLoadAssignment, assignment("fresh", &[a]));
        s.xds.push();
        s.synced().await;
    }
    for (s, port) in sides.iter().zip(&late_ports) {
        wait_for(
            &format!("{}: the warmed listener to answer from a", s.name),
            PATIENCE,
            async || match answered(&get(&format!("http://127.0.0.1:{port}/"), &[]).await) {
                ok if ok == "200 from a" => Ok(()),
                other => Err(other),
            },
        )
        .await;
    }
}

/// A DNS cluster pushed by CDS resolves in the background (weft's
/// update and its ACK never wait for a name) and warms until its first
/// resolution, then serves: Envoy and weft alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_clusters_warm_until_resolved_then_serve() {
    let a = echo_backend("a").await.port();
    let sides = synced_sides(a).await;
    for s in &sides {
        s.xds.set(
            Kind::Cluster,
            json!({
                "name": "dns",
                "type": "STRICT_DNS",
                "connect_timeout": "1s",
                "dns_lookup_family": "V4_ONLY",
                "load_assignment": {"cluster_name": "dns", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": a}}}}
                ]}]}
            }),
        );
        let mut rt = routes("local", vec![]);
        rt["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = json!("dns");
        s.xds.set(Kind::RouteConfiguration, rt);
        s.xds.push();
        s.synced().await;
    }
    for s in &sides {
        wait_for(
            &format!("{}: the DNS cluster to answer from a", s.name),
            PATIENCE,
            async || match answered(&s.get("/").await) {
                ok if ok == "200 from a" => Ok(()),
                other => Err(other),
            },
        )
        .await;
    }
}

/// Warming gives up after the config source's initial fetch timeout: a
/// cluster whose endpoints never come goes live empty (503 UH instead of
/// no cluster at all), a listener whose route table never comes starts
/// with none (404) — at the same moment in Envoy and weft; with a zero
/// timeout a listener waits for ever. Endpoints of a removed cluster are
/// forgotten: the cluster added again warms until new ones arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_gives_up_after_the_initial_fetch_timeout() {
    let a = echo_backend("a").await.port();
    let sides = synced_sides(a).await;
    let ports: Vec<(u16, u16)> = sides.iter().map(|_| (free_port(), free_port())).collect();
    let observe = |s: &Side, (gives_up, waits): (u16, u16)| {
        let port = s.port;
        async move {
            let lonely = get(&format!("http://127.0.0.1:{port}/lonely"), &[]).await;
            let late = get(&format!("http://127.0.0.1:{gives_up}/"), &[]).await;
            let patient = get(&format!("http://127.0.0.1:{waits}/"), &[]).await;
            let body = |r: &Result<support::Reply, String>| match r {
                Ok(r) => format!("{} {:?}", answered(&Ok(r.clone())), r.body),
                Err(_) => "connection failed".into(),
            };
            format!(
                "lonely: {} | late: {} | patient: {}",
                body(&lonely),
                body(&late),
                body(&patient)
            )
        }
    };
    // Each side is observed right after it ACKs, well inside its 10 s
    // timeout (the sides are pushed one after the other, so observing
    // both after both pushes could see the first one's expire). 3 s was
    // once too short on a machine busy with two builds: Envoy's ACK and
    // the three requests after it took longer than that.
    let mut before = Vec::new();
    for (s, (gives_up, waits)) in sides.iter().zip(&ports) {
        let mut lonely = eds_cluster("lonely");
        lonely["eds_cluster_config"]["eds_config"]["initial_fetch_timeout"] = json!("10s");
        let mut late = rds_listener("late", *gives_up, "never");
        late["filter_chains"][0]["filters"][0]["typed_config"]["rds"]["config_source"]
            ["initial_fetch_timeout"] = json!("10s");
        let mut patient = rds_listener("patient", *waits, "never-either");
        patient["filter_chains"][0]["filters"][0]["typed_config"]["rds"]["config_source"]
            ["initial_fetch_timeout"] = json!("0s");
        let to_lonely = json!({"match": {"prefix": "/lonely"}, "route": {"cluster": "lonely"}});
        s.xds.set(Kind::Cluster, lonely);
        s.xds.set(Kind::Listener, late);
        s.xds.set(Kind::Listener, patient);
        s.xds
            .set(Kind::RouteConfiguration, routes("local", vec![to_lonely]));
        let v = s.xds.push();
        // Both ACKs: RDS comes after LDS, and observing between them saw
        // Envoy still on the old routes (200) while weft had the new (503).
        for kind in [Kind::Listener, Kind::RouteConfiguration] {
            s.xds
                .wait_ack(s.name, kind, &v, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        before.push(observe(s, (*gives_up, *waits)).await);
    }
    assert_eq!(before[1], before[0], "while warming: weft ≠ envoy");
    assert!(
        before[0].contains("late: connection failed"),
        "{}",
        before[0]
    );
    // The timeouts end warming on each proxy's own clock (Envoy's main
    // thread, late on a loaded machine): wait until both the listener
    // and the cluster that give up have left warming, then compare
    // everything.
    let lonely = |seen: &str| seen.split(" | ").next().unwrap_or_default().to_string();
    let mut after = Vec::new();
    for ((s, p), before) in sides.iter().zip(&ports).zip(&before) {
        after.push(
            wait_for(
                &format!(
                    "{}: listener late and cluster lonely to stop warming",
                    s.name
                ),
                PATIENCE,
                async || {
                    let seen = observe(s, *p).await;
                    if seen.contains("late: connection failed") || lonely(&seen) == lonely(before) {
                        Err(seen)
                    } else {
                        Ok(seen)
                    }
                },
            )
            .await,
        );
    }
    assert_eq!(after[1], after[0], "after the timeout: weft ≠ envoy");
    assert!(after[0].contains("no healthy upstream"), "{}", after[0]);
    assert!(after[0].contains("late: 404"), "{}", after[0]);
    assert!(
        after[0].contains("patient: connection failed"),
        "{}",
        after[0]
    );
    let summaries = [
        dynamic_summary(sides[0].admin).await,
        dynamic_summary(sides[1].admin).await,
    ];
    assert_eq!(summaries[1], summaries[0], "/config_dump: weft ≠ envoy");

    // The cluster and its endpoints go; the cluster comes back and
    // warms again until endpoints are sent anew.
    for s in &sides {
        s.xds
            .set(Kind::ClusterLoadAssignment, assignment("lonely", &[a]));
        s.xds.push();
        s.synced().await;
    }
    for s in &sides {
        assert_eq!(
            answered(&s.get("/lonely").await),
            "200 from a",
            "{}",
            s.name
        );
        s.xds.remove(Kind::Cluster, "lonely");
        s.xds.remove(Kind::ClusterLoadAssignment, "lonely");
        s.xds.push();
        s.synced().await;
        s.xds.set(Kind::Cluster, eds_cluster("lonely"));
        s.xds.push();
        s.xds
            .wait_ack(s.name, Kind::Cluster, &s.xds.version(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut again = Vec::new();
    for s in &sides {
        again.push(answered(&s.get("/lonely").await));
    }
    assert_eq!(again[1], again[0], "a cluster added again: weft ≠ envoy");
    assert_eq!(again[0], "503", "the cluster must warm again");
}

/// A removed listener's open connections go on for the drain time, then
/// are closed — a TCP proxy connection and an HTTP/1.1 keep-alive
/// connection alike, in Envoy (`--drain-time-s 4`) and weft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_listeners_close_their_connections_after_the_drain_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = echo_backend("a").await.port();
    let sides = [
        Side::new("envoy", a).await.start_draining(4).await,
        Side::new("weft", a).await.start_draining(4).await,
    ];
    let tcp_ports: Vec<u16> = sides.iter().map(|_| free_port()).collect();
    for (s, port) in sides.iter().zip(&tcp_ports) {
        s.xds.set(
            Kind::Listener,
            json!({"name": "tcp", "address": support::pair::socket(*port),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {"@type": support::pair::TCP_PROXY, "stat_prefix": "tcp", "cluster": "backend"}}]}]}),
        );
        s.xds.push();
        s.synced().await;
    }
    // One HTTP/1.1 request over a connection, which stays open; the
    // answer's status line, or what happened to the connection.
    async fn ask(c: &mut tokio::net::TcpStream) -> String {
        let req = b"GET / HTTP/1.1\r\nhost: drain.test\r\n\r\n";
        if c.write_all(req).await.is_err() {
            return "write failed".into();
        }
        let mut buf = vec![0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await {
            Ok(Ok(0)) => "closed".into(),
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            Ok(Err(e)) => format!("error {:?}", e.kind()),
            Err(_) => "no answer".into(),
        }
    }
    let mut conns = Vec::new();
    for (s, tcp) in sides.iter().zip(&tcp_ports) {
        let mut http = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", *tcp))
            .await
            .unwrap();
        assert_eq!(ask(&mut http).await, "HTTP/1.1 200 OK", "{}", s.name);
        assert_eq!(ask(&mut raw).await, "HTTP/1.1 200 OK", "{} tcp", s.name);
        conns.push((http, raw));
    }
    for s in &sides {
        s.xds.remove(Kind::Listener, "tcp");
        s.xds.remove(Kind::Listener, "http");
        let v = s.xds.push();
        s.xds
            .wait_ack(s.name, Kind::Listener, &v, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Within the drain time the TCP connection still carries requests.
    let mut during = Vec::new();
    for (_, raw) in conns.iter_mut() {
        during.push(ask(raw).await);
    }
    assert_eq!(during[1], during[0], "during the drain: weft ≠ envoy");
    assert_eq!(during[0], "HTTP/1.1 200 OK");
    // Then each proxy closes both connections when its drain time is
    // up, on its own clock (Envoy's main thread, late on a loaded
    // machine): wait, without sending anything, for each connection to
    // end, and compare how it ended.
    async fn ends(c: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 8192];
        match tokio::time::timeout(PATIENCE, c.read(&mut buf)).await {
            Ok(Ok(0)) => "closed".into(),
            Ok(Ok(n)) => format!("data {:?}", String::from_utf8_lossy(&buf[..n])),
            Ok(Err(e)) => format!("error {:?}", e.kind()),
            Err(_) => format!("still open after {:?}", PATIENCE),
        }
    }
    let mut after = Vec::new();
    for (http, raw) in conns.iter_mut() {
        after.push(format!(
            "http: {} | tcp: {}",
            ends(http).await,
            ends(raw).await
        ));
    }
    let norm = |s: &str| s.replace("error ConnectionReset", "closed");
    assert_eq!(
        norm(&after[1]),
        norm(&after[0]),
        "after the drain time: weft ≠ envoy"
    );
    assert_eq!(norm(&after[0]), "http: closed | tcp: closed");
}

/// What weft cannot build while applying (here a protocol option it does
/// not implement, which Envoy would take) is refused on its own: the
/// NACK names it, the cluster beside it is added, and a cluster the
/// update changed keeps its last good version. Envoy has no
/// counterpart for this one, so weft runs alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_refuses_what_it_cannot_build_on_its_own() {
    let a = echo_backend("a").await.port();
    let s = Side::new("weft", a).await.start().await;
    s.synced().await;
    let with_options = |name: &str| {
        let mut c = eds_cluster(name);
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "use_downstream_protocol_config": {}
            }
        });
        c
    };
    s.xds.set(Kind::Cluster, eds_cluster("beside"));
    s.xds.set(Kind::Cluster, with_options("unbuildable"));
    // The cluster the routes use, changed into one weft cannot build.
    s.xds.set(Kind::Cluster, with_options("backend"));
    s.xds.push();
    let detail = s
        .xds
        .wait_nack(s.name, Kind::Cluster, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for name in ["unbuildable", "backend"] {
        assert!(
            detail.contains(&format!("Cluster {name:?}"))
                && detail.contains("use_downstream_protocol_config"),
            "{detail}"
        );
    }
    s.xds
        .set(Kind::ClusterLoadAssignment, assignment("beside", &[a]));
    s.xds.push();
    s.xds
        .wait_ack(s.name, Kind::ClusterLoadAssignment, &s.xds.version(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let clusters = get(&format!("http://127.0.0.1:{}/clusters", s.admin), &[])
        .await
        .unwrap()
        .body;
    assert!(clusters.contains("beside::"), "{clusters}");
    assert!(!clusters.contains("unbuildable::"), "{clusters}");
    // The old `backend` still routes.
    assert_eq!(answered(&s.get("/").await), "200 from a");
}
