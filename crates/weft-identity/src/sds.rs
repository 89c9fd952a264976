//! The SDS server Envoy reads its workload certificate from, on a Unix
//! socket, as Istio's agent serves it
//! (`./var/run/secrets/workload-spiffe-uds/socket`; Envoy's bootstrap
//! names it in the `sds-grpc` cluster).
//!
//! `envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets`, state
//! of the world, serves two secrets by Istio's names:
//!
//! - `default`: `tls_certificate`, the chain (leaf first) and the private
//!   key, inline;
//! - `ROOTCA`: `validation_context`, `trusted_ca` the mesh's root,
//!   inline.
//!
//! Each stream gets the secrets it names; a new certificate (rotation)
//! is pushed to every stream as a new version. Before the first
//! certificate exists a request waits (Envoy keeps the listener warming).
//! An ACK is noted; a NACK is logged with Envoy's error detail and not
//! answered (the same secret would be refused again); a request with a
//! stale nonce is ignored. `FetchSecrets` answers once. `DeltaSecrets`
//! (Envoy's `DELTA_GRPC`) serves the same secrets incrementally: what a
//! request subscribes is sent, and every subscribed secret again on
//! rotation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::client::WorkloadCert;

mod delta;

/// Istio's name of the workload certificate secret.
pub const DEFAULT_SECRET: &str = "default";
/// Istio's name of the root of trust secret.
pub const ROOT_SECRET: &str = "ROOTCA";
/// Where Istio's agent serves SDS, relative to the working directory.
pub const DEFAULT_SOCKET: &str = "./var/run/secrets/workload-spiffe-uds/socket";
/// The type of every resource SDS carries.
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The socket could not be served. Retryable once the path is fixed.
#[derive(Debug, thiserror::Error)]
pub enum SdsError {
    #[error("SDS socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Certs = watch::Receiver<Option<Arc<WorkloadCert>>>;

/// SDS serving on a Unix socket; stops (and removes the socket) when
/// dropped.
#[derive(Debug)]
pub struct SdsServing {
    pub socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SdsServing {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves the certificates of `certs` on `socket` (its directory made,
/// a stale socket replaced; the socket mode 0600, as it hands out the
/// private key).
pub fn serve(socket: &Path, certs: Certs) -> Result<SdsServing, SdsError> {
    let fail = |source| SdsError::Socket {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => tracing::debug!(path = %socket.display(), "removed a stale SDS socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(fail)?;
    // The socket hands out the workload's private key: only its owner
    // (the user Envoy runs as) may connect.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = SecretDiscoveryServiceServer::new(Sds { certs });
    let task = tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!("SDS server stopped: {e}");
        }
    });
    tracing::info!(socket = %socket.display(), "serving SDS");
    Ok(SdsServing {
        socket: socket.to_path_buf(),
        task,
    })
}

struct Sds {
    certs: Certs,
}

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(delta::run(request.into_inner(), self.certs.clone(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let stream = Stream {
            requests: request.into_inner(),
            certs: self.certs.clone(),
            tx,
            names: BTreeSet::new(),
            nonce: 0,
            sent: None,
            node: String::new(),
        };
        tokio::spawn(stream.run());
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let mut certs = self.certs.clone();
        let cert = certs
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Status::unavailable("the agent stopped"))?
            .clone()
            .expect("waited for a certificate");
        let names: BTreeSet<String> = request.into_inner().resource_names.into_iter().collect();
        Ok(Response::new(response(&cert, &names, "fetch".into())))
    }
}

/// One StreamSecrets stream.
struct Stream {
    requests: Streaming<DiscoveryRequest>,
    certs: Certs,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    /// The secrets the stream asked for.
    names: BTreeSet<String>,
    nonce: u64,
    /// The serial of the certificate last sent.
    sent: Option<String>,
    node: String,
}

impl Stream {
    async fn run(mut self) {
        loop {
            tokio::select! {
                request = self.requests.message() => match request {
                    Ok(Some(r)) => self.on_request(r),
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(node = %self.node, "SDS stream ended: {status}");
                        return;
                    }
                },
                changed = self.certs.changed() => {
                    if changed.is_err() {
                        let _ = self.tx.send(Err(Status::unavailable("the agent stopped"))).await;
                        return;
                    }
                }
            }
            if !self.push().await {
                return;
            }
        }
    }

    fn on_request(&mut self, r: DiscoveryRequest) {
        if let Some(node) = &r.node {
            self.node = node.id.clone();
        }
        if !r.type_url.is_empty() && r.type_url != SECRET_TYPE {
            tracing::warn!(node = %self.node, type_url = %r.type_url, "SDS request for another type; ignored");
            return;
        }
        let current_nonce = self.nonce.to_string();
        if !r.response_nonce.is_empty() && r.response_nonce != current_nonce {
            // An answer to a response since superseded.
            return;
        }
        if let Some(detail) = &r.error_detail {
            tracing::warn!(
                node = %self.node,
                secrets = ?r.resource_names,
                version = %r.version_info,
                "Envoy rejected the secrets (NACK): {}",
                detail.message
            );
            // Not sent again: the same secrets would be refused again.
            self.names = r.resource_names.into_iter().collect();
            return;
        }
        let names: BTreeSet<String> = r.resource_names.into_iter().collect();
        if r.response_nonce.is_empty() || names != self.names {
            // A first request, or other names: answer anew.
            self.names = names;
            self.sent = None;
        } else {
            tracing::debug!(node = %self.node, version = %r.version_info, "secrets accepted (ACK)");
        }
    }

    /// Sends the current certificate unless it was sent; false once the
    /// stream is gone.
    async fn push(&mut self) -> bool {
        if self.names.is_empty() {
            return true;
        }
        let Some(cert) = self.certs.borrow_and_update().clone() else {
            return true;
        };
        if self.sent.as_deref() == Some(cert.serial.as_str()) {
            return true;
        }
        self.nonce += 1;
        let r = response(&cert, &self.names, self.nonce.to_string());
        tracing::debug!(node = %self.node, names = ?self.names, serial = %cert.serial, "sending secrets");
        self.sent = Some(cert.serial.clone());
        self.tx.send(Ok(r)).await.is_ok()
    }
}

/// The secret `name` of `cert` as an `Any`; `None` (logged) for a name
/// the agent does not serve.
fn secret(cert: &WorkloadCert, name: &str) -> Option<Any> {
    let inline = |bytes: &str| DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(
            bytes.as_bytes().to_vec(),
        )),
        ..Default::default()
    };
    let kind = match name {
        DEFAULT_SECRET => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&cert.chain_pem)),
            private_key: Some(inline(&cert.key_pem)),
            ..Default::default()
        }),
        ROOT_SECRET => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline(&cert.root_pem)),
            ..Default::default()
        }),
        other => {
            tracing::warn!(
                secret = other,
                "SDS: no such secret (served: default, ROOTCA)"
            );
            return None;
        }
    };
    let secret = Secret {
        name: name.to_string(),
        r#type: Some(kind),
    };
    Some(Any {
        type_url: SECRET_TYPE.into(),
        value: secret.encode_to_vec(),
    })
}

/// The secrets of `cert` named in `names` (unknown names left out).
fn response(cert: &WorkloadCert, names: &BTreeSet<String>, nonce: String) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: cert.serial.clone(),
        resources: names.iter().filter_map(|n| secret(cert, n)).collect(),
        type_url: SECRET_TYPE.into(),
        nonce,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
