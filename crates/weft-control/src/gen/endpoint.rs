//! ClusterLoadAssignments (EDS): the instances of a service port,
//! narrowed to a subset's labels, grouped by locality.

use std::collections::BTreeMap;

use super::cluster::Generated;
use super::pb::{self, core, endpoint};
use crate::context::Context;

/// One assignment per EDS cluster, named by the cluster.
pub(crate) fn for_clusters(
    ctx: &Context,
    clusters: &[Generated],
) -> Vec<endpoint::ClusterLoadAssignment> {
    clusters
        .iter()
        .filter_map(|c| {
            let eds = c.eds.as_ref()?;
            Some(endpoint::ClusterLoadAssignment {
                cluster_name: c.cluster.name.clone(),
                endpoints: lb_endpoints(ctx, &eds.service, eds.port, &eds.labels),
                ..Default::default()
            })
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
) -> Vec<endpoint::LocalityLbEndpoints> {
    let mut groups: BTreeMap<String, Vec<endpoint::LbEndpoint>> = BTreeMap::new();
    for e in ctx
        .registry
        .endpoints_of(service, port)
        .filter(|e| weft_config::mesh::Selector::condition(labels).matches(&e.labels))
    {
        groups
            .entry(e.locality.clone().unwrap_or_default())
            .or_default()
            .push({
                let mut lb = lb_endpoint(
                    &e.address,
                    e.port,
                    e.weight.filter(|w| *w > 0).and_then(pb::u32_value),
                );
                if takes_mesh_tls(ctx, e) {
                    lb.metadata = Some(core::Metadata {
                        filter_metadata: pb::map([(
                            "envoy.transport_socket_match".to_string(),
                            pb::strings([("tlsMode", "istio")]),
                        )]),
                        ..Default::default()
                    });
                }
                lb
            });
    }
    groups
        .into_iter()
        .map(|(locality, lb_endpoints)| endpoint::LocalityLbEndpoints {
            locality: (!locality.is_empty()).then(|| {
                let mut parts = locality.splitn(3, '/').map(str::to_string);
                core::Locality {
                    region: parts.next().unwrap_or_default(),
                    zone: parts.next().unwrap_or_default(),
                    sub_zone: parts.next().unwrap_or_default(),
                }
            }),
            lb_endpoints,
            ..Default::default()
        })
        .collect()
}

/// Whether a client's auto mTLS uses mutual TLS to an instance: it has a
/// sidecar (its TLS mode is `istio`), and its PeerAuthentication does
/// not DISABLE mTLS on the port it listens on.
fn takes_mesh_tls(ctx: &Context, e: &crate::model::Endpoint) -> bool {
    e.istio_mtls
        && ctx
            .mtls_for(&e.namespace, &*e.labels)
            .at(e.port)
            .accepts_mtls()
}

/// One endpoint at `address:port`.
pub(crate) fn lb_endpoint(
    address: &str,
    port: u32,
    load_balancing_weight: Option<pb::UInt32Value>,
) -> endpoint::LbEndpoint {
    endpoint::LbEndpoint {
        host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
            endpoint::Endpoint {
                address: pb::socket_address(address, port),
                ..Default::default()
            },
        )),
        load_balancing_weight,
        ..Default::default()
    }
}
