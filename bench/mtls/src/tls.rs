//! The bench's own mTLS client (rustls, ring, as weft), standing in for
//! the client sidecar when it talks to the server-side proxy directly:
//! it presents the client's SPIFFE certificate and never resumes a
//! session (`Resumption::disabled`: no session ID, no ticket offered),
//! so every connection is a full handshake — TLS 1.3, X25519, ECDSA
//! P-256 signatures both ways, the client certificate verified by the
//! proxy.
//!
//! Two configurations: `verifying` checks the server's chain against the
//! root and its SPIFFE URI (used for the idle connections and to check
//! each proxy once); `unverified` skips the server's certificate and
//! signature checks, used only in the handshake-rate loop, so the
//! generator's core (one, shared with the backend) spends less per
//! handshake than the proxy it measures. What the proxy does is the same
//! with either.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use weft_bench_support::h1::{get, H1};

use crate::pki::{Pki, SERVER_ID};

#[derive(Debug)]
struct Verifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    /// False in the handshake-rate loop: accept whatever is presented.
    check: bool,
}

/// Whether the leaf's URI SANs include the server's SPIFFE identity.
fn has_server_id(leaf: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| matches!(n, x509_parser::extensions::GeneralName::URI(u) if *u == SERVER_ID))
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check {
            // The chain and validity; the name is the SPIFFE URI, not
            // the server name sent (Istio's certificates have no DNS SAN).
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &self.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
            if !has_server_id(end_entity) {
                return Err(rustls::Error::General(format!(
                    "the server's certificate is not {SERVER_ID}"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.check {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.check {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The bench's client side of mTLS.
#[derive(Clone)]
pub struct Client {
    pub verifying: Arc<ClientConfig>,
    pub unverified: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    pub fn new(pki: &Pki) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.root_pem.as_bytes()).expect("root PEM"))
            .expect("root");
        let roots = Arc::new(roots);
        let config = |check: bool| {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pki.client.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client certificate PEM");
            let key = PrivateKeyDer::from_pem_slice(pki.client.key_pem.as_bytes())
                .expect("client key PEM");
            let mut c = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .expect("TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    roots: Arc::clone(&roots),
                    provider: Arc::clone(&provider),
                    check,
                }))
                .with_client_auth_cert(chain, key)
                .expect("client certificate");
            c.resumption = rustls::client::Resumption::disabled();
            Arc::new(c)
        };
        Client {
            verifying: config(true),
            unverified: config(false),
            name: ServerName::try_from(crate::bootstrap::SNI).expect("server name"),
        }
    }

    /// A new mTLS connection to 127.0.0.1:`port` (a full handshake), as
    /// an HTTP/1.1 client; its connection task runs until the sender is
    /// dropped.
    pub async fn connect(&self, port: u16, config: &Arc<ClientConfig>) -> std::io::Result<H1> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(self.name.clone(), s)
            .await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(send)
    }
}

/// New connections as fast as they are accepted, `concurrency` at a
/// time for `secs`: handshake, one request, close (the client closes
/// first, so TIME_WAIT stays on the client's side, which reuses it on
/// loopback). Returns (handshakes completed with a 200, failures, wall
/// seconds).
pub async fn handshake_loop(
    client: &Client,
    port: u16,
    concurrency: usize,
    secs: f64,
) -> (u64, u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (stop, ok, failed, client) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            client.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let done = match client.connect(port, &client.unverified).await {
                    Ok(mut c) => get(&mut c, "/handshake").await,
                    Err(_) => false,
                };
                if done {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    // A refused connection returns at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    // Handshakes in flight at the stop still count: so does their time.
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        elapsed,
    )
}
