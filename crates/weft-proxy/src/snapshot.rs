//! A bootstrap compiled into what the proxy runs: listeners with their
//! filter chains, route tables and clusters. A snapshot is immutable; a
//! new configuration builds a new one beside it and swaps it in whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use weft_envoy::Bootstrap;

use crate::cluster::Cluster;
use crate::config_dump::XdsDump;
use crate::error::{reject, CompileError};
use crate::listener::chains::ConnectionFacts;
use crate::listener::ListenerConfig;
use crate::routes::RouteTable;
use crate::stats::Store;
use crate::transport::Secrets;

#[derive(Debug)]
pub struct Snapshot {
    pub listeners: Vec<Arc<ListenerConfig>>,
    /// Where each listener is in `listeners`, built with the snapshot so
    /// an accepted connection finds its listener without a scan.
    index: ListenerIndex,
    /// Shared between snapshots that differ in other things only.
    pub clusters: Arc<HashMap<String, Arc<Cluster>>>,
    /// Route tables from RDS, by name.
    pub routes: HashMap<String, Arc<RouteTable>>,
    pub admin: Option<SocketAddr>,
    pub stats: Arc<Store>,
    /// The configuration as read, and when, for /config_dump.
    pub source: serde_json::Value,
    pub loaded: std::time::SystemTime,
    /// What xDS delivered, when the proxy has an xDS client.
    pub xds: Option<Arc<XdsDump>>,
    /// The bootstrap's static secrets, which TLS contexts of dynamic
    /// listeners and clusters may name too.
    pub secrets: Arc<Secrets>,
}

/// Listeners by name and by address. The first listener of a name or
/// address wins, as the scans this replaces found the first.
#[derive(Debug, Default)]
struct ListenerIndex {
    by_name: HashMap<String, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Wildcard (0.0.0.0 or ::) listeners by port and family (IPv4?).
    wildcard: HashMap<(u16, bool), usize>,
}

impl ListenerIndex {
    fn new(listeners: &[Arc<ListenerConfig>]) -> Self {
        let mut index = ListenerIndex::default();
        for (i, l) in listeners.iter().enumerate() {
            index.by_name.entry(l.name.clone()).or_insert(i);
            index.by_addr.entry(l.addr).or_insert(i);
            if l.addr.ip().is_unspecified() {
                index
                    .wildcard
                    .entry((l.addr.port(), l.addr.is_ipv4()))
                    .or_insert(i);
            }
        }
        index
    }
}

impl Snapshot {
    /// Compiles with a fresh statistics store.
    pub async fn compile(b: &Bootstrap) -> Result<Self, CompileError> {
        Self::compile_with(b, Store::new()).await
    }

    /// Compiles, registering statistics in `stats` (which a replaced
    /// snapshot shares, so counts carry over), then starts the clusters
    /// and waits for their first host sets, as Envoy initializes static
    /// clusters before its listeners: DNS clusters resolve at once, side
    /// by side.
    pub async fn compile_with(b: &Bootstrap, stats: Arc<Store>) -> Result<Self, CompileError> {
        let snapshot = Self::build(b, stats)?;
        for c in snapshot.clusters.values() {
            c.start_background();
        }
        for c in snapshot.clusters.values() {
            c.initialized().await;
        }
        Ok(snapshot)
    }

    /// Compiles a bootstrap's static resources: pure, no I/O and nothing
    /// started.
    pub fn build(b: &Bootstrap, stats: Arc<Store>) -> Result<Self, CompileError> {
        if let Some(node) = &b.node {
            stats.istio.set_node(node.id.clone(), node.metadata.clone());
        }
        let secrets = Arc::new(Secrets::new(&b.static_resources.secrets));
        let mut clusters = HashMap::new();
        for (i, c) in b.static_resources.clusters.iter().enumerate() {
            let at = format!("static_resources.clusters[{i}]");
            reject(
                &at,
                &[
                    ("respect_dns_ttl", c.respect_dns_ttl),
                    (
                        "per_connection_buffer_limit_bytes",
                        c.per_connection_buffer_limit_bytes.is_some(),
                    ),
                ],
            )?;
            let cluster = Arc::new(Cluster::compile_in(c, &at, &stats, &secrets)?);
            clusters.insert(c.name.clone(), cluster);
        }
        let mut listeners = Vec::new();
        for (i, l) in b.static_resources.listeners.iter().enumerate() {
            listeners.push(Arc::new(crate::listener::compile(
                &format!("static_resources.listeners[{i}]"),
                l,
                &stats,
                &secrets,
            )?));
        }
        let admin = b
            .admin
            .as_ref()
            .and_then(|a| a.address.as_ref())
            .and_then(|a| a.socket_addr());
        let mut s = Snapshot::assemble(
            listeners,
            Arc::new(clusters),
            HashMap::new(),
            admin,
            stats,
            b.source.clone(),
            None,
        );
        s.secrets = secrets;
        Ok(s)
    }

    /// A snapshot with nothing in it, before the first configuration.
    pub fn empty(stats: Arc<Store>) -> Self {
        Snapshot::assemble(
            Vec::new(),
            Default::default(),
            HashMap::new(),
            None,
            stats,
            serde_json::Value::Null,
            None,
        )
    }

