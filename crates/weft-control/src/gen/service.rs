//! What one service gives a sidecar — its clusters, their endpoints, its
//! virtual host on each HTTP port — and a hash of everything those are
//! made from. A service's parts depend only on the service and a few
//! lookups, so the server keeps them (encoded) from one snapshot to the
//! next and remakes only those whose inputs changed: editing one
//! VirtualService in a mesh of thousands regenerates one virtual host.

use std::hash::{Hash, Hasher};

use weft_api::virtual_service::VirtualService;

use super::pb::{cluster as cpb, endpoint as epb, route as rt};
use super::{cluster, endpoint, route, Proxy};
use crate::context::{resolve_host, Context, Named};
use crate::model::Service;

/// One service's resources for one proxy.
pub(crate) struct ServiceParts {
    pub clusters: Vec<cpb::Cluster>,
    /// One ClusterLoadAssignment per EDS cluster.
    pub endpoints: Vec<epb::ClusterLoadAssignment>,
    /// `(port, virtual host)` for each port the service speaks HTTP on,
    /// with every domain (a table drops those an earlier service took).
    pub virtual_hosts: Vec<(u32, rt::VirtualHost)>,
}

pub(crate) fn parts(ctx: &Context, proxy: &Proxy, s: &Service) -> ServiceParts {
    let clusters = cluster::for_service(ctx, proxy, s);
    let endpoints = endpoint::for_clusters(ctx, &clusters);
    let virtual_hosts = s
        .ports
        .iter()
        .filter_map(|p| Some((p.number, route::virtual_host(ctx, proxy, s, p.number)?)))
        .collect();
    ServiceParts {
        clusters: clusters.into_iter().map(|c| c.cluster).collect(),
        endpoints,
        virtual_hosts,
    }
}

/// A hash of what [`parts`] reads for `s` and a proxy of this shape (the
/// proxy's namespace and labels are the shape's): the service and its
/// instances, the mesh settings, the DestinationRule and VirtualService
/// that apply, and every service (and its DestinationRule) the
/// VirtualService sends to or mirrors to. Equal inputs, equal parts.
pub(crate) fn inputs(ctx: &Context, proxy: &Proxy, s: &Service) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    ctx.service_digest(s).hash(&mut h);
    ctx.digests().mesh.hash(&mut h);
    ctx.digests().peer_authentications.hash(&mut h);
    proxy.workload_certs.hash(&mut h);
    rule_digest(ctx, proxy, &s.hostname, &s.namespace).hash(&mut h);
    match ctx.virtual_service_for(&s.hostname, &proxy.namespace, "mesh") {
        None => 0u64.hash(&mut h),
        Some(vs) => {
            // A root's digest covers its delegates (see `delegate`).
            vs.digest.hash(&mut h);
            for host in destinations(vs) {
                match ctx.service(&host) {
                    Some(d) => {
                        ctx.service_digest(d).hash(&mut h);
                        rule_digest(ctx, proxy, &d.hostname, &d.namespace).hash(&mut h);
                    }
                    None => host.hash(&mut h),
                }
            }
        }
    }
    h.finish()
}

fn rule_digest(ctx: &Context, proxy: &Proxy, host: &str, service_ns: &str) -> u64 {
    ctx.destination_rule_for(host, &proxy.namespace, service_ns)
        .map_or(0, |dr| dr.digest)
}

/// Every host a VirtualService's HTTP rules route or mirror to, as FQDNs.
fn destinations(vs: &Named<VirtualService>) -> impl Iterator<Item = String> + '_ {
    vs.spec.http.iter().flat_map(move |r| {
        r.route
            .iter()
            .map(|d| &d.destination)
            .chain(r.mirror.as_deref())
            .chain(r.mirrors.iter().map(|m| &m.destination))
            .map(move |d| resolve_host(&d.host, &vs.namespace))
    })
}
