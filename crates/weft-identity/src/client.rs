//! The agent's side of the CA (Istio's pilot-agent secret manager): a
//! fresh ECDSA P-256 key made in this process (it never leaves it), a
//! CSR for the workload's identity, `CreateCertificate` over TLS with the
//! bearer token, and rotation.
//!
//! Rotation follows Istio's agent: a certificate is renewed once half
//! its lifetime (counted from when it was received) has passed
//! (`SECRET_GRACE_PERIOD_RATIO`, 0.5; Istio adds up to 1% jitter, weft
//! none), with a new key each time, and at most once a second; a failed attempt is retried after 1 s, doubling up to
//! 30 s, while the current certificate stays served. The current
//! certificate is an immutable [`WorkloadCert`] behind an `Arc` in a
//! `tokio::sync::watch` channel (`None` until the first arrives).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use tokio::sync::watch;

use crate::ca::{Ca, CaError};
use crate::identity::Identity;
use crate::proto::{self, IstioCertificateRequest, IstioCertificateResponse};
use crate::tls::{self, TlsError};
use crate::x509::{self, Info};

/// Istio's `SECRET_GRACE_PERIOD_RATIO`: renew when this share of the
/// lifetime is left.
pub const GRACE_RATIO: f64 = 0.5;
/// The first retry's wait after a failure; doubled each time.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long one CreateCertificate call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA configuration (root, server name, token) is unusable. Not
    /// retryable.
    #[error("CA client: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The call failed: `code` says whether it may succeed later
    /// ([`ClientError::retryable`]).
    #[error("CreateCertificate: {code:?}: {message}")]
    Call { code: tonic::Code, message: String },
    /// Making the key or the CSR failed. Not retryable.
    #[error("making the key or CSR: {0}")]
    Csr(String),
    /// The CA answered a chain weft cannot use (no certificate, another
    /// identity, another key). Retryable: the CA may answer better.
    #[error("the CA's answer: {0}")]
    Answer(String),
    /// The in-process CA refused.
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl ClientError {
    /// Whether trying again may help. The rotation loop retries anyway
    /// (the cause may be fixed meanwhile), but logs a permanent one as an
    /// error.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Call { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Internal
                    | tonic::Code::Unknown
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
            ),
            ClientError::Answer(_) => true,
            ClientError::Ca(e) => e.retryable(),
            _ => false,
        }
    }
}

/// A workload's certificate and key, as served to Envoy. Immutable.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCert {
    pub identity: Identity,
    /// The leaf and intermediates, PEM, leaf first (Envoy's
    /// `certificate_chain`).
    pub chain_pem: String,
    /// PKCS#8 PEM; never logged.
    pub key_pem: String,
    /// The root of trust (the last element of the CA's answer).
    pub root_pem: String,
    /// The leaf's serial, lower-case hex.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// When this process received it: its lifetime for rotation is
    /// counted from here, as Istio's agent does (the CA backdates
    /// `not_before` for clock skew).
    pub received: SystemTime,
}

impl std::fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.identity.to_string())
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Something that turns a CSR into a chain (leaf first, root last): the
/// CA over gRPC ([`CaClient`]), the CA in this process ([`LocalCa`]), or
/// a test's fake.
pub trait Issue: Send + Sync + 'static {
    fn issue(
        &self,
        csr_pem: String,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<String>, ClientError>> + Send;
}

/// The mesh CA in this process (for `weft up`, or tests).
#[derive(Clone, Debug)]
pub struct LocalCa(pub Arc<Ca>);

impl Issue for LocalCa {
    async fn issue(
        &self,
        csr_pem: String,
        ttl: Option<Duration>,
    ) -> Result<Vec<String>, ClientError> {
        let ttl = ttl.map(|t| t.as_secs() as i64);
        Ok(self
            .0
            .sign_csr(&csr_pem, &crate::auth::Entitlement::AnyInTrustDomain, ttl)?)
    }
}

