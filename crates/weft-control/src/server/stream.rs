//! One proxy's ADS stream: who it is, what it subscribes to, what it
//! holds (by reference to the published types it was brought up to),
//! and the responses that bring it up to date. The stream's task owns
//! all of it; only the published sync state goes through a lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Status;
use weft_xds::discovery::DeltaDiscoveryRequest;
use weft_xds::Kind;

use super::encode::{name_key, Encoded, KeyMap, KeySet, TypeEncoded};
use super::wire;
use super::{metadata_admin_port, metadata_labels, no_workload_certs, AdsServer, ProxyStatus};
use crate::gen::Proxy;
use crate::metrics::targets::ProxyTarget;
use crate::metrics::Gauge;

/// The names a proxy subscribes to, of one type.
#[derive(Clone, Default)]
enum Names {
    /// Every resource (LDS and CDS are wildcard subscriptions).
    #[default]
    Every,
    /// The names of a published type's resources: what a proxy asks for
    /// when it subscribes to every endpoint set its clusters name, the
    /// usual case, kept by reference rather than copied per stream.
    Like(Arc<TypeEncoded>),
    /// Name hashes.
    Listed(KeySet),
}

/// Whether `keys` are exactly `te`'s names, each once (a list that
/// repeats a name and leaves another out is not the whole type).
fn exactly(te: &TypeEncoded, keys: impl ExactSizeIterator<Item = u64>) -> bool {
    if keys.len() != te.len() {
        return false;
    }
    let mut seen = vec![false; te.len()];
    for k in keys {
        match te.position(k) {
            Some(i) if !seen[i] => seen[i] = true,
            _ => return false,
        }
    }
    true
}

impl Names {
    fn has(&self, key: u64) -> bool {
        match self {
            Names::Every => true,
            Names::Like(t) => t.contains(key),
            Names::Listed(set) => set.contains(&key),
        }
    }

    /// `keys` as a name set: `Like(te)` when they are exactly its names.
    fn of(keys: KeySet, te: &Arc<TypeEncoded>) -> Names {
        if exactly(te, keys.iter().copied()) {
            Names::Like(Arc::clone(te))
        } else {
            Names::Listed(keys)
        }
    }

    /// The same names, referring to `te` when it has exactly them (so an
    /// older type is not kept alive for its names alone).
    fn rebase(&mut self, te: &Arc<TypeEncoded>) {
        if let Names::Like(old) = self {
            if old.name_set == te.name_set && old.len() == te.len() {
                *old = Arc::clone(te);
            }
        }
    }

    /// Whether these are exactly `te`'s names.
    fn covers(&self, te: &TypeEncoded) -> bool {
        match self {
            Names::Every => true,
            Names::Like(t) => t.name_set == te.name_set && t.len() == te.len(),
            Names::Listed(_) => false,
        }
    }

    /// As a set of hashes (to add or remove names).
    fn into_set(self, te: &TypeEncoded) -> KeySet {
        match self {
            Names::Every => te.digests.iter().map(|(k, _)| *k).collect(),
            Names::Like(t) => t.digests.iter().map(|(k, _)| *k).collect(),
            Names::Listed(set) => set,
        }
    }
}

/// One type on one stream: what the proxy asked for and what it holds.
///
/// What it holds is kept by reference: after every response it holds
/// exactly the resources of the type as then published (`held`) that it
/// had asked for (`held_names`), so a hundred proxies of one shape keep
/// no per-proxy copy of thousands of names and digests.
#[derive(Default)]
struct Subscription {
    names: Names,
    /// The last response's nonce and version.
    nonce: String,
    version: String,
    /// What the last response brought the proxy up to.
    held: Option<Arc<TypeEncoded>>,
    held_names: Names,
    /// Held resources to send again all the same (see `respond`).
    stale: KeySet,
    /// Delta, before the first response: what the proxy said it holds
    /// (name hash → digest, name).
    initial: KeyMap<(u64, String)>,
    /// SotW: a hash of the name list of the last request, which the
    /// next one (an ACK) most likely repeats.
    names_digest: Option<u64>,
    /// Sent at least once on this stream.
    answered: bool,
}

impl Subscription {
    /// The digest of what the proxy holds under `key`, if anything.
    fn holds(&self, key: u64) -> Option<u64> {
        if let Some((d, _)) = self.initial.get(&key) {
            return Some(*d);
        }
        let held = self.held.as_ref()?;
        if self.held_names.has(key) {
            held.digest(key)
        } else {
            None
        }
    }

    /// Every name the proxy holds: hash and name.
    fn held(&self) -> Vec<(u64, &str)> {
        let mut out: Vec<(u64, &str)> = self
            .initial
            .iter()
            .map(|(k, (_, n))| (*k, n.as_str()))
            .collect();
        if let Some(held) = &self.held {
            out.extend(
                held.iter()
                    .zip(&held.digests)
                    .filter(|(_, (k, _))| self.held_names.has(*k))
                    .map(|((name, _), (k, _))| (*k, name.as_str())),
            );
        }
        out
    }
}

