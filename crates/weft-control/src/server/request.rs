//! State-of-the-world requests, decoded for what the server reads.
//!
//! Every ACK a proxy sends repeats each name it subscribes to — at
//! 10,000 services, 30,000 endpoint-set names, about a megabyte — and
//! almost always the same ones as before. Decoding them into strings for
//! a hundred proxies after every push was a large share of a push's
//! cost, and holding them a large share of memory at the initial sync.
//! So the names are hashed as they are read (`encode::name_key`, the
//! hash the server tracks resources by), together with a hash of the
//! whole list, and never kept.

use bytes::Buf;
use prost::encoding::{decode_key, message, skip_field, string, DecodeContext};
use prost::DecodeError;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::Status;
use xxhash_rust::xxh64::Xxh64;

use super::encode::name_key;

type Node = envoy_types::pb::envoy::config::core::v3::Node;
type RpcStatus = envoy_types::pb::google::rpc::Status;

/// A `DiscoveryRequest` (envoy.service.discovery.v3) as the server reads
/// it; `version_info` and `resource_locators` are skipped.
#[derive(Debug, Default)]
pub(super) struct SotwRequest {
    pub node: Option<Node>,
    /// `name_key` of each of `resource_names`, in order.
    pub keys: Vec<u64>,
    /// A hash of the whole `resource_names` list.
    pub names_digest: u64,
    pub type_url: String,
    pub response_nonce: String,
    /// `error_detail.message`, for a NACK.
    pub error: Option<String>,
}

impl SotwRequest {
    pub fn decode(mut buf: impl Buf) -> Result<SotwRequest, DecodeError> {
        let mut out = SotwRequest::default();
        let mut list = Xxh64::new(0);
        let mut error: Option<RpcStatus> = None;
        let ctx = DecodeContext::default();
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                2 => message::merge(
                    wire_type,
                    out.node.get_or_insert_with(Node::default),
                    &mut buf,
                    ctx.clone(),
                )?,
                3 => {
                    let mut name = bytes::Bytes::new();
                    prost::encoding::bytes::merge(wire_type, &mut name, &mut buf, ctx.clone())?;
                    list.update(&(name.len() as u64).to_le_bytes());
                    list.update(&name);
                    out.keys.push(name_key(&name));
                }
                4 => string::merge(wire_type, &mut out.type_url, &mut buf, ctx.clone())?,
                5 => string::merge(wire_type, &mut out.response_nonce, &mut buf, ctx.clone())?,
                6 => message::merge(
                    wire_type,
                    error.get_or_insert_with(RpcStatus::default),
                    &mut buf,
                    ctx.clone(),
                )?,
                _ => skip_field(wire_type, tag, &mut buf, ctx.clone())?,
            }
        }
        out.names_digest = list.digest();
        out.error = error.map(|e| e.message);
        Ok(out)
    }
}

/// The gRPC decoder of [`SotwRequest`]s for tonic's request stream.
pub(super) struct SotwDecoder;

impl Decoder for SotwDecoder {
    type Item = SotwRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<SotwRequest>, Status> {
        SotwRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("DiscoveryRequest: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use weft_xds::discovery::DiscoveryRequest;

    use super::*;

    #[test]
    fn reads_what_prost_writes_and_hashes_the_names() {
        let full = DiscoveryRequest {
            version_info: "7".into(),
            node: Some(Node {
                id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
                ..Default::default()
            }),
            resource_names: vec!["outbound|80||a".into(), "outbound|80||b".into()],
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: "3-9".into(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: "bad cluster".into(),
                details: vec![],
            }),
            ..Default::default()
        };
        let r = SotwRequest::decode(full.encode_to_vec().as_slice()).unwrap();
        assert_eq!(r.node.unwrap().id, full.node.as_ref().unwrap().id);
        assert_eq!(
            r.keys,
            [name_key("outbound|80||a"), name_key("outbound|80||b")]
        );
        assert_eq!(r.type_url, full.type_url);
        assert_eq!(r.response_nonce, "3-9");
        assert_eq!(r.error.as_deref(), Some("bad cluster"));

        // The list's hash changes with any name, and with the split
        // between names.
        let digest = |names: &[&str]| {
            let req = DiscoveryRequest {
                resource_names: names.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            };
            SotwRequest::decode(req.encode_to_vec().as_slice())
                .unwrap()
                .names_digest
        };
        assert_eq!(digest(&["a", "b"]), digest(&["a", "b"]));
        assert_ne!(digest(&["a", "b"]), digest(&["a", "c"]));
        assert_ne!(digest(&["ab"]), digest(&["a", "b"]));

        // Truncated input is an error, not a panic.
        let bytes = full.encode_to_vec();
        for cut in 1..bytes.len() {
            let _ = SotwRequest::decode(&bytes[..cut]);
        }
        assert!(SotwRequest::decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
