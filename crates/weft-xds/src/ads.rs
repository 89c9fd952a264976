//! The client side of state-of-the-world ADS as a state machine, with no
//! I/O: it turns responses into updates (or NACKs when they do not
//! decode), subscription changes into requests, and an applied update
//! into its ACK. The proxy owns the stream; an update becomes the type's
//! set only once the proxy has applied it, so a resource the proxy
//! cannot use is NACKed like one that did not decode.
//!
//! Envoy's rules: an ACK carries the response's version and nonce; a
//! NACK carries the last accepted version, the response's nonce and an
//! `error_detail` naming each refused resource and field, and nothing
//! from that response is applied (the last good set keeps serving). For
//! LDS and CDS (wildcard) a response is the whole set, so a resource it
//! leaves out is removed; for RDS and EDS it holds the named resources.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::decode::decode_against;
use crate::discovery::{DiscoveryRequest, DiscoveryResponse};
use crate::{DecodeError, Kind, Resource};

/// `google.rpc.Code.INVALID_ARGUMENT`, what a NACK reports.
const INVALID_ARGUMENT: i32 = 3;

pub type Node = envoy_types::pb::envoy::config::core::v3::Node;

#[derive(Default)]
struct TypeState {
    /// Last accepted version and the nonce of the last response seen.
    version: String,
    nonce: String,
    /// Subscribed names; LDS and CDS subscribe to everything.
    names: BTreeSet<String>,
    resources: BTreeMap<String, Held>,
    /// Whether a request for this type went out on the current stream.
    requested: bool,
}

/// Resources refused while applying: name, and why.
pub type Refused = Vec<(String, String)>;

/// An accepted resource and a digest of its bytes, which tells an
/// unchanged resource in a later response from a changed one.
#[derive(Clone, Debug)]
pub struct Held {
    pub resource: Arc<Resource>,
    /// As delivered (protobuf), for the admin endpoint's config dump.
    pub bytes: Arc<[u8]>,
    /// The resource's own version (delta xDS); state of the world only
    /// versions the whole type.
    pub version: Option<Arc<str>>,
    digest: u64,
}

impl Held {
    #[cfg(test)]
    pub(crate) fn for_test(resource: Resource, bytes: &[u8]) -> Held {
        Held {
            resource: Arc::new(resource),
            bytes: Arc::from(bytes),
            version: None,
            digest: digest(bytes),
        }
    }
}

/// A response that decoded: the type's whole set as it would be. Apply
/// it, then [`Ads::ack`] it (or [`Ads::nack`] if applying failed).
#[derive(Clone, Debug)]
pub struct Update {
    pub kind: Kind,
    pub version: String,
    pub resources: BTreeMap<String, Held>,
    /// Names new in this update or whose bytes changed.
    pub changed: BTreeSet<String>,
    pub removed: Vec<String>,
    /// Resources refused on their own (why, naming each), as Envoy
    /// refuses a cluster or listener it cannot build while applying the
    /// rest of the update: each keeps the version held before, if any,
    /// and the update is NACKed once applied ([`Ads::partial`]).
    pub rejected: Vec<String>,
}

impl Update {
    /// The NACK's detail when resources were refused.
    pub fn rejection(&self) -> Option<String> {
        (!self.rejected.is_empty()).then(|| self.rejected.join("; "))
    }

    /// The proxy refused `name` while applying: it stays as `held` had it
    /// (or absent), and `why` joins the NACK.
    pub(crate) fn refuse(&mut self, held: &BTreeMap<String, Held>, name: String, why: String) {
        match held.get(&name) {
            Some(h) => {
                self.resources.insert(name.clone(), h.clone());
            }
            None => {
                self.resources.remove(&name);
            }
        }
        self.changed.remove(&name);
        self.rejected.push(why);
    }
}

/// A decode error that refuses one resource and not its whole response:
/// the resource is named, its bytes were protobuf, the model refused it.
/// Bytes that are not protobuf, a resource of the wrong type or one
/// named twice refuse the response, as in Envoy.
pub(crate) fn refuses_only_itself(e: &DecodeError) -> Option<&str> {
    match e {
        DecodeError::Field { name, .. } | DecodeError::Json { name, .. } if !name.is_empty() => {
            Some(name)
        }
        _ => None,
    }
}

/// What a response became.
#[derive(Debug)]
pub enum Outcome {
    Update(Update),
    /// Refused while decoding: send this NACK; nothing changes.
    Refused(Box<DiscoveryRequest>, String),
}

pub struct Ads {
    node: Node,
    types: BTreeMap<Kind, TypeState>,
    /// The first request on a stream carries the node.
    node_sent: bool,
    /// LDS waits for the first CDS update, as in Envoy: listeners may
    /// name clusters, so clusters come first.
    lds_waits: bool,
}