/// One proxy's stream: who it is and what it was sent.
pub(super) struct StreamState {
    id: u64,
    delta: bool,
    proxy: Option<Proxy>,
    encoded: Arc<Encoded>,
    version: u64,
    subs: BTreeMap<Kind, Subscription>,
    nonce: u64,
    /// `pilot_xds{version}` of the proxy, raised while it is connected.
    connected: Option<Arc<Gauge>>,
}

/// A response, ready for the wire.
pub(super) type Out = wire::Message;

impl StreamState {
    /// A response for `kind` if what the proxy holds differs from what it
    /// should hold, or `force` (it asked). Listeners and clusters go out
    /// whole (the state of the world); route tables and endpoints only
    /// where they changed (both ADS variants allow that), and delta
    /// responses also name what was removed.
    fn respond(&mut self, kind: Kind, force: bool) -> Option<Out> {
        let te = self.encoded.get(&kind).cloned().unwrap_or_default();
        let delta = self.delta;
        let wildcard = matches!(kind, Kind::Listener | Kind::Cluster);
        let sub = self.subs.get_mut(&kind)?;
        sub.names.rebase(&te);
        let unchanged = sub.held.as_ref().is_some_and(|h| Arc::ptr_eq(h, &te));
        if !force && sub.answered && unchanged && sub.stale.is_empty() {
            return None;
        }
        // The usual case: the proxy asked for every resource of the type,
        // holds every resource of the previous one, and the names did not
        // change — compare digests side by side (both in name order).
        let same_names = sub.initial.is_empty()
            && sub.held.as_ref().is_some_and(|held| {
                held.name_set == te.name_set
                    && held.len() == te.len()
                    && sub.names.covers(&te)
                    && sub.held_names.covers(held)
            });
        let changed: Vec<u64> = match &sub.held {
            Some(held) if same_names => te
                .digests
                .iter()
                .zip(&held.digests)
                .filter(|((k, d), (_, was))| d != was || sub.stale.contains(k))
                .map(|((k, _), _)| *k)
                .collect(),
            _ => te
                .digests
                .iter()
                .filter(|(k, d)| {
                    sub.names.has(*k) && (sub.stale.contains(k) || sub.holds(*k) != Some(*d))
                })
                .map(|(k, _)| *k)
                .collect(),
        };
        let removed: Vec<(u64, &str)> = if same_names {
            Vec::new()
        } else {
            sub.held()
                .into_iter()
                .filter(|(k, _)| !te.contains(*k) || !sub.names.has(*k))
                .collect()
        };
        if !force && sub.answered && changed.is_empty() && removed.is_empty() {
            sub.held = Some(Arc::clone(&te));
            sub.held_names = sub.names.clone();
            return None;
        }
        self.nonce += 1;
        let nonce = format!("{}-{}", self.id, self.nonce);
        let version = self.version.to_string();
        // Every resource of the type: the shape's shared entries.
        let all = changed.len() == te.len();
        let out = if delta {
            let removed: Vec<String> = removed.iter().map(|(_, n)| n.to_string()).collect();
            if all {
                wire::delta_with(&version, kind, &nonce, te.delta_all(kind), &removed)
            } else {
                let resources = changed
                    .iter()
                    .filter_map(|k| te.get(*k).map(|(name, r)| (name.as_str(), r)));
                wire::delta(&version, kind, &nonce, resources, &removed)
            }
        } else if wildcard || all {
            wire::sotw_with(&version, kind, &nonce, te.sotw_all(kind))
        } else {
            let resources = changed.iter().filter_map(|k| te.get(*k).map(|(_, r)| r));
            wire::sotw(&version, kind, &nonce, resources)
        };
        // The proxy now holds what it asked for of `te`, nothing else.
        sub.held = Some(Arc::clone(&te));
        sub.held_names = sub.names.clone();
        sub.stale.clear();
        sub.initial.clear();
        sub.nonce = nonce;
        sub.version = version;
        sub.answered = true;
        if kind == Kind::Cluster {
            // A cluster Envoy replaces warms again and waits for its
            // endpoints, even unchanged ones (and holds the CDS ACK until
            // then): they go out again with the next EDS response.
            if let Some(eds) = self.subs.get_mut(&Kind::ClusterLoadAssignment) {
                eds.stale.extend(changed.iter().copied());
            }
        }
        Some(out)
    }
}

