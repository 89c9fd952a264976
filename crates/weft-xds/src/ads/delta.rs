//! The client side of incremental (delta) ADS, as a state machine with
//! no I/O, producing the same [`Update`]s as the state-of-the-world
//! client so the proxy applies both alike.
//!
//! Envoy's delta rules: a response carries only resources that changed
//! (each with its own version) and the names removed; subscriptions
//! change by `resource_names_subscribe` / `_unsubscribe`; LDS and CDS
//! subscribe to everything (`*`); a new stream re-announces what the
//! client holds in `initial_resource_versions`, so the server sends only
//! what differs. An ACK is the response's nonce without error_detail; a
//! NACK adds error_detail, and nothing from the response is applied.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use super::{digest, status, Held, Node, Update};
use crate::decode::decode_against;
use crate::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use crate::{DecodeError, Kind};

#[derive(Default)]
struct TypeState {
    /// The last response's system version the proxy accepted.
    version: String,
    nonce: String,
    /// Named subscriptions (RDS, EDS); LDS and CDS subscribe to `*`.
    names: BTreeSet<String>,
    resources: BTreeMap<String, Held>,
    /// Each held resource's version, re-announced on a new stream.
    versions: BTreeMap<String, String>,
    /// Versions of the update waiting for the proxy's answer.
    pending: BTreeMap<String, String>,
    /// A request for this type went out on the current stream.
    requested: bool,
}

/// What a delta response became.
#[derive(Debug)]
pub enum DeltaOutcome {
    Update(Update),
    /// Refused while decoding: send this NACK; nothing changes.
    Refused(Box<DeltaDiscoveryRequest>, String),
}

pub struct DeltaAds {
    node: Node,
    types: BTreeMap<Kind, TypeState>,
    node_sent: bool,
    /// LDS waits for the first CDS update, as in the state-of-the-world
    /// client.
    lds_waits: bool,
}

impl DeltaAds {
    pub fn with_types(node: Node, lds: bool, cds: bool) -> Self {
        let mut types = BTreeMap::new();
        for (kind, on) in [(Kind::Cluster, cds), (Kind::Listener, lds)] {
            if on {
                types.insert(kind, TypeState::default());
            }
        }
        DeltaAds {
            node,
            types,
            node_sent: false,
            lds_waits: lds && cds,
        }
    }

    pub fn version(&self, kind: Kind) -> &str {
        self.types.get(&kind).map_or("", |t| t.version.as_str())
    }

    /// A new stream: subscribe again to everything, telling the server
    /// which versions are already held.
    pub fn on_connect(&mut self) -> Vec<DeltaDiscoveryRequest> {
        self.node_sent = false;
        let lds_waits = self.lds_waits;
        let kinds: Vec<Kind> = self
            .types
            .iter()
            .filter(|(k, t)| k.wildcard() || !t.names.is_empty())
            .filter(|(k, _)| !(lds_waits && **k == Kind::Listener))
            .map(|(k, _)| *k)
            .collect();
        for t in self.types.values_mut() {
            t.requested = false;
            t.nonce.clear();
        }
        kinds
            .into_iter()
            .map(|kind| {
                let mut req = self.bare(kind);
                let t = self.types.entry(kind).or_default();
                t.requested = true;
                req.resource_names_subscribe = if kind.wildcard() {
                    vec!["*".to_string()]
                } else {
                    t.names.iter().cloned().collect()
                };
                req.initial_resource_versions = t
                    .versions
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect();
                req
            })
            .collect()
    }

    /// Sets the names of a named type; returns the request carrying the
    /// difference when it changed.
    pub fn subscribe(
        &mut self,
        kind: Kind,
        names: BTreeSet<String>,
    ) -> Option<DeltaDiscoveryRequest> {
        if kind.wildcard() {
            return None;
        }
        let t = self.types.entry(kind).or_default();
        if t.names == names && (t.requested || names.is_empty()) {
            return None;
        }
        let first = !t.requested;
        let add: Vec<String> = if first {
            names.iter().cloned().collect()
        } else {
            names.difference(&t.names).cloned().collect()
        };
        let drop: Vec<String> = t.names.difference(&names).cloned().collect();
        t.resources.retain(|n, _| names.contains(n));
        t.versions.retain(|n, _| names.contains(n));
        t.names = names;
        t.requested = true;
        let mut req = self.bare(kind);
        req.resource_names_subscribe = add;
        req.resource_names_unsubscribe = drop;
        Some(req)
    }

