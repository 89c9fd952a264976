//! The ADS stream over gRPC: connect, send what [`Ads`] asks for, hand
//! each decoded update to the proxy, ACK or NACK it by the proxy's
//! answer, and reconnect with jittered exponential backoff when the
//! stream fails. What was accepted keeps serving while disconnected; on
//! a new stream the versions held are re-sent, so a control plane that
//! has nothing newer need not resend it.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::ads::delta::{DeltaAds, DeltaOutcome};
pub use crate::ads::Refused;
use crate::ads::{Ads, Node, Outcome, Update};
use crate::discovery::DiscoveryRequest;
use crate::Kind;

/// What the client needs from whoever applies configuration.
pub trait Apply: Send {
    /// Applies an update. `Ok` lists the resources the proxy refused on
    /// their own (name, why), which keep what they were while the rest
    /// applies (Envoy refuses a cluster or listener it cannot build the
    /// same way); `Err` refuses all of it, and is the NACK's reason.
    fn apply(&mut self, update: &Update) -> impl Future<Output = Result<Refused, String>> + Send;

    /// The named subscriptions the configuration needs now (RDS names of
    /// its listeners, EDS names of its clusters).
    fn subscriptions(&self) -> Vec<(Kind, BTreeSet<String>)>;

    /// The cluster names in force, which inline route tables are checked
    /// against (shared: thousands of names need not be copied per update).
    fn clusters(&self) -> std::sync::Arc<HashSet<String>>;

    /// When something waiting for a resource gives up (initial fetch
    /// timeouts); [`Apply::expire`] is called then.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn expire(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Resolves when something warming became ready on its own (a DNS
    /// cluster's first resolution); [`Apply::expire`] is called then too.
    fn warmed(&self) -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }
}

/// Reconnection delays: each failed attempt doubles the ceiling from
/// `base` up to `max`, and the delay is uniform below it (full jitter,
/// as Envoy's gRPC mux: 500 ms base, 30 s max).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Why a stream ended. Always the control plane's side or the network
/// between; always retried.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to the control plane at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("the control plane ended the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
}

pub struct Client {
    pub addr: SocketAddr,
    pub node: Node,
    pub backoff: Backoff,
    /// The wildcard types the bootstrap asks for.
    pub lds: bool,
    pub cds: bool,
    /// Incremental (delta) xDS instead of state of the world.
    pub delta: bool,
}

type Grpc = AggregatedDiscoveryServiceClient<tonic::transport::Channel>;
type Outbound<R> = tokio_stream::wrappers::UnboundedReceiverStream<R>;