impl Kind {
    /// LDS and CDS ask for every resource; the others for named ones.
    fn wildcard(self) -> bool {
        matches!(self, Kind::Listener | Kind::Cluster)
    }
}

impl Ads {
    /// A client for LDS and CDS over ADS.
    pub fn new(node: Node) -> Self {
        Self::with_types(node, true, true)
    }

    /// A client for the wildcard types the bootstrap asks for
    /// (`lds_config`, `cds_config`).
    pub fn with_types(node: Node, lds: bool, cds: bool) -> Self {
        let mut types = BTreeMap::new();
        for (kind, on) in [(Kind::Cluster, cds), (Kind::Listener, lds)] {
            if on {
                types.insert(kind, TypeState::default());
            }
        }
        Ads {
            node,
            types,
            node_sent: false,
            lds_waits: lds && cds,
        }
    }

    /// The accepted resources of a type.
    pub fn resources(&self, kind: Kind) -> impl Iterator<Item = (&String, &Resource)> {
        self.types
            .get(&kind)
            .into_iter()
            .flat_map(|t| t.resources.iter().map(|(n, h)| (n, &*h.resource)))
    }

    /// The last accepted version of a type.
    pub fn version(&self, kind: Kind) -> &str {
        self.types.get(&kind).map_or("", |t| t.version.as_str())
    }

    /// A new stream: the requests to send first — CDS, then LDS (unless it
    /// still waits for the first CDS update), then any named
    /// subscriptions — each with the version already held, so a restarted
    /// control plane that has nothing newer need not resend.
    pub fn on_connect(&mut self) -> Vec<DiscoveryRequest> {
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
        kinds.into_iter().map(|k| self.request(k, None)).collect()
    }

    /// Sets the names of a named type (RDS, EDS, SDS). Returns the request
    /// to send when the subscription changed; names dropped from it have
    /// their resources forgotten.
    pub fn subscribe(&mut self, kind: Kind, names: BTreeSet<String>) -> Option<DiscoveryRequest> {
        if kind.wildcard() {
            return None;
        }
        let t = self.types.entry(kind).or_default();
        // Unchanged, or nothing to ask for yet.
        if t.names == names && (t.requested || names.is_empty()) {
            return None;
        }
        t.resources.retain(|n, _| names.contains(n));
        t.names = names;
        Some(self.request(kind, None))
    }

    /// Decodes one response. `clusters`: the cluster names in force,
    /// which inline route tables are checked against.
    pub fn on_response(&mut self, resp: &DiscoveryResponse, clusters: &HashSet<&str>) -> Outcome {
        let Some(kind) = Kind::from_type_url(&resp.type_url) else {
            // Not a type we asked for: NACK it on its own type URL.
            let mut req = self.bare(&resp.type_url);
            req.response_nonce = resp.nonce.clone();
            let msg = DecodeError::UnknownType(resp.type_url.clone()).to_string();
            req.error_detail = Some(status(&msg));
            return Outcome::Refused(Box::new(req), msg);
        };
        let t = self.types.entry(kind).or_default();
        t.nonce = resp.nonce.clone();
        let mut decoded = BTreeMap::new();
        let mut changed = BTreeSet::new();
        let mut errors = Vec::new();
        let mut rejected = Vec::new();
        let mut refused_names = BTreeSet::new();
        let held = HeldByDigest::new(&t.resources);
        for any in &resp.resources {
            if any.type_url != resp.type_url {
                errors.push(format!(
                    "a resource of type {:?} in a {:?} response",
                    any.type_url, resp.type_url
                ));
                continue;
            }
            if let Some((name, h)) = held.same(&any.value) {
                if (kind.wildcard() || t.names.contains(name))
                    && decoded.insert(name.clone(), h.clone()).is_some()
                {
                    errors.push(format!("{kind:?} {name:?} appears twice"));
                }
                continue;
            }
            match decode_against(&any.type_url, &any.value, clusters, &t.resources) {
                // Only what is subscribed is kept.
                Ok((name, _)) if !kind.wildcard() && !t.names.contains(&name) => {}
                Ok((name, r)) => {
                    let digest = digest(&any.value);
                    if t.resources.get(&name).is_none_or(|h| h.digest != digest) {
                        changed.insert(name.clone());
                    }
                    let held = Held {
                        resource: Arc::new(r),
                        bytes: Arc::from(any.value.as_slice()),
                        version: None,
                        digest,
                    };
                    if decoded.insert(name.clone(), held).is_some() || refused_names.contains(&name)
                    {
                        errors.push(format!("{kind:?} {name:?} appears twice"));
                    }
                }
                Err(e) => match refuses_only_itself(&e) {
                    Some(name) => {
                        if decoded.contains_key(name) || !refused_names.insert(name.to_string()) {
                            errors.push(format!("{kind:?} {name:?} appears twice"));
                        }
                        rejected.push(e.to_string());
                    }
                    None => errors.push(e.to_string()),
                },
            }
        }
        // A refused resource keeps the version held now (a listener or
        // cluster is not removed because its update was refused).
        for name in &refused_names {
            if let Some(h) = t.resources.get(name) {
                decoded.insert(name.clone(), h.clone());
            }
        }
        if !errors.is_empty() {
            let msg = errors.join("; ");
            return Outcome::Refused(Box::new(self.request(kind, Some(&msg))), msg);
        }
        let mut removed = Vec::new();
        let resources = if kind.wildcard() {
            removed = t
                .resources
                .keys()
                .filter(|n| !decoded.contains_key(*n))
                .cloned()
                .collect();
            decoded
        } else {
            let mut all = t.resources.clone();
            all.extend(decoded);
            all
        };
        Outcome::Update(Update {
            kind,
            version: resp.version_info.clone(),
            resources,
            changed,
            removed,
            rejected,
        })
    }