/// How to reach the CA.
#[derive(Clone, Debug)]
pub struct CaClientOptions {
    /// The CA's secure port (Istio: istiod:15012).
    pub address: SocketAddr,
    /// The name its serving certificate must carry; the address's IP when
    /// `None`.
    pub server_name: Option<String>,
    /// PEM roots the serving certificate must chain to.
    pub root_pem: String,
    /// Sent as `authorization: Bearer <token>`.
    pub token: String,
}

/// `CreateCertificate` over TLS. Cheap to clone; connects lazily and
/// reconnects after a failure.
#[derive(Clone)]
pub struct CaClient {
    channel: tonic::transport::Channel,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaClient").finish_non_exhaustive()
    }
}

impl CaClient {
    pub fn new(opts: &CaClientOptions) -> Result<CaClient, ClientError> {
        let authorization = format!("Bearer {}", opts.token.trim())
            .parse()
            .map_err(|_| ClientError::Config("the token is not printable ASCII".into()))?;
        let channel = tls::channel(
            opts.address,
            opts.server_name.as_deref(),
            &opts.root_pem,
            CALL_TIMEOUT,
        )?;
        Ok(CaClient {
            channel,
            authorization,
        })
    }

    /// One `CreateCertificate` call.
    pub async fn create_certificate(
        &self,
        request: IstioCertificateRequest,
    ) -> Result<IstioCertificateResponse, ClientError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let status = |s: tonic::Status| ClientError::Call {
            code: s.code(),
            message: s.message().to_string(),
        };
        grpc.ready().await.map_err(|e| ClientError::Call {
            code: tonic::Code::Unavailable,
            message: e.to_string(),
        })?;
        let mut request = tonic::Request::new(request);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        let codec =
            tonic_prost::ProstCodec::<IstioCertificateRequest, IstioCertificateResponse>::default();
        let path = http::uri::PathAndQuery::from_static(proto::CREATE_CERTIFICATE);
        let response = grpc.unary(request, path, codec).await.map_err(status)?;
        Ok(response.into_inner())
    }
}

impl Issue for CaClient {
    async fn issue(
        &self,
        csr_pem: String,
        ttl: Option<Duration>,
    ) -> Result<Vec<String>, ClientError> {
        let response = self
            .create_certificate(IstioCertificateRequest {
                csr: csr_pem,
                validity_duration: ttl.map_or(0, |t| t.as_secs() as i64),
                metadata: None,
            })
            .await?;
        Ok(response.cert_chain)
    }
}

/// A fresh P-256 key and a CSR for `id` (its only SAN).
pub fn key_and_csr(id: &Identity) -> Result<(KeyPair, String), ClientError> {
    let csr_err = |e: rcgen::Error| ClientError::Csr(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(csr_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.uri().try_into().map_err(csr_err)?)];
    let csr = params.serialize_request(&key).map_err(csr_err)?;
    Ok((key, csr.pem().map_err(csr_err)?))
}

/// One certificate for `id`: a new key, a CSR, the issuer's chain
/// checked (it names `id` and certifies this key).
pub async fn fetch<I: Issue>(
    id: &Identity,
    issuer: &I,
    ttl: Option<Duration>,
) -> Result<WorkloadCert, ClientError> {
    use rcgen::PublicKeyData;
    let (key, csr) = key_and_csr(id)?;
    let chain = issuer.issue(csr, ttl).await?;
    let answer = |why: String| ClientError::Answer(why);
    let mut certs = Vec::new();
    for (i, pem) in chain.iter().enumerate() {
        certs.extend(
            x509::certs_from_pem(&format!("cert_chain[{i}]"), pem)
                .map_err(|e| answer(e.to_string()))?,
        );
    }
    if certs.len() < 2 {
        return Err(answer(format!(
            "{} certificates; expected the leaf and the root at least",
            certs.len()
        )));
    }
    let leaf = Info::read("the leaf", &certs[0]).map_err(|e| answer(e.to_string()))?;
    if leaf.uri_sans != [id.uri()] {
        return Err(answer(format!(
            "the leaf names {:?}, not {id}",
            leaf.uri_sans
        )));
    }
    if leaf.public_key != key.subject_public_key_info() {
        return Err(answer("the leaf certifies another key".into()));
    }
    let root = certs.pop().expect("two or more");
    let chain_pem: String = certs.iter().map(x509::to_pem).collect();
    Ok(WorkloadCert {
        identity: id.clone(),
        chain_pem,
        key_pem: key.serialize_pem(),
        root_pem: x509::to_pem(&root),
        serial: leaf.serial,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        received: SystemTime::now(),
    })
}