/// The two ADS variants, seen the same way by the stream loop: each
/// turns responses into [`Update`]s and answers in its own messages.
trait Protocol: Send {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    fn on_connect(&mut self) -> Vec<Self::Req>;
    fn subscribe(&mut self, kind: Kind, names: BTreeSet<String>) -> Option<Self::Req>;
    fn type_url(resp: &Self::Resp) -> &str;
    fn on_response(
        &mut self,
        resp: &Self::Resp,
        clusters: &HashSet<&str>,
    ) -> Result<Update, (Self::Req, String)>;
    fn ack(&mut self, update: Update) -> Vec<Self::Req>;
    /// Applied, but for the resources refused on their own (by the
    /// decoder, in the update, or by the proxy, in `refused`).
    fn partial(&mut self, update: Update, refused: Refused) -> Vec<Self::Req>;
    fn nack(&mut self, kind: Kind, message: &str) -> Self::Req;
    fn open(
        grpc: &mut Grpc,
        out: Outbound<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Streaming<Self::Resp>, tonic::Status>> + Send;
}

impl Protocol for Ads {
    type Req = DiscoveryRequest;
    type Resp = crate::discovery::DiscoveryResponse;
    fn on_connect(&mut self) -> Vec<Self::Req> {
        Ads::on_connect(self)
    }
    fn subscribe(&mut self, kind: Kind, names: BTreeSet<String>) -> Option<Self::Req> {
        Ads::subscribe(self, kind, names)
    }
    fn type_url(resp: &Self::Resp) -> &str {
        &resp.type_url
    }
    fn on_response(
        &mut self,
        resp: &Self::Resp,
        clusters: &HashSet<&str>,
    ) -> Result<Update, (Self::Req, String)> {
        match Ads::on_response(self, resp, clusters) {
            Outcome::Update(u) => Ok(u),
            Outcome::Refused(nack, msg) => Err((*nack, msg)),
        }
    }
    fn ack(&mut self, update: Update) -> Vec<Self::Req> {
        Ads::ack(self, update)
    }
    fn partial(&mut self, update: Update, refused: Refused) -> Vec<Self::Req> {
        Ads::partial(self, update, refused)
    }
    fn nack(&mut self, kind: Kind, message: &str) -> Self::Req {
        Ads::nack(self, kind, message)
    }
    async fn open(
        grpc: &mut Grpc,
        out: Outbound<Self::Req>,
    ) -> Result<tonic::Streaming<Self::Resp>, tonic::Status> {
        Ok(grpc.stream_aggregated_resources(out).await?.into_inner())
    }
}

impl Protocol for DeltaAds {
    type Req = crate::discovery::DeltaDiscoveryRequest;
    type Resp = crate::discovery::DeltaDiscoveryResponse;
    fn on_connect(&mut self) -> Vec<Self::Req> {
        DeltaAds::on_connect(self)
    }
    fn subscribe(&mut self, kind: Kind, names: BTreeSet<String>) -> Option<Self::Req> {
        DeltaAds::subscribe(self, kind, names)
    }
    fn type_url(resp: &Self::Resp) -> &str {
        &resp.type_url
    }
    fn on_response(
        &mut self,
        resp: &Self::Resp,
        clusters: &HashSet<&str>,
    ) -> Result<Update, (Self::Req, String)> {
        match DeltaAds::on_response(self, resp, clusters) {
            DeltaOutcome::Update(u) => Ok(u),
            DeltaOutcome::Refused(nack, msg) => Err((*nack, msg)),
        }
    }
    fn ack(&mut self, update: Update) -> Vec<Self::Req> {
        DeltaAds::ack(self, update)
    }
    fn partial(&mut self, update: Update, refused: Refused) -> Vec<Self::Req> {
        DeltaAds::partial(self, update, refused)
    }
    fn nack(&mut self, kind: Kind, message: &str) -> Self::Req {
        DeltaAds::nack(self, kind, message)
    }
    async fn open(
        grpc: &mut Grpc,
        out: Outbound<Self::Req>,
    ) -> Result<tonic::Streaming<Self::Resp>, tonic::Status> {
        Ok(grpc.delta_aggregated_resources(out).await?.into_inner())
    }
}

impl Client {
    /// Runs until `stop` turns true.
    pub async fn run<A: Apply>(self, applier: A, stop: watch::Receiver<bool>) {
        if self.delta {
            let ads = DeltaAds::with_types(self.node.clone(), self.lds, self.cds);
            self.run_with(ads, applier, stop).await
        } else {
            let ads = Ads::with_types(self.node.clone(), self.lds, self.cds);
            self.run_with(ads, applier, stop).await
        }
    }