    /// Decodes a response into the type's whole set as it would be.
    pub fn on_response(
        &mut self,
        resp: &DeltaDiscoveryResponse,
        clusters: &HashSet<&str>,
    ) -> DeltaOutcome {
        let Some(kind) = Kind::from_type_url(&resp.type_url) else {
            let msg = DecodeError::UnknownType(resp.type_url.clone()).to_string();
            let mut req = DeltaDiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                error_detail: Some(status(&msg)),
                ..Default::default()
            };
            if !self.node_sent {
                self.node_sent = true;
                req.node = Some(self.node.clone());
            }
            return DeltaOutcome::Refused(Box::new(req), msg);
        };
        let t = self.types.entry(kind).or_default();
        t.nonce = resp.nonce.clone();
        let mut resources = t.resources.clone();
        let mut versions = t.versions.clone();
        let mut changed = BTreeSet::new();
        let mut errors = Vec::new();
        let mut rejected = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &resp.resources {
            let Some(any) = &r.resource else {
                errors.push(format!("{kind:?} {:?} has no resource", r.name));
                continue;
            };
            if any.type_url != resp.type_url {
                errors.push(format!(
                    "a resource of type {:?} in a {:?} response",
                    any.type_url, resp.type_url
                ));
                continue;
            }
            // Sent again with the same bytes (a new version of nothing):
            // kept as it is, not decoded again.
            if let Some(h) = resources.get_mut(&r.name) {
                if *h.bytes == *any.value && seen.insert(r.name.clone()) {
                    h.version = Some(Arc::from(r.version.as_str()));
                    versions.insert(r.name.clone(), r.version.clone());
                    continue;
                }
            }
            match decode_against(&any.type_url, &any.value, clusters, &t.resources) {
                Ok((name, _)) if !kind.wildcard() && !t.names.contains(&name) => {}
                Ok((name, decoded)) => {
                    if !seen.insert(name.clone()) {
                        errors.push(format!("{kind:?} {name:?} appears twice"));
                        continue;
                    }
                    if !r.name.is_empty() && r.name != name {
                        errors.push(format!(
                            "{kind:?} {:?}: the resource inside is named {name:?}",
                            r.name
                        ));
                        continue;
                    }
                    let d = digest(&any.value);
                    if t.resources.get(&name).is_none_or(|h| h.digest != d) {
                        changed.insert(name.clone());
                    }
                    versions.insert(name.clone(), r.version.clone());
                    resources.insert(
                        name,
                        Held {
                            resource: Arc::new(decoded),
                            bytes: Arc::from(any.value.as_slice()),
                            version: Some(Arc::from(r.version.as_str())),
                            digest: d,
                        },
                    );
                }
                // Refused on its own: the version held now (if any) stays,
                // with its version.
                Err(e) => match super::refuses_only_itself(&e) {
                    Some(name) if seen.insert(name.to_string()) => rejected.push(e.to_string()),
                    Some(name) => errors.push(format!("{kind:?} {name:?} appears twice")),
                    None => errors.push(e.to_string()),
                },
            }
        }
        if !errors.is_empty() {
            let msg = errors.join("; ");
            return DeltaOutcome::Refused(Box::new(self.nack(kind, &msg)), msg);
        }
        let mut removed = Vec::new();
        for name in &resp.removed_resources {
            if resources.remove(name).is_some() {
                versions.remove(name);
                removed.push(name.clone());
            }
        }
        t.pending = versions;
        DeltaOutcome::Update(Update {
            kind,
            version: resp.system_version_info.clone(),
            resources,
            changed,
            removed,
            rejected,
        })
    }

    /// The update was applied: returns the ACK, and after the first CDS
    /// update the LDS subscription that waited for it.
    pub fn ack(&mut self, update: Update) -> Vec<DeltaDiscoveryRequest> {
        let kind = update.kind;
        let t = self.types.entry(kind).or_default();
        t.version = update.version;
        t.resources = update.resources;
        t.versions = std::mem::take(&mut t.pending);
        let nonce = t.nonce.clone();
        let mut ack = self.bare(kind);
        ack.response_nonce = nonce;
        let mut out = vec![ack];
        out.extend(self.lds_after(kind));
        out
    }

    /// The update was applied but for the resources it refused: what was
    /// applied is held, with its versions, and the answer is a NACK
    /// naming what was refused (plus the LDS subscription after the
    /// first CDS update, as [`DeltaAds::ack`]).
    pub fn partial(
        &mut self,
        mut update: Update,
        refused: super::Refused,
    ) -> Vec<DeltaDiscoveryRequest> {
        let kind = update.kind;
        let t = self.types.entry(kind).or_default();
        let mut versions = std::mem::take(&mut t.pending);
        for (name, why) in refused {
            match t.versions.get(&name) {
                Some(v) => versions.insert(name.clone(), v.clone()),
                None => versions.remove(&name),
            };
            update.refuse(&t.resources, name, why);
        }
        let message = update.rejection().unwrap_or_default();
        t.resources = update.resources;
        t.versions = versions;
        let mut out = vec![self.nack(kind, &message)];
        out.extend(self.lds_after(kind));
        out
    }

    /// After the first CDS update, answered either way, the LDS
    /// subscription that waited for it.
    fn lds_after(&mut self, kind: Kind) -> Option<DeltaDiscoveryRequest> {
        if kind != Kind::Cluster || !self.lds_waits {
            return None;
        }
        self.lds_waits = false;
        let mut lds = self.bare(Kind::Listener);
        lds.resource_names_subscribe = vec!["*".to_string()];
        self.types.entry(Kind::Listener).or_default().requested = true;
        Some(lds)
    }

    /// The update could not be applied (or did not decode): the NACK.
    pub fn nack(&mut self, kind: Kind, message: &str) -> DeltaDiscoveryRequest {
        let nonce = self.types.entry(kind).or_default().nonce.clone();
        let mut req = self.bare(kind);
        req.response_nonce = nonce;
        req.error_detail = Some(status(message));
        req
    }

    fn bare(&mut self, kind: Kind) -> DeltaDiscoveryRequest {
        let node = if self.node_sent {
            None
        } else {
            self.node_sent = true;
            Some(self.node.clone())
        };
        DeltaDiscoveryRequest {
            node,
            type_url: kind.type_url(),
            ..Default::default()
        }
    }
}
