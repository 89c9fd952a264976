//! The ADS service on the wire, in place of tonic's generated server.
//!
//! tonic's response encoder writes every message of a stream into one
//! buffer and keeps that buffer, as large as the largest message the
//! stream ever carried, for as long as the stream lives. A control plane
//! sends each proxy its whole cluster list and route tables — megabytes
//! each at thousands of services — so a hundred idle streams held
//! gigabytes. Here each response is encoded into a buffer of its own,
//! handed to HTTP/2 and freed once written. Requests are read the same
//! way (`request::Requests`); tonic's transport still serves HTTP/2.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::server::NamedService;
use tonic::Status;

use super::request::Requests;
use super::stream::Out;
use super::AdsServer;
use crate::metrics::Pilot;

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

/// `AggregatedDiscoveryService` for tonic's router.
#[derive(Clone)]
pub(crate) struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub fn new(server: AdsServer) -> AdsService {
        AdsService { server }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE;
}

impl tower_service::Service<http::Request<tonic::body::Body>> for AdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = req.uri().path().strip_prefix(&format!("/{SERVICE}/"));
        let delta = match method {
            Some("StreamAggregatedResources") => false,
            Some("DeltaAggregatedResources") => true,
            _ => {
                let status = Status::unimplemented(format!("{} is not served", req.uri().path()));
                return std::future::ready(Ok(status.into_http()));
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let body = req.into_body();
        let requests = if delta {
            Requests::delta(body)
        } else {
            Requests::sotw(body)
        };
        tokio::spawn(self.server.clone().run(requests, delta, tx));
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::new(Responses {
                rx,
                pending: Default::default(),
                sending: None,
                metrics: Arc::clone(self.server.metrics()),
                done: false,
            }))
            .expect("static response head");
        std::future::ready(Ok(response))
    }
}

/// A stream's responses as gRPC messages (each in the pieces `wire`
/// wrote it in), then its status as trailers.
struct Responses {
    rx: mpsc::UnboundedReceiver<Result<Out, Status>>,
    pending: std::collections::VecDeque<Bytes>,
    /// When the message whose pieces are pending was queued: its send
    /// time (`pilot_xds_send_time`) ends when HTTP/2 takes its last
    /// piece.
    sending: Option<Instant>,
    metrics: Arc<Pilot>,
    done: bool,
}

impl Responses {
    fn sent_all(&mut self) {
        if self.pending.is_empty() {
            if let Some(queued) = self.sending.take() {
                self.metrics.send_time.since(queued);
            }
        }
    }
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    Frame::trailers(map)
}

impl http_body::Body for Responses {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.pending.pop_front() {
            self.sent_all();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(message))) => {
                let mut chunks = message.chunks.into_iter();
                let first = chunks.next().unwrap_or_default();
                self.pending.extend(chunks);
                self.sending = message.queued;
                self.sent_all();
                Poll::Ready(Some(Ok(Frame::data(first))))
            }
            Poll::Ready(Some(Err(status))) => {
                self.done = true;
                Poll::Ready(Some(Ok(trailers(&status))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Ok(trailers(&Status::ok("")))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}
