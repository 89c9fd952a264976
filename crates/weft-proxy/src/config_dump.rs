//! `/config_dump`: the running configuration in the shape of Envoy's
//! `envoy.admin.v3.ConfigDump`, built from the bootstrap as read. Static
//! resources only until xDS arrives (issue 4 adds dynamic ones).

use std::time::SystemTime;

use serde_json::{json, Value};

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";

pub fn build(source: &Value, loaded: SystemTime) -> Value {
    let at = crate::access_log::format_time(loaded);
    let resources = |kind: &str| -> Vec<Value> {
        source["static_resources"][kind]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let static_clusters: Vec<Value> = resources("clusters")
        .into_iter()
        .map(|c| {
            json!({
                "cluster": with_type(c, "type.googleapis.com/envoy.config.cluster.v3.Cluster"),
                "last_updated": at,
            })
        })
        .collect();
    let static_listeners: Vec<Value> = resources("listeners")
        .into_iter()
        .map(|l| {
            json!({
                "listener": with_type(l, "type.googleapis.com/envoy.config.listener.v3.Listener"),
                "last_updated": at,
            })
        })
        .collect();
    json!({"configs": [
        {"@type": format!("{ADMIN}BootstrapConfigDump"), "bootstrap": source, "last_updated": at},
        {"@type": format!("{ADMIN}ClustersConfigDump"), "static_clusters": static_clusters},
        {"@type": format!("{ADMIN}ListenersConfigDump"), "static_listeners": static_listeners},
        {"@type": format!("{ADMIN}RoutesConfigDump")},
        {"@type": format!("{ADMIN}SecretsConfigDump")},
    ]})
}

fn with_type(mut v: Value, type_url: &str) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("@type".into(), json!(type_url));
    }
    v
}