/// How long from `now` until a certificate received at `received` and
/// valid until `not_after` is renewed: when `grace_ratio` of that time
/// is left.
pub fn renew_after(
    received: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    grace_ratio: f64,
) -> Duration {
    let lifetime = not_after.duration_since(received).unwrap_or_default();
    let grace = lifetime.mul_f64(grace_ratio.clamp(0.0, 1.0));
    let renew_at = not_after - grace;
    renew_at.duration_since(now).unwrap_or_default()
}

/// The wait before retry number `failures` (1 for the first).
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * (1u32 << shift)).min(BACKOFF_MAX)
}

/// What the rotation loop asks for.
#[derive(Clone, Debug)]
pub struct RotationOptions {
    /// The lifetime asked; the CA's default when `None`.
    pub ttl: Option<Duration>,
    pub grace_ratio: f64,
}

impl Default for RotationOptions {
    fn default() -> RotationOptions {
        RotationOptions {
            ttl: None,
            grace_ratio: GRACE_RATIO,
        }
    }
}

/// A running rotation: the current certificate, and the task keeping it
/// fresh (stopped when this is dropped).
#[derive(Debug)]
pub struct Rotation {
    pub certs: watch::Receiver<Option<Arc<WorkloadCert>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rotation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rotation {
    /// Starts fetching `id`'s certificate at once, then renewing it.
    pub fn start<I: Issue>(id: Identity, issuer: I, opts: RotationOptions) -> Rotation {
        let (tx, certs) = watch::channel(None);
        let task = tokio::spawn(rotate(id, issuer, opts, tx));
        Rotation { certs, task }
    }

    /// The first certificate, once there is one.
    pub async fn first(&mut self) -> Arc<WorkloadCert> {
        loop {
            if let Some(c) = self.certs.borrow_and_update().clone() {
                return c;
            }
            if self.certs.changed().await.is_err() {
                // The task never stops while this holds a receiver.
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn rotate<I: Issue>(
    id: Identity,
    issuer: I,
    opts: RotationOptions,
    tx: watch::Sender<Option<Arc<WorkloadCert>>>,
) {
    let mut failures = 0u32;
    loop {
        match fetch(&id, &issuer, opts.ttl).await {
            Ok(cert) => {
                failures = 0;
                // At least a second: a CA that answers certificates
                // already due (outliving its own) is not called in a
                // tight loop.
                let wait = renew_after(
                    cert.received,
                    cert.not_after,
                    SystemTime::now(),
                    opts.grace_ratio,
                )
                .max(BACKOFF_FIRST);
                tracing::info!(
                    identity = %id,
                    serial = %cert.serial,
                    renew_in_s = wait.as_secs(),
                    "workload certificate issued"
                );
                tx.send_replace(Some(Arc::new(cert)));
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(failures);
                if e.retryable() {
                    tracing::warn!(identity = %id, retry_in_s = wait.as_secs_f64(), "getting a certificate: {e}");
                } else {
                    tracing::error!(identity = %id, retry_in_s = wait.as_secs_f64(), "getting a certificate: {e}");
                }
                tokio::time::sleep(wait).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
