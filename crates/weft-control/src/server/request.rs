//! A stream's requests: read from the HTTP/2 body as gRPC messages, and
//! state-of-the-world ones decoded for what the server reads.
//!
//! tonic's request stream reads each message into a buffer it keeps, as
//! large as the largest message, for the stream's life; an ACK at 10,000
//! services is a megabyte, times a hundred proxies, all at once after a
//! push. Here a message is decoded a top-level field at a time as its
//! bytes arrive, so a stream holds at most one field and one body frame.
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
use prost::encoding::{decode_key, message, skip_field, string, DecodeContext, WireType};
use prost::{DecodeError, Message as _};
use tokio_stream::Stream as _;
use tonic::Status;
use weft_xds::discovery::DeltaDiscoveryRequest;
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
    /// A whole message at once (streams decode field by field as the
    /// bytes arrive).
    #[cfg(test)]
    fn decode(mut buf: impl Buf) -> Result<SotwRequest, DecodeError> {
        let mut fields = SotwFields::default();
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            fields.field(tag, wire_type, &mut buf)?;
        }
        Ok(fields.finish())
    }
}

/// The fields of a message read so far.
enum Partial {
    Sotw(Box<SotwFields>),
    Delta(Box<DeltaDiscoveryRequest>),
}

impl Partial {
    /// Reads one whole field (key and value) from `buf`.
    fn field(&mut self, buf: &mut impl Buf) -> Result<(), DecodeError> {
        let (tag, wire_type) = decode_key(buf)?;
        match self {
            Partial::Sotw(s) => s.field(tag, wire_type, buf),
            Partial::Delta(m) => m.merge_field(tag, wire_type, buf, DecodeContext::default()),
        }
    }

    fn finish(self) -> Req {
        match self {
            Partial::Sotw(s) => Req::from(s.finish()),
            Partial::Delta(m) => Req::from(*m),
        }
    }
}

#[derive(Default)]
struct SotwFields {
    out: SotwRequest,
    list: Xxh64,
    error: Option<RpcStatus>,
}

impl SotwFields {
    fn field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
    ) -> Result<(), DecodeError> {
        let ctx = DecodeContext::default();
        match tag {
            2 => message::merge(
                wire_type,
                self.out.node.get_or_insert_with(Node::default),
                buf,
                ctx,
            ),
            3 => {
                let mut name = Bytes::new();
                prost::encoding::bytes::merge(wire_type, &mut name, buf, ctx)?;
                self.list.update(&(name.len() as u64).to_le_bytes());
                self.list.update(&name);
                self.out.keys.push(name_key(&name));
                Ok(())
            }
            4 => string::merge(wire_type, &mut self.out.type_url, buf, ctx),
            5 => string::merge(wire_type, &mut self.out.response_nonce, buf, ctx),
            6 => message::merge(
                wire_type,
                self.error.get_or_insert_with(RpcStatus::default),
                buf,
                ctx,
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn finish(mut self) -> SotwRequest {
        self.out.names_digest = self.list.digest();
        self.out.error = self.error.map(|e| e.message);
        self.out
    }
}

/// Requests are small; anything larger than this is not a proxy's.
const MAX_REQUEST: usize = 64 << 20;

/// Bytes read from the body, in the chunks they arrived in.
#[derive(Default)]
pub(super) struct Chunks {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b.as_ref())
    }

    fn advance(&mut self, mut n: usize) {
        assert!(n <= self.remaining, "advance past the end of the chunks");
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

impl Chunks {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.remaining += b.len();
            self.parts.push_back(b);
        }
    }

    /// The first `n` bytes, removed.
    fn split_front(&mut self, n: usize) -> Chunks {
        let mut out = Chunks::default();
        let mut left = n;
        while left > 0 {
            let front = self.parts.front_mut().expect("n bytes are buffered");
            if front.len() <= left {
                left -= front.len();
                out.push(self.parts.pop_front().expect("front exists"));
            } else {
                out.push(front.split_to(left));
                left = 0;
            }
        }
        self.remaining -= n;
        out
    }

    /// Up to `N` bytes from the front, without consuming them.
    fn peek<const N: usize>(&self) -> ([u8; N], usize) {
        let mut out = [0u8; N];
        let mut n = 0;
        for b in self.parts.iter().flat_map(|c| c.iter()).take(N) {
            out[n] = *b;
            n += 1;
        }
        (out, n)
    }
}

