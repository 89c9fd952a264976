//! Upstream clusters: endpoints, load balancing, pooled HTTP clients.
//! A cluster's endpoints are an immutable host set swapped whole when DNS
//! re-resolution changes them, so picking an endpoint takes no lock.
//! ORIGINAL_DST clusters have no set: each request's original destination
//! becomes an endpoint on first use and is forgotten when unused.
//! Each endpoint's transport (plain or TLS) is chosen when the endpoint
//! is made — by its metadata under `envoy.transport_socket_match`
//! against the cluster's `transport_socket_matches`, else the cluster's
//! `transport_socket` — and its pool dials only that way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weft_envoy::cluster::{self as cfg, DiscoveryType, LbPolicy};
use weft_envoy::TypedConfig;

use crate::body::Body;
use crate::error::CompileError;
use crate::stats::{ClusterStats, Store};
use crate::transport::{Secrets, Stream, UpstreamTransport};

pub struct Endpoint {
    pub addr: SocketAddr,
    /// The DNS name this address was resolved from (STRICT_DNS and
    /// LOGICAL_DNS), which `auto_host_rewrite` puts in the Host header.
    pub hostname: Option<String>,
    pub weight: u32,
    /// Requests in flight, for LEAST_REQUEST.
    pub active: AtomicUsize,
    /// Pooled connections to this endpoint only, made on first use (a
    /// mesh proxy knows thousands of endpoints and talks to few). The
    /// request URI carries the request's authority (HTTP/2 sends it as
    /// `:authority`), so the connector ignores it and dials the endpoint.
    client: std::sync::OnceLock<Client<FixedConnector, Body>>,
    connect: Arc<Connect>,
    /// Picked since the last ORIGINAL_DST cleanup sweep.
    used: AtomicBool,
    /// Outlier detection's view of this endpoint.
    pub outlier: crate::outlier::HostHealth,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("weight", &self.weight)
            .finish()
    }
}

/// The resolved addresses a cluster uses, by its `dns_lookup_family`:
/// AUTO prefers IPv6 and V4_PREFERRED IPv4, each falling back to the
/// other family when the name has none of the preferred one.
fn by_family(found: Vec<SocketAddr>, family: cfg::DnsLookupFamily) -> Vec<SocketAddr> {
    use cfg::DnsLookupFamily::*;
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) = found.iter().partition(|a| a.is_ipv4());
    match family {
        V4_ONLY => v4,
        V6_ONLY => v6,
        AUTO if v6.is_empty() => v4,
        AUTO => v6,
        V4_PREFERRED if v4.is_empty() => v6,
        V4_PREFERRED => v4,
        ALL => found,
    }
}

#[path = "cluster_connect.rs"]
mod connect;
pub use connect::FixedConnector;
use connect::{key, Connect, MakeEndpoint, Transports};

impl Endpoint {
    /// The `:scheme` of requests sent to this endpoint (its transport's).
    pub fn scheme(&self) -> &'static str {
        self.connect.transport.scheme()
    }

    /// The endpoint's connection pool.
    pub fn client(&self) -> &Client<FixedConnector, Body> {
        self.client.get_or_init(|| {
            let c = &self.connect;
            Client::builder(TokioExecutor::new())
                .http2_only(c.http2)
                .pool_idle_timeout(Duration::from_secs(3600))
                .build(FixedConnector {
                    addr: self.addr,
                    connect: Arc::clone(c),
                })
        })
    }
}

/// How a cluster spreads requests over its host set.
#[derive(Debug, Clone, Copy)]
struct Balance {
    lb: LbPolicy,
    /// Envoy's healthy_panic_threshold, in percent (50 by default).
    panic_threshold: f64,
    ring_min: u64,
    ring_max: u64,
    maglev_size: u64,
}

