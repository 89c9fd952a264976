//! Prometheus HTTP service discovery (`GET /debug/prometheus-targets`
//! on the debug endpoint): the control plane itself and every
//! connected proxy, as target groups
//! `[{"targets": ["host:port"], "labels": {...}}]`, labelled as Istio's
//! addon Prometheus labels what it scrapes (`namespace`, `pod`, and the
//! pod labels `app`, `version`), so dashboards that filter on them
//! (`app="istiod"`) work.
//!
//! What a proxy's target is made of, from its node metadata (Istio's
//! keys, as pilot-agent sends them):
//! - host: the first of `INSTANCE_IPS` (a comma-separated list), else
//!   the IP in the node id (`sidecar~IP~POD.NS~NS.svc.cluster.local`);
//! - port and path: `ENVOY_PROMETHEUS_PORT` (Envoy's merged stats,
//!   15090 by default) with `/stats/prometheus`. A weft proxy started
//!   from `weft_control::bootstrap` sends no `ENVOY_PROMETHEUS_PORT`
//!   but its admin port (`PROXY_CONFIG.proxyAdminPort`), whose admin
//!   endpoint serves `/stats/prometheus` on 127.0.0.1 only: its target
//!   is then `127.0.0.1:ADMIN`, reachable by a Prometheus on the same
//!   host (as with `weft up`). With neither, 15090 on the host;
//! - `namespace`: `NAMESPACE`, else the node id's namespace;
//! - `pod`: `NAME`, else the node id's `POD`;
//! - `app`, `version`: those keys of `LABELS`, when present;
//! - `workload`: `WORKLOAD_NAME`, when present.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind as V;
use envoy_types::pb::google::protobuf::Value;
use serde::Serialize;

/// The namespace weft's control plane counts as its own (istiod's).
pub const SYSTEM_NAMESPACE: &str = "istio-system";

/// Envoy's Prometheus port in an Istio sidecar (`ENVOY_PROMETHEUS_PORT`).
const ENVOY_PROMETHEUS_PORT: u16 = 15090;

/// One target group of Prometheus' HTTP service discovery.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A connected proxy's metrics endpoint and labels, read from its node
/// when it connects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyTarget {
    /// `host:port`.
    pub address: String,
    pub namespace: String,
    pub pod: String,
    pub app: Option<String>,
    pub version: Option<String>,
    pub workload: Option<String>,
}

