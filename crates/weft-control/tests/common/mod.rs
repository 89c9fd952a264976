//! Helpers the control plane's tests share: Bookinfo's reference YAML,
//! a registry of echo backends, snapshots from YAML text, and a weft
//! proxy connected as a sidecar.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use weft_control::server::Snapshot;
use weft_control::{Context, Mesh};

pub fn shared_dir() -> PathBuf {
    match std::env::var("WEFT_SHARED") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

pub fn bookinfo(file: &str) -> String {
    let path = shared_dir()
        .join("reference/istio/bookinfo/networking")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); set WEFT_SHARED", path.display()))
}

/// Bookinfo's services on `port`, each instance an echo backend named
/// after its workload; two client workloads whose sidecars bind their
/// egress listeners on 127.0.0.2 (Envoy) and 127.0.0.3 (weft); the
/// ingress gateway's workload (`istio: ingressgateway`).
pub fn registry(port: u16, backends: &BTreeMap<&str, u16>) -> String {
    let mut out = String::new();
    for svc in ["productpage", "details", "reviews", "ratings"] {
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {svc}, namespace: default}}
spec:
  hosts: [{svc}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {svc}}}}}
"
        );
    }
    for (workload, backend) in backends {
        let (app, version) = workload.rsplit_once('-').expect("app-version");
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {workload}, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{http: {backend}}}
  labels: {{app: {app}, version: {version}}}
"
        );
    }
    out += "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  address: 127.0.0.1
  labels: {istio: ingressgateway}
";
    for (client, ip) in [("client-envoy", "127.0.0.2"), ("client-weft", "127.0.0.3")] {
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {client}, namespace: default}}
spec:
  address: {ip}
  labels: {{app: {client}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {client}, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: {client}}}}}
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {ip}
    captureMode: NONE
    hosts: [\"./*\"]
"
        );
    }
    out
}

pub fn snapshot(yaml: &str, version: u64) -> Snapshot {
    let loaded = weft_config::load_str("mesh.yaml", yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    for r in &loaded.resources {
        let v = weft_config::validate(&r.object);
        assert!(v.is_empty(), "{}: {v:?}", r.display_name());
    }
    Snapshot {
        ctx: Arc::new(Context::build(&loaded.resources, Mesh::default())),
        version,
    }
}

/// A weft proxy connected to `xds` as `node` (a sidecar or a gateway).
pub async fn weft_sidecar(node: &str, xds: std::net::SocketAddr) -> weft_proxy::Running {
    weft_sidecar_with(node, xds, "GRPC").await
}

/// The bootstrap of a proxy speaking `api_type` (GRPC or DELTA_GRPC).
pub fn bootstrap(node: &str, admin: u16, xds: std::net::SocketAddr, api_type: &str) -> String {
    let text = weft_testkit::xds::ads_bootstrap(node, admin, xds);
    let text = text.replace(
        "\"api_type\":\"GRPC\"",
        &format!("\"api_type\":\"{api_type}\""),
    );
    assert!(text.contains(api_type), "{text}");
    text
}

/// [`weft_sidecar`] speaking `api_type`.
pub async fn weft_sidecar_with(
    node: &str,
    xds: std::net::SocketAddr,
    api_type: &str,
) -> weft_proxy::Running {
    weft_sidecar_on(node, weft_testkit::envoy::free_port(), xds, api_type).await
}

/// [`weft_sidecar_with`] with its admin on `admin`.
pub async fn weft_sidecar_on(
    node: &str,
    admin: u16,
    xds: std::net::SocketAddr,
    api_type: &str,
) -> weft_proxy::Running {
    let text = bootstrap(node, admin, xds, api_type);
    let boot = weft_envoy::parse_bootstrap("weft", &text).unwrap();
    let weft = weft_proxy::start(weft_proxy::Snapshot::compile(&boot).await.unwrap())
        .await
        .unwrap();
    weft_proxy::xds::spawn(&weft.shared, &boot).unwrap();
    weft
}

/// An echo backend per Bookinfo workload, by workload name.
pub async fn backends() -> BTreeMap<&'static str, u16> {
    let mut backends = BTreeMap::new();
    for w in [
        "productpage-v1",
        "details-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
        "ratings-v1",
    ] {
        backends.insert(w, weft_testkit::http::echo_backend(w).await.port());
    }
    backends
}

/// A gateway proxy of one side of a parity test: Envoy or weft.
pub struct Gateway {
    envoy: Option<(weft_testkit::envoy::Envoy, u16)>,
    weft: Option<weft_proxy::Running>,
}

impl Gateway {
    /// `side` ("envoy" or "weft") connected to `xds` as `node`.
    pub async fn start(side: &str, node: &str, xds: std::net::SocketAddr) -> Gateway {
        if side == "envoy" {
            let admin = weft_testkit::envoy::free_port();
            let text = weft_testkit::xds::ads_bootstrap(node, admin, xds);
            let envoy = weft_testkit::envoy::start_envoy(&text, admin).await;
            Gateway {
                envoy: Some((envoy, admin)),
                weft: None,
            }
        } else {
            Gateway {
                envoy: None,
                weft: Some(weft_sidecar(node, xds).await),
            }
        }
    }

    /// Stops the proxy and waits until `port` can be bound again, so the
    /// next side's gateway can listen there.
    pub async fn stop(self, port: u16) {
        if let Some((e, admin)) = self.envoy {
            e.quit(admin).await;
        }
        if let Some(w) = self.weft {
            w.shared.shutdown();
        }
        weft_testkit::wait::wait_until(
            &format!("port {port} free again"),
            weft_testkit::wait::PATIENCE,
            || async { std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() },
        )
        .await;
    }
}

/// Waits until every proxy in `nodes` has been sent what snapshot
/// `version` gives it — `types` xDS types — and has accepted all of it;
/// a NACK fails.
pub async fn wait_synced(
    server: &weft_control::server::AdsServer,
    version: u64,
    nodes: &[&str],
    types: usize,
) {
    let deadline = tokio::time::Instant::now() + weft_testkit::wait::PATIENCE;
    loop {
        let status = server.status();
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
        let done = nodes.iter().all(|node| {
            status.iter().any(|p| {
                &p.id == node
                    && p.snapshot == version
                    && p.types.len() == types
                    && p.types.values().all(|t| t.sent == t.acked)
            })
        });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxies did not sync version {version}: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `weft control` on a watched directory holding Bookinfo's registry,
/// its gateway on a free port, and `security` (policies, mesh config).
pub struct GatewayMesh {
    pub control: weft_control::run::Running,
    pub gw_port: u16,
    _dir: weft_testkit::envoy::TempDir,
}

pub async fn bookinfo_gateway_control(name: &str, security: &str) -> GatewayMesh {
    let backends = backends().await;
    let gw_port = weft_testkit::envoy::free_port();
    let dir = weft_testkit::envoy::TempDir::new(name);
    std::fs::write(dir.0.join("registry.yaml"), registry(9080, &backends)).unwrap();
    std::fs::write(
        dir.0.join("gateway.yaml"),
        bookinfo("bookinfo-gateway.yaml").replace("number: 8080", &format!("number: {gw_port}")),
    )
    .unwrap();
    std::fs::write(dir.0.join("security.yaml"), security).unwrap();
    let mut opts = weft_control::run::Options::new(&dir.0);
    opts.xds = "127.0.0.1:0".parse().unwrap();
    opts.debug = "127.0.0.1:0".parse().unwrap();
    GatewayMesh {
        control: weft_control::run::start(opts).await.unwrap(),
        gw_port,
        _dir: dir,
    }
}