/// The endpoints a cluster balances over, with the weighted
/// round-robin schedule (endpoint indexes repeated by weight) over those
/// outlier detection has not ejected — or over all of them when fewer
/// than the panic threshold remain, as Envoy's panic mode — and, for
/// RING_HASH and MAGLEV, the hash table over the same endpoints.
pub struct HostSet {
    pub endpoints: Vec<Arc<Endpoint>>,
    schedule: Vec<usize>,
    ring: Option<crate::hashing::Ring>,
    maglev: Option<crate::hashing::Maglev>,
}

impl HostSet {
    fn new(endpoints: Vec<Arc<Endpoint>>, b: &Balance) -> Self {
        let available = endpoints
            .iter()
            .filter(|e| !e.outlier.ejected.load(Ordering::Relaxed))
            .count();
        let panic = !endpoints.is_empty()
            && (available as f64) * 100.0 < b.panic_threshold * endpoints.len() as f64;
        let usable: Vec<(usize, SocketAddr, u32)> = endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| panic || !e.outlier.ejected.load(Ordering::Relaxed))
            .map(|(i, e)| (i, e.addr, e.weight))
            .collect();
        let schedule = usable
            .iter()
            .flat_map(|(i, _, w)| std::iter::repeat_n(*i, (*w).min(128) as usize))
            .collect();
        HostSet {
            ring: (b.lb == LbPolicy::RING_HASH)
                .then(|| crate::hashing::Ring::build(&usable, b.ring_min, b.ring_max)),
            maglev: (b.lb == LbPolicy::MAGLEV)
                .then(|| crate::hashing::Maglev::build(&usable, b.maglev_size)),
            endpoints,
            schedule,
        }
    }
}

/// The endpoints of a load assignment whose addresses are IPs (STATIC
/// clusters, EDS). Endpoints in `keep` with the same address and weight
/// are reused. Errors are (field path inside the assignment, message).
fn static_endpoints(
    la: &cfg::ClusterLoadAssignment,
    transports: &Transports,
    keep: &[Arc<Endpoint>],
) -> Result<Vec<Arc<Endpoint>>, (String, String)> {
    Ok(endpoint_addrs(la)?
        .into_iter()
        .map(|(addr, weight, (locality, md))| {
            let connect = transports.choose(locality, md);
            let kept = keep
                .iter()
                .find(|k| k.addr == addr && k.weight == weight && Arc::ptr_eq(&k.connect, connect));
            match kept {
                Some(k) => Arc::clone(k),
                None => connect.endpoint(addr, None, weight),
            }
        })
        .collect())
}

/// An endpoint's locality's metadata and its own.
type Metadatas<'a> = (Option<&'a cfg::Metadata>, Option<&'a cfg::Metadata>);

/// An endpoint of a load assignment: address, weight, metadata.
type AssignedEndpoint<'a> = (SocketAddr, u32, Metadatas<'a>);

/// Whether an EDS assignment can be used, before any cluster takes it.
pub fn check_assignment(la: &cfg::ClusterLoadAssignment) -> Result<(), String> {
    endpoint_addrs(la)
        .map(|_| ())
        .map_err(|(field, m)| format!("{field}: {m}"))
}

fn endpoint_addrs(
    la: &cfg::ClusterLoadAssignment,
) -> Result<Vec<AssignedEndpoint<'_>>, (String, String)> {
    let mut out = Vec::new();
    for (i, le) in la.endpoints.iter().enumerate() {
        if le.priority != 0 {
            return Err((
                format!("endpoints[{i}].priority"),
                "priorities other than 0 are not implemented by weft yet".into(),
            ));
        }
        for (j, e) in le.lb_endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}].lb_endpoints[{j}].endpoint.address");
            let Some(sa) = &e.endpoint.address.socket_address else {
                if e.endpoint.address.pipe.is_some() {
                    // A Unix socket only a gRPC config source (SDS)
                    // dials; requests find no endpoint here.
                    continue;
                }
                return Err((at, "expected socket_address".into()));
            };
            let port = u16::try_from(sa.port_value)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| (at.clone(), format!("port {} out of range", sa.port_value)))?;
            let ip: std::net::IpAddr = sa
                .address
                .parse()
                .map_err(|_| (at.clone(), format!("{:?} is not an IP address", sa.address)))?;
            out.push((
                SocketAddr::new(ip, port),
                e.load_balancing_weight.unwrap_or(1).max(1),
                (le.metadata.as_ref(), e.metadata.as_ref()),
            ));
        }
    }
    Ok(out)
}