/// A varint at the start of `b`: its value and length, `None` when `b`
/// ends inside it.
fn varint(b: &[u8]) -> Result<Option<(u64, usize)>, String> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= 10 {
        return Err("invalid varint".into());
    }
    Ok(None)
}

/// The length of the field at the start of `b` (key and value), `None`
/// while `b` ends before that can be told.
fn field_len(b: &[u8]) -> Result<Option<usize>, String> {
    let Some((key, k)) = varint(b)? else {
        return Ok(None);
    };
    let value = match key & 7 {
        0 => varint(&b[k..])?.map(|(_, n)| n),
        1 => Some(8),
        5 => Some(4),
        2 => match varint(&b[k..])? {
            Some((len, n)) => Some(
                usize::try_from(len)
                    .ok()
                    .and_then(|l| l.checked_add(n))
                    .ok_or("field length overflows")?,
            ),
            None => None,
        },
        // Groups (3, 4) are not used by xDS, and their length is only
        // known by reading them through.
        w => return Err(format!("unsupported wire type {w}")),
    };
    Ok(value.map(|v| k + v))
}

/// The requests of one ADS stream.
///
/// Each message is decoded a field at a time, as soon as the field's
/// bytes are in: a stream holds at most one field (a resource name, or
/// the node) and one body frame, however long the message. An ACK names
/// every resource the proxy holds — a megabyte or more at 10,000
/// services — and a hundred proxies ACK at once after a push.
pub(super) struct Requests {
    body: tonic::body::Body,
    buffered: Chunks,
    /// The message being read, and how many of its bytes are still to
    /// come.
    current: Option<(Partial, usize)>,
    delta: bool,
    done: bool,
}

impl Requests {
    pub fn sotw(body: tonic::body::Body) -> Requests {
        Requests::new(body, false)
    }

    pub fn delta(body: tonic::body::Body) -> Requests {
        Requests::new(body, true)
    }

    fn new(body: tonic::body::Body, delta: bool) -> Requests {
        Requests {
            body,
            buffered: Chunks::default(),
            current: None,
            delta,
            done: false,
        }
    }

    fn what(&self) -> &'static str {
        if self.delta {
            "DeltaDiscoveryRequest"
        } else {
            "DiscoveryRequest"
        }
    }

    /// Makes what progress the buffered bytes allow: `Some` with a whole
    /// message or an error, `None` when more bytes are needed.
    fn step(&mut self) -> Option<Result<Req, Status>> {
        loop {
            let Some((partial, left)) = &mut self.current else {
                let (h, n) = self.buffered.peek::<5>();
                if n < 5 {
                    return None;
                }
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                if h[0] != 0 {
                    return Some(Err(Status::unimplemented(
                        "compressed requests are not supported",
                    )));
                }
                if len > MAX_REQUEST {
                    return Some(Err(Status::resource_exhausted(format!(
                        "a request of {len} bytes; at most {MAX_REQUEST}"
                    ))));
                }
                self.buffered.advance(5);
                let partial = if self.delta {
                    Partial::Delta(Box::default())
                } else {
                    Partial::Sotw(Box::default())
                };
                self.current = Some((partial, len));
                continue;
            };
            if *left == 0 {
                let (partial, _) = self.current.take().expect("a message is being read");
                return Some(Ok(partial.finish()));
            }
            let (head, n) = self.buffered.peek::<20>();
            let field = match field_len(&head[..n.min(*left)]) {
                Err(e) => return Some(Err(self.invalid(e))),
                // Its length is still to come.
                Ok(None) if n < (*left).min(20) => return None,
                Ok(Some(f)) if f <= *left => f,
                // The message ends first.
                Ok(_) => {
                    return Some(Err(self.invalid("a field runs past the end of its message")))
                }
            };
            if self.buffered.remaining() < field {
                return None;
            }
            let mut bytes = self.buffered.split_front(field);
            *left -= field;
            if let Err(e) = partial.field(&mut bytes) {
                return Some(Err(self.invalid(e)));
            }
        }
    }

    fn invalid(&self, e: impl std::fmt::Display) -> Status {
        Status::invalid_argument(format!("{}: {e}", self.what()))
    }
}

