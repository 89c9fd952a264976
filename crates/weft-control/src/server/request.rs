//! A stream's requests: read from the HTTP/2 body as gRPC messages, and
//! state-of-the-world ones decoded for what the server reads.
//!
//! tonic's request stream reads each message into a buffer it keeps, as
//! large as the largest message, for the stream's life; an ACK at 10,000
//! services is a megabyte, times a hundred proxies. Here the body's own
//! chunks are held only until their message is decoded.
//!
//! Every ACK a proxy sends repeats each name it subscribes to — at
//! 10,000 services, 30,000 endpoint-set names, about a megabyte — and
//! almost always the same ones as before. Decoding them into strings for
//! a hundred proxies after every push was a large share of a push's
//! cost, and holding them a large share of memory at the initial sync.
//! So the names are hashed as they are read (`encode::name_key`, the
//! hash the server tracks resources by), together with a hash of the
//! whole list, and never kept.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Body as _;
use prost::encoding::{decode_key, message, skip_field, string, DecodeContext};
use prost::DecodeError;
use tonic::Status;
use xxhash_rust::xxh64::Xxh64;

use super::encode::name_key;
use super::stream::Req;

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

/// Requests are small; anything larger than this is not a proxy's.
const MAX_REQUEST: usize = 64 << 20;

/// One message's bytes, in the chunks they arrived in.
pub(super) struct Message {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl Buf for Message {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b.as_ref())
    }

    fn advance(&mut self, mut n: usize) {
        assert!(n <= self.remaining, "advance past the end of a message");
        self.remaining -= n;
        while n > 0 {
            let front = self
                .parts
                .front_mut()
                .expect("remaining bytes are in parts");
            if front.len() <= n {
                n -= front.len();
                self.parts.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// The requests of one ADS stream, decoded by `decode`.
pub(super) struct Requests {
    body: tonic::body::Body,
    chunks: VecDeque<Bytes>,
    buffered: usize,
    done: bool,
    decode: fn(Message) -> Result<Req, Status>,
}

impl Requests {
    pub fn sotw(body: tonic::body::Body) -> Requests {
        Requests::new(body, |m| {
            SotwRequest::decode(m)
                .map(Req::from)
                .map_err(|e| Status::invalid_argument(format!("DiscoveryRequest: {e}")))
        })
    }

    pub fn delta(body: tonic::body::Body) -> Requests {
        Requests::new(body, |m| {
            <weft_xds::discovery::DeltaDiscoveryRequest as prost::Message>::decode(m)
                .map(Req::from)
                .map_err(|e| Status::invalid_argument(format!("DeltaDiscoveryRequest: {e}")))
        })
    }

    fn new(body: tonic::body::Body, decode: fn(Message) -> Result<Req, Status>) -> Requests {
        Requests {
            body,
            chunks: VecDeque::new(),
            buffered: 0,
            done: false,
            decode,
        }
    }

    /// The first `n` buffered bytes, removed.
    fn take(&mut self, n: usize) -> Message {
        let mut parts = VecDeque::new();
        let mut left = n;
        while left > 0 {
            let front = self.chunks.front_mut().expect("n is buffered");
            if front.len() <= left {
                left -= front.len();
                parts.extend(self.chunks.pop_front());
            } else {
                parts.push_back(front.split_to(left));
                left = 0;
            }
        }
        self.buffered -= n;
        Message {
            parts,
            remaining: n,
        }
    }

    /// The next message's compression flag and length, once buffered.
    fn header(&self) -> Option<(u8, usize)> {
        if self.buffered < 5 {
            return None;
        }
        let mut h = [0u8; 5];
        let mut bytes = self.chunks.iter().flat_map(|c| c.iter());
        for b in &mut h {
            *b = *bytes.next()?;
        }
        Some((h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize))
    }
}

impl tokio_stream::Stream for Requests {
    type Item = Result<Req, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((flag, len)) = this.header() {
                if flag != 0 {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::unimplemented(
                        "compressed requests are not supported",
                    ))));
                }
                if len > MAX_REQUEST {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "a request of {len} bytes; at most {MAX_REQUEST}"
                    )))));
                }
                if this.buffered >= 5 + len {
                    this.take(5);
                    let message = this.take(len);
                    return Poll::Ready(Some((this.decode)(message)));
                }
            }
            if this.done {
                if this.buffered > 0 {
                    this.chunks.clear();
                    this.buffered = 0;
                    return Poll::Ready(Some(Err(Status::invalid_argument(
                        "the request stream ended inside a message",
                    ))));
                }
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    this.chunks.clear();
                    this.buffered = 0;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            this.buffered += data.len();
                            this.chunks.push_back(data);
                        }
                    }
                }
            }
        }
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

    /// gRPC messages split into `chunk`-byte body frames.
    fn body(messages: &[Vec<u8>], chunk: usize) -> tonic::body::Body {
        let mut wire = Vec::new();
        for m in messages {
            wire.push(0u8);
            wire.extend_from_slice(&(m.len() as u32).to_be_bytes());
            wire.extend_from_slice(m);
        }
        let frames: Vec<Result<http_body::Frame<Bytes>, Status>> = wire
            .chunks(chunk)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        tonic::body::Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    #[tokio::test]
    async fn messages_are_read_across_and_within_body_frames() {
        use tokio_stream::StreamExt;
        let req = |nonce: &str| {
            DiscoveryRequest {
                resource_names: vec!["a".into(); 100],
                response_nonce: nonce.into(),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let messages = vec![req("1"), req("2"), Vec::new(), req("3")];
        for chunk in [1, 3, 7, 4096] {
            let got: Vec<_> = Requests::sotw(body(&messages, chunk)).collect().await;
            assert_eq!(got.len(), 4, "frames of {chunk}");
            assert!(got.iter().all(Result::is_ok), "frames of {chunk}");
        }
        // A stream that ends inside a message is an error, once.
        let mut wire = body(&messages[..1], 4096);
        let mut cut = Vec::new();
        while let Some(Ok(f)) = http_body_util::BodyExt::frame(&mut wire).await {
            cut.extend(f.into_data().unwrap());
        }
        cut.truncate(cut.len() - 1);
        let frames: Vec<Result<_, Status>> = vec![Ok(http_body::Frame::data(Bytes::from(cut)))];
        let body =
            tonic::body::Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)));
        let got: Vec<_> = Requests::sotw(body).collect().await;
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }
}
