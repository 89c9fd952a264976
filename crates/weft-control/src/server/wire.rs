//! xDS responses written straight to the wire as gRPC messages, sharing
//! the resources' bytes instead of copying them into every response.
//!
//! A hundred proxies of one shape get the same clusters, and at
//! thousands of services those are megabytes per response: copied per
//! stream, they were the control plane's memory and much of its time.
//! A protobuf message is its fields one after another, and a nested
//! message is a length-prefixed field, so a response can be written as
//! small per-response pieces (version, nonce, each resource's length
//! prefix) around the resources' encoded bytes, which are handed to
//! HTTP/2 by reference. Small resources are copied into one buffer
//! (thousands of tiny frames would cost more than they save).

use bytes::{BufMut, Bytes, BytesMut};
use weft_xds::Kind;

use super::encode::Res;

/// A resource at least this large is sent by reference.
const SHARE_FROM: usize = 4096;

/// One gRPC message: the 5-byte prefix and the protobuf, in pieces.
#[derive(Debug, Default)]
pub(crate) struct Message {
    pub chunks: Vec<Bytes>,
    /// When the stream queued it for sending.
    pub queued: Option<std::time::Instant>,
}

impl Message {
    /// The message's length on the wire.
    pub fn wire_len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A length-delimited field's key (wire type 2).
fn put_key(buf: &mut BytesMut, field: u32) {
    put_varint(buf, u64::from(field << 3 | 2));
}

fn put_string(buf: &mut BytesMut, field: u32, s: &str) {
    if s.is_empty() {
        return;
    }
    put_key(buf, field);
    put_varint(buf, s.len() as u64);
    buf.put_slice(s.as_bytes());
}

fn string_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        varint_len(u64::from(field << 3 | 2)) + varint_len(s.len() as u64) + s.len()
    }
}

/// The encoded length of a `google.protobuf.Any` of `value`.
fn any_len(type_url: &str, value: &Bytes) -> usize {
    string_len(1, type_url) + 1 + varint_len(value.len() as u64) + value.len()
}

/// Builds a message from header bytes and resource pieces.
struct Builder {
    chunks: Vec<Bytes>,
    cur: BytesMut,
    /// Large values by reference (else everything is copied into one
    /// buffer, for a block that is itself shared).
    share: bool,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            chunks: Vec::new(),
            cur: BytesMut::new(),
            share: true,
        }
    }

    /// A piece shared as it is.
    fn block(&mut self, block: &Bytes) {
        self.chunks.push(self.cur.split().freeze());
        self.chunks.push(block.clone());
    }

    /// Everything written, as one buffer (for `share: false`).
    fn into_bytes(self) -> Bytes {
        debug_assert!(self.chunks.iter().all(Bytes::is_empty));
        // Grown by doubling, the buffer can be up to twice what it
        // holds; a block is kept for as long as its snapshot serves, so
        // it is kept at its size.
        if self.cur.capacity() - self.cur.len() > self.cur.len() / 16 {
            return Bytes::copy_from_slice(&self.cur);
        }
        self.cur.freeze()
    }

    /// `value` as the tail of the current piece: by reference when large.
    fn value(&mut self, value: &Bytes) {
        if self.share && value.len() >= SHARE_FROM {
            self.chunks.push(self.cur.split().freeze());
            self.chunks.push(value.clone());
        } else {
            self.cur.put_slice(value);
        }
    }

    /// `Any { type_url, value }` as field `field` of the message being
    /// written.
    fn any(&mut self, field: u32, type_url: &str, value: &Bytes) {
        put_key(&mut self.cur, field);
        put_varint(&mut self.cur, any_len(type_url, value) as u64);
        put_string(&mut self.cur, 1, type_url);
        put_key(&mut self.cur, 2);
        put_varint(&mut self.cur, value.len() as u64);
        self.value(value);
    }

    fn finish(mut self) -> Message {
        if !self.cur.is_empty() {
            self.chunks.push(self.cur.freeze());
        }
        self.chunks.retain(|c| !c.is_empty());
        let len: usize = self.chunks.iter().map(Bytes::len).sum();
        let mut prefix = BytesMut::with_capacity(5);
        prefix.put_u8(0);
        prefix.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        self.chunks.insert(0, prefix.freeze());
        Message {
            chunks: self.chunks,
            queued: None,
        }
    }
}

