//! Upstream clusters: endpoints, load balancing, pooled HTTP clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_envoy::cluster::{self as cfg, DiscoveryType, LbPolicy};
use weft_envoy::TypedConfig;

use crate::error::CompileError;
use crate::http::Body;
use crate::stats::{ClusterStats, Counter, Store};

pub struct Endpoint {
    pub addr: SocketAddr,
    /// The DNS name this address was resolved from (STRICT_DNS and
    /// LOGICAL_DNS), which `auto_host_rewrite` puts in the Host header.
    pub hostname: Option<String>,
    pub weight: u32,
    /// Requests in flight, for LEAST_REQUEST.
    pub active: AtomicUsize,
    /// Pooled connections to this endpoint only. The request URI carries
    /// the request's authority (HTTP/2 sends it as `:authority`), so the
    /// connector ignores it and dials the endpoint.
    pub client: Client<FixedConnector, Body>,
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

/// Dials one address whatever the URI says.
#[derive(Clone, Debug)]
pub struct FixedConnector {
    addr: SocketAddr,
    timeout: Duration,
    attempts: Counter,
    failed: Counter,
}

type Connecting = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<TokioIo<tokio::net::TcpStream>>> + Send>,
>;

impl tower_service::Service<http::Uri> for FixedConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Connecting {
        let (addr, timeout) = (self.addr, self.timeout);
        let (attempts, failed) = (self.attempts.clone(), self.failed.clone());
        Box::pin(async move {
            // Envoy counts attempts, failed ones included.
            attempts.inc();
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    failed.inc();
                    return Err(e);
                }
                Err(_) => {
                    failed.inc();
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timeout",
                    ));
                }
            };
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

pub struct Cluster {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    lb: LbPolicy,
    /// Weighted round robin: endpoint indexes repeated by weight.
    schedule: Vec<usize>,
    next: AtomicUsize,
    pub connect_timeout: Duration,
    pub http2: bool,
    pub stats: ClusterStats,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Cluster {
    pub async fn compile(c: &cfg::Cluster, at: &str, store: &Store) -> Result<Self, CompileError> {
        let stats = ClusterStats::new(store, &c.name);
        let err = |field: &str, message: String| CompileError::Config {
            field: format!("{at}.{field}"),
            message,
        };
        if matches!(c.type_, DiscoveryType::EDS | DiscoveryType::ORIGINAL_DST) {
            return Err(err(
                "type",
                format!("{:?} clusters are not implemented by weft yet", c.type_),
            ));
        }
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
        let mut endpoints = Vec::new();
        for le in c.load_assignment.iter().flat_map(|la| &la.endpoints) {
            for e in &le.lb_endpoints {
                let Some(sa) = &e.endpoint.address.socket_address else {
                    continue;
                };
                let port = u16::try_from(sa.port_value).map_err(|_| {
                    err(
                        "load_assignment",
                        format!("port {} out of range", sa.port_value),
                    )
                })?;
                let weight = e.load_balancing_weight.unwrap_or(1).max(1);
                let hostname = (c.type_ != DiscoveryType::STATIC).then(|| sa.address.clone());
                let addrs: Vec<SocketAddr> = match c.type_ {
                    DiscoveryType::STATIC => {
                        let ip = sa.address.parse().map_err(|_| {
                            err(
                                "load_assignment",
                                format!("{:?} is not an IP address", sa.address),
                            )
                        })?;
                        vec![SocketAddr::new(ip, port)]
                    }
                    _ => {
                        // STRICT_DNS and LOGICAL_DNS, resolved once at start;
                        // periodic refresh comes with the xDS work (issue 4).
                        let found: Vec<SocketAddr> =
                            tokio::net::lookup_host((sa.address.as_str(), port))
                                .await
                                .map_err(|e| {
                                    err(
                                        "load_assignment",
                                        format!("cannot resolve {:?}: {e}", sa.address),
                                    )
                                })?
                                .collect();
                        let take = if c.type_ == DiscoveryType::LOGICAL_DNS {
                            1
                        } else {
                            usize::MAX
                        };
                        by_family(found, c.dns_lookup_family.unwrap_or_default())
                            .into_iter()
                            .take(take)
                            .collect()
                    }
                };
                endpoints.extend(addrs.into_iter().map(|addr| {
                    Endpoint {
                        addr,
                        hostname: hostname.clone(),
                        weight,
                        active: AtomicUsize::new(0),
                        client: Client::builder(TokioExecutor::new())
                            .http2_only(http2)
                            .pool_idle_timeout(Duration::from_secs(3600))
                            .build(FixedConnector {
                                addr,
                                timeout: connect_timeout,
                                attempts: stats.upstream_cx_total.clone(),
                                failed: stats.upstream_cx_connect_fail.clone(),
                            }),
                    }
                }));
            }
        }
        let schedule = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| std::iter::repeat_n(i, e.weight.min(128) as usize))
            .collect();
        // No health checking yet: every endpoint counts as healthy.
        stats.membership_total.set(endpoints.len() as i64);
        stats.membership_healthy.set(endpoints.len() as i64);
        Ok(Cluster {
            name: c.name.clone(),
            endpoints,
            lb: c.lb_policy,
            schedule,
            next: AtomicUsize::new(fastrand::usize(..1024)),
            connect_timeout,
            http2,
            stats,
        })
    }

