//! One proxy's ADS stream: who it is, what it subscribes to, what it
//! was sent (by name hash and digest), and the responses that bring it
//! up to date. The stream's task owns all of it; only the published
//! sync state goes through a lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use weft_xds::discovery::{DeltaDiscoveryRequest, DiscoveryRequest};
use weft_xds::Kind;

use super::encode::{name_key, Encoded, TypeEncoded};
use super::wire;
use super::{metadata_labels, AdsServer, ProxyStatus};
use crate::gen::Proxy;

#[derive(Default)]
struct Subscription {
    /// Name hashes; None: every resource of the type (LDS, CDS).
    names: Option<HashSet<u64>>,
    /// The last response's nonce and version.
    nonce: String,
    version: String,
    /// What the proxy holds: name hash → digest.
    sent: HashMap<u64, u64>,
    /// Delta only: the names of what it holds, to name removals.
    sent_names: HashMap<u64, String>,
    /// `sent` is exactly this type's resources as last published (so an
    /// unchanged type, the same `Arc`, needs no look inside).
    basis: Option<Arc<TypeEncoded>>,
    /// Sent at least once on this stream.
    answered: bool,
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
        if !force && sub.answered && sub.basis.as_ref().is_some_and(|b| Arc::ptr_eq(b, &te)) {
            return None;
        }
        let subscribed = |k: u64| sub.names.as_ref().is_none_or(|ns| ns.contains(&k));
        let changed: Vec<u64> = te
            .digests
            .iter()
            .filter(|(k, d)| subscribed(*k) && sub.sent.get(k) != Some(d))
            .map(|(k, _)| *k)
            .collect();
        let removed: Vec<u64> = sub
            .sent
            .keys()
            .filter(|k| !te.keys.contains_key(k) || !subscribed(**k))
            .copied()
            .collect();
        sub.basis = Some(Arc::clone(&te));
        if !force && sub.answered && changed.is_empty() && removed.is_empty() {
            return None;
        }
        self.nonce += 1;
        let nonce = format!("{}-{}", self.id, self.nonce);
        let version = self.version.to_string();
        // Every resource of the type: the shape's shared entries.
        let all = changed.len() == te.digests.len();
        let out = if delta {
            let removed: Vec<String> = removed
                .iter()
                .filter_map(|k| sub.sent_names.get(k).cloned())
                .collect();
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
        for k in &changed {
            if let Some((name, r)) = te.get(*k) {
                sub.sent.insert(*k, r.digest);
                if delta {
                    sub.sent_names.insert(*k, name.clone());
                }
            }
        }
        for k in &removed {
            sub.sent.remove(k);
            sub.sent_names.remove(k);
        }
        sub.nonce = nonce;
        sub.version = version;
        sub.answered = true;
        if kind == Kind::Cluster {
            // A cluster Envoy replaces warms again and waits for its
            // endpoints, even unchanged ones (and holds the CDS ACK until
            // then): they go out again with the next EDS response.
            if let Some(eds) = self.subs.get_mut(&Kind::ClusterLoadAssignment) {
                for k in &changed {
                    eds.sent.remove(k);
                }
                eds.basis = None;
            }
        }
        Some(out)
    }
}

/// A request on either variant, reduced to what the stream logic needs.
pub(super) struct Req {
    node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
    kind: Option<Kind>,
    type_url: String,
    nonce: String,
    error: Option<String>,
    /// SotW: the full name list.
    names: Option<Vec<String>>,
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
    initial: BTreeMap<String, String>,
}

impl From<DiscoveryRequest> for Req {
    fn from(r: DiscoveryRequest) -> Req {
        Req {
            node: r.node,
            kind: Kind::from_type_url(&r.type_url),
            type_url: r.type_url,
            nonce: r.response_nonce,
            error: r.error_detail.map(|s| s.message),
            names: Some(r.resource_names),
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
    pub(super) async fn run<R: Into<Req>>(
        self,
        mut incoming: Streaming<R>,
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
        };
        loop {
            tokio::select! {
                req = incoming.next() => {
                    let Some(Ok(req)) = req else { break };
                    if let Err(status) = self.on_request(&mut st, req.into(), &tx) {
                        let _ = tx.send(Err(status));
                        break;
                    }
                }
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    let snap = snapshots.borrow_and_update().clone();
                    if let Some(proxy) = &st.proxy {
                        st.encoded = self.encoded(&snap, proxy);
                        st.version = snap.version;
                        let kinds: Vec<Kind> = st.subs.keys().copied().collect();
                        for kind in kinds {
                            if let Some(out) = st.respond(kind, false) {
                                self.sent(&st, kind);
                                let _ = tx.send(Ok(out));
                            }
                        }
                        if let Some(p) = self.shared.status.lock().expect("status lock").get_mut(&st.id) {
                            p.snapshot = snap.version;
                        }
                    }
                }
            }
        }
        self.shared.status.lock().expect("status lock").remove(&id);
    }

    fn on_request(
        &self,
        st: &mut StreamState,
        req: Req,
        tx: &mpsc::UnboundedSender<Result<Out, Status>>,
    ) -> Result<(), Status> {
        if st.proxy.is_none() {
            let Some(node) = &req.node else {
                return Err(Status::invalid_argument(
                    "the first request on a stream must carry the node",
                ));
            };
            let snap = self.snapshot();
            let proxy = Proxy::from_node(&node.id, metadata_labels(node), &snap.ctx)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            tracing::info!(proxy = %proxy.id, delta = st.delta, "proxy connected");
            st.encoded = self.encoded(&snap, &proxy);
            st.version = snap.version;
            self.shared.status.lock().expect("status lock").insert(
                st.id,
                ProxyStatus {
                    id: proxy.id.clone(),
                    proxy: Some(proxy.clone()),
                    snapshot: snap.version,
                    types: BTreeMap::new(),
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
        let before = sub.names.clone();
        if st.delta {
            if first && !req.initial.is_empty() {
                // What the proxy already holds need not be sent again.
                for (n, v) in &req.initial {
                    if let Ok(d) = u64::from_str_radix(v, 16) {
                        sub.sent.insert(name_key(n), d);
                        sub.sent_names.insert(name_key(n), n.clone());
                    }
                }
            }
            if !wildcard {
                let mut names = sub.names.take().unwrap_or_default();
                names.extend(req.subscribe.iter().map(|n| name_key(n)));
                for n in &req.unsubscribe {
                    let k = name_key(n);
                    names.remove(&k);
                    sub.sent.remove(&k);
                    sub.sent_names.remove(&k);
                }
                sub.names = Some(names);
            }
        } else if !wildcard {
            sub.names = req.names.map(|n| n.iter().map(|n| name_key(n)).collect());
        }
        let changed = sub.names != before;
        if first || changed {
            if let Some(out) = st.respond(kind, true) {
                self.sent(st, kind);
                let _ = tx.send(Ok(out));
            }
        }
        Ok(())
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