/// A state-of-the-world `DiscoveryResponse`.
pub(crate) fn sotw<'a>(
    version: &str,
    kind: Kind,
    nonce: &str,
    resources: impl Iterator<Item = &'a Res>,
) -> Message {
    let type_url = kind.type_url();
    let mut b = sotw_head(version, &type_url, nonce);
    for r in resources {
        b.any(2, &type_url, &r.value);
    }
    b.finish()
}

fn sotw_head(version: &str, type_url: &str, nonce: &str) -> Builder {
    let mut b = Builder::new();
    put_string(&mut b.cur, 1, version);
    put_string(&mut b.cur, 4, type_url);
    put_string(&mut b.cur, 5, nonce);
    b
}

/// The `resources` of a `DiscoveryResponse` carrying every one of
/// `resources`, to be shared by every response that carries them all.
pub(crate) fn sotw_entries<'a>(kind: Kind, resources: impl Iterator<Item = &'a Res>) -> Bytes {
    let type_url = kind.type_url();
    let mut b = Builder::new();
    b.share = false;
    for r in resources {
        b.any(2, &type_url, &r.value);
    }
    b.into_bytes()
}

/// A state-of-the-world `DiscoveryResponse` whose resources are `entries`
/// (from [`sotw_entries`]).
pub(crate) fn sotw_with(version: &str, kind: Kind, nonce: &str, entries: &Bytes) -> Message {
    let mut b = sotw_head(version, &kind.type_url(), nonce);
    b.block(entries);
    b.finish()
}

/// A `DeltaDiscoveryResponse`: `resources` by name, and the names of
/// what the proxy must drop.
pub(crate) fn delta<'a>(
    system_version: &str,
    kind: Kind,
    nonce: &str,
    resources: impl Iterator<Item = (&'a str, &'a Res)>,
    removed: &[String],
) -> Message {
    let type_url = kind.type_url();
    let mut b = delta_head(system_version, &type_url, nonce, removed);
    for (name, r) in resources {
        delta_entry(&mut b, &type_url, name, r);
    }
    b.finish()
}

fn delta_head(system_version: &str, type_url: &str, nonce: &str, removed: &[String]) -> Builder {
    let mut b = Builder::new();
    put_string(&mut b.cur, 1, system_version);
    put_string(&mut b.cur, 4, type_url);
    put_string(&mut b.cur, 5, nonce);
    for name in removed {
        put_key(&mut b.cur, 6);
        put_varint(&mut b.cur, name.len() as u64);
        b.cur.put_slice(name.as_bytes());
    }
    b
}

/// `Resource { version = 1, resource = 2 (Any), name = 3 }` as field 2.
fn delta_entry(b: &mut Builder, type_url: &str, name: &str, r: &Res) {
    let version = format!("{:016x}", r.digest);
    let any = any_len(type_url, &r.value);
    let len = string_len(3, name) + string_len(1, &version) + 1 + varint_len(any as u64) + any;
    put_key(&mut b.cur, 2);
    put_varint(&mut b.cur, len as u64);
    put_string(&mut b.cur, 3, name);
    put_string(&mut b.cur, 1, &version);
    b.any(2, type_url, &r.value);
}

/// The `resources` of a `DeltaDiscoveryResponse` carrying every one of
/// `resources`, to be shared.
pub(crate) fn delta_entries<'a>(
    kind: Kind,
    resources: impl Iterator<Item = (&'a str, &'a Res)>,
) -> Bytes {
    let type_url = kind.type_url();
    let mut b = Builder::new();
    b.share = false;
    for (name, r) in resources {
        delta_entry(&mut b, &type_url, name, r);
    }
    b.into_bytes()
}

