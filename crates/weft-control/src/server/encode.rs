//! Generated resources as the wire carries them, made once and reused.
//!
//! Most of a mesh does not change from one snapshot to the next. So:
//! - a resource that encodes to the same bytes as one encoded before
//!   shares those bytes (`Cache`): every shape and snapshot that has it
//!   holds one allocation;
//! - per proxy shape, a type whose resources all came out the same keeps
//!   the previous snapshot's `Arc`, so streams see "unchanged" by pointer
//!   and skip the type without looking inside;
//! - every resource carries a hash of its name, and each type a hash of
//!   all its names, so streams compare and look up by integers, and tell
//!   "same names as before" without looking at a name.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::sync::Arc;

use weft_xds::Kind;
use xxhash_rust::xxh64::{xxh64, Xxh64};

#[cfg(test)]
pub(crate) type Any = envoy_types::pb::google::protobuf::Any;

/// One encoded resource: its protobuf bytes, shared by every shape,
/// snapshot and response that has it (cloning is a reference count).
#[derive(Clone, Debug)]
pub(crate) struct Res {
    pub value: bytes::Bytes,
    /// Of the bytes: what changed means.
    pub digest: u64,
}

impl Res {
    #[cfg(test)]
    pub fn new(any: Any) -> Res {
        Res::encoded(any.value)
    }

    /// A message's protobuf bytes.
    pub fn encoded(value: Vec<u8>) -> Res {
        let digest = xxh64(&value, 0);
        Res {
            value: value.into(),
            digest,
        }
    }
}

/// The resources of one type for one proxy shape.
#[derive(Debug, Default)]
pub(crate) struct TypeEncoded {
    /// Names and resources, in name order.
    names: Vec<String>,
    res: Vec<Res>,
    /// Name hash → position.
    keys: KeyMap<u32>,
    /// (name hash, digest) of every resource, in name order.
    pub digests: Vec<(u64, u64)>,
    /// A hash of every name: equal for two types with the same names.
    pub name_set: u64,
    /// Every resource as a response's entries, made when a response
    /// first carries them all and shared by every stream of the shape.
    sotw_all: std::sync::OnceLock<bytes::Bytes>,
    delta_all: std::sync::OnceLock<bytes::Bytes>,
}

impl TypeEncoded {
    fn new(by_name: BTreeMap<String, Res>) -> TypeEncoded {
        let n = by_name.len();
        let mut t = TypeEncoded {
            names: Vec::with_capacity(n),
            res: Vec::with_capacity(n),
            digests: Vec::with_capacity(n),
            ..Default::default()
        };
        t.keys.reserve(n);
        let mut set = Xxh64::new(0);
        for (i, (name, res)) in by_name.into_iter().enumerate() {
            let key = name_key(&name);
            set.update(&key.to_le_bytes());
            t.keys.insert(key, i as u32);
            t.digests.push((key, res.digest));
            t.names.push(name);
            t.res.push(res);
        }
        t.name_set = set.finish();
        t
    }

    pub fn len(&self) -> usize {
        self.res.len()
    }

    /// Every resource with its name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Res)> {
        self.names.iter().zip(&self.res)
    }

    /// `wire::sotw_entries` of every resource.
    pub fn sotw_all(&self, kind: Kind) -> &bytes::Bytes {
        self.sotw_all
            .get_or_init(|| super::wire::sotw_entries(kind, self.res.iter()))
    }

    /// `wire::delta_entries` of every resource.
    pub fn delta_all(&self, kind: Kind) -> &bytes::Bytes {
        self.delta_all.get_or_init(|| {
            super::wire::delta_entries(kind, self.iter().map(|(n, r)| (n.as_str(), r)))
        })
    }

    /// The resource whose name hashes to `key`, with its name.
    pub fn get(&self, key: u64) -> Option<(&String, &Res)> {
        let i = *self.keys.get(&key)? as usize;
        Some((&self.names[i], &self.res[i]))
    }

    /// Where the resource whose name hashes to `key` is, in name order.
    pub fn position(&self, key: u64) -> Option<usize> {
        self.keys.get(&key).map(|i| *i as usize)
    }

    pub fn contains(&self, key: u64) -> bool {
        self.keys.contains_key(&key)
    }

    /// The digest of the resource whose name hashes to `key`.
    pub fn digest(&self, key: u64) -> Option<u64> {
        self.keys.get(&key).map(|i| self.digests[*i as usize].1)
    }
}

