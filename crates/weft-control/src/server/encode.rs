//! Generated resources as the wire carries them, made once and reused.
//!
//! Turning a generator's JSON into protobuf is the costly part of a push,
//! and most of a mesh does not change from one snapshot to the next. So:
//! - a resource whose JSON hashes the same as one encoded before reuses
//!   its bytes (`Cache`);
//! - per proxy shape, a type whose resources all came out the same keeps
//!   the previous snapshot's `Arc`, so streams see "unchanged" by pointer
//!   and skip the type without looking inside;
//! - every resource carries a hash of its name, so streams track what a
//!   proxy holds in maps of integers.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::sync::Arc;

use serde_json::Value;
use weft_xds::Kind;
use xxhash_rust::xxh64::{xxh64, Xxh64};

pub(crate) type Any = envoy_types::pb::google::protobuf::Any;

/// One encoded resource.
#[derive(Clone, Debug)]
pub(crate) struct Res {
    pub any: Any,
    /// Of the bytes: what changed means.
    pub digest: u64,
}

/// The resources of one type for one proxy shape.
#[derive(Debug, Default)]
pub(crate) struct TypeEncoded {
    pub by_name: BTreeMap<String, Res>,
    /// Name hash → name, for every resource.
    pub keys: HashMap<u64, String>,
    /// (name hash, digest) of every resource, in name order.
    pub digests: Vec<(u64, u64)>,
}

impl TypeEncoded {
    fn new(by_name: BTreeMap<String, Res>) -> TypeEncoded {
        let keys = by_name.keys().map(|n| (name_key(n), n.clone())).collect();
        let digests = by_name
            .iter()
            .map(|(n, r)| (name_key(n), r.digest))
            .collect();
        TypeEncoded {
            by_name,
            keys,
            digests,
        }
    }

    pub fn get(&self, key: u64) -> Option<(&String, &Res)> {
        let name = self.keys.get(&key)?;
        self.by_name.get(name).map(|r| (name, r))
    }
}

pub(crate) type Encoded = BTreeMap<Kind, Arc<TypeEncoded>>;

pub(crate) fn name_key(name: &str) -> u64 {
    xxh64(name.as_bytes(), 0x6e61_6d65)
}

/// A structural hash of a JSON value (object keys are ordered).
fn json_hash(v: &Value, h: &mut Xxh64) {
    match v {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => h.write_u8(if *b { 1 } else { 2 }),
        Value::Number(n) => {
            h.write_u8(3);
            h.write(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.write_u8(4);
            h.write_u64(s.len() as u64);
            h.write(s.as_bytes());
        }
        Value::Array(a) => {
            h.write_u8(5);
            h.write_u64(a.len() as u64);
            for x in a {
                json_hash(x, h);
            }
        }
        Value::Object(m) => {
            h.write_u8(6);
            h.write_u64(m.len() as u64);
            for (k, x) in m {
                h.write_u64(k.len() as u64);
                h.write(k.as_bytes());
                json_hash(x, h);
            }
        }
    }
}

/// Encoded resources by (type, JSON hash), kept while some snapshot of
/// the last two uses them.
#[derive(Default)]
pub(crate) struct Cache {
    entries: HashMap<(Kind, u64), (Res, u64)>,
    /// Per proxy shape, what the last snapshot gave it.
    shapes: HashMap<String, (u64, Arc<Encoded>)>,
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

    /// Encodes a generator's output for `shape` at snapshot `version`,
    /// reusing bytes and whole types that did not change. A resource that
    /// does not encode is left out and reported through `failed`.
    pub fn encode(
        &mut self,
        shape: &str,
        version: u64,
        output: crate::gen::Output,
        failed: &mut dyn FnMut(Kind, &str, String),
    ) -> Arc<Encoded> {
        if version != self.version {
            // Forget what neither this snapshot nor the previous one used
            // (a shape no proxy asked for since has no proxy left).
            let keep = self.version;
            self.entries.retain(|_, (_, used)| *used >= keep);
            self.shapes.retain(|_, (v, _)| *v >= keep);
            self.version = version;
        }
        let previous = self.shapes.get(shape).map(|(_, e)| Arc::clone(e));
        let mut encoded = Encoded::new();
        for (kind, resources) in output {
            let mut by_name = BTreeMap::new();
            for (name, json) in resources {
                let mut h = Xxh64::new(0);
                json_hash(&json, &mut h);
                let key = (kind, h.finish());
                if let Some((res, used)) = self.entries.get_mut(&key) {
                    *used = version;
                    by_name.insert(name, res.clone());
                    continue;
                }
                match weft_xds::encode(kind, &json) {
                    Ok(any) => {
                        let digest = xxh64(&any.value, 0);
                        let res = Res { any, digest };
                        self.entries.insert(key, (res.clone(), version));
                        by_name.insert(name, res);
                    }
                    Err(e) => failed(kind, &name, e.to_string()),
                }
            }
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
