//! Choosing a listener's filter chain for a connection, with Envoy's
//! `filter_chain_match` rules: the criteria are tried in a fixed order
//! (destination port, destination IP, server name, transport protocol,
//! application protocols, source type, source IP, source port), and at
//! each step only the chains that match the connection most specifically
//! go on — a chain without that criterion matches anything, least
//! specifically. There is no backtracking: when a step leaves nothing,
//! the default chain (if any) takes the connection.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use weft_envoy::listener::{CidrRange, FilterChainMatch, SourceType};

/// What is known about a connection when its chain is chosen.
#[derive(Debug, Default)]
pub struct ConnectionFacts {
    /// The destination: the listener's address or, with `original_dst`,
    /// the address the client meant before redirection.
    pub local: Option<SocketAddr>,
    /// Whether `original_dst` found the connection redirected (and so
    /// replaced `local` with the original destination).
    pub restored: bool,
    pub peer: Option<SocketAddr>,
    pub server_name: Option<String>,
    /// `tls` when tls_inspector found a ClientHello, else `raw_buffer`.
    pub transport: &'static str,
    pub application_protocols: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMatch {
    destination_port: Option<u16>,
    prefix_ranges: Vec<IpNet>,
    server_names: Vec<String>,
    transport_protocol: Option<String>,
    application_protocols: Vec<String>,
    source_type: SourceType,
    source_prefix_ranges: Vec<IpNet>,
    source_ports: Vec<u16>,
}

fn cidrs(field: &str, ranges: &[CidrRange]) -> Result<Vec<IpNet>, String> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let ip: IpAddr = r.address_prefix.parse().map_err(|_| {
                format!(
                    "{field}[{i}].address_prefix: {:?} is not an IP address",
                    r.address_prefix
                )
            })?;
            let len = r.prefix_len.unwrap_or(0);
            IpNet::new(ip, len as u8)
                .ok()
                .filter(|_| len <= 128)
                .map(|n| n.trunc())
                .ok_or_else(|| format!("{field}[{i}].prefix_len: {len} is too long for {ip}"))
        })
        .collect()
}

fn port(field: &str, p: u32) -> Result<u16, String> {
    u16::try_from(p).map_err(|_| format!("{field}: {p} is not a port"))
}

impl ChainMatch {
    /// `Err` carries the offending field (relative to the match) and why.
    pub fn compile(m: Option<&FilterChainMatch>) -> Result<Self, String> {
        let Some(m) = m else {
            return Ok(Self::any());
        };
        let mut server_names = Vec::new();
        for (i, n) in m.server_names.iter().enumerate() {
            let n = n.to_ascii_lowercase();
            if n.is_empty()
                || (n.contains('*') && !(n.starts_with("*.") && n[2..].find('*').is_none()))
            {
                return Err(format!(
                    "server_names[{i}]: {n:?} must be a host name or a \"*.\" wildcard prefix"
                ));
            }
            server_names.push(n);
        }
        Ok(ChainMatch {
            destination_port: m
                .destination_port
                .map(|p| port("destination_port", p))
                .transpose()?,
            prefix_ranges: cidrs("prefix_ranges", &m.prefix_ranges)?,
            server_names,
            transport_protocol: (!m.transport_protocol.is_empty())
                .then(|| m.transport_protocol.clone()),
            application_protocols: m.application_protocols.clone(),
            source_type: m.source_type.unwrap_or_default(),
            source_prefix_ranges: cidrs("source_prefix_ranges", &m.source_prefix_ranges)?,
            source_ports: m
                .source_ports
                .iter()
                .enumerate()
                .map(|(i, p)| port(&format!("source_ports[{i}]"), *p))
                .collect::<Result<_, _>>()?,
        })
    }

    fn any() -> Self {
        ChainMatch {
            destination_port: None,
            prefix_ranges: vec![],
            server_names: vec![],
            transport_protocol: None,
            application_protocols: vec![],
            source_type: SourceType::ANY,
            source_prefix_ranges: vec![],
            source_ports: vec![],
        }
    }

    /// Whether two matches accept exactly the same connections, which
    /// Envoy refuses as ambiguous ("multiple filter chains with the same
    /// matching rules").
    pub fn same_rules(&self, o: &Self) -> bool {
        fn set<T: Ord + Clone>(v: &[T]) -> Vec<T> {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        }
        self.destination_port == o.destination_port
            && set(&self.prefix_ranges) == set(&o.prefix_ranges)
            && set(&self.server_names) == set(&o.server_names)
            && self.transport_protocol == o.transport_protocol
            && set(&self.application_protocols) == set(&o.application_protocols)
            && self.source_type == o.source_type
            && set(&self.source_prefix_ranges) == set(&o.source_prefix_ranges)
            && set(&self.source_ports) == set(&o.source_ports)
    }
}

