//! The per-request context of the HTTP path: a request matched to its
//! route ([`Routed`]), which the HTTP filters and the router both read,
//! and what the access log records of it ([`Outcome`]).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::chain::HttpSettings;
use crate::routes::{Route, RouteTable, VirtualHost};
use crate::snapshot::Snapshot;
use crate::stream_timers::{Activity, Limits};
use crate::transport::ConnectionInfo;

/// A request matched to its route, with everything that served it.
pub(crate) struct Routed<'a> {
    pub snapshot: &'a Snapshot,
    pub settings: &'a HttpSettings,
    /// The connection the request came in on.
    pub conn: &'a ConnectionInfo,
    pub table: &'a RouteTable,
    pub vh: &'a VirtualHost,
    pub route: &'a Route,
    /// Host as the client sent it, and path (with query) as the
    /// connection manager normalized it.
    pub host: &'a str,
    pub path: &'a str,
}

/// What the access log records about one request.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub flag: Option<&'static str>,
    /// The x-request-id sent upstream (possibly generated here).
    pub request_id: Option<String>,
    /// The path (with query) as normalization left it, when it changed
    /// (what Envoy's `%REQ(:PATH)%` then shows).
    pub path: Option<String>,
    pub upstream: Option<SocketAddr>,
    /// The local address of the upstream connection that answered.
    pub upstream_local: Option<SocketAddr>,
    /// The matched route's name (when it has one).
    pub route_name: Option<String>,
    /// Envoy's response code details, where the serving code knew them
    /// (`via_upstream`, `direct_response`).
    pub details: Option<&'static str>,
    /// Why the last attempt's connection failed, as Envoy says it
    /// (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`), when weft knows.
    pub transport_failure: Option<&'static str>,
    /// Attempts sent upstream (more than one when retried).
    pub attempts: u32,
    /// The stream's timers, which go on running while the response body
    /// streams (an idle expiry then is logged late, as `SI`).
    pub stream: Option<(Arc<Activity>, Limits)>,
    /// What HTTP filters recorded about the request (RBAC's results,
    /// a verified JWT's payload).
    pub metadata: crate::metadata::DynamicMetadata,
    /// The cluster the request was sent to.
    pub cluster: Option<String>,
    /// Who the peers are, as Istio's metadata exchange found them.
    pub peers: crate::peer_exchange::Peers,
}