    /// The update was applied: it is now the type's set. Returns the ACK,
    /// and after the first CDS update the LDS request that waited for it.
    pub fn ack(&mut self, update: Update) -> Vec<DiscoveryRequest> {
        let kind = update.kind;
        let t = self.types.entry(kind).or_default();
        t.version = update.version;
        t.resources = update.resources;
        let mut out = vec![self.request(kind, None)];
        out.extend(self.lds_after(kind));
        out
    }

    /// The update was applied but for the resources it refused
    /// (`update.rejected`, and `refused` by the proxy): what was applied
    /// is now the type's set, the version stays the last one accepted
    /// whole, and the answer is a NACK naming what was refused (and after
    /// the first CDS update the LDS request that waited for it).
    pub fn partial(&mut self, mut update: Update, refused: Refused) -> Vec<DiscoveryRequest> {
        let kind = update.kind;
        let t = self.types.entry(kind).or_default();
        for (name, why) in refused {
            update.refuse(&t.resources, name, why);
        }
        let message = update.rejection().unwrap_or_default();
        t.resources = update.resources;
        let mut out = vec![self.request(kind, Some(&message))];
        out.extend(self.lds_after(kind));
        out
    }

    /// After the first CDS update, answered either way, the LDS request
    /// that waited for it.
    fn lds_after(&mut self, kind: Kind) -> Option<DiscoveryRequest> {
        if kind != Kind::Cluster || !self.lds_waits {
            return None;
        }
        self.lds_waits = false;
        Some(self.request(Kind::Listener, None))
    }

    /// The update could not be applied: returns the NACK; the type's set
    /// stays as it was.
    pub fn nack(&mut self, kind: Kind, message: &str) -> DiscoveryRequest {
        self.request(kind, Some(message))
    }

    fn bare(&mut self, type_url: &str) -> DiscoveryRequest {
        let node = if self.node_sent {
            None
        } else {
            self.node_sent = true;
            Some(self.node.clone())
        };
        DiscoveryRequest {
            node,
            type_url: type_url.to_string(),
            ..Default::default()
        }
    }

    fn request(&mut self, kind: Kind, nack: Option<&str>) -> DiscoveryRequest {
        let mut req = self.bare(&kind.type_url());
        let t = self.types.entry(kind).or_default();
        t.requested = true;
        req.version_info = t.version.clone();
        req.response_nonce = t.nonce.clone();
        if !kind.wildcard() {
            req.resource_names = t.names.iter().cloned().collect();
        }
        req.error_detail = nack.map(status);
        req
    }
}

/// The resources held now, found by their bytes: a resource delivered
/// again unchanged is reused as it is, not decoded and checked again (a
/// control plane resends every resource of a type on each state-of-the-
/// world push; Envoy too skips those whose hash has not changed).
pub(crate) struct HeldByDigest<'a>(std::collections::HashMap<u64, (&'a String, &'a Held)>);

impl<'a> HeldByDigest<'a> {
    pub(crate) fn new(held: &'a BTreeMap<String, Held>) -> Self {
        HeldByDigest(held.iter().map(|(n, h)| (h.digest, (n, h))).collect())
    }

    pub(crate) fn same(&self, bytes: &[u8]) -> Option<(&'a String, &'a Held)> {
        let (name, held) = self.0.get(&digest(bytes))?;
        // The digest finds it; the bytes decide.
        (*held.bytes == *bytes).then_some((*name, *held))
    }
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn status(message: &str) -> envoy_types::pb::google::rpc::Status {
    envoy_types::pb::google::rpc::Status {
        code: INVALID_ARGUMENT,
        message: message.to_string(),
        details: Vec::new(),
    }
}

pub mod delta;

#[cfg(test)]
mod tests;
