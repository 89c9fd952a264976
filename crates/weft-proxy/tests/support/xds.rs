//! Two proxies on two fake control planes holding the same resources:
//! Envoy and weft each connect to their own `FakeXds` (only the
//! listener's port differs), so every push reaches both alike.

use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::wait::{wait_for, PATIENCE};
use weft_testkit::xds::FakeXds;
use weft_xds::Kind;

use super::pair::{socket, HCM, ROUTER};
use super::{free_port, get, Envoy};

/// How long a proxy gets to ACK or NACK a push.
pub const WAIT: Duration = weft_testkit::wait::PATIENCE;

pub use weft_testkit::xds::ads_bootstrap;

pub fn eds_cluster(name: &str) -> Value {
    json!({
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
    })
}

pub fn assignment(name: &str, ports: &[u16]) -> Value {
    let eps: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": socket(*p)}}))
        .collect();
    json!({"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]})
}

/// An HTTP listener on `port` whose routes come from RDS `routes`.
pub fn rds_listener(name: &str, port: u16, routes: &str) -> Value {
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

pub fn routes(name: &str, extra: Vec<Value>) -> Value {
    let mut r = extra;
    r.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "backend"}}));
    json!({"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": r}]})
}

/// One proxy with its own control plane.
pub struct Side {
    pub name: &'static str,
    pub xds: FakeXds,
    pub port: u16,
    pub admin: u16,
    pub envoy: Option<Envoy>,
    pub weft: Option<weft_proxy::Running>,
}

impl Side {
    pub async fn new(name: &'static str, backend: u16) -> Side {
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

    pub async fn start(self) -> Side {
        self.start_with("GRPC").await
    }

    /// Starts the proxy speaking incremental (delta) xDS.
    pub async fn start_delta(self) -> Side {
        self.start_with("DELTA_GRPC").await
    }

    /// Starts the proxy with connections of replaced or removed
    /// listeners closed `secs` after the drain began (Envoy's
    /// `--drain-time-s`).
    pub async fn start_draining(self, secs: u64) -> Side {
        let side = self
            .start_with_flags("GRPC", &["--drain-time-s", &secs.to_string()])
            .await;
        if let Some(w) = &side.weft {
            w.shared
                .set_drain_time(std::time::Duration::from_secs(secs));
        }
        side
    }

    async fn start_with(self, api_type: &str) -> Side {
        self.start_with_flags(api_type, &[]).await
    }

    async fn start_with_flags(mut self, api_type: &str, flags: &[&str]) -> Side {
        let text = ads_bootstrap(self.name, self.admin, self.xds.addr).replace(
            "\"api_type\":\"GRPC\"",
            &format!("\"api_type\":\"{api_type}\""),
        );
        assert!(text.contains(api_type), "{text}");
        if self.name == "envoy" {
            self.envoy = Some(super::start_envoy_with(&text, self.admin, flags).await);
        } else {
            self.weft = Some(start_weft_xds(&text).await);
        }
        self
    }

    /// Waits until the proxy has ACKed the control plane's current
    /// version of every type.
    pub async fn synced(&self) {
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

    /// Sets the given resources, pushes them and waits for the ACKs.
    pub async fn apply(&self, resources: &[(Kind, Value)]) {
        for (kind, r) in resources {
            self.xds.set(*kind, r.clone());
        }
        self.xds.push();
        self.synced().await;
    }

    /// One request to the proxy's listener (HTTP/1.1, fresh connection).
    pub async fn request(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<super::Reply, String> {
        get(&format!("http://127.0.0.1:{}{path}", self.port), headers).await
    }

    /// A counter from the proxy's /stats (0 when absent).
    pub async fn stat(&self, name: &str) -> u64 {
        let r = get(&format!("http://127.0.0.1:{}/stats", self.admin), &[])
            .await
            .unwrap_or_else(|e| panic!("{}: /stats: {e}", self.name));
        r.body
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Waits until the statistic `name` is `what` says (`ok`), and
    /// returns it: Envoy counts some effects, such as an outlier
    /// ejection, on its main thread, after the request that caused them
    /// has been answered, and a loaded machine runs that thread late.
    pub async fn stat_when(&self, name: &str, what: &str, ok: impl Fn(u64) -> bool) -> u64 {
        wait_for(
            &format!("{}: {name} {what}", self.name),
            PATIENCE,
            async || {
                let v = self.stat(name).await;
                if ok(v) {
                    Ok(v)
                } else {
                    Err(v)
                }
            },
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Result<super::Reply, String> {
        get(&format!("http://127.0.0.1:{}{path}", self.port), &[]).await
    }
}

pub async fn start_weft_xds(text: &str) -> weft_proxy::Running {
    let boot = weft_envoy::parse_bootstrap("test", text).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = weft_proxy::Snapshot::compile(&boot).await.unwrap();
    let running = weft_proxy::start(snapshot).await.unwrap();
    weft_proxy::xds::spawn(&running.shared, &boot).unwrap();
    running
}
