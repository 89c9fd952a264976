//! A sidecar's resources made service by service, keeping each
//! service's encoded parts from the last snapshot while its inputs are
//! unchanged (`gen::service_inputs`). One edited VirtualService or
//! WorkloadEntry then costs one service's generation and encoding, not
//! the mesh's. Route tables are assembled from the services' encoded
//! virtual hosts: protobuf lets a repeated field's entries follow the
//! rest of a message, so a table is its header's bytes followed by one
//! length-prefixed virtual host per service.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use weft_xds::Kind;

use super::encode::{ByKind, Cache, Res};
use crate::context::Context;
use crate::gen::{self, Proxy, Table};
use crate::model::Service;

type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// `RouteConfiguration.virtual_hosts` is field 2, length-delimited.
const VIRTUAL_HOSTS_KEY: u8 = 2 << 3 | 2;

/// What each service gave one sidecar shape, by (namespace, hostname).
#[derive(Default)]
pub(crate) struct ShapeMemo {
    services: HashMap<(String, String), Memo, foldhash::fast::RandomState>,
}

struct Memo {
    inputs: u64,
    clusters: Vec<(String, Res)>,
    endpoints: Vec<(String, Res)>,
    /// (port, domains, encoded `VirtualHost`).
    virtual_hosts: Vec<(u32, Vec<String>, Arc<[u8]>)>,
}

fn key(s: &Service) -> (String, String) {
    (s.namespace.clone(), s.hostname.clone())
}

/// A sidecar's resources for snapshot `version`, encoded.
pub(crate) fn sidecar(
    cache: &mut Cache,
    shape: &str,
    version: u64,
    ctx: &Context,
    proxy: &Proxy,
) -> ByKind {
    let scope = gen::scope(ctx, proxy);
    let mut out = ByKind::new();
    for kind in [
        Kind::Cluster,
        Kind::ClusterLoadAssignment,
        Kind::Listener,
        Kind::RouteConfiguration,
        Kind::Secret,
    ] {
        out.insert(kind, Default::default());
    }
    for c in gen::sidecar_fixed_clusters(ctx, proxy, &scope) {
        put(cache, version, &mut out, Kind::Cluster, c.name.clone(), &c);
    }
    for s in gen::sidecar_secrets(ctx, proxy, &scope) {
        put(cache, version, &mut out, Kind::Secret, s.name.clone(), &s);
    }

    let mut old = cache
        .memos
        .remove(shape)
        .map(|m| m.services)
        .unwrap_or_default();
    let mut memo = ShapeMemo::default();
    for s in &scope.services {
        let k = key(s);
        if memo.services.contains_key(&k) {
            // Two services of one name in one namespace: the later one's
            // parts are not kept (its route tables take the slow path).
            add(&mut out, &make(ctx, proxy, s, 0));
            continue;
        }
        let inputs = gen::service_inputs(ctx, proxy, s);
        let parts = match old.remove(&k) {
            Some(m) if m.inputs == inputs => m,
            _ => make(ctx, proxy, s, inputs),
        };
        add(&mut out, &parts);
        memo.services.insert(k, parts);
    }

    let (listeners, tables) = gen::sidecar_listeners(ctx, proxy, &scope);
    for l in listeners {
        put(cache, version, &mut out, Kind::Listener, l.name.clone(), &l);
    }
    for t in &tables {
        match assemble(&memo, t, scope.outbound_mode) {
            Some(res) => {
                out.entry(Kind::RouteConfiguration)
                    .or_default()
                    .insert(t.name.clone(), res);
            }
            None => {
                let table = gen::route_table(ctx, proxy, t, scope.outbound_mode);
                put(
                    cache,
                    version,
                    &mut out,
                    Kind::RouteConfiguration,
                    table.name.clone(),
                    &table,
                );
            }
        }
    }
    cache.memos.insert(shape.to_string(), memo);
    out
}

/// Encodes one generated resource into `out`, by its name.
fn put(
    cache: &mut Cache,
    version: u64,
    out: &mut ByKind,
    kind: Kind,
    name: String,
    message: &impl Message,
) {
    let res = cache.share(version, kind, message.encode_to_vec());
    out.entry(kind).or_default().insert(name, res);
}

fn add(out: &mut ByKind, m: &Memo) {
    let clusters = out.entry(Kind::Cluster).or_default();
    for (name, res) in &m.clusters {
        clusters.insert(name.clone(), res.clone());
    }
    let endpoints = out.entry(Kind::ClusterLoadAssignment).or_default();
    for (name, res) in &m.endpoints {
        endpoints.insert(name.clone(), res.clone());
    }
}

/// Generates and encodes one service's parts: straight to bytes, as the
/// memo is what keeps them across snapshots.
fn make(ctx: &Context, proxy: &Proxy, s: &Service, inputs: u64) -> Memo {
    let parts = gen::service_parts(ctx, proxy, s);
    let clusters = parts
        .clusters
        .into_iter()
        .map(|c| (c.name.clone(), Res::encoded(c.encode_to_vec())))
        .collect();
    let endpoints = parts
        .endpoints
        .into_iter()
        .map(|e| (e.cluster_name.clone(), Res::encoded(e.encode_to_vec())))
        .collect();
    let virtual_hosts = parts
        .virtual_hosts
        .into_iter()
        .map(|(port, vh)| (port, vh.domains.clone(), Arc::from(vh.encode_to_vec())))
        .collect();
    Memo {
        inputs,
        clusters,
        endpoints,
        virtual_hosts,
    }
}

/// Route table `t` from the services' encoded virtual hosts; `None`
/// when it cannot be (a name two services answer to, which the table
/// gives the first only: the caller generates that table whole).
fn assemble(memo: &ShapeMemo, t: &Table, mode: weft_api::sidecar::OutboundMode) -> Option<Res> {
    let mut hosts: Vec<&[u8]> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::default();
    for s in &t.services {
        let m = memo.services.get(&key(s))?;
        for (port, domains, bytes) in &m.virtual_hosts {
            if *port != t.port {
                continue;
            }
            for d in domains {
                if !seen.insert(d) {
                    return None;
                }
            }
            hosts.push(bytes);
        }
    }
    let (header, fallback) = gen::table_parts(&t.name, mode);
    let fallback = fallback.encode_to_vec();
    let mut value = header.encode_to_vec();
    let total: usize = hosts.iter().map(|h| h.len() + 6).sum();
    value.reserve(total + fallback.len() + 6);
    for h in hosts.into_iter().chain([fallback.as_slice()]) {
        value.push(VIRTUAL_HOSTS_KEY);
        put_varint(&mut value, h.len() as u64);
        value.extend_from_slice(h);
    }
    Some(Res::encoded(value))
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