/// A `DeltaDiscoveryResponse` whose resources are `entries` (from
/// [`delta_entries`]).
pub(crate) fn delta_with(
    system_version: &str,
    kind: Kind,
    nonce: &str,
    entries: &Bytes,
    removed: &[String],
) -> Message {
    let mut b = delta_head(system_version, &kind.type_url(), nonce, removed);
    b.block(entries);
    b.finish()
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use weft_xds::discovery::{DeltaDiscoveryResponse, DiscoveryResponse};

    use super::*;
    use crate::server::encode::Any;

    fn res(len: usize, fill: u8) -> Res {
        Res::new(Any {
            type_url: String::new(),
            value: vec![fill; len],
        })
    }

    fn joined(m: &Message) -> Vec<u8> {
        let all: Vec<u8> = m.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(all[0], 0, "uncompressed");
        let len = u32::from_be_bytes(all[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, all.len() - 5, "the prefix gives the message's length");
        all[5..].to_vec()
    }

    #[test]
    fn responses_decode_as_prost_encodes_them() {
        // Empty, small (copied) and large (shared) resources; lengths
        // that take one, two and three varint bytes.
        let rs = [
            res(0, 1),
            res(100, 2),
            res(300, 3),
            res(5000, 4),
            res(70_000, 5),
        ];
        let m = sotw("7", Kind::Cluster, "3-9", rs.iter());
        assert!(
            m.chunks.iter().any(|c| c.as_ptr() == rs[4].value.as_ptr()),
            "a large resource is sent by reference"
        );
        let got = DiscoveryResponse::decode(joined(&m).as_slice()).unwrap();
        assert_eq!(got.version_info, "7");
        assert_eq!(got.nonce, "3-9");
        assert_eq!(got.type_url, Kind::Cluster.type_url());
        let values: Vec<Vec<u8>> = got.resources.iter().map(|a| a.value.clone()).collect();
        let want: Vec<Vec<u8>> = rs.iter().map(|r| r.value.to_vec()).collect();
        assert_eq!(values, want);
        assert!(got
            .resources
            .iter()
            .all(|a| a.type_url == Kind::Cluster.type_url()));

        let names = ["a", "b", "c", "d", "e"];
        let removed = ["gone".to_string(), "also-gone".to_string()];
        let m = delta(
            "8",
            Kind::ClusterLoadAssignment,
            "4-1",
            names.iter().copied().zip(rs.iter()),
            &removed,
        );
        let got = DeltaDiscoveryResponse::decode(joined(&m).as_slice()).unwrap();
        assert_eq!(got.system_version_info, "8");
        assert_eq!(got.nonce, "4-1");
        assert_eq!(got.removed_resources, removed);
        assert_eq!(got.resources.len(), 5);
        for ((r, name), want) in got.resources.iter().zip(names).zip(&rs) {
            assert_eq!(r.name, name);
            assert_eq!(r.version, format!("{:016x}", want.digest));
            let any = r.resource.as_ref().unwrap();
            assert_eq!(any.value, want.value.to_vec());
            assert_eq!(any.type_url, Kind::ClusterLoadAssignment.type_url());
        }
    }

    #[test]
    fn shared_blocks_decode_as_the_direct_responses() {
        let rs = [res(10, 1), res(5000, 2), res(200, 3)];
        let direct = joined(&sotw("1", Kind::Cluster, "n", rs.iter()));
        let block = sotw_entries(Kind::Cluster, rs.iter());
        let shared = sotw_with("1", Kind::Cluster, "n", &block);
        assert!(shared.chunks.iter().any(|c| c.as_ptr() == block.as_ptr()));
        assert_eq!(
            DiscoveryResponse::decode(joined(&shared).as_slice()).unwrap(),
            DiscoveryResponse::decode(direct.as_slice()).unwrap()
        );
        let named = || ["x", "y", "z"].into_iter().zip(rs.iter());
        let removed = ["w".to_string()];
        let direct = joined(&delta("2", Kind::Listener, "m", named(), &removed));
        let block = delta_entries(Kind::Listener, named());
        let shared = delta_with("2", Kind::Listener, "m", &block, &removed);
        assert_eq!(
            DeltaDiscoveryResponse::decode(joined(&shared).as_slice()).unwrap(),
            DeltaDiscoveryResponse::decode(direct.as_slice()).unwrap()
        );
    }

    #[test]
    fn varint_lengths() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }
}