/// One name a DNS cluster resolves.
struct DnsTarget {
    name: String,
    port: u16,
    weight: u32,
    /// The transport its addresses use (by the endpoint's metadata).
    connect: Arc<Connect>,
}

enum Source {
    Static,
    /// Endpoints arrive from EDS under this ClusterLoadAssignment name.
    Eds {
        service: String,
    },
    Dns {
        targets: Vec<DnsTarget>,
        /// LOGICAL_DNS: only the first address of each name.
        logical: bool,
        family: cfg::DnsLookupFamily,
        refresh: Duration,
        resolver: Resolver,
    },
    OriginalDst {
        /// Take the destination from this request header when present.
        header: Option<HeaderName>,
        port_override: Option<u16>,
        cleanup: Duration,
        hosts: ArcSwap<HashMap<SocketAddr, Arc<Endpoint>>>,
    },
}

/// What the load balancer may look at besides the cluster.
#[derive(Default)]
pub struct PickContext<'a> {
    /// The downstream connection's destination when `original_dst`
    /// restored it (the connection was redirected to the proxy).
    pub original_dst: Option<SocketAddr>,
    pub headers: Option<&'a HeaderMap>,
    /// The request's hash, for RING_HASH and MAGLEV (random without).
    pub hash: Option<u64>,
}

pub struct Cluster {
    pub name: String,
    hosts: ArcSwap<HostSet>,
    source: Source,
    transports: Transports,
    next: AtomicUsize,
    pub http2: bool,
    pub stats: Arc<ClusterStats>,
    pub breakers: crate::circuit::Breakers,
    outlier: Option<crate::outlier::Detector>,
    balance: Balance,
    /// True once the cluster has its first host set: at once for every
    /// kind but DNS, whose first resolution runs in the background
    /// ([`Cluster::start_background`]) so that compiling does no I/O.
    initialized: tokio::sync::watch::Sender<bool>,
    /// The service istiod's metadata says this cluster is for (what
    /// Istio's stats name `destination_service`).
    pub istio_service: Option<crate::istio_stats::IstioService>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

type Lookup =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// Name resolution for DNS clusters: the system resolver, or a scripted
/// one in tests.
pub type Resolver = Arc<dyn Fn(String, u16) -> Lookup + Send + Sync>;

pub fn system_resolver() -> Resolver {
    Arc::new(|name, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((name.as_str(), port))
                .await?
                .collect())
        })
    })
}

impl Cluster {
    /// Compiles a cluster; no I/O: a DNS cluster starts without
    /// endpoints and resolves once started.
    pub fn compile(c: &cfg::Cluster, at: &str, store: &Store) -> Result<Self, CompileError> {
        Self::compile_in(c, at, store, &Secrets::default())
    }

    /// Compiles a cluster whose TLS contexts may name `secrets`.
    pub fn compile_in(
        c: &cfg::Cluster,
        at: &str,
        store: &Store,
        secrets: &Secrets,
    ) -> Result<Self, CompileError> {
        Self::build(c, at, store, secrets, system_resolver())
    }

    pub fn compile_with(
        c: &cfg::Cluster,
        at: &str,
        store: &Store,
        resolver: Resolver,
    ) -> Result<Self, CompileError> {
        Self::build(c, at, store, &Secrets::default(), resolver)
    }