    /// The endpoint for the next request, by the cluster's policy.
    pub fn pick(&self) -> Option<&Endpoint> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = match self.lb {
            LbPolicy::RANDOM => self.schedule[fastrand::usize(..self.schedule.len())],
            LbPolicy::LEAST_REQUEST if self.endpoints.len() > 1 => {
                // Power of two choices, as Envoy's default choice_count 2.
                let a = self.schedule[fastrand::usize(..self.schedule.len())];
                let b = self.schedule[fastrand::usize(..self.schedule.len())];
                let load = |i: usize| {
                    let e = &self.endpoints[i];
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
                self.schedule[n % self.schedule.len()]
            }
        };
        self.endpoints.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_lookup_family_picks_addresses_like_envoy() {
        use cfg::DnsLookupFamily::*;
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let both = vec![v4, v6];
        assert_eq!(by_family(both.clone(), AUTO), vec![v6]);
        assert_eq!(by_family(vec![v4], AUTO), vec![v4]);
        assert_eq!(by_family(both.clone(), V4_PREFERRED), vec![v4]);
        assert_eq!(by_family(vec![v6], V4_PREFERRED), vec![v6]);
        assert_eq!(by_family(both.clone(), V4_ONLY), vec![v4]);
        assert_eq!(by_family(vec![v6], V4_ONLY), vec![]);
        assert_eq!(by_family(both.clone(), V6_ONLY), vec![v6]);
        assert_eq!(by_family(both.clone(), ALL), both);
    }

    async fn cluster(policy: &str, weights: &[u32]) -> Cluster {
        let endpoints: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!(
                    "{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}, load_balancing_weight: {w}}}",
                    1000 + i
                )
            })
            .collect();
        let yaml = format!(
            "name: c\ntype: STATIC\nlb_policy: {policy}\nload_assignment: {{cluster_name: c, endpoints: [{{lb_endpoints: [{}]}}]}}\n",
            endpoints.join(", ")
        );
        let node = parse_cluster(&yaml);
        Cluster::compile(&node, "c", &Store::default())
            .await
            .unwrap()
    }

    /// Deserializes a cluster directly (the bootstrap path is tested in
    /// weft-envoy).
    fn parse_cluster(yaml: &str) -> cfg::Cluster {
        let boot = format!(
            "static_resources:\n  clusters:\n  - {}\n",
            yaml.trim_end().replace('\n', "\n    ")
        );
        weft_envoy::parse_bootstrap("t", &boot)
            .unwrap()
            .static_resources
            .clusters
            .remove(0)
    }

    fn counts(c: &Cluster, n: usize) -> Vec<usize> {
        let mut out = vec![0; c.endpoints.len()];
        for _ in 0..n {
            let e = c.pick().unwrap();
            out[(e.addr.port() - 1000) as usize] += 1;
        }
        out
    }

    #[tokio::test]
    async fn weighted_round_robin_is_exact() {
        let c = cluster("ROUND_ROBIN", &[1, 3]).await;
        assert_eq!(counts(&c, 400), vec![100, 300]);
    }

    #[tokio::test]
    async fn random_follows_weights() {
        fastrand::seed(11);
        let c = cluster("RANDOM", &[1, 1, 2]).await;
        let got = counts(&c, 40_000);
        // Expected 10k/10k/20k; binomial sd ≈ 87 and 100, ±600 is > 5 sd.
        for (g, want) in got.iter().zip([10_000, 10_000, 20_000]) {
            assert!(g.abs_diff(want) < 600, "{got:?}");
        }
    }

    #[tokio::test]
    async fn least_request_avoids_the_busy_endpoint() {
        fastrand::seed(5);
        let c = cluster("LEAST_REQUEST", &[1, 1, 1]).await;
        c.endpoints[0].active.store(50, Ordering::Relaxed);
        let got = counts(&c, 3_000);
        // With two choices, endpoint 0 wins only when both picks are it:
        // about 1/9 of the time.
        assert!(got[0] < 500, "{got:?}");
        assert!(got[1] > 1_000 && got[2] > 1_000, "{got:?}");
    }

    #[tokio::test]
    async fn empty_cluster_has_no_pick() {
        let boot = "static_resources:\n  clusters:\n  - {name: e, type: STATIC}\n";
        let cfg = weft_envoy::parse_bootstrap("t", boot).unwrap();
        let c = Cluster::compile(&cfg.static_resources.clusters[0], "e", &Store::default())
            .await
            .unwrap();
        assert!(c.pick().is_none());
    }
}