impl tokio_stream::Stream for Requests {
    type Item = Result<Req, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.step() {
                Some(Ok(req)) => return Poll::Ready(Some(Ok(req))),
                Some(Err(status)) => {
                    // The rest of the stream cannot be framed.
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {}
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    if this.current.is_some() || this.buffered.has_remaining() {
                        return Poll::Ready(Some(Err(Status::invalid_argument(
                            "the request stream ended inside a message",
                        ))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.buffered.push(data);
                    }
                }
            }
        }
    }
}

/// `wire` as a request body delivered in `frame`-byte frames.
fn body_in_frames(wire: &[u8], frame: usize) -> tonic::body::Body {
    let frames: Vec<Result<http_body::Frame<Bytes>, Status>> = wire
        .chunks(frame.max(1))
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    tonic::body::Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
}

/// For fuzzing: `data` as a request stream's body (the first byte picks
/// the frame size), read as SotW and as delta requests, whole and split
/// into frames. Panics when a split reads differently from the whole,
/// or when a read goes on after an error.
pub fn check_request_framing(data: &[u8]) {
    let Some((&split, wire)) = data.split_first() else {
        return;
    };
    let read = |delta: bool, frame: usize| -> Vec<String> {
        let body = body_in_frames(wire, frame);
        let mut requests = if delta {
            Requests::delta(body)
        } else {
            Requests::sotw(body)
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        // The body has every frame at hand; it only yields now and then
        // (`tokio_stream::iter` does, for fairness) and is polled again.
        loop {
            let r = match Pin::new(&mut requests).poll_next(&mut cx) {
                Poll::Pending => continue,
                Poll::Ready(None) => break,
                Poll::Ready(Some(r)) => r,
            };
            assert!(
                out.last().is_none_or(|l: &String| !l.starts_with("Err")),
                "a request read after an error"
            );
            out.push(match r {
                Ok(req) => format!("Ok {req:?}"),
                // Where a framing error is found depends on how much
                // was buffered; that it is an error does not.
                Err(_) => "Err".to_string(),
            });
        }
        out
    };
    for delta in [false, true] {
        let whole = read(delta, wire.len());
        assert_eq!(
            read(delta, usize::from(split)),
            whole,
            "delta: {delta}, frames of {split}"
        );
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
        body_in_frames(&grpc_framed(messages), chunk)
    }

    /// `messages` as gRPC frames them: an uncompressed flag and a length
    /// before each.
    fn grpc_framed(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for m in messages {
            wire.push(0u8);
            wire.extend_from_slice(&(m.len() as u32).to_be_bytes());
            wire.extend_from_slice(m);
        }
        wire
    }

    fn sotw_message(nonce: &str, names: usize) -> Vec<u8> {
        DiscoveryRequest {
            node: Some(Node {
                id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
                cluster: "a.ns".into(),
                ..Default::default()
            }),
            resource_names: (0..names).map(|i| format!("outbound|80||s{i}")).collect(),
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: nonce.into(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: format!("bad {nonce}"),
                details: vec![],
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn delta_message(nonce: &str) -> Vec<u8> {
        DeltaDiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            resource_names_subscribe: vec!["a".into(), "b".into()],
            resource_names_unsubscribe: vec!["c".into()],
            initial_resource_versions: [("a".to_string(), "7".to_string())].into(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[tokio::test]
    async fn a_message_reads_the_same_however_its_bytes_are_split() {
        use tokio_stream::StreamExt;
        let sotw = vec![sotw_message("1", 50), Vec::new(), sotw_message("2", 3)];
        let debug = |req: Req| format!("{req:?}");
        let want: Vec<String> = sotw
            .iter()
            .map(|m| debug(Req::from(SotwRequest::decode(m.as_slice()).unwrap())))
            .collect();
        let delta = vec![delta_message("1"), delta_message("2")];
        let want_delta: Vec<String> = delta
            .iter()
            .map(|m| {
                debug(Req::from(
                    DeltaDiscoveryRequest::decode(m.as_slice()).unwrap(),
                ))
            })
            .collect();
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let got: Vec<String> = Requests::sotw(body(&sotw, chunk))
                .map(|r| debug(r.unwrap()))
                .collect()
                .await;
            assert_eq!(got, want, "sotw in frames of {chunk}");
            let got: Vec<String> = Requests::delta(body(&delta, chunk))
                .map(|r| debug(r.unwrap()))
                .collect()
                .await;
            assert_eq!(got, want_delta, "delta in frames of {chunk}");
        }
        assert!(want[0].contains("bad 1") && want_delta[1].contains("\"2\""));
    }

    #[tokio::test]
    async fn a_stream_holds_one_field_at_a_time_not_the_whole_message() {
        use std::future::poll_fn;
        use tokio_stream::Stream;
        // An ACK naming 20,000 resources, about 400 KB, sent in 16 KB
        // frames as HTTP/2 delivers it.
        let message = sotw_message("9", 20_000);
        let wire = grpc_framed(std::slice::from_ref(&message));
        let (tx, rx) =
            tokio::sync::mpsc::unbounded_channel::<Result<http_body::Frame<Bytes>, Status>>();
        let body = tonic::body::Body::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ));
        let mut requests = Requests::sotw(body);
        const FRAME: usize = 16 * 1024;
        let mut most = 0;
        let mut got = None;
        for c in wire.chunks(FRAME) {
            tx.send(Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
                .unwrap();
            let polled = poll_fn(|cx| match Pin::new(&mut requests).poll_next(cx) {
                Poll::Pending => Poll::Ready(None),
                ready => ready,
            })
            .await;
            most = most.max(requests.buffered.remaining());
            if let Some(r) = polled {
                got = Some(r.unwrap());
            }
        }
        let got = got.expect("the whole message was read");
        let want = Req::from(SotwRequest::decode(message.as_slice()).unwrap());
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert!(
            most < FRAME + 64,
            "{most} bytes held at once for a {} byte message",
            message.len()
        );
    }

    #[test]
    fn framing_holds_for_corrupted_and_random_streams() {
        // The stable counterpart of the fuzz target: every single-byte
        // corruption of a real stream, and random streams, through
        // `check_request_framing` with several frame sizes.
        let wire = grpc_framed(&[sotw_message("1", 3), delta_message("2")]);
        for at in 0..wire.len() {
            for (split, flip) in [(1u8, 0xffu8), (7, 0x80), (64, 0x01)] {
                let mut data = vec![split];
                data.extend_from_slice(&wire);
                data[1 + at] ^= flip;
                check_request_framing(&data);
            }
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut data = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 96) as usize;
            data.push((x >> 8) as u8);
            // A frame header with a small length, so random bytes form
            // messages rather than one large pending one.
            data.extend_from_slice(&[0, 0, 0, 0, (x >> 16) as u8 % 48]);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push(x as u8);
            }
            check_request_framing(&data);
        }
    }

    #[tokio::test]
    async fn malformed_requests_end_the_stream_with_one_error() {
        use tokio_stream::StreamExt;
        // A name whose length runs past the end of its message.
        let bad = vec![0x1a, 0x10, b'a', b'b'];
        let got: Vec<_> = Requests::sotw(body(&[bad], 4096)).collect().await;
        assert_eq!(got.len(), 1);
        let e = got[0].as_ref().unwrap_err();
        assert!(e.message().contains("past the end of its message"), "{e:?}");

        // Random bytes after a valid message, in frames of every size:
        // the valid message is read, then at most one error ends the
        // stream, and nothing panics.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..300 {
            let mut junk = Vec::new();
            for _ in 0..(round % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                junk.push(x as u8);
            }
            let messages = vec![sotw_message("ok", 2), junk];
            for chunk in [1, 5, 4096] {
                let got: Vec<_> = Requests::sotw(body(&messages, chunk)).collect().await;
                assert!(got[0].is_ok(), "round {round}");
                assert!(got.len() <= 2, "round {round}: {}", got.len());
            }
        }
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
        let mut cut = grpc_framed(&messages[..1]);
        cut.truncate(cut.len() - 1);
        let got: Vec<_> = Requests::sotw(body_in_frames(&cut, 4096)).collect().await;
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }
}
