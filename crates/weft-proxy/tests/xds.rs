//! Live configuration over ADS, side by side with Envoy: each proxy
//! connects to its own fake control plane (weft-testkit's real gRPC
//! server) holding the same resources — only the listener's port
//! differs — and both must ACK the same versions, NACK the same bad
//! updates, and route each request alike after every push.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::pair::{socket, HCM, HTTP_OPTIONS, ROUTER};
use support::{echo_backend, free_port, get, start_envoy, Envoy};
use weft_testkit::xds::FakeXds;
use weft_xds::Kind;

const WAIT: Duration = Duration::from_secs(20);

/// A bootstrap that takes everything over ADS from `xds`.
fn ads_bootstrap(node: &str, admin: u16, xds: SocketAddr) -> String {
    json!({
        "node": {"id": node, "cluster": "test"},
        "admin": {"address": socket(admin)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": true
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": HTTP_OPTIONS,
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            },
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": xds.port()}}}}
            ]}]}
        }]}
    })
    .to_string()
}

fn eds_cluster(name: &str) -> Value {
    json!({
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
    })
}

fn assignment(name: &str, ports: &[u16]) -> Value {
    let eps: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": socket(*p)}}))
        .collect();
    json!({"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]})
}

/// An HTTP listener on `port` whose routes come from RDS `routes`.
fn rds_listener(name: &str, port: u16, routes: &str) -> Value {
    json!({
        "name": name,
        "address": socket(port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                "rds": {"route_config_name": routes, "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]
            }
        }]}]
    })
}

fn routes(name: &str, extra: Vec<Value>) -> Value {
    let mut r = extra;
    r.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "backend"}}));
    json!({"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": r}]})
}

/// One proxy with its own control plane.
struct Side {
    name: &'static str,
    xds: FakeXds,
    port: u16,
    admin: u16,
    envoy: Option<Envoy>,
    weft: Option<weft_proxy::Running>,
}

impl Side {
    async fn new(name: &'static str, backend: u16) -> Side {
        let xds = FakeXds::start().await;
        let port = free_port();
        xds.set(Kind::Cluster, eds_cluster("backend"));
        xds.set(
            Kind::ClusterLoadAssignment,
            assignment("backend", &[backend]),
        );
        xds.set(Kind::Listener, rds_listener("http", port, "local"));
        xds.set(Kind::RouteConfiguration, routes("local", vec![]));
        xds.push();
        Side {
            name,
            xds,
            port,
            admin: free_port(),
            envoy: None,
            weft: None,
        }
    }

    async fn start(mut self) -> Side {
        let text = ads_bootstrap(self.name, self.admin, self.xds.addr);
        if self.name == "envoy" {
            self.envoy = Some(start_envoy(&text, self.admin).await);
        } else {
            self.weft = Some(start_weft_xds(&text).await);
        }
        self
    }

    /// Waits until the proxy has ACKed the control plane's current
    /// version of every type.
    async fn synced(&self) {
        let v = self.xds.version();
        for kind in [
            Kind::Cluster,
            Kind::ClusterLoadAssignment,
            Kind::Listener,
            Kind::RouteConfiguration,
        ] {
            self.xds
                .wait_ack(self.name, kind, &v, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    async fn get(&self, path: &str) -> Result<support::Reply, String> {
        get(&format!("http://127.0.0.1:{}{path}", self.port), &[]).await
    }
}

async fn start_weft_xds(text: &str) -> weft_proxy::Running {
    let boot = weft_envoy::parse_bootstrap("test", text).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = weft_proxy::Snapshot::compile(&boot).await.unwrap();
    let running = weft_proxy::start(snapshot).await.unwrap();
    weft_proxy::xds::spawn(&running.shared, &boot).unwrap();
    running
}

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
    let a = echo_backend("a").await.port();
    let b = echo_backend("b").await.port();
    let sides = [
        Side::new("envoy", a).await.start().await,
        Side::new("weft", a).await.start().await,
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
    let dumps = [
        dynamic_summary(sides[0].admin).await,
        dynamic_summary(sides[1].admin).await,
    ];
    assert_eq!(
        dumps[0], dumps[1],
        "/config_dump's dynamic resources (Envoy, weft)"
    );
    assert!(
        dumps[1].contains(&"listener http active v1".to_string()),
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
    // is refused by both; what was accepted keeps serving.
    for s in &sides {
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
        let mut gone = false;
        for _ in 0..100 {
            if s.get("/").await.is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "{} still serves a removed listener", s.name);
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
    let sides = [
        Side::new("envoy", a).await.start().await,
        Side::new("weft", a).await.start().await,
    ];
    for s in &sides {
        s.synced().await;
    }
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
        let mut last = String::new();
        for _ in 0..100 {
            last = answered(&get(&format!("http://127.0.0.1:{port}/"), &[]).await);
            if last == "200 from a" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(last, "200 from a", "{}", s.name);
    }
}
