//! Istio's CA gRPC API, `istio.v1.auth.IstioCertificateService/
//! CreateCertificate`, as a service for tonic's router (served on the
//! control plane's secure port beside ADS).
//!
//! A request is authenticated from its `authorization: Bearer` header by
//! the [`Authenticator`] (the mesh join token by default), then the CA
//! signs the CSR for the identity in it if the caller is entitled to it.
//! Errors map to gRPC codes: no or a wrong credential →
//! `UNAUTHENTICATED`; an authenticator that cannot check now →
//! `UNAVAILABLE`; an identity the caller may not have →
//! `PERMISSION_DENIED`; a malformed CSR, a foreign trust domain or a bad
//! lifetime → `INVALID_ARGUMENT`; the CA's own trouble → `INTERNAL`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::auth::{self, AuthError, Authenticator};
use crate::ca::{Ca, CaError};
use crate::proto::{self, IstioCertificateRequest, IstioCertificateResponse};

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// `IstioCertificateService` for `tonic::transport::Server::add_service`.
#[derive(Clone)]
pub struct CertificateService {
    ca: Arc<Ca>,
    auth: Arc<dyn Authenticator>,
}

impl CertificateService {
    pub fn new(ca: Arc<Ca>, auth: Arc<dyn Authenticator>) -> CertificateService {
        CertificateService { ca, auth }
    }

    /// Answers one request (what the gRPC method runs).
    pub async fn create_certificate(
        &self,
        authorization: Option<&str>,
        request: &IstioCertificateRequest,
    ) -> Result<IstioCertificateResponse, Status> {
        let entitlement = self
            .auth
            .authenticate(authorization.and_then(auth::bearer))
            .await
            .map_err(|e| match e {
                AuthError::Missing | AuthError::Refused => Status::unauthenticated(e.to_string()),
                AuthError::Unavailable(_) => Status::unavailable(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        let ttl = (request.validity_duration != 0).then_some(request.validity_duration);
        let cert_chain = self
            .ca
            .sign_csr(&request.csr, &entitlement, ttl)
            .map_err(|e| {
                let code = match &e {
                    CaError::MalformedCsr(_) | CaError::RefusedCsr(_) | CaError::BadTtl { .. } => {
                        Code::InvalidArgument
                    }
                    CaError::NotEntitled { .. } => Code::PermissionDenied,
                    _ => Code::Internal,
                };
                Status::new(code, e.to_string())
            })?;
        Ok(IstioCertificateResponse { cert_chain })
    }
}

impl NamedService for CertificateService {
    const NAME: &'static str = proto::SERVICE;
}

impl tower_service::Service<http::Request<tonic::body::Body>> for CertificateService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != proto::CREATE_CERTIFICATE {
                let status = Status::unimplemented(format!("{} is not served", req.uri().path()));
                return Ok(status.into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                IstioCertificateResponse,
                IstioCertificateRequest,
            >::default());
            Ok(grpc.unary(Create(this), req).await)
        })
    }
}

struct Create(CertificateService);

impl tonic::server::UnaryService<IstioCertificateRequest> for Create {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<tonic::Response<IstioCertificateResponse>, Status>;

    fn call(&mut self, request: tonic::Request<IstioCertificateRequest>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let authorization = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let peer = request.remote_addr();
            let answer = svc
                .create_certificate(authorization.as_deref(), request.get_ref())
                .await;
            match &answer {
                Ok(_) => tracing::debug!(?peer, "CreateCertificate: issued"),
                Err(status) => tracing::info!(
                    ?peer,
                    code = ?status.code(),
                    "CreateCertificate refused: {}",
                    status.message()
                ),
            }
            answer.map(tonic::Response::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthFuture, Entitlement};
    use crate::ca::{CaOptions, CaSource};
    use crate::identity::Identity;

    /// A Kubernetes-like authenticator: the token names one identity;
    /// "down" means the API server cannot be reached.
    struct ServiceAccountTokens;

    impl Authenticator for ServiceAccountTokens {
        fn authenticate<'a>(&'a self, bearer: Option<&'a str>) -> AuthFuture<'a> {
            Box::pin(async move {
                match bearer {
                    Some("down") => Err(AuthError::Unavailable("no API server".into())),
                    Some(sa) => Ok(Entitlement::Only(vec![Identity::in_cluster_local(
                        "default", sa,
                    )
                    .unwrap()])),
                    None => Err(AuthError::Missing),
                }
            })
        }
    }

    #[tokio::test]
    async fn an_authenticator_decides_which_identities_are_signed() {
        let dir = weft_testkit::envoy::TempDir::new("service");
        let ca = Ca::open(
            &CaSource::SelfSigned {
                state_dir: dir.0.clone(),
            },
            CaOptions::default(),
        )
        .unwrap();
        let svc = CertificateService::new(Arc::new(ca), Arc::new(ServiceAccountTokens));
        let id = Identity::in_cluster_local("default", "reviews").unwrap();
        let (_, csr) = crate::client::key_and_csr(&id).unwrap();
        let request = IstioCertificateRequest {
            csr,
            ..Default::default()
        };
        let ok = svc
            .create_certificate(Some("Bearer reviews"), &request)
            .await
            .unwrap();
        assert_eq!(ok.cert_chain.len(), 2);
        let code = |r: Result<IstioCertificateResponse, Status>| r.unwrap_err().code();
        let other = svc
            .create_certificate(Some("Bearer ratings"), &request)
            .await;
        assert_eq!(code(other), Code::PermissionDenied);
        let down = svc.create_certificate(Some("Bearer down"), &request).await;
        assert_eq!(code(down), Code::Unavailable);
        let none = svc.create_certificate(None, &request).await;
        assert_eq!(code(none), Code::Unauthenticated);
    }
}
