//! Listeners: where connections arrive, what the listener filters learn
//! about them (original destination, TLS server name and ALPN, HTTP or
//! not), and which filter chain then serves them.

pub mod chains;
pub mod inspect;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use weft_envoy::listener::Listener;
use weft_envoy::TypedConfig;

use crate::chain::{timeout, Chain, FilterChain, Routes};
use crate::error::unsupported;
use crate::error::CompileError;
use crate::stats::{ListenerStats, Store};
use chains::{ChainMatch, Chains, ConnectionFacts};

#[derive(Debug)]
pub struct ListenerConfig {
    pub name: String,
    pub addr: SocketAddr,
    /// False for listeners that only take connections handed over by a
    /// `use_original_dst` listener (Istio's per-service outbound ones).
    pub bind: bool,
    /// Hand each connection to the listener bound to its original
    /// destination, when there is one.
    pub use_original_dst: bool,
    pub filters: ListenerFilters,
    pub chains: Chains<FilterChain>,
    pub stats: std::sync::Arc<ListenerStats>,
    /// Fired when this listener is replaced or removed: its open
    /// connections drain (HTTP/2 GOAWAY, HTTP/1 `connection: close`).
    pub drain: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
pub struct ListenerFilters {
    pub original_dst: bool,
    pub tls_inspector: bool,
    pub http_inspector: bool,
    /// How long the inspectors may wait for the client's first bytes.
    pub timeout: Option<Duration>,
    /// On that timeout, choose a chain with what is known instead of
    /// closing the connection.
    pub continue_on_timeout: bool,
}

impl ListenerConfig {
    /// Whether a filter chain waits for an SDS secret.
    pub fn secrets_pending(&self) -> bool {
        self.chains
            .chains
            .iter()
            .map(|(_, c)| c)
            .chain(self.chains.default.iter())
            .any(|c| c.transport.pending())
    }

    /// The RDS route tables this listener's connection managers use.
    pub fn rds_names(&self) -> impl Iterator<Item = &str> {
        self.chains
            .chains
            .iter()
            .map(|(_, c)| c)
            .chain(self.chains.default.iter())
            .filter_map(|c| match &c.terminal {
                Chain::Http(h) => match &h.routes {
                    Routes::Rds(name) => Some(name.as_str()),
                    Routes::Inline(_) => None,
                },
                Chain::Tcp(_) => None,
            })
    }
}

pub fn compile(
    at: &str,
    l: &Listener,
    stats: &Store,
    secrets: &crate::transport::Secrets,
) -> Result<ListenerConfig, CompileError> {
    if l.per_connection_buffer_limit_bytes.is_some() {
        return Err(unsupported(
            format!("{at}.per_connection_buffer_limit_bytes"),
            "per_connection_buffer_limit_bytes",
        ));
    }
    let mut filters = ListenerFilters {
        // Envoy's default listener_filters_timeout is 15 s.
        timeout: timeout(l.listener_filters_timeout, Some(Duration::from_secs(15))),
        continue_on_timeout: l.continue_on_listener_filters_timeout,
        ..Default::default()
    };
    for (i, f) in l.listener_filters.iter().enumerate() {
        match f.typed_config {
            TypedConfig::OriginalDst => filters.original_dst = true,
            TypedConfig::TlsInspector => filters.tls_inspector = true,
            TypedConfig::HttpInspector => filters.http_inspector = true,
            _ => {
                return Err(CompileError::Config {
                    field: format!("{at}.listener_filters[{i}]"),
                    message: "not a listener filter".into(),
                })
            }
        }
    }
    let inbound = l.traffic_direction == Some(weft_envoy::listener::TrafficDirection::INBOUND);
    let mut compiled: Vec<(ChainMatch, FilterChain)> = Vec::new();
    for (i, c) in l.filter_chains.iter().enumerate() {
        let cat = format!("{at}.filter_chains[{i}]");
        let m = ChainMatch::compile(c.filter_chain_match.as_ref()).map_err(|message| {
            CompileError::Config {
                field: format!("{cat}.filter_chain_match"),
                message,
            }
        })?;
        if let Some(j) = compiled.iter().position(|(o, _)| o.same_rules(&m)) {
            return Err(CompileError::Config {
                field: format!("{cat}.filter_chain_match"),
                message: format!("filter_chains[{j}] has the same matching rules; a connection could match either"),
            });
        }
        compiled.push((m, FilterChain::compile(&cat, c, stats, secrets, inbound)?));
    }
    let default = l
        .default_filter_chain
        .as_ref()
        .map(|c| {
            FilterChain::compile(
                &format!("{at}.default_filter_chain"),
                c,
                stats,
                secrets,
                inbound,
            )
        })
        .transpose()?;
    let addr = l
        .address
        .socket_addr()
        .ok_or_else(|| CompileError::Config {
            field: format!("{at}.address"),
            message: "expected an IP socket address".into(),
        })?;
    Ok(ListenerConfig {
        name: l.name.clone(),
        addr,
        bind: l.bind_to_port != Some(false),
        use_original_dst: l.use_original_dst == Some(true),
        filters,
        chains: Chains {
            chains: compiled,
            default,
        },
        stats: ListenerStats::new(stats, addr),
        drain: tokio::sync::watch::Sender::new(false),
    })
}

/// An accepted connection while its listener filters run: the bytes they
/// read (which the chain must still see) and what they learned.
pub struct Accepted {
    pub stream: TcpStream,
    pub read: BytesMut,
    pub facts: ConnectionFacts,
}

/// Why listener filters gave up on a connection (downstream; the
/// connection is closed, nothing to retry).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("the client closed the connection before its listener filters finished")]
    Closed,
    #[error("listener filters timed out")]
    Timeout,
    #[error("TLS ClientHello larger than {} bytes", inspect::MAX_CLIENT_HELLO)]
    HelloTooLarge,
}