/// How specifically a chain matches on one criterion: `None` does not
/// match; among matches, higher is more specific, and 0 is "criterion
/// not set".
type Rank = Option<u32>;

fn longest_prefix(ranges: &[IpNet], ip: Option<IpAddr>) -> Rank {
    if ranges.is_empty() {
        return Some(0);
    }
    let ip = ip.map(|ip| match ip {
        // An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })?;
    ranges
        .iter()
        .filter(|r| r.contains(&ip))
        .map(|r| u32::from(r.prefix_len()) + 1)
        .max()
}

fn server_name_rank(names: &[String], sni: Option<&str>) -> Rank {
    if names.is_empty() {
        return Some(0);
    }
    let sni = sni?;
    names
        .iter()
        .filter_map(|n| match n.strip_prefix('*') {
            // "*.example.com" matches any name ending in ".example.com";
            // a longer suffix is more specific, an exact name most.
            Some(suffix) if sni.ends_with(suffix) && sni.len() > suffix.len() => {
                Some(suffix.len() as u32)
            }
            Some(_) => None,
            None if n == sni => Some(u32::MAX),
            None => None,
        })
        .max()
}

impl ChainMatch {
    fn rank(&self, step: usize, c: &ConnectionFacts, alpn_pick: Option<&str>) -> Rank {
        let exact = |set: bool, hit: bool| match (set, hit) {
            (false, _) => Some(0),
            (true, true) => Some(1),
            (true, false) => None,
        };
        match step {
            0 => exact(
                self.destination_port.is_some(),
                self.destination_port == c.local.map(|a| a.port()),
            ),
            1 => longest_prefix(&self.prefix_ranges, c.local.map(|a| a.ip())),
            2 => server_name_rank(&self.server_names, c.server_name.as_deref()),
            3 => exact(
                self.transport_protocol.is_some(),
                self.transport_protocol.as_deref() == Some(c.transport),
            ),
            4 => exact(
                !self.application_protocols.is_empty(),
                alpn_pick.is_some_and(|p| self.application_protocols.iter().any(|a| a == p)),
            ),
            5 => {
                let local = match (c.peer, c.local) {
                    (Some(p), Some(l)) => p.ip().is_loopback() || p.ip() == l.ip(),
                    _ => false,
                };
                match self.source_type {
                    SourceType::ANY => Some(0),
                    SourceType::SAME_IP_OR_LOOPBACK => local.then_some(1),
                    SourceType::EXTERNAL => (!local).then_some(1),
                }
            }
            6 => longest_prefix(&self.source_prefix_ranges, c.peer.map(|a| a.ip())),
            _ => exact(
                !self.source_ports.is_empty(),
                c.peer
                    .is_some_and(|p| self.source_ports.contains(&p.port())),
            ),
        }
    }
}

/// The filter chains of one listener, in configuration order.
#[derive(Debug)]
pub struct Chains<T> {
    pub chains: Vec<(ChainMatch, T)>,
    pub default: Option<T>,
}

impl<T> Chains<T> {
    /// The chain for a connection, or `None` when nothing matches and
    /// there is no default chain (the connection is closed).
    pub fn select(&self, c: &ConnectionFacts) -> Option<&T> {
        let mut left: Vec<usize> = (0..self.chains.len()).collect();
        for step in 0..8 {
            // Envoy takes the first protocol the client offers that any
            // remaining chain names; chains naming none of them only match
            // as "not set".
            let alpn_pick = (step == 4)
                .then(|| {
                    c.application_protocols.iter().find(|p| {
                        left.iter()
                            .any(|&i| self.chains[i].0.application_protocols.contains(p))
                    })
                })
                .flatten()
                .map(String::as_str);
            // Ranking is a few comparisons: computing it twice is cheaper
            // than a vector of ranks per step on every connection.
            let rank = |i: &usize| self.chains[*i].0.rank(step, c, alpn_pick);
            let Some(best) = left.iter().filter_map(rank).max() else {
                return self.default.as_ref();
            };
            left.retain(|i| rank(i) == Some(best));
        }
        match left.first() {
            Some(&i) => Some(&self.chains[i].1),
            None => self.default.as_ref(),
        }
    }
}

#[cfg(test)]
#[path = "chains_tests.rs"]
mod tests;
