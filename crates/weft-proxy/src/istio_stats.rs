//! Istio's `istio.stats` HTTP filter: each finished request counted in
//! Istio's standard metrics ([`crate::stats::istio`]) with Istio's
//! labels, from this proxy's node metadata, the peer the metadata
//! exchange found ([`crate::peer_exchange`]), the connection's TLS
//! identities and the upstream cluster's Istio metadata.
//!
//! Who reports: an inbound listener's proxy as `destination`, any other
//! (outbound, gateways) as `source`. Istio's rules for what is not
//! known: a peer's missing values are `unknown` (its canonical revision
//! `latest`), this proxy's own are printed as they are, even empty;
//! `connection_security_policy` is `mutual_tls` or `none` on the server
//! and always `unknown` on the client.

use std::sync::Arc;

use crate::error::CompileError;
use crate::peer::Peer;
use crate::peer_exchange::Peers;
use crate::stats::istio::{HttpSample, IstioMetrics, Overrides, HTTP_LABELS, HTTP_METRICS};
use crate::stats::Store;
use crate::transport::ConnectionInfo;

/// A cluster's service as istiod describes it in the cluster's
/// `filter_metadata.istio.services[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioService {
    pub host: String,
    pub name: String,
    pub namespace: String,
}

impl IstioService {
    /// From a cluster's metadata; the name defaults to the host's first
    /// label, as Istio's proxy does.
    pub fn from_metadata(m: Option<&weft_envoy::cluster::Metadata>) -> Option<Self> {
        let s = m?.filter_metadata.get("istio")?.get("services")?.get(0)?;
        let get = |k: &str| {
            s.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let host = get("host");
        let mut name = get("name");
        if name.is_empty() {
            name = host.split('.').next().unwrap_or_default().to_string();
        }
        Some(IstioService {
            host,
            name,
            namespace: get("namespace"),
        })
    }
}

/// The compiled filter.
#[derive(Debug)]
pub struct IstioStats {
    metrics: Arc<IstioMetrics>,
    overrides: u32,
    local: Peer,
    /// Reports as `destination` (an inbound listener).
    inbound: bool,
    host_fallback: bool,
}

/// The clusters whose name is the service name (Istio's catch-alls).
const CATCH_ALL: [&str; 5] = [
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

impl IstioStats {
    pub fn compile(
        at: &str,
        c: &weft_envoy::istio::StatsConfig,
        store: &Store,
        inbound: bool,
    ) -> Result<Self, CompileError> {
        let mut o = Overrides::default();
        for (i, m) in c.metrics.iter().enumerate() {
            let which: Vec<usize> = if m.name.is_empty() {
                (0..HTTP_METRICS.len()).collect()
            } else {
                // TCP metrics' overrides do not touch the HTTP ones.
                HTTP_METRICS
                    .iter()
                    .position(|n| *n == m.name)
                    .into_iter()
                    .collect()
            };
            for t in &m.tags_to_remove {
                let Some(pos) = HTTP_LABELS.iter().position(|l| l == t) else {
                    return Err(CompileError::Config {
                        field: format!("{at}.metrics[{i}].tags_to_remove"),
                        message: format!("{t:?} is not one of Istio's standard labels"),
                    });
                };
                for &w in &which {
                    if !o.removed[w].contains(&pos) {
                        o.removed[w].push(pos);
                    }
                }
            }
            for &w in &which {
                o.drop[w] |= m.drop;
            }
        }
        let metrics = Arc::clone(&store.istio);
        Ok(IstioStats {
            overrides: metrics.intern(o),
            local: Peer::from_node_metadata(metrics.node(), &[]),
            metrics,
            inbound,
            host_fallback: !c.disable_host_header_fallback,
        })
    }
}

/// What a request's report needs, gathered as it goes; counted when its
/// response is done ([`Pending::finish`]).
#[derive(Debug)]
pub struct Pending {
    pub filter: Arc<IstioStats>,
    pub peers: Peers,
    /// The downstream peer's and this proxy's URI SANs (TLS only).
    pub peer_principal: Option<String>,
    pub local_principal: Option<String>,
    pub authority: String,
    pub cluster: Option<String>,
    pub service: Option<IstioService>,
    pub grpc: bool,
    pub status: u16,
    /// The request's and the response's bytes before their bodies (the
    /// request line and headers, as sent on HTTP/1).
    pub request_head: u64,
    pub response_head: u64,
}

/// The namespace in a SPIFFE id (`spiffe://td/ns/NS/sa/SA`).
fn spiffe_namespace(id: &str) -> Option<&str> {
    let rest = &id[id.find("/ns/")? + 4..];
    Some(rest.split('/').next().unwrap_or(rest)).filter(|n| !n.is_empty())
}

impl Pending {
    pub fn new(filter: Arc<IstioStats>, conn: &ConnectionInfo) -> Self {
        let tls = conn.tls.as_deref();
        Pending {
            filter,
            peers: Peers::default(),
            peer_principal: tls.and_then(|t| t.peer_identities.first().cloned()),
            local_principal: tls.and_then(|t| t.local_identities.first().cloned()),
            authority: String::new(),
            cluster: None,
            service: None,
            grpc: false,
            status: 0,
            request_head: 0,
            response_head: 0,
        }
    }

    /// Counts the request. `flags` are Envoy's response flags (`-` when
    /// none), `grpc_status` the response's, the bodies' sizes and the
    /// duration as the access log has them.
    pub fn finish(
        self,
        flags: Option<&str>,
        grpc_status: Option<&str>,
        request_body: u64,
        response_body: u64,
        duration_ms: u64,
    ) {
        let f = &*self.filter;
        let local = &f.local;
        const UNKNOWN: &str = "unknown";
        let or_unknown = |v: &'_ str| -> String {
            if v.is_empty() {
                UNKNOWN.into()
            } else {
                v.to_string()
            }
        };
        // The service: the Host header unless told not to, then a
        // catch-all cluster's name or the cluster's Istio service.
        let (mut host, mut name) = if f.host_fallback {
            (self.authority.clone(), self.authority.clone())
        } else {
            (String::new(), String::new())
        };
        match (&self.cluster, &self.service) {
            (Some(c), _) if CATCH_ALL.contains(&c.as_str()) => name = c.clone(),
            (_, Some(s)) => {
                host = s.host.clone();
                name = s.name.clone();
            }
            _ => {}
        }
        let code = self.status.to_string();
        let protocol = if self.grpc { "grpc" } else { "http" };
        let grpc_status = if self.grpc {
            grpc_status.unwrap_or("")
        } else {
            ""
        };
        let flags = flags.unwrap_or("-");
        let labels: [String; 25] = if f.inbound {
            let peer = self.peers.downstream.unwrap_or_default();
            let peer_ns = self
                .peer_principal
                .as_deref()
                .and_then(spiffe_namespace)
                .map(str::to_string)
                .unwrap_or_else(|| or_unknown(&peer.namespace));
            let fallback = |v: String| {
                if v.is_empty() {
                    local.canonical_service.clone()
                } else {
                    v
                }
            };
            let mtls = self.peer_principal.is_some() && self.local_principal.is_some();
            [
                "destination".into(),
                or_unknown(&peer.workload),
                or_unknown(&peer.canonical_service),
                if peer.canonical_revision.is_empty() {
                    "latest".into()
                } else {
                    peer.canonical_revision
                },
                peer_ns,
                self.peer_principal
                    .clone()
                    .unwrap_or_else(|| UNKNOWN.into()),
                or_unknown(&peer.app),
                or_unknown(&peer.version),
                or_unknown(&peer.cluster),
                local.workload.clone(),
                local.namespace.clone(),
                self.local_principal
                    .clone()
                    .unwrap_or_else(|| UNKNOWN.into()),
                local.app.clone(),
                local.version.clone(),
                fallback(host),
                local.canonical_service.clone(),
                local.canonical_revision.clone(),
                fallback(name),
                local.namespace.clone(),
                local.cluster.clone(),
                protocol.into(),
                code,
                grpc_status.into(),
                flags.into(),
                if mtls { "mutual_tls" } else { "none" }.into(),
            ]
        } else {
            let peer = self.peers.upstream.unwrap_or_default();
            [
                "source".into(),
                local.workload.clone(),
                local.canonical_service.clone(),
                local.canonical_revision.clone(),
                local.namespace.clone(),
                // The client's own certificate towards the upstream is
                // not known to the filter yet: Istio's `unknown` for a
                // plaintext upstream.
                UNKNOWN.into(),
                local.app.clone(),
                local.version.clone(),
                local.cluster.clone(),
                or_unknown(&peer.workload),
                or_unknown(&peer.namespace),
                UNKNOWN.into(),
                or_unknown(&peer.app),
                or_unknown(&peer.version),
                or_unknown(&host),
                or_unknown(&peer.canonical_service),
                if peer.canonical_revision.is_empty() {
                    "latest".into()
                } else {
                    peer.canonical_revision
                },
                or_unknown(&name),
                or_unknown(&peer.namespace),
                or_unknown(&peer.cluster),
                protocol.into(),
                code,
                grpc_status.into(),
                flags.into(),
                UNKNOWN.into(),
            ]
        };
        let mut refs = [""; 25];
        for (r, l) in refs.iter_mut().zip(&labels) {
            *r = l;
        }
        f.metrics.record(
            f.overrides,
            &HttpSample {
                labels: refs,
                duration_ms,
                request_bytes: self.request_head + request_body,
                response_bytes: self.response_head + response_body,
            },
        );
    }
}

/// The bytes of an HTTP/1 head: the first line and each header line,
/// and the blank line.
pub fn head_bytes(first_line: usize, headers: &http::HeaderMap) -> u64 {
    let lines: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    (first_line + 2 + lines + 2) as u64
}