pub(crate) type Encoded = BTreeMap<Kind, Arc<TypeEncoded>>;

/// Name hashes are already hashes: maps keyed by them use the key as is.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys go through here; anything else still hashes.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Hashing for maps keyed by values that are already hashes.
pub(crate) type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;
pub(crate) type KeyMap<V> = HashMap<u64, V, KeyHash>;
pub(crate) type KeySet = std::collections::HashSet<u64, KeyHash>;

pub(crate) fn name_key(name: impl AsRef<[u8]>) -> u64 {
    xxh64(name.as_ref(), 0x6e61_6d65)
}

/// Resources of each type by name, encoded, before they are indexed.
pub(crate) type ByKind = BTreeMap<Kind, BTreeMap<String, Res>>;

/// Encoded resources by (type, digest of their bytes), kept while some
/// snapshot of the last two uses them; and per proxy shape, what it was
/// last given.
#[derive(Default)]
pub(crate) struct Cache {
    entries: HashMap<(Kind, u64), (Res, u64)>,
    /// Per proxy shape, what the last snapshot gave it.
    shapes: HashMap<String, (u64, Arc<Encoded>)>,
    /// Per sidecar shape, each service's encoded parts (see `parts`).
    pub memos: HashMap<String, super::parts::ShapeMemo>,
    version: u64,
}

impl Cache {
    /// The shape's resources for snapshot `version`, if already made.
    pub fn get(&self, shape: &str, version: u64) -> Option<Arc<Encoded>> {
        self.shapes
            .get(shape)
            .filter(|(v, _)| *v == version)
            .map(|(_, e)| Arc::clone(e))
    }

    /// Starts snapshot `version`: forgets what neither it nor the
    /// previous one used (a shape no proxy asked for since has no proxy
    /// left).
    fn start(&mut self, version: u64) {
        if version != self.version {
            let keep = self.version;
            self.entries.retain(|_, (_, used)| *used >= keep);
            let shapes = &mut self.shapes;
            shapes.retain(|_, (v, _)| *v >= keep);
            self.memos.retain(|shape, _| shapes.contains_key(shape));
            self.version = version;
        }
    }

    /// One generated resource's bytes, shared with an earlier snapshot's
    /// when they are the same (compared whole: two resources whose
    /// digests collide keep their own bytes, the later one cached).
    pub fn share(&mut self, version: u64, kind: Kind, bytes: Vec<u8>) -> Res {
        self.start(version);
        let fresh = Res::encoded(bytes);
        let key = (kind, fresh.digest);
        match self.entries.get_mut(&key) {
            Some((res, used)) if res.value == fresh.value => {
                *used = version;
                res.clone()
            }
            _ => {
                self.entries.insert(key, (fresh.clone(), version));
                fresh
            }
        }
    }

    /// Encodes a generator's output for `shape` at snapshot `version`,
    /// reusing bytes and whole types that did not change.
    pub fn encode(
        &mut self,
        shape: &str,
        version: u64,
        output: crate::gen::Output,
    ) -> Arc<Encoded> {
        let mut by_kind = ByKind::new();
        for (kind, resources) in output {
            let by_name = by_kind.entry(kind).or_default();
            for (name, resource) in resources {
                by_name.insert(name, self.share(version, kind, resource.encode()));
            }
        }
        self.finish(shape, version, by_kind)
    }

    /// Indexes a shape's encoded resources for snapshot `version`; a type
    /// whose resources all came out as before keeps the previous `Arc`.
    pub fn finish(&mut self, shape: &str, version: u64, by_kind: ByKind) -> Arc<Encoded> {
        self.start(version);
        let previous = self.shapes.get(shape).map(|(_, e)| Arc::clone(e));
        let mut encoded = Encoded::new();
        for (kind, by_name) in by_kind {
            let fresh = TypeEncoded::new(by_name);
            let same = previous
                .as_ref()
                .and_then(|p| p.get(&kind))
                .filter(|p| p.digests == fresh.digests);
            encoded.insert(kind, same.cloned().unwrap_or_else(|| Arc::new(fresh)));
        }
        let encoded = Arc::new(encoded);
        self.shapes
            .insert(shape.to_string(), (version, Arc::clone(&encoded)));
        encoded
    }
}
