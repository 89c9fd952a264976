//! SDS from a gRPC config source of its own, as Istio's bootstrap asks:
//! `sds_config: {api_config_source: {api_type: GRPC, grpc_services:
//! [{envoy_grpc: {cluster_name: sds-grpc}}]}}`, the cluster's endpoint a
//! Unix socket (`pipe`) where the node agent serves
//! `SecretDiscoveryService/StreamSecrets`. One client per such cluster
//! runs state of the world (weft-xds' ADS state machine, SDS only),
//! subscribes to the secret names its contexts use (and to those later
//! contexts name, as they compile), checks each secret
//! delivered and stores it in its slot (`transport::Secrets`), ACKs or
//! NACKs naming what it refused, and reconnects with backoff.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use weft_xds::ads::{Ads, Outcome};
use weft_xds::{Kind, Resource};

use crate::server::Shared;
use crate::transport::Secrets;

/// Why an SDS stream ended (it is opened again after a pause).
#[derive(Debug, thiserror::Error)]
enum SdsError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("the SDS server closed the stream")]
    Closed,
}

/// Dials a Unix socket whatever the URI says.
#[derive(Clone)]
struct UnixConnector(PathBuf);

impl tower_service::Service<http::Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}

/// Starts the SDS clients: one for each gRPC config source that TLS
/// contexts name, now (the bootstrap's) or later (listeners and clusters
/// from xDS, as Istio's are); each runs until the proxy shuts down.
/// `Err` names a source of the bootstrap's contexts that is not a static
/// cluster with a Unix socket (a later one is logged).
pub fn spawn(shared: &Arc<Shared>, bootstrap: &weft_envoy::Bootstrap) -> Result<(), String> {
    let base = shared.snapshot.load_full();
    let secrets = Secrets::clone(&base.secrets);
    let pipes: HashMap<String, PathBuf> = bootstrap
        .static_resources
        .clusters
        .iter()
        .filter_map(|c| {
            let la = c.load_assignment.as_ref()?;
            let e = la.endpoints.first()?.lb_endpoints.first()?;
            let pipe = e.endpoint.address.pipe.as_ref()?;
            Some((c.name.clone(), PathBuf::from(&pipe.path)))
        })
        .collect();
    for source in secrets.sds().grpc_sources() {
        if !pipes.contains_key(&source) {
            return Err(unknown(&source));
        }
    }
    let mut node = weft_xds::node(
        bootstrap
            .source
            .get("node")
            .unwrap_or(&serde_json::json!({})),
    )
    .map_err(|e| format!("node: {e}"))?;
    node.user_agent_name = "weft".into();
    tokio::spawn(supervise(pipes, node, secrets, shared.stopped()));
    Ok(())
}

fn unknown(source: &str) -> String {
    format!("SDS config source {source:?}: expected a static cluster whose endpoint is a Unix socket (pipe)")
}

/// Starts a client for each source as contexts come to name it.
async fn supervise(
    pipes: HashMap<String, PathBuf>,
    node: weft_xds::ads::Node,
    secrets: Secrets,
    mut stop: watch::Receiver<bool>,
) {
    let mut started = BTreeSet::new();
    loop {
        let named = secrets.sds().named();
        tokio::pin!(named);
        named.as_mut().enable();
        for source in secrets.sds().grpc_sources() {
            if !started.insert(source.clone()) {
                continue;
            }
            match pipes.get(&source) {
                Some(path) => {
                    tokio::spawn(run(
                        source,
                        path.clone(),
                        node.clone(),
                        secrets.clone(),
                        stop.clone(),
                    ));
                }
                None => tracing::warn!("{}", unknown(&source)),
            }
        }
        tokio::select! {
            _ = &mut named => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn run(
    cluster: String,
    path: PathBuf,
    node: weft_xds::ads::Node,
    secrets: Secrets,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    loop {
        let result = tokio::select! {
            r = stream(&cluster, &path, node.clone(), &secrets, &mut attempt) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = result {
            tracing::warn!(source = %cluster, "SDS: {e}");
        }
        attempt = attempt.saturating_add(1);
        // Backoff: 0.5 s doubling to 30 s, jittered.
        let ceiling = Duration::from_millis(500)
            .saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(30));
        let pause = ceiling.mul_f64(0.5 + fastrand::f64() / 2.0);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One stream: subscribe, apply what arrives, follow the names asked for.
async fn stream(
    cluster: &str,
    path: &std::path::Path,
    node: weft_xds::ads::Node,
    secrets: &Secrets,
    attempt: &mut u32,
) -> Result<(), SdsError> {
    let channel = tonic::transport::Endpoint::from_static("http://sds.local")
        .connect_with_connector(UnixConnector(path.to_path_buf()))
        .await
        .map_err(|source| SdsError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    let mut client = SecretDiscoveryServiceClient::new(channel);
    let source = Some(cluster.to_string());
    let mut ads = Ads::with_types(node, false, false);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut names: BTreeSet<String> = secrets.sds().names(&source);
    if let Some(req) = ads.subscribe(Kind::Secret, names.clone()) {
        let _ = tx.send(req);
    }
    let out = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let mut inbound = client.stream_secrets(out).await?.into_inner();
    tracing::info!(source = %cluster, path = %path.display(), "SDS: stream open");
    let no_clusters = HashSet::new();
    loop {
        let resp = tokio::select! {
            m = inbound.message() => m?,
            // A context compiled since names another secret.
            _ = secrets.sds().named() => {
                let now = secrets.sds().names(&source);
                if now != names {
                    names = now;
                    if let Some(req) = ads.subscribe(Kind::Secret, names.clone()) {
                        let _ = tx.send(req);
                    }
                }
                continue;
            }
        };
        let Some(resp) = resp else {
            return Err(SdsError::Closed);
        };
        *attempt = 0;
        match ads.on_response(&resp, &no_clusters) {
            Outcome::Refused(nack, msg) => {
                tracing::warn!(source = %cluster, "SDS: rejected: {msg}");
                let _ = tx.send(*nack);
            }
            Outcome::Update(update) => {
                let mut refused = Vec::new();
                for name in &update.changed {
                    let Some(held) = update.resources.get(name) else {
                        continue;
                    };
                    let Resource::Secret(s) = &*held.resource else {
                        continue;
                    };
                    match crate::transport::check_secret(name, s) {
                        Ok(()) => secrets.sds().update(
                            source.clone(),
                            name,
                            (**s).clone(),
                            crate::transport::Delivered::of(&update, held),
                        ),
                        Err(e) => refused.push((name.clone(), e.to_string())),
                    }
                }
                let reqs = if refused.is_empty() {
                    ads.ack(update)
                } else {
                    ads.partial(update, refused)
                };
                for r in reqs {
                    let _ = tx.send(r);
                }
            }
        }
        // Contexts compiled since may name more secrets.
        let now = secrets.sds().names(&source);
        if now != names {
            names = now;
            if let Some(req) = ads.subscribe(Kind::Secret, names.clone()) {
                let _ = tx.send(req);
            }
        }
    }
}
