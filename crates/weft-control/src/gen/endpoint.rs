//! ClusterLoadAssignments (EDS): the instances of a service port,
//! narrowed to a subset's labels, grouped by locality.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::cluster::Generated;
use crate::context::Context;

/// One assignment per EDS cluster, named by the cluster.
pub(crate) fn for_clusters(ctx: &Context, clusters: &[Generated]) -> Vec<Value> {
    clusters
        .iter()
        .filter_map(|c| {
            let eds = c.eds.as_ref()?;
            Some(json!({
                "cluster_name": c.json["name"],
                "endpoints": lb_endpoints(ctx, &eds.service, eds.port, &eds.labels),
            }))
        })
        .collect()
}

/// `LocalityLbEndpoints` for a service port's instances whose labels
/// include `labels`, one group per locality (`region/zone/subzone`).
pub(crate) fn lb_endpoints(
    ctx: &Context,
    service: &str,
    port: u32,
    labels: &weft_api::Map<String, String>,
) -> Value {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in ctx
        .registry
        .endpoints_of(service, port)
        .filter(|e| weft_config::mesh::Selector::condition(labels).matches(&e.labels))
    {
        let mut lb = json!({"endpoint": {"address": {"socket_address": {
            "address": e.address, "port_value": e.port,
        }}}});
        if let Some(w) = e.weight.filter(|w| *w > 0) {
            lb["load_balancing_weight"] = json!(w);
        }
        groups
            .entry(e.locality.clone().unwrap_or_default())
            .or_default()
            .push(lb);
    }
    groups
        .into_iter()
        .map(|(locality, lb_endpoints)| {
            let mut g = json!({"lb_endpoints": lb_endpoints});
            if !locality.is_empty() {
                let mut parts = locality.splitn(3, '/');
                let mut l = serde_json::Map::new();
                for key in ["region", "zone", "sub_zone"] {
                    if let Some(p) = parts.next().filter(|p| !p.is_empty()) {
                        l.insert(key.into(), json!(p));
                    }
                }
                g["locality"] = Value::Object(l);
            }
            g
        })
        .collect()
}