fn string(v: &Value) -> Option<String> {
    match &v.kind {
        Some(V::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn port(v: &Value) -> Option<u16> {
    match &v.kind {
        Some(V::NumberValue(n)) => u16::try_from(*n as i64).ok(),
        // Protobuf JSON may carry integers as strings.
        Some(V::StringValue(s)) => s.parse().ok(),
        _ => None,
    }
    .filter(|p| *p != 0)
}

/// `host:port`, bracketing an IPv6 host.
fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl ProxyTarget {
    /// The target `node` announces; `None` for a node id that is not
    /// Istio's shape and no `INSTANCE_IPS`.
    pub fn from_node(node: &Node) -> Option<ProxyTarget> {
        let empty = Default::default();
        let meta = node.metadata.as_ref().map_or(&empty, |m| &m.fields);
        let key = |k: &str| meta.get(k).and_then(string);
        // sidecar~IP~POD.NS~NS.svc.cluster.local
        let parts: Vec<&str> = node.id.split('~').collect();
        let (id_ip, id_pod, id_ns) = match parts.as_slice() {
            [_, ip, pod_ns, _] => {
                let (pod, ns) = pod_ns.split_once('.').unwrap_or((pod_ns, ""));
                (Some(*ip), Some(pod), Some(ns))
            }
            _ => (None, None, None),
        };
        let ip = key("INSTANCE_IPS")
            .and_then(|ips| {
                ips.split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(String::from)
            })
            .or(id_ip.filter(|s| !s.is_empty()).map(String::from))?;
        let admin = meta
            .get("PROXY_CONFIG")
            .and_then(|c| match &c.kind {
                Some(V::StructValue(s)) => s.fields.get("proxyAdminPort"),
                _ => None,
            })
            .and_then(port);
        let address = match (meta.get("ENVOY_PROMETHEUS_PORT").and_then(port), admin) {
            (Some(p), _) => join(&ip, p),
            (None, Some(admin)) => join("127.0.0.1", admin),
            (None, None) => join(&ip, ENVOY_PROMETHEUS_PORT),
        };
        let labels = meta.get("LABELS").and_then(|l| match &l.kind {
            Some(V::StructValue(s)) => Some(&s.fields),
            _ => None,
        });
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(string);
        Some(ProxyTarget {
            address,
            namespace: key("NAMESPACE")
                .or(id_ns.map(String::from))
                .unwrap_or_default(),
            pod: key("NAME").or(id_pod.map(String::from)).unwrap_or_default(),
            app: label("app"),
            version: label("version"),
            workload: key("WORKLOAD_NAME"),
        })
    }

    fn group(&self) -> TargetGroup {
        let mut labels: BTreeMap<String, String> = [
            ("__metrics_path__", "/stats/prometheus"),
            ("namespace", self.namespace.as_str()),
            ("pod", self.pod.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in [
            ("app", &self.app),
            ("version", &self.version),
            ("workload", &self.workload),
        ] {
            if let Some(v) = v {
                labels.insert(k.to_string(), v.clone());
            }
        }
        TargetGroup {
            targets: vec![self.address.clone()],
            labels,
        }
    }
}

/// This host's name (`/proc/sys/kernel/hostname`), `localhost` when it
/// cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The control plane's own group: its debug endpoint (the host name
/// when it listens on every address), as istiod's pod is labelled.
pub fn control_plane(debug: SocketAddr, host: &str) -> TargetGroup {
    let address = if debug.ip().is_unspecified() {
        join(host, debug.port())
    } else {
        debug.to_string()
    };
    let labels = [
        ("__metrics_path__", "/metrics".to_string()),
        ("app", "istiod".to_string()),
        ("istio", "pilot".to_string()),
        ("namespace", SYSTEM_NAMESPACE.to_string()),
        ("pod", format!("istiod-{host}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    TargetGroup {
        targets: vec![address],
        labels,
    }
}

/// Every group: the control plane's, then one per proxy (proxies that
/// share an address — reconnected streams — once).
pub fn groups<'a>(
    debug: SocketAddr,
    host: &str,
    proxies: impl IntoIterator<Item = &'a ProxyTarget>,
) -> Vec<TargetGroup> {
    let mut seen = std::collections::BTreeSet::new();
    std::iter::once(control_plane(debug, host))
        .chain(
            proxies
                .into_iter()
                .filter(|p| seen.insert(p.address.clone()))
                .map(ProxyTarget::group),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Struct;

    fn s(v: &str) -> Value {
        Value {
            kind: Some(V::StringValue(v.into())),
        }
    }

    fn node(id: &str, fields: Vec<(&str, Value)>) -> Node {
        Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_istio_sidecar_is_scraped_on_its_prometheus_port() {
        let labels = Value {
            kind: Some(V::StructValue(Struct {
                fields: [("app", s("reviews")), ("version", s("v2"))]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            })),
        };
        let n = node(
            "sidecar~10.1.2.3~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local",
            vec![
                ("INSTANCE_IPS", s("10.1.2.3,fe80::1")),
                (
                    "ENVOY_PROMETHEUS_PORT",
                    Value {
                        kind: Some(V::NumberValue(15090.0)),
                    },
                ),
                ("NAMESPACE", s("bookinfo")),
                ("NAME", s("reviews-v2-abc")),
                ("WORKLOAD_NAME", s("reviews-v2")),
                ("LABELS", labels),
            ],
        );
        let t = ProxyTarget::from_node(&n).unwrap();
        let g = serde_json::to_value(t.group()).unwrap();
        assert_eq!(
            g,
            serde_json::json!({"targets": ["10.1.2.3:15090"], "labels": {
                "__metrics_path__": "/stats/prometheus", "namespace": "bookinfo",
                "pod": "reviews-v2-abc", "app": "reviews", "version": "v2",
                "workload": "reviews-v2"}})
        );
    }

    #[test]
    fn without_metadata_the_node_id_and_defaults_are_used() {
        let t = ProxyTarget::from_node(&node(
            "router~fd00::7~gw-1.istio-system~istio-system.svc.cluster.local",
            vec![],
        ))
        .unwrap();
        assert_eq!(t.address, "[fd00::7]:15090");
        assert_eq!(
            (t.pod.as_str(), t.namespace.as_str()),
            ("gw-1", "istio-system")
        );
        assert_eq!((t.app, t.version), (None, None));
        assert_eq!(ProxyTarget::from_node(&node("not-istio", vec![])), None);
    }

    #[test]
    fn a_weft_proxy_is_scraped_on_its_admin_port_on_loopback() {
        // What `weft up` and `weft bootstrap` give a weft proxy.
        let who = crate::bootstrap::Identity {
            kind: crate::gen::ProxyKind::Sidecar,
            name: "reviews-v1".into(),
            namespace: "bookinfo".into(),
            ip: "10.0.0.9".into(),
            service_account: None,
            labels: [("app".to_string(), "reviews".to_string())]
                .into_iter()
                .collect(),
        };
        let boot = crate::bootstrap::message(
            &who,
            &crate::bootstrap::Options {
                xds: "127.0.0.1:15010".parse().unwrap(),
                admin: 15123,
                sds_socket: None,
                prometheus: 0,
            },
        );
        let t = ProxyTarget::from_node(boot.node.as_ref().unwrap()).unwrap();
        assert_eq!(
            t,
            ProxyTarget {
                address: "127.0.0.1:15123".into(),
                namespace: "bookinfo".into(),
                pod: "reviews-v1".into(),
                // The bootstrap's WORKLOAD_NAME and LABELS.
                app: Some("reviews".into()),
                version: None,
                workload: Some("reviews-v1".into()),
            }
        );
    }

    #[test]
    fn the_control_plane_listening_everywhere_is_named_by_host() {
        let g = control_plane("0.0.0.0:15014".parse().unwrap(), "node-a");
        assert_eq!(g.targets, ["node-a:15014"]);
        assert_eq!(g.labels["pod"], "istiod-node-a");
        assert_eq!(g.labels["app"], "istiod");
        assert_eq!(g.labels["istio"], "pilot");
        assert_eq!(g.labels["namespace"], "istio-system");
        let g = control_plane("127.0.0.1:1234".parse().unwrap(), "node-a");
        assert_eq!(g.targets, ["127.0.0.1:1234"]);
    }
}
