//! One bootstrap, two proxies: builds Envoy bootstraps from JSON pieces
//! and starts Envoy and weft on the same text, each on its own ports.

use serde_json::{json, Value};

use super::{free_port, start_envoy, Envoy};

pub const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub const HTTP_OPTIONS: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// YAML text (as written in tests) to JSON.
pub fn yaml(text: &str) -> Value {
    weft_yaml::parse_document(text, &weft_yaml::Limits::default())
        .unwrap_or_else(|e| panic!("test YAML: {e}\n{text}"))
        .map(|n| n.to_json())
        .unwrap_or(Value::Null)
}

/// A STATIC cluster with one endpoint on 127.0.0.1; `h2` speaks HTTP/2
/// upstream.
pub fn static_cluster(name: &str, port: u16, h2: bool) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
        }
    });
    if h2 {
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    c
}

pub fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// A bootstrap with one HTTP listener: an HTTP connection manager with
/// the router filter, `hcm` merged into it, and `route_config` inline.
pub fn http_bootstrap(
    listen: u16,
    admin: u16,
    hcm: &Value,
    route_config: &Value,
    clusters: &[Value],
) -> String {
    let mut h = json!({
        "@type": HCM,
        "stat_prefix": "main",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": route_config,
    });
    if let Value::Object(extra) = hcm {
        for (k, v) in extra {
            h[k] = v.clone();
        }
    }
    bootstrap(
        admin,
        vec![json!({
            "name": "main",
            "address": socket(listen),
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": h}]}]
        })],
        clusters,
    )
}

pub fn bootstrap(admin: u16, listeners: Vec<Value>, clusters: &[Value]) -> String {
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    })
    .to_string()
}

/// weft on a bootstrap Envoy has already accepted.
pub async fn start_weft(text: &str) -> weft_proxy::Running {
    let boot = weft_envoy::parse_bootstrap("test", text)
        .unwrap_or_else(|e| panic!("weft rejects a bootstrap Envoy runs: {e}\n{text}"));
    let snapshot = weft_proxy::Snapshot::compile(&boot)
        .await
        .unwrap_or_else(|e| panic!("weft rejects a bootstrap Envoy runs: {e}\n{text}"));
    weft_proxy::start(snapshot).await.expect("weft starts")
}

/// Envoy and weft, each running the bootstrap `make(listen, admin)`.
pub struct Pair {
    pub envoy: Envoy,
    pub envoy_port: u16,
    pub envoy_admin: u16,
    pub weft: weft_proxy::Running,
    pub weft_port: u16,
    pub weft_admin: u16,
}

impl Pair {
    pub async fn start(make: impl Fn(u16, u16) -> String) -> Pair {
        let (envoy_port, envoy_admin) = (free_port(), free_port());
        let envoy = start_envoy(&make(envoy_port, envoy_admin), envoy_admin).await;
        let (weft_port, weft_admin) = (free_port(), free_port());
        let weft = start_weft(&make(weft_port, weft_admin)).await;
        Pair {
            envoy,
            envoy_port,
            envoy_admin,
            weft,
            weft_port,
            weft_admin,
        }
    }

    pub fn stop(self) {
        self.weft.shared.shutdown();
    }

    /// Stops both proxies and returns their access log files' text
    /// (`log(admin port)` is where each logs), once each has `lines`
    /// lines (or the tests' patience runs out): Envoy flushes its access
    /// log file every 10 s, and on exit.
    pub async fn stop_and_read_logs(
        self,
        log: impl Fn(u16) -> std::path::PathBuf,
        lines: usize,
    ) -> (String, String) {
        let (envoy_log, weft_log) = (log(self.envoy_admin), log(self.weft_admin));
        self.envoy.quit(self.envoy_admin).await;
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let start = std::time::Instant::now();
        while start.elapsed() < weft_testkit::wait::PATIENCE {
            if read(&envoy_log).lines().count() >= lines && read(&weft_log).lines().count() >= lines
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.weft.shared.shutdown();
        (read(&envoy_log), read(&weft_log))
    }
}

/// Envoy and weft sending every request to one echo backend `a`.
pub async fn pair_to_echo() -> Pair {
    let a = super::echo_backend("a").await.port();
    let routes = yaml(
        "virtual_hosts: [{name: all, domains: [\"*\"], routes: [{match: {prefix: /}, route: {cluster: a}}]}]",
    );
    Pair::start(|listen, admin| {
        http_bootstrap(
            listen,
            admin,
            &json!({}),
            &routes,
            &[static_cluster("a", a, false)],
        )
    })
    .await
}

/// Sends each (path, headers) request, with `host`, to each port in turn.
pub async fn send_each(ports: [u16; 2], host: &str, requests: &[(&str, &[(&str, &str)])]) {
    for port in ports {
        for (path, headers) in requests {
            let mut h = headers.to_vec();
            h.push(("host", host));
            super::request("GET", &format!("http://127.0.0.1:{port}{path}"), &h, false)
                .await
                .unwrap();
        }
    }
}