/// A request on either variant, reduced to what the stream logic needs.
#[derive(Debug)]
pub(crate) struct Req {
    node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
    kind: Option<Kind>,
    type_url: String,
    nonce: String,
    error: Option<String>,
    /// SotW: the hash of each name in the full list, and of the list.
    names: Option<(Vec<u64>, u64)>,
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
    initial: BTreeMap<String, String>,
}

impl From<super::request::SotwRequest> for Req {
    fn from(r: super::request::SotwRequest) -> Req {
        Req {
            node: r.node,
            kind: Kind::from_type_url(&r.type_url),
            type_url: r.type_url,
            nonce: r.response_nonce,
            error: r.error,
            names: Some((r.keys, r.names_digest)),
            subscribe: Vec::new(),
            unsubscribe: Vec::new(),
            initial: BTreeMap::new(),
        }
    }
}

impl From<DeltaDiscoveryRequest> for Req {
    fn from(r: DeltaDiscoveryRequest) -> Req {
        Req {
            node: r.node,
            kind: Kind::from_type_url(&r.type_url),
            type_url: r.type_url,
            nonce: r.response_nonce,
            error: r.error_detail.map(|s| s.message),
            names: None,
            subscribe: r.resource_names_subscribe,
            unsubscribe: r.resource_names_unsubscribe,
            initial: r.initial_resource_versions.into_iter().collect(),
        }
    }
}

