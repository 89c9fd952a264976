//! Consistent hashing: a route's `hash_policy` turns a request into a
//! 64-bit hash (header, cookie — generated when missing and a TTL is
//! set —, source IP, query parameter), and RING_HASH and MAGLEV clusters
//! map the hash to an endpoint. Both tables are built the way Envoy
//! builds them (xxHash64 of `ADDRESS_N` ring points; Maglev permutations
//! from xxHash64 with seeds 0 and 1), so the same key reaches the same
//! address behind weft as behind Envoy.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use regex::Regex;
use weft_envoy::route as cfg;
use xxhash_rust::xxh64::xxh64;

#[derive(Debug)]
enum Source {
    Header(HeaderName, Option<(Regex, String)>),
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
        attributes: Vec<(String, String)>,
    },
    ClientIp,
    Query(String),
}

#[derive(Debug)]
pub struct HashPolicy {
    entries: Vec<(Source, bool)>,
}

/// The connection a request came on, as the hash policies see it.
pub struct Conn {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
}

/// A request's hash, and the cookie to set when one was generated.
pub struct Hashed {
    pub hash: Option<u64>,
    pub set_cookie: Option<HeaderValue>,
}

impl HashPolicy {
    pub fn compile(list: &[cfg::HashPolicy]) -> Result<Option<Self>, String> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let source = if let Some(h) = &p.header {
                let name = HeaderName::from_bytes(h.header_name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| {
                        format!("hash_policy[{i}].header.header_name: not a header name")
                    })?;
                let rewrite = h
                    .regex_rewrite
                    .as_ref()
                    .map(crate::matchers::compile_rewrite)
                    .transpose()?;
                Source::Header(name, rewrite)
            } else if let Some(c) = &p.cookie {
                Source::Cookie {
                    name: c.name.clone(),
                    ttl: c.ttl.map(|d| d.0),
                    path: c.path.clone().filter(|p| !p.is_empty()),
                    attributes: c
                        .attributes
                        .iter()
                        .map(|a| (a.name.clone(), a.value.clone()))
                        .collect(),
                }
            } else if p
                .connection_properties
                .as_ref()
                .is_some_and(|c| c.source_ip)
            {
                Source::ClientIp
            } else if let Some(q) = &p.query_parameter {
                Source::Query(q.name.clone())
            } else {
                continue;
            };
            entries.push((source, p.terminal));
        }
        Ok(Some(HashPolicy { entries }))
    }

    /// Envoy's combination: each hash found is XORed into the running
    /// value rotated left by one; a terminal entry that found one stops.
    pub fn hash(&self, headers: &HeaderMap, path_and_query: &str, conn: &Conn) -> Hashed {
        let mut hash: Option<u64> = None;
        let mut set_cookie = None;
        for (source, terminal) in &self.entries {
            let found = match source {
                Source::Header(name, rewrite) => {
                    let mut values: Vec<String> = headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .map(|v| match rewrite {
                            Some((re, sub)) => re.replace_all(v, sub.as_str()).into_owned(),
                            None => v.to_string(),
                        })
                        .collect();
                    // The same values in any order give the same hash.
                    values.sort();
                    (!values.is_empty()).then(|| {
                        values
                            .iter()
                            .fold(0u64, |seed, v| xxh64(v.as_bytes(), seed))
                    })
                }
                Source::Cookie {
                    name,
                    ttl,
                    path,
                    attributes,
                } => match cookie(headers, name) {
                    Some(v) => Some(xxh64(v.as_bytes(), 0)),
                    None => ttl.map(|ttl| {
                        // Envoy's generated value: the hash of the
                        // connection's two addresses, so racing requests
                        // on one connection get the same cookie.
                        let local = conn.local.map(|l| l.to_string()).unwrap_or_default();
                        let value = format!(
                            "{:016x}",
                            xxh64(format!("{}{local}", conn.peer).as_bytes(), 0)
                        );
                        set_cookie =
                            set_cookie_value(name, &value, path.as_deref(), &ttl, attributes);
                        xxh64(value.as_bytes(), 0)
                    }),
                },
                Source::ClientIp => Some(xxh64(conn.peer.ip().to_string().as_bytes(), 0)),
                Source::Query(name) => {
                    query_value(path_and_query, name).map(|v| xxh64(v.as_bytes(), 0))
                }
            };
            if let Some(new) = found {
                let old = hash.map_or(0, |h| h.rotate_left(1));
                hash = Some(old ^ new);
            }
            if *terminal && hash.is_some() {
                break;
            }
        }
        Hashed { hash, set_cookie }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn query_value<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let (_, q) = path_and_query.split_once('?')?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

fn set_cookie_value(
    name: &str,
    value: &str,
    path: Option<&str>,
    ttl: &Duration,
    attributes: &[(String, String)],
) -> Option<HeaderValue> {
    let mut s = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(p) = path {
        s.push_str(&format!("; Path={p}"));
    }
    for (k, v) in attributes {
        if v.is_empty() {
            s.push_str(&format!("; {k}"));
        } else {
            s.push_str(&format!("; {k}={v}"));
        }
    }
    s.push_str("; HttpOnly");
    HeaderValue::from_str(&s).ok()
}

/// Envoy's hash ring: each endpoint gets points in proportion to its
/// weight (at least `min_size` points in all, at most `max_size`), each
/// the xxHash64 of "ADDRESS_N"; a hash goes to the first point at or
/// above it, wrapping around.
#[derive(Debug, Default)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// `hosts` are (endpoint index, address, weight).
    pub fn build(hosts: &[(usize, SocketAddr, u32)], min_size: u64, max_size: u64) -> Self {
        if hosts.is_empty() {
            return Ring::default();
        }
        let total: f64 = hosts.iter().map(|h| f64::from(h.2)).sum();
        let normalized: Vec<f64> = hosts.iter().map(|h| f64::from(h.2) / total).collect();
        let min_weight = normalized.iter().copied().fold(f64::MAX, f64::min);
        let scale = ((min_weight * min_size as f64).ceil() / min_weight).min(max_size as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for (h, w) in hosts.iter().zip(&normalized) {
            let key = h.1.to_string();
            target += scale * w;
            let mut i = 0u64;
            while current < target {
                points.push((xxh64(format!("{key}_{i}").as_bytes(), 0), h.0 as u32));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_by_key(|p| p.0);
        Ring { points }
    }

    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.0 < hash);
        let (_, e) = self.points.get(i).unwrap_or(&self.points[0]);
        Some(*e as usize)
    }
}

/// Envoy's Maglev table: each endpoint walks its own permutation of the
/// slots (offset and skip from xxHash64 of its address, seeds 0 and 1),
/// taking turns in proportion to weight until every slot is filled.
#[derive(Debug, Default)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    pub fn build(hosts: &[(usize, SocketAddr, u32)], size: u64) -> Self {
        if hosts.is_empty() || size < 2 {
            return Maglev::default();
        }
        let total: f64 = hosts.iter().map(|h| f64::from(h.2)).sum();
        struct Entry {
            endpoint: u32,
            offset: u64,
            skip: u64,
            weight: f64,
            target: f64,
            next: u64,
        }
        let mut entries: Vec<Entry> = hosts
            .iter()
            .map(|h| {
                let key = h.1.to_string();
                Entry {
                    endpoint: h.0 as u32,
                    offset: xxh64(key.as_bytes(), 0) % size,
                    skip: xxh64(key.as_bytes(), 1) % (size - 1) + 1,
                    weight: f64::from(h.2) / total,
                    target: 0.0,
                    next: 0,
                }
            })
            .collect();
        let max_weight = entries.iter().map(|e| e.weight).fold(0.0, f64::max);
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        let mut iteration = 1u64;
        while filled < size {
            for e in entries.iter_mut() {
                if filled >= size {
                    break;
                }
                if (iteration as f64) * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                let mut c = (e.offset + e.skip * e.next) % size;
                while table[c as usize] != u32::MAX {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % size;
                }
                table[c as usize] = e.endpoint;
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev { table }
    }

    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(usize, SocketAddr, u32)> {
        (0..n)
            .map(|i| (i, format!("10.0.0.{i}:80").parse().unwrap(), 1))
            .collect()
    }

    #[test]
    fn ring_size_and_stickiness() {
        let ring = Ring::build(&hosts(3), 1024, 8 << 20);
        // ceil(1024 / 3) points each, as Envoy scales.
        assert_eq!(ring.points.len(), 342 * 3);
        let picks: Vec<_> = (0..1000u64)
            .map(|k| ring.pick(xxh64(&k.to_le_bytes(), 0)).unwrap())
            .collect();
        for (k, p) in picks.iter().enumerate() {
            assert_eq!(ring.pick(xxh64(&(k as u64).to_le_bytes(), 0)).unwrap(), *p);
        }
        for e in 0..3 {
            let n = picks.iter().filter(|p| **p == e).count();
            assert!((200..=470).contains(&n), "endpoint {e}: {n} of 1000");
        }
        // Removing one endpoint moves few of the others' keys (the two
        // left get more points each, so not none).
        let two = Ring::build(&hosts(2), 1024, 8 << 20);
        let kept: Vec<bool> = picks
            .iter()
            .enumerate()
            .filter(|(_, p)| **p < 2)
            .map(|(k, p)| two.pick(xxh64(&(k as u64).to_le_bytes(), 0)).unwrap() == *p)
            .collect();
        let stayed = kept.iter().filter(|k| **k).count();
        assert!(
            stayed * 100 >= kept.len() * 80,
            "{stayed} of {}",
            kept.len()
        );
    }

    #[test]
    fn maglev_fills_every_slot_in_proportion() {
        let mut h = hosts(3);
        h[2].2 = 2;
        let m = Maglev::build(&h, 65537);
        assert!(m.table.iter().all(|e| *e < 3));
        let count = |e: u32| m.table.iter().filter(|x| **x == e).count() as f64 / 65537.0;
        assert!((count(2) - 0.5).abs() < 0.01, "{}", count(2));
        assert!((count(0) - 0.25).abs() < 0.01, "{}", count(0));
    }

    #[test]
    fn policies_combine_like_envoy() {
        let p: Vec<cfg::HashPolicy> = serde_json::from_value(serde_json::json!([
            {"header": {"header_name": "x-user"}},
            {"query_parameter": {"name": "id"}, "terminal": true},
            {"connection_properties": {"source_ip": true}}
        ]))
        .unwrap();
        let p = HashPolicy::compile(&p).unwrap().unwrap();
        let conn = Conn {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: None,
        };
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("jason"));
        let user = xxh64(b"jason", 0);
        let id = xxh64(b"7", 0);
        assert_eq!(
            p.hash(&h, "/p?id=7", &conn).hash,
            Some(user.rotate_left(1) ^ id)
        );
        // A terminal entry stops once any hash exists, its own or not.
        assert_eq!(p.hash(&h, "/p", &conn).hash, Some(user));
        let ip = xxh64(b"127.0.0.1", 0);
        assert_eq!(p.hash(&HeaderMap::new(), "/p", &conn).hash, Some(ip));
    }
}
