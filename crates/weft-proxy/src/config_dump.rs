//! `/config_dump`: the running configuration in the shape of Envoy's
//! `envoy.admin.v3.ConfigDump`: static resources from the bootstrap as
//! read, dynamic ones as xDS delivered them (decoded from their protobuf
//! bytes only when asked for), with versions and warming state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};
use weft_xds::Kind;

/// A resource as the control plane delivered it, with the version of
/// the response that brought it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub version: String,
    pub bytes: Arc<[u8]>,
    pub updated: std::time::SystemTime,
}

/// What /config_dump shows of the dynamic configuration.
#[derive(Debug, Default)]
pub struct XdsDump {
    pub delivered: BTreeMap<Kind, Arc<BTreeMap<String, Delivered>>>,
    /// Type versions last accepted.
    pub versions: BTreeMap<Kind, String>,
    pub warming_listeners: BTreeSet<String>,
    pub warming_clusters: BTreeSet<String>,
}

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";

pub fn build(
    source: &Value,
    loaded: SystemTime,
    xds: Option<&XdsDump>,
    secrets: &crate::transport::Secrets,
) -> Value {
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
    let mut clusters =
        json!({"@type": format!("{ADMIN}ClustersConfigDump"), "static_clusters": static_clusters});
    let mut listeners = json!({"@type": format!("{ADMIN}ListenersConfigDump"), "static_listeners": static_listeners});
    let mut routes = json!({"@type": format!("{ADMIN}RoutesConfigDump")});
    if let Some(x) = xds {
        dynamic(x, &mut clusters, &mut listeners, &mut routes);
    }
    json!({"configs": [
        {"@type": format!("{ADMIN}BootstrapConfigDump"), "bootstrap": source, "last_updated": at},
        clusters,
        listeners,
        routes,
        secrets_dump(&resources("secrets"), &at, secrets),
    ]})
}

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// `SecretsConfigDump`: the bootstrap's static secrets, and the SDS
/// secrets contexts name — active once delivered (with the version that
/// brought them), warming until then — each with its private parts
/// redacted as Envoy redacts them.
fn secrets_dump(statics: &[Value], at: &str, secrets: &crate::transport::Secrets) -> Value {
    let static_secrets: Vec<Value> = statics
        .iter()
        .map(|s| {
            json!({
                "name": s["name"],
                "last_updated": at,
                "secret": redacted(with_type(s.clone(), SECRET_TYPE)),
            })
        })
        .collect();
    let (mut active, mut warming) = (Vec::new(), Vec::new());
    for l in secrets.sds().list() {
        let decoded = l
            .delivered
            .as_ref()
            .and_then(|d| Some((d, weft_xds::to_json(SECRET_TYPE, &d.bytes).ok()?.2)));
        match decoded {
            Some((d, secret)) => active.push(json!({
                "name": l.name,
                "version_info": d.version_info,
                "last_updated": crate::access_log::format_time(d.updated),
                "secret": redacted(with_type(secret, SECRET_TYPE)),
            })),
            None => warming.push(json!({
                "name": l.name,
                "version_info": "uninitialized",
                "secret": {"@type": SECRET_TYPE, "name": l.name},
            })),
        }
    }
    json!({
        "@type": format!("{ADMIN}SecretsConfigDump"),
        "static_secrets": static_secrets,
        "dynamic_active_secrets": active,
        "dynamic_warming_secrets": warming,
    })
}

/// Envoy's redaction of a secret's sensitive fields (the private key,
/// its password, session ticket keys, a generic secret): every string in
/// them becomes `[redacted]` (bytes: its base64).
fn redacted(mut secret: Value) -> Value {
    fn redact(v: &mut Value, key: Option<&str>) {
        match v {
            Value::String(s) => {
                *s = if key == Some("inline_bytes") {
                    "W3JlZGFjdGVkXQ==".into()
                } else {
                    "[redacted]".into()
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| redact(i, key)),
            Value::Object(m) => m.iter_mut().for_each(|(k, v)| redact(v, Some(k))),
            _ => {}
        }
    }
    for path in [
        &["tls_certificate", "private_key"][..],
        &["tls_certificate", "password"],
        &["session_ticket_keys"],
        &["generic_secret", "secret"],
    ] {
        let mut at = Some(&mut secret);
        for k in path {
            at = at.and_then(|v| v.get_mut(*k));
        }
        if let Some(v) = at {
            redact(v, None);
        }
    }
    secret
}

/// Adds what xDS delivered, in Envoy's fields: `dynamic_active_clusters`
/// and `dynamic_warming_clusters`; `dynamic_listeners` with an
/// `active_state` or `warming_state`; `dynamic_route_configs`.
fn dynamic(x: &XdsDump, clusters: &mut Value, listeners: &mut Value, routes: &mut Value) {
    // (name, entry with version and time, the resource as JSON)
    let entries = |kind: Kind| -> Vec<(String, Value, Value)> {
        x.delivered
            .get(&kind)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(name, d)| {
                let (_, _, v) = weft_xds::to_json(&kind.type_url(), &d.bytes).ok()?;
                let entry = json!({
                    "version_info": d.version,
                    "last_updated": crate::access_log::format_time(d.updated),
                });
                Some((name.clone(), entry, with_type(v, &kind.type_url())))
            })
            .collect()
    };
    let version = |kind: Kind| x.versions.get(&kind).cloned().unwrap_or_default();
    let (mut active, mut warming) = (Vec::new(), Vec::new());
    for (name, entry, resource) in entries(Kind::Cluster) {
        let e = merge_key(entry, "cluster", resource);
        if x.warming_clusters.contains(&name) {
            warming.push(e);
        } else {
            active.push(e);
        }
    }
    clusters["version_info"] = json!(version(Kind::Cluster));
    clusters["dynamic_active_clusters"] = json!(active);
    clusters["dynamic_warming_clusters"] = json!(warming);
    let dynamic_listeners: Vec<Value> = entries(Kind::Listener)
        .into_iter()
        .map(|(name, entry, resource)| {
            let state = if x.warming_listeners.contains(&name) {
                "warming_state"
            } else {
                "active_state"
            };
            json!({"name": name, state: merge_key(entry, "listener", resource)})
        })
        .collect();
    listeners["version_info"] = json!(version(Kind::Listener));
    listeners["dynamic_listeners"] = json!(dynamic_listeners);
    routes["dynamic_route_configs"] = json!(entries(Kind::RouteConfiguration)
        .into_iter()
        .map(|(_, entry, resource)| merge_key(entry, "route_config", resource))
        .collect::<Vec<_>>());
}

fn merge_key(mut entry: Value, key: &str, resource: Value) -> Value {
    entry[key] = resource;
    entry
}

fn with_type(mut v: Value, type_url: &str) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("@type".into(), json!(type_url));
    }
    v
}