    fn build(
        c: &cfg::Cluster,
        at: &str,
        store: &Store,
        secrets: &Secrets,
        resolver: Resolver,
    ) -> Result<Self, CompileError> {
        let stats = ClusterStats::new(store, &c.name);
        let err = |field: &str, message: String| CompileError::Config {
            field: format!("{at}.{field}"),
            message,
        };
        let options = c.typed_extension_protocol_options.values();
        if options.clone().any(|o| {
            matches!(o, TypedConfig::HttpProtocolOptions(p) if p.use_downstream_protocol_config.is_some())
        }) {
            return Err(err(
                "typed_extension_protocol_options",
                "use_downstream_protocol_config is not implemented by weft yet".into(),
            ));
        }
        let http2 = options.clone().any(|o| {
            matches!(o, TypedConfig::HttpProtocolOptions(p)
                if p.explicit_http_config.as_ref().is_some_and(|e| e.http2_protocol_options.is_some()))
        });
        let connect_timeout = c
            .connect_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(5));
        let connect = |at: &str, ts| -> Result<Arc<Connect>, CompileError> {
            Ok(Arc::new(Connect {
                http2,
                timeout: connect_timeout,
                transport: UpstreamTransport::compile(at, ts, secrets, http2)?,
                stats: stats.clone(),
            }))
        };
        let mut matches = Vec::new();
        for (i, m) in c.transport_socket_matches.iter().enumerate() {
            let mat = format!("{at}.transport_socket_matches[{i}]");
            let want = m.match_.iter().map(|(k, v)| (key(k), v.clone())).collect();
            matches.push((want, connect(&mat, m.transport_socket.as_ref())?));
        }
        let transports = Transports {
            matches,
            default: connect(at, c.transport_socket.as_ref())?,
        };
        let mut endpoints = Vec::new();
        let mut targets = Vec::new();
        if c.type_ == DiscoveryType::STATIC {
            if let Some(la) = &c.load_assignment {
                endpoints = static_endpoints(la, &transports, &[])
                    .map_err(|(field, m)| err(&format!("load_assignment.{field}"), m))?;
            }
        } else {
            for le in c.load_assignment.iter().flat_map(|la| &la.endpoints) {
                for e in &le.lb_endpoints {
                    let connect =
                        Arc::clone(transports.choose(le.metadata.as_ref(), e.metadata.as_ref()));
                    let Some(sa) = &e.endpoint.address.socket_address else {
                        continue;
                    };
                    let port = u16::try_from(sa.port_value).map_err(|_| {
                        err(
                            "load_assignment",
                            format!("port {} out of range", sa.port_value),
                        )
                    })?;
                    targets.push(DnsTarget {
                        name: sa.address.clone(),
                        port,
                        weight: e.load_balancing_weight.unwrap_or(1).max(1),
                        connect,
                    });
                }
            }
        }
        let source = match c.type_ {
            DiscoveryType::STRICT_DNS | DiscoveryType::LOGICAL_DNS => Source::Dns {
                targets,
                logical: c.type_ == DiscoveryType::LOGICAL_DNS,
                family: c.dns_lookup_family.unwrap_or_default(),
                // Envoy's default dns_refresh_rate is 5 s.
                refresh: c
                    .dns_refresh_rate
                    .map(|d| d.0)
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(5)),
                resolver,
            },
            DiscoveryType::ORIGINAL_DST => {
                let o = c.original_dst_lb_config.clone().unwrap_or_default();
                let header = o.use_http_header.then(|| {
                    let name = o
                        .http_header_name
                        .as_deref()
                        .unwrap_or("x-envoy-original-dst-host");
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                        err(
                            "original_dst_lb_config.http_header_name",
                            format!("{name:?} is not a header name"),
                        )
                    })
                });
                Source::OriginalDst {
                    header: header.transpose()?,
                    port_override: o
                        .upstream_port_override
                        .map(|p| {
                            u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                                err(
                                    "original_dst_lb_config.upstream_port_override",
                                    format!("{p} is not a port"),
                                )
                            })
                        })
                        .transpose()?,
                    cleanup: c
                        .cleanup_interval
                        .map(|d| d.0)
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_secs(5)),
                    hosts: ArcSwap::from_pointee(HashMap::new()),
                }
            }
            DiscoveryType::EDS => Source::Eds {
                service: c
                    .eds_cluster_config
                    .as_ref()
                    .and_then(|e| e.service_name.clone())
                    .unwrap_or_else(|| c.name.clone()),
            },
            DiscoveryType::STATIC => Source::Static,
        };
        let ring = c.ring_hash_lb_config.clone().unwrap_or_default();
        let balance = Balance {
            lb: c.lb_policy,
            panic_threshold: c
                .common_lb_config
                .as_ref()
                .and_then(|l| l.healthy_panic_threshold)
                .map_or(50.0, |p| p.value),
            ring_min: ring.minimum_ring_size.map_or(1024, |n| n.0.max(1) as u64),
            ring_max: ring
                .maximum_ring_size
                .map_or(8 * 1024 * 1024, |n| n.0.max(1) as u64),
            maglev_size: c
                .maglev_lb_config
                .as_ref()
                .and_then(|m| m.table_size)
                .map_or(65537, |n| n.0.max(2) as u64),
        };
        let initialized = tokio::sync::watch::Sender::new(!matches!(source, Source::Dns { .. }));
        let cluster = Cluster {
            name: c.name.clone(),
            hosts: ArcSwap::from_pointee(HostSet::new(endpoints, &balance)),
            source,
            transports,
            next: AtomicUsize::new(fastrand::usize(..1024)),
            http2,
            stats,
            breakers: crate::circuit::Breakers::new(c.circuit_breakers.as_ref()),
            outlier: c
                .outlier_detection
                .as_ref()
                .map(|o| crate::outlier::Detector::new(o, store, &c.name)),
            balance,
            initialized,
            istio_service: crate::istio_stats::IstioService::from_metadata(c.metadata.as_ref()),
        };
        cluster.count_members();
        Ok(cluster)
    }

    /// Whether the cluster has its first host set (a DNS cluster once its
    /// first resolution, successful or not, is done).
    pub fn is_initialized(&self) -> bool {
        *self.initialized.borrow()
    }

    /// Resolves when [`Cluster::is_initialized`] holds; a DNS cluster's
    /// first resolution runs once [`Cluster::start_background`] is called.
    pub async fn initialized(&self) {
        let mut rx = self.initialized.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Whether one of its transports waits for an SDS secret (the
    /// cluster warms meanwhile).
    pub fn secrets_pending(&self) -> bool {
        let t = &self.transports;
        t.matches
            .iter()
            .map(|(_, c)| c)
            .chain(std::iter::once(&t.default))
            .any(|c| c.transport.pending())
    }

    /// A connection to one of its endpoints over the endpoint's
    /// transport (the TCP proxy's; HTTP goes through the endpoint's
    /// pool), within the connect timeout.
    pub async fn connect(&self, endpoint: &Endpoint) -> std::io::Result<Stream> {
        let c = &endpoint.connect;
        c.transport.connect(endpoint.addr, c.timeout).await
    }

    /// The ClusterLoadAssignment an EDS cluster takes its endpoints from.
    pub fn eds_service(&self) -> Option<&str> {
        match &self.source {
            Source::Eds { service } => Some(service),
            _ => None,
        }
    }

    /// Replaces an EDS cluster's endpoints; those that stay (same address
    /// and weight) keep their connection pools. The assignment was
    /// checked when it was decoded; an endpoint that is not an IP socket
    /// address is an error naming it.
    pub fn assign(&self, la: &cfg::ClusterLoadAssignment) -> Result<(), String> {
        let current = self.hosts.load_full();
        let next = static_endpoints(la, &self.transports, &current.endpoints)
            .map_err(|(field, m)| format!("{field}: {m}"))?;
        self.hosts
            .store(Arc::new(HostSet::new(next, &self.balance)));
        self.count_members();
        Ok(())
    }

    /// The current endpoints (for ORIGINAL_DST, the destinations in use).
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        match &self.source {
            Source::OriginalDst { hosts, .. } => hosts.load().values().cloned().collect(),
            _ => self.hosts.load().endpoints.clone(),
        }
    }

    fn count_members(&self) {
        // No health checking yet: every endpoint counts as healthy.
        let n = match &self.source {
            Source::OriginalDst { hosts, .. } => hosts.load().len(),
            _ => self.hosts.load().endpoints.len(),
        } as i64;
        let ejected = self
            .endpoints()
            .iter()
            .filter(|e| e.outlier.ejected.load(Ordering::Relaxed))
            .count() as i64;
        self.stats.membership_total.set(n);
        self.stats.membership_healthy.set(n - ejected);
    }

    /// Resolves a DNS cluster's names and swaps in the new host set when
    /// it changed. A name that fails to resolve keeps its previous
    /// addresses, as Envoy does; endpoints that stay keep their pools.
    async fn resolve_all(&self) {
        let Source::Dns {
            targets,
            logical,
            family,
            resolver,
            ..
        } = &self.source
        else {
            return;
        };
        let current = self.hosts.load_full();
        let mut next = Vec::new();
        for t in targets {
            let take = if *logical { 1 } else { usize::MAX };
            let addrs: Vec<SocketAddr> = match resolver(t.name.clone(), t.port).await {
                Ok(found) => by_family(found, *family).into_iter().take(take).collect(),
                Err(e) => {
                    tracing::warn!(cluster = %self.name, name = %t.name, "DNS resolution failed: {e}");
                    current
                        .endpoints
                        .iter()
                        .filter(|e| {
                            e.hostname.as_deref() == Some(t.name.as_str())
                                && e.addr.port() == t.port
                        })
                        .map(|e| e.addr)
                        .collect()
                }
            };
            for addr in addrs {
                let kept = current.endpoints.iter().find(|e| {
                    e.addr == addr
                        && e.hostname.as_deref() == Some(t.name.as_str())
                        && e.weight == t.weight
                        && Arc::ptr_eq(&e.connect, &t.connect)
                });
                next.push(match kept {
                    Some(e) => Arc::clone(e),
                    None => t.connect.endpoint(addr, Some(t.name.clone()), t.weight),
                });
            }
        }
        let same = next.len() == current.endpoints.len()
            && next
                .iter()
                .zip(&current.endpoints)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            self.hosts
                .store(Arc::new(HostSet::new(next, &self.balance)));
            self.count_members();
        }
    }

    /// Tells outlier detection how an attempt at `endpoint` went; an
    /// ejection takes the endpoint out of the balancing schedule.
    pub fn report(&self, endpoint: &Endpoint, result: crate::outlier::Result) {
        let Some(d) = &self.outlier else { return };
        if let Some(reason) = d.report(&endpoint.outlier, result) {
            if d.eject(&endpoint.outlier, &self.endpoints(), reason) {
                self.reschedule();
            }
        }
    }

    /// Rebuilds the balancing schedule after ejections changed.
    fn reschedule(&self) {
        self.hosts
            .rcu(|cur| HostSet::new(cur.endpoints.clone(), &self.balance));
        self.count_members();
    }

    /// Starts what keeps the cluster current in the background (DNS
    /// re-resolution, forgetting unused original destinations, outlier
    /// detection's sweep); it stops when the cluster is dropped.
    pub fn start_background(self: &Arc<Self>) {
        if let Some(d) = &self.outlier {
            let every = d.interval();
            let weak: Weak<Self> = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(c) = weak.upgrade() else { return };
                    let Some(d) = &c.outlier else { return };
                    if d.sweep(&c.endpoints()) {
                        c.reschedule();
                    }
                }
            });
        }
        let every = match &self.source {
            Source::Static | Source::Eds { .. } => return,
            Source::Dns { refresh, .. } => *refresh,
            Source::OriginalDst { cleanup, .. } => *cleanup,
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        // A DNS cluster resolves at once, then every refresh interval.
        let mut first = matches!(self.source, Source::Dns { .. });
        tokio::spawn(async move {
            loop {
                if !std::mem::take(&mut first) {
                    tokio::time::sleep(every).await;
                }
                let Some(c) = weak.upgrade() else { return };
                match &c.source {
                    Source::Dns { .. } => {
                        c.resolve_all().await;
                        c.initialized.send_replace(true);
                    }
                    Source::OriginalDst { hosts, .. } => {
                        hosts.rcu(|m| {
                            m.iter()
                                .filter(|(_, e)| {
                                    e.used.swap(false, Ordering::Relaxed)
                                        || e.active.load(Ordering::Relaxed) > 0
                                })
                                .map(|(a, e)| (*a, Arc::clone(e)))
                                .collect::<HashMap<_, _>>()
                        });
                        c.count_members();
                    }
                    Source::Static | Source::Eds { .. } => return,
                }
            }
        });
    }

    /// The endpoint for the next request, by the cluster's policy.
    pub fn pick(&self, ctx: &PickContext<'_>) -> Option<Arc<Endpoint>> {
        if let Source::OriginalDst {
            header,
            port_override,
            hosts,
            ..
        } = &self.source
        {
            return self.original_dst(ctx, header.as_ref(), *port_override, hosts);
        }
        let set = self.hosts.load();
        if set.schedule.is_empty() {
            return None;
        }
        let schedule = &set.schedule;
        let hashed = |h: Option<u64>| h.unwrap_or_else(|| fastrand::u64(..));
        let i = match self.balance.lb {
            LbPolicy::RING_HASH => set.ring.as_ref()?.pick(hashed(ctx.hash))?,
            LbPolicy::MAGLEV => set.maglev.as_ref()?.pick(hashed(ctx.hash))?,
            LbPolicy::RANDOM => schedule[fastrand::usize(..schedule.len())],
            LbPolicy::LEAST_REQUEST if set.endpoints.len() > 1 => {
                // Power of two choices, as Envoy's default choice_count 2.
                let a = schedule[fastrand::usize(..schedule.len())];
                let b = schedule[fastrand::usize(..schedule.len())];
                let load = |i: usize| {
                    let e = &set.endpoints[i];
                    e.active.load(Ordering::Relaxed) as f64 / f64::from(e.weight)
                };
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
            _ => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                schedule[n % schedule.len()]
            }
        };
        set.endpoints.get(i).cloned()
    }

    /// ORIGINAL_DST: the request header's address (when configured and
    /// present; an unparsable one picks nothing), else the connection's
    /// restored destination.
    fn original_dst(
        &self,
        ctx: &PickContext<'_>,
        header: Option<&HeaderName>,
        port_override: Option<u16>,
        hosts: &ArcSwap<HashMap<SocketAddr, Arc<Endpoint>>>,
    ) -> Option<Arc<Endpoint>> {
        let from_header = header.and_then(|h| ctx.headers?.get(h));
        let mut addr = match from_header {
            Some(v) => v.to_str().ok()?.parse::<SocketAddr>().ok()?,
            None => ctx.original_dst?,
        };
        if let Some(p) = port_override {
            addr.set_port(p);
        }
        if let Some(e) = hosts.load().get(&addr) {
            e.used.store(true, Ordering::Relaxed);
            return Some(Arc::clone(e));
        }
        let fresh = self.transports.default.endpoint(addr, None, 1);
        fresh.used.store(true, Ordering::Relaxed);
        let mut picked = Arc::clone(&fresh);
        hosts.rcu(|m| {
            let mut m = HashMap::clone(m);
            picked = Arc::clone(m.entry(addr).or_insert_with(|| Arc::clone(&fresh)));
            m
        });
        self.count_members();
        Some(picked)
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
