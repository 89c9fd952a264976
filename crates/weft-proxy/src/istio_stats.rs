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
    /// The downstream connection: its peer's and this proxy's URI SANs
    /// (TLS only), read when the request is counted.
    pub conn: Arc<ConnectionInfo>,
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
    pub fn new(filter: Arc<IstioStats>, conn: &Arc<ConnectionInfo>) -> Self {
        Pending {
            filter,
            peers: Peers::default(),
            conn: Arc::clone(conn),
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
        fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
            if v.is_empty() {
                default
            } else {
                v
            }
        }
        // The service: the Host header unless told not to, then a
        // catch-all cluster's name or the cluster's Istio service.
        let (mut host, mut name) = if f.host_fallback {
            (self.authority.as_str(), self.authority.as_str())
        } else {
            ("", "")
        };
        match (&self.cluster, &self.service) {
            (Some(c), _) if CATCH_ALL.contains(&c.as_str()) => name = c.as_str(),
            (_, Some(s)) => {
                host = s.host.as_str();
                name = s.name.as_str();
            }
            _ => {}
        }
        let mut code_buf = [0u8; 5];
        let code = status_text(self.status, &mut code_buf);
        let protocol = if self.grpc { "grpc" } else { "http" };
        let grpc_status = if self.grpc {
            grpc_status.unwrap_or("")
        } else {
            ""
        };
        let flags = flags.unwrap_or("-");
        let none = Peer::default();
        let tls = self.conn.tls.as_deref();
        let principal = tls
            .and_then(|t| t.peer_identities.first())
            .map(String::as_str);
        let local_principal = tls
            .and_then(|t| t.local_identities.first())
            .map(String::as_str);
        let refs: [&str; 25] = if f.inbound {
            let peer = self.peers.downstream.as_ref().unwrap_or(&none);
            let peer_ns = principal
                .and_then(spiffe_namespace)
                .unwrap_or(or(&peer.namespace, UNKNOWN));
            let mtls = principal.is_some() && local_principal.is_some();
            [
                "destination",
                or(&peer.workload, UNKNOWN),
                or(&peer.canonical_service, UNKNOWN),
                or(&peer.canonical_revision, "latest"),
                peer_ns,
                principal.unwrap_or(UNKNOWN),
                or(&peer.app, UNKNOWN),
                or(&peer.version, UNKNOWN),
                or(&peer.cluster, UNKNOWN),
                &local.workload,
                &local.namespace,
                local_principal.unwrap_or(UNKNOWN),
                &local.app,
                &local.version,
                or(host, &local.canonical_service),
                &local.canonical_service,
                &local.canonical_revision,
                or(name, &local.canonical_service),
                &local.namespace,
                &local.cluster,
                protocol,
                code,
                grpc_status,
                flags,
                if mtls { "mutual_tls" } else { "none" },
            ]
        } else {
            let peer = self.peers.upstream.as_ref().unwrap_or(&none);
            [
                "source",
                &local.workload,
                &local.canonical_service,
                &local.canonical_revision,
                &local.namespace,
                // The client's own certificate towards the upstream is
                // not known to the filter yet: Istio's `unknown` for a
                // plaintext upstream.
                UNKNOWN,
                &local.app,
                &local.version,
                &local.cluster,
                or(&peer.workload, UNKNOWN),
                or(&peer.namespace, UNKNOWN),
                UNKNOWN,
                or(&peer.app, UNKNOWN),
                or(&peer.version, UNKNOWN),
                or(host, UNKNOWN),
                or(&peer.canonical_service, UNKNOWN),
                or(&peer.canonical_revision, "latest"),
                or(name, UNKNOWN),
                or(&peer.namespace, UNKNOWN),
                or(&peer.cluster, UNKNOWN),
                protocol,
                code,
                grpc_status,
                flags,
                UNKNOWN,
            ]
        };
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

/// A status code's digits, without allocating.
fn status_text(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
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