impl AdsServer {
    /// Drives one stream until the proxy goes away.
    pub(super) async fn run(
        self,
        mut incoming: super::request::Requests,
        delta: bool,
        tx: mpsc::UnboundedSender<Result<Out, Status>>,
    ) {
        let id = self
            .shared
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut snapshots = self.shared.snapshot.subscribe();
        let mut st = StreamState {
            id,
            delta,
            proxy: None,
            encoded: Arc::default(),
            version: 0,
            subs: BTreeMap::new(),
            nonce: 0,
            connected: None,
        };
        loop {
            tokio::select! {
                req = incoming.next() => {
                    let req = match req {
                        None => break,
                        Some(Ok(req)) => req,
                        // A request that cannot be read ends the stream,
                        // with the reason for the proxy's log.
                        Some(Err(status)) => {
                            let _ = tx.send(Err(status));
                            break;
                        }
                    };
                    if let Err(status) = self.on_request(&mut st, req, &tx) {
                        let _ = tx.send(Err(status));
                        break;
                    }
                }
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    let snap = snapshots.borrow_and_update().clone();
                    if let Some(proxy) = &st.proxy {
                        let started = Instant::now();
                        st.encoded = self.encoded(&snap, proxy);
                        st.version = snap.version;
                        let kinds: Vec<Kind> = st.subs.keys().copied().collect();
                        for kind in kinds {
                            if let Some(out) = st.respond(kind, false) {
                                self.send(&st, kind, out, started, &tx);
                            }
                        }
                        if let Some(noticed) = self.noticed(snap.version) {
                            self.shared.metrics.convergence.since(noticed);
                        }
                        if let Some(p) = self.shared.status.lock().expect("status lock").get_mut(&st.id) {
                            p.snapshot = snap.version;
                        }
                    }
                }
            }
        }
        self.shared.status.lock().expect("status lock").remove(&id);
        if let Some(g) = st.connected {
            g.dec();
        }
    }

    fn on_request(
        &self,
        st: &mut StreamState,
        req: Req,
        tx: &mpsc::UnboundedSender<Result<Out, Status>>,
    ) -> Result<(), Status> {
        let started = Instant::now();
        if st.proxy.is_none() {
            let Some(node) = &req.node else {
                return Err(Status::invalid_argument(
                    "the first request on a stream must carry the node",
                ));
            };
            let snap = self.snapshot();
            let mut proxy = Proxy::from_node(&node.id, metadata_labels(node), &snap.ctx)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            proxy.workload_certs = !no_workload_certs(node);
            proxy.istio_filters = runs_istio_filters(node);
            if !proxy.istio_filters {
                tracing::info!(proxy = %node.id, "a stock Envoy: no Istio telemetry filters (it has no istio.stats), so this proxy reports no Istio metrics");
            }
            tracing::info!(proxy = %proxy.id, delta = st.delta, "proxy connected");
            let connected = self.shared.metrics.connected(node);
            connected.inc();
            st.connected = Some(connected);
            st.encoded = self.encoded(&snap, &proxy);
            st.version = snap.version;
            self.shared.status.lock().expect("status lock").insert(
                st.id,
                ProxyStatus {
                    id: proxy.id.clone(),
                    proxy: Some(proxy.clone()),
                    snapshot: snap.version,
                    types: BTreeMap::new(),
                    admin_port: metadata_admin_port(node),
                    scrape: ProxyTarget::from_node(node),
                },
            );
            st.proxy = Some(proxy);
        }
        let Some(kind) = req.kind else {
            // Istio answers types it does not serve with nothing; so do we.
            tracing::debug!("request for unserved type {}", req.type_url);
            return Ok(());
        };
        let wildcard = matches!(kind, Kind::Listener | Kind::Cluster);
        let sub = st.subs.entry(kind).or_default();
        let first = !sub.answered;
        // ACK / NACK of our last response on this type.
        let acking = !req.nonce.is_empty() && req.nonce == sub.nonce;
        if !req.nonce.is_empty() && req.nonce != sub.nonce {
            // A stale nonce: the proxy answers an older response; a newer
            // one is on its way.
            self.shared.metrics.expired_nonce.get(kind).inc();
            return Ok(());
        }
        if acking {
            let mut status = self.shared.status.lock().expect("status lock");
            if let Some(t) = status
                .get_mut(&st.id)
                .map(|p| p.types.entry(kind).or_default())
            {
                match &req.error {
                    Some(e) => {
                        let metrics = &self.shared.metrics;
                        metrics.rejects.get(kind).inc();
                        metrics.reject_gauges.get(kind).inc();
                        tracing::warn!(proxy = ?st.proxy.as_ref().map(|p| &p.id), "{} rejected: {e}", kind.xds());
                        t.nack = Some(e.clone());
                    }
                    None => {
                        t.acked = sub.version.clone();
                        t.nack = None;
                    }
                }
            }
        }
        if first || acking {
            // A first answer or an ACK (which names everything the proxy
            // holds) ends a burst of this stream's memory.
            crate::memory::release_soon();
        }
        let te = st.encoded.get(&kind).cloned().unwrap_or_default();
        let mut changed = false;
        if st.delta {
            if first && !req.initial.is_empty() {
                // What the proxy already holds need not be sent again.
                for (n, v) in &req.initial {
                    if let Ok(d) = u64::from_str_radix(v, 16) {
                        sub.initial.insert(name_key(n), (d, n.clone()));
                    }
                }
            }
            if !wildcard && (first || !req.subscribe.is_empty() || !req.unsubscribe.is_empty()) {
                let mut names = match std::mem::take(&mut sub.names) {
                    Names::Every if first => KeySet::default(),
                    other => other.into_set(&te),
                };
                names.extend(req.subscribe.iter().map(name_key));
                for n in &req.unsubscribe {
                    let k = name_key(n);
                    names.remove(&k);
                    sub.initial.remove(&k);
                }
                sub.names = Names::of(names, &te);
                changed = true;
            }
        } else if !wildcard {
            let (keys, digest) = req.names.unwrap_or_default();
            if sub.names_digest != Some(digest) {
                sub.names_digest = Some(digest);
                let keys: KeySet = keys.into_iter().collect();
                let same = match &sub.names {
                    Names::Like(t) => exactly(t, keys.iter().copied()),
                    Names::Listed(set) => *set == keys,
                    Names::Every => false,
                };
                if !same {
                    // Usually every name of the type: no set of its own.
                    sub.names = Names::of(keys, &te);
                    changed = true;
                }
            }
        }
        if first || changed {
            if let Some(out) = st.respond(kind, true) {
                self.send(st, kind, out, started, tx);
            }
        }
        Ok(())
    }

    /// Queues a response begun at `started` (its generation included),
    /// counted by type.
    fn send(
        &self,
        st: &StreamState,
        kind: Kind,
        mut out: Out,
        started: Instant,
        tx: &mpsc::UnboundedSender<Result<Out, Status>>,
    ) {
        self.sent(st, kind);
        let metrics = &self.shared.metrics;
        metrics.config_size.get(kind).observe(out.wire_len() as f64);
        metrics.push_time.get(kind).since(started);
        out.queued = Some(Instant::now());
        if tx.send(Ok(out)).is_ok() {
            metrics.pushes.get(kind).inc();
        } else {
            // The stream is going away.
            metrics.send_errors.get(kind).inc();
        }
    }

    fn sent(&self, st: &StreamState, kind: Kind) {
        let version = st
            .subs
            .get(&kind)
            .map(|s| s.version.clone())
            .unwrap_or_default();
        let mut status = self.shared.status.lock().expect("status lock");
        if let Some(p) = status.get_mut(&st.id) {
            p.types.entry(kind).or_default().sent = version;
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

/// Whether a proxy runs Istio's own filters: weft's proxy names itself
/// `weft`, Istio's Envoy build carries `ISTIO_PROXY_SHA` in its node
/// metadata (pilot-agent sets it); a stock Envoy has neither.
fn runs_istio_filters(node: &envoy_types::pb::envoy::config::core::v3::Node) -> bool {
    node.user_agent_name == "weft"
        || node
            .metadata
            .as_ref()
            .is_some_and(|m| m.fields.contains_key("ISTIO_PROXY_SHA"))
}