    /// A snapshot of these parts, its listeners indexed.
    pub(crate) fn assemble(
        listeners: Vec<Arc<ListenerConfig>>,
        clusters: Arc<HashMap<String, Arc<Cluster>>>,
        routes: HashMap<String, Arc<RouteTable>>,
        admin: Option<SocketAddr>,
        stats: Arc<Store>,
        source: serde_json::Value,
        xds: Option<Arc<XdsDump>>,
    ) -> Self {
        Snapshot {
            index: ListenerIndex::new(&listeners),
            listeners,
            clusters,
            routes,
            admin,
            stats,
            source,
            loaded: std::time::SystemTime::now(),
            xds,
            secrets: Default::default(),
        }
    }

    /// The index of the listener with this name.
    pub fn listener(&self, name: &str) -> Option<usize> {
        self.index.by_name.get(name).copied()
    }

    /// The listener that listener `from` (with `use_original_dst`) hands
    /// a connection to: only a redirected connection moves (as in Envoy),
    /// to the listener bound to exactly its original destination, else to
    /// a wildcard (0.0.0.0 or ::) one on that port.
    pub fn handoff(&self, from: usize, facts: &ConnectionFacts) -> Option<usize> {
        let dst = facts.local.filter(|_| facts.restored)?;
        self.listener_for(dst).filter(|&j| j != from)
    }

    fn listener_for(&self, dst: SocketAddr) -> Option<usize> {
        let exact = self.index.by_addr.get(&dst);
        let wildcard = || self.index.wildcard.get(&(dst.port(), dst.is_ipv4()));
        exact.or_else(wildcard).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener per address, each with a catch-all tcp_proxy chain.
    async fn snapshot(addrs: &[&str]) -> Snapshot {
        let listeners: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (ip, port) = a.rsplit_once(':').unwrap();
                format!(
                    "{{name: l{i}, address: {{socket_address: {{address: \"{}\", port_value: {port}}}}}, bind_to_port: false, filter_chains: [{{filters: [{{name: t, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}}}]}}]}}",
                    ip.trim_matches(['[', ']'])
                )
            })
            .collect();
        let text = format!(
            "static_resources:\n  clusters: [{{name: c, type: STATIC}}]\n  listeners: [{}]\n",
            listeners.join(", ")
        );
        let boot = weft_envoy::parse_bootstrap("t", &text).unwrap();
        Snapshot::compile(&boot).await.unwrap()
    }

    fn redirected(to: &str, restored: bool) -> ConnectionFacts {
        ConnectionFacts {
            local: Some(to.parse().unwrap()),
            restored,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn handoff_prefers_the_exact_address_then_the_wildcard() {
        let s = snapshot(&[
            "0.0.0.0:15001",
            "10.0.0.7:9080",
            "0.0.0.0:9080",
            "[::]:9090",
        ])
        .await;
        assert_eq!(s.handoff(0, &redirected("10.0.0.7:9080", true)), Some(1));
        assert_eq!(s.handoff(0, &redirected("10.0.0.8:9080", true)), Some(2));
        // No IPv4 wildcard on 9090 (only ::), and nothing on 9091.
        assert_eq!(s.handoff(0, &redirected("10.0.0.8:9090", true)), None);
        assert_eq!(s.handoff(0, &redirected("[fd00::1]:9090", true)), Some(3));
        assert_eq!(s.handoff(0, &redirected("10.0.0.8:9091", true)), None);
        // A connection that was not redirected stays where it arrived,
        // as does one whose destination is the capturing listener.
        assert_eq!(s.handoff(0, &redirected("10.0.0.7:9080", false)), None);
        assert_eq!(s.handoff(0, &redirected("10.0.0.1:15001", true)), None);
    }

    async fn compile_err(text: &str) -> String {
        let boot = weft_envoy::parse_bootstrap("t", text).unwrap();
        match Snapshot::compile(&boot).await {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn transport_sockets_other_than_tls_and_raw_buffer_are_refused_by_name() {
        // An upstream TLS context without validation compiles (Envoy's
        // "verify nothing" client).
        let tls = "static_resources:\n  clusters: [{name: c, type: STATIC, transport_socket: {name: envoy.transport_sockets.tls, typed_config: {'@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: x}}}]\n";
        assert_eq!(compile_err(tls).await, "");
        let plain = "static_resources:\n  clusters: [{name: c, type: STATIC, transport_socket: {name: envoy.transport_sockets.raw_buffer, typed_config: {'@type': type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}}, {name: d, type: STATIC, transport_socket: {name: envoy.transport_sockets.raw_buffer}}]\n";
        assert_eq!(compile_err(plain).await, "");
        let unnamed = "static_resources:\n  clusters: [{name: c, type: STATIC, transport_socket: {name: envoy.transport_sockets.alts}}]\n";
        assert!(compile_err(unnamed)
            .await
            .contains("transport socket \"envoy.transport_sockets.alts\" is not implemented"));
        let unknown_secret = "static_resources:\n  clusters: [{name: c, type: STATIC, transport_socket: {name: tls, typed_config: {'@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, common_tls_context: {validation_context_sds_secret_config: {name: ROOTCA}}}}}]\n";
        let e = compile_err(unknown_secret).await;
        assert!(
            e.contains("common_tls_context.validation_context_sds_secret_config.name")
                && e.contains("unknown secret \"ROOTCA\""),
            "{e}"
        );
    }
}
