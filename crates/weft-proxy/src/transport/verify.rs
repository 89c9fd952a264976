//! Verifying a peer's certificate as Envoy does: chain and validity
//! against the trusted CA, then SAN matchers (never the host name); and
//! the fixed certificate a context presents.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use weft_envoy::tls::SanType;

use super::certs;
use crate::matchers::StringMatcher;

/// One SAN matcher: a type (none for the deprecated
/// `match_subject_alt_names`, which reads every type) and the pattern.
#[derive(Debug)]
pub(crate) struct SanMatcher {
    pub(crate) of: Option<SanType>,
    pub(crate) m: StringMatcher,
    /// An `exact` pattern, for DNS wildcard SANs.
    pub(crate) exact: Option<String>,
}

impl SanMatcher {
    fn matches(&self, leaf: &[u8]) -> bool {
        let types: &[SanType] = match &self.of {
            Some(t) => std::slice::from_ref(t),
            None => &[
                SanType::DNS,
                SanType::URI,
                SanType::EMAIL,
                SanType::IP_ADDRESS,
            ],
        };
        types.iter().any(|t| {
            certs::sans(leaf, *t).iter().any(|san| {
                self.m.matches(san)
                    || (*t == SanType::DNS
                        && self
                            .exact
                            .as_deref()
                            .is_some_and(|e| certs::dns_matches(san, e)))
            })
        })
    }
}

/// How a peer's certificate is verified: the roots its chain must lead
/// to and the SAN matchers (any one matching accepts).
#[derive(Debug)]
pub(crate) struct Validation {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) sans: Vec<SanMatcher>,
}

impl Validation {
    pub(crate) fn check_sans(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.sans.is_empty() || self.sans.iter().any(|m| m.matches(leaf)) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// One certificate, whatever the peer asks for.
#[derive(Debug)]
pub(crate) struct FixedCert(pub(crate) Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

impl rustls::client::ResolvesClientCert for FixedCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies an upstream's certificate as Envoy does: chain and validity
/// against the trusted CA, then the SAN matchers; never the host name.
/// Without a validation context nothing is verified but the handshake's
/// signatures.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pub(crate) validation: Option<Validation>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(v) = &self.validation {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &v.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
            v.check_sans(end_entity)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// Verifies a client's certificate: rustls' WebPKI verifier (chain,
/// validity, client use), then the SAN matchers.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) validation: Validation,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.validation.check_sans(end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
