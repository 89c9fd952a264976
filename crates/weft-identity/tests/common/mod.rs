//! What the integration tests share: the CA served over TLS on port 0,
//! and a rustls client verifier that checks a peer's SPIFFE id (mesh
//! certificates name no host, so a hostname check cannot pass).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use weft_identity::auth::JoinToken;
use weft_identity::ca::{Ca, CaOptions, CaSource, ServingNames, DEFAULT_TTL};
use weft_identity::service::CertificateService;
use weft_identity::tls::{self, ServingCert, TlsIncoming};

/// The CA's secure port, as the control plane serves it.
pub struct CaServer {
    pub ca: Arc<Ca>,
    pub addr: SocketAddr,
    pub token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve_ca(state_dir: &Path) -> CaServer {
    let ca = Arc::new(
        Ca::open(
            &CaSource::SelfSigned {
                state_dir: state_dir.to_path_buf(),
            },
            CaOptions::default(),
        )
        .unwrap(),
    );
    let token = JoinToken::load_or_create(state_dir).unwrap();
    let token_text = std::fs::read_to_string(token.path()).unwrap();
    let serving = ServingCert::new(ca.clone(), ServingNames::default(), DEFAULT_TTL).unwrap();
    let config = tls::server_config(Arc::new(serving)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TlsIncoming::new(listener, config);
    let service = CertificateService::new(ca.clone(), Arc::new(token));
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    CaServer {
        ca,
        addr,
        token: token_text,
        task,
    }
}

/// Verifies the chain against the mesh root, then that the leaf names
/// `spiffe_id` instead of a host.
#[derive(Debug)]
pub struct SpiffeVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    spiffe_id: String,
}

impl SpiffeVerifier {
    pub fn new(root_pem: &str, spiffe_id: &str) -> Arc<SpiffeVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        for c in weft_identity::x509::nonempty_certs_from_pem("root", root_pem).unwrap() {
            roots.add(c).unwrap();
        }
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            tls::provider(),
        )
        .build()
        .unwrap();
        Arc::new(SpiffeVerifier {
            inner,
            spiffe_id: spiffe_id.to_string(),
        })
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                let info = weft_identity::x509::Info::read("peer", end_entity)
                    .map_err(|e| Error::General(e.to_string()))?;
                if info.uri_sans == [self.spiffe_id.clone()] {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::General(format!(
                        "peer is {:?}, not {}",
                        info.uri_sans, self.spiffe_id
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