impl Accepted {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        let local = stream.local_addr().ok();
        Accepted {
            stream,
            read: BytesMut::new(),
            facts: ConnectionFacts {
                local,
                peer: Some(peer),
                transport: "raw_buffer",
                ..Default::default()
            },
        }
    }

    /// Runs `filters`: restores the original destination and reads as
    /// much as the inspectors need to decide.
    pub async fn inspect(&mut self, filters: &ListenerFilters) -> Result<(), InspectError> {
        if filters.original_dst {
            if let Some(dst) = inspect::original_dst(&self.stream) {
                self.facts.local = Some(dst);
                self.facts.restored = true;
            }
        }
        if !filters.tls_inspector && !filters.http_inspector {
            return Ok(());
        }
        let sniff = self.sniff(filters);
        match filters.timeout {
            None => sniff.await,
            Some(t) => match tokio::time::timeout(t, sniff).await {
                Ok(r) => r,
                Err(_) if filters.continue_on_timeout => Ok(()),
                Err(_) => Err(InspectError::Timeout),
            },
        }
    }

    async fn sniff(&mut self, filters: &ListenerFilters) -> Result<(), InspectError> {
        let (mut tls_open, mut http_open) = (filters.tls_inspector, filters.http_inspector);
        loop {
            if tls_open {
                match inspect::client_hello(&self.read) {
                    inspect::Tls::NeedMore => {}
                    inspect::Tls::NotTls => tls_open = false,
                    inspect::Tls::TooLarge => return Err(InspectError::HelloTooLarge),
                    inspect::Tls::Hello(h) => {
                        self.facts.transport = "tls";
                        self.facts.server_name = h.server_name;
                        self.facts.application_protocols = h.alpn;
                        // TLS is not HTTP in the clear: nothing for the
                        // HTTP inspector to see.
                        return Ok(());
                    }
                }
            }
            if http_open && !tls_open {
                match inspect::http_protocol(&self.read) {
                    inspect::Http::NeedMore => {}
                    inspect::Http::NotHttp => http_open = false,
                    inspect::Http::Protocol(p) => {
                        self.facts.application_protocols = vec![p.to_string()];
                        return Ok(());
                    }
                }
            }
            if !tls_open && !http_open {
                return Ok(());
            }
            self.read.reserve(4096);
            match self.stream.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => return Err(InspectError::Closed),
                Ok(_) => {}
            }
        }
    }
}