    async fn run_with<P: Protocol, A: Apply>(
        self,
        mut ads: P,
        mut applier: A,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                r = self.stream(&mut ads, &mut applier) => r,
                _ = stopped(&mut stop) => return,
            };
            let Err(e) = result;
            // A stream that lived a while starts the backoff over.
            if started.elapsed() > Duration::from_secs(5) {
                attempt = 0;
            }
            let delay = self.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            tracing::warn!(addr = %self.addr, "xDS: {e}; retrying in {delay:?}");
            let retry = Instant::now() + delay;
            // Resources waiting on a dead stream still time out.
            loop {
                let deadline = applier.deadline().filter(|d| *d < retry);
                tokio::select! {
                    _ = tokio::time::sleep_until(retry) => break,
                    _ = sleep_until(deadline) => applier.expire().await,
                    _ = applier.warmed() => applier.expire().await,
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    }

    /// One stream, until it fails.
    async fn stream<P: Protocol, A: Apply>(
        &self,
        ads: &mut P,
        applier: &mut A,
    ) -> Result<std::convert::Infallible, StreamError> {
        let connect_err = |reason: String| StreamError::Connect {
            addr: self.addr,
            reason,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| connect_err(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            // Responses are small and latency is the point.
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_err(source_chain(&e)))?;
        let mut grpc =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
        let (tx, rx) = mpsc::unbounded_channel::<P::Req>();
        // Named subscriptions the configuration has (static listeners on
        // RDS, static EDS clusters) go out with the first requests.
        for (kind, names) in applier.subscriptions() {
            ads.subscribe(kind, names);
        }
        for req in ads.on_connect() {
            let _ = tx.send(req);
        }
        let outbound = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut inbound = P::open(&mut grpc, outbound).await?;
        tracing::info!(addr = %self.addr, delta = self.delta, "xDS: stream open");
        loop {
            let resp = tokio::select! {
                m = inbound.message() => m?.ok_or(StreamError::Closed)?,
                _ = sleep_until(applier.deadline()) => {
                    applier.expire().await;
                    continue;
                }
                _ = applier.warmed() => {
                    applier.expire().await;
                    continue;
                }
            };
            // Only listeners and route tables refer to clusters; an EDS
            // or CDS response need not collect every cluster name.
            let type_url = P::type_url(&resp).to_string();
            let refers = matches!(
                Kind::from_type_url(&type_url),
                Some(Kind::Listener | Kind::RouteConfiguration)
            );
            let clusters = if refers {
                applier.clusters()
            } else {
                Default::default()
            };
            let known: HashSet<&str> = clusters.iter().map(String::as_str).collect();
            match ads.on_response(&resp, &known) {
                Err((nack, msg)) => {
                    tracing::warn!(%type_url, "xDS: rejected: {msg}");
                    let _ = tx.send(nack);
                }
                Ok(update) => {
                    let kind = update.kind;
                    match applier.apply(&update).await {
                        Ok(refused) => {
                            let answer = if refused.is_empty() && update.rejected.is_empty() {
                                tracing::debug!(xds = kind.xds(), version = %update.version, "xDS: applied");
                                ads.ack(update)
                            } else {
                                let why = update
                                    .rejected
                                    .iter()
                                    .chain(refused.iter().map(|(_, why)| why))
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join("; ");
                                tracing::warn!(%type_url, "xDS: applied, except what was rejected: {why}");
                                ads.partial(update, refused)
                            };
                            for req in answer {
                                let _ = tx.send(req);
                            }
                            // Only clusters and listeners name what to
                            // subscribe to; other updates leave it as is.
                            if matches!(kind, Kind::Cluster | Kind::Listener) {
                                for (k, names) in applier.subscriptions() {
                                    if let Some(req) = ads.subscribe(k, names) {
                                        let _ = tx.send(req);
                                    }
                                }
                            }
                        }
                        Err(msg) => {
                            tracing::warn!(xds = kind.xds(), version = %update.version, "xDS: rejected: {msg}");
                            let _ = tx.send(ads.nack(kind, &msg));
                        }
                    }
                }
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns must not live across an await.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// An error with its causes, which is where tonic says what failed.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(500)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(30));
            for _ in 0..50 {
                assert!(b.delay(attempt) <= ceiling);
            }
        }
        // Jittered: not every delay is the same.
        let delays: HashSet<Duration> = (0..20).map(|_| b.delay(3)).collect();
        assert!(delays.len() > 1);
    }
}
