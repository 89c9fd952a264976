//! Envoy's TLS transport socket on rustls (ring provider): a filter
//! chain's `DownstreamTlsContext` becomes a [`Server`], a cluster's
//! `UpstreamTlsContext` a [`Client`], each an immutable rustls
//! configuration built when the configuration compiles.
//!
//! Envoy's semantics, as its docs give them:
//! - Certificate validation: the chain must lead to `trusted_ca` and be
//!   within its validity window (an expired or not yet valid certificate
//!   is refused); the SAN matchers, when given, must match at least one
//!   SAN of their type (`exact` DNS matching reads a `*.` SAN as a
//!   one-label wildcard). The host name is never checked against the
//!   server name sent: only SAN matchers do that, as in Envoy.
//! - A client with no validation context does not verify the server's
//!   certificate at all (Envoy's behaviour; the handshake's signatures are
//!   still checked). A server with one asks for a client certificate and
//!   verifies what it gets; `require_client_certificate` refuses clients
//!   that send none.
//! - Versions: clients default to TLS 1.2 only and servers to 1.0–1.3, as
//!   Envoy; rustls speaks 1.2 and 1.3, so 1.0/1.1 as a minimum mean 1.2,
//!   and a maximum below 1.2 is refused. `cipher_suites` (OpenSSL names,
//!   `[A|B]` groups) choose among the TLS 1.2 suites; TLS 1.3's are
//!   fixed, as BoringSSL's. Names BoringSSL knows that rustls does not
//!   implement (CBC, plain RSA key exchange) are left out; unknown names
//!   are refused by name. `ecdh_curves`: X25519, P-256, P-384.
//! - Session resumption: rustls' defaults (server: stateful cache and
//!   stateless tickets unless `disable_stateless_session_resumption`;
//!   client: `max_session_keys` sessions, 1 by default, 0 disables).
//! - Secrets: `tls_certificate_sds_secret_configs` and validation context
//!   secrets name the bootstrap's `static_resources.secrets` ([`Secrets`]);
//!   SDS is refused by name in weft-envoy's checks.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use weft_envoy::tls::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SanType, Secret,
    TlsCertificate, TlsVersion, UpstreamTlsContext,
};

use super::certs;
use super::{TlsClientStream, TlsInfo, TlsServerStream};
use crate::error::CompileError;
use crate::io::Rewind;
use crate::matchers::StringMatcher;

fn config(field: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError::Config {
        field: field.into(),
        message: message.into(),
    }
}

/// Secrets by name, as TLS contexts name them (the bootstrap's
/// `static_resources.secrets`).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: HashMap<String, Secret>,
}

impl Secrets {
    pub fn new(secrets: &[Secret]) -> Self {
        Secrets {
            by_name: secrets
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
        }
    }

    fn get(&self, at: &str, name: &str) -> Result<&Secret, CompileError> {
        self.by_name
            .get(name)
            .ok_or_else(|| config(format!("{at}.name"), format!("unknown secret {name:?}")))
    }
}

/// The certificate and key a context presents, checked to belong
/// together; with the URI SANs of the certificate (its identities).
struct Identity {
    key: Arc<CertifiedKey>,
    uris: Arc<[String]>,
}

fn identity(
    at: &str,
    t: &TlsCertificate,
    provider: &CryptoProvider,
) -> Result<Identity, CompileError> {
    let (cat, kat) = (
        format!("{at}.certificate_chain"),
        format!("{at}.private_key"),
    );
    let chain = t
        .certificate_chain
        .as_ref()
        .ok_or_else(|| config(&cat, "required"))?;
    let key = t
        .private_key
        .as_ref()
        .ok_or_else(|| config(&kat, "required"))?;
    let certs = certs::certificates(&cat, &certs::read(&cat, chain)?)?;
    let key = certs::private_key(&kat, &certs::read(&kat, key)?)?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| config(&kat, format!("unusable private key: {e}")))?;
    let uris: Arc<[String]> = certs::sans(&certs[0], SanType::URI).into();
    let key = CertifiedKey::new(certs, signer);
    key.keys_match().map_err(|e| {
        config(
            &kat,
            format!("does not belong to the certificate_chain's first certificate: {e}"),
        )
    })?;
    Ok(Identity {
        key: Arc::new(key),
        uris,
    })
}

/// The context's certificate: inline, or a secret by name.
fn context_identity(
    at: &str,
    c: &CommonTlsContext,
    secrets: &Secrets,
    provider: &CryptoProvider,
) -> Result<Option<Identity>, CompileError> {
    if let Some(t) = c.tls_certificates.first() {
        return identity(&format!("{at}.tls_certificates[0]"), t, provider).map(Some);
    }
    let Some(sds) = c.tls_certificate_sds_secret_configs.first() else {
        return Ok(None);
    };
    let sat = format!("{at}.tls_certificate_sds_secret_configs[0]");
    let secret = secrets.get(&sat, &sds.name)?;
    let t = secret.tls_certificate.as_ref().ok_or_else(|| {
        config(
            format!("{sat}.name"),
            format!("secret {:?} holds no tls_certificate", sds.name),
        )
    })?;
    identity(
        &format!("secret {:?}: tls_certificate", sds.name),
        t,
        provider,
    )
    .map(Some)
}

/// One SAN matcher: a type (none for the deprecated
/// `match_subject_alt_names`, which reads every type) and the pattern.
#[derive(Debug)]
struct SanMatcher {
    of: Option<SanType>,
    m: StringMatcher,
    /// An `exact` pattern, for DNS wildcard SANs.
    exact: Option<String>,
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
struct Validation {
    roots: Arc<RootCertStore>,
    sans: Vec<SanMatcher>,
}

impl Validation {
    fn check_sans(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.sans.is_empty() || self.sans.iter().any(|m| m.matches(leaf)) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

fn san_matchers(
    at: &str,
    v: &CertificateValidationContext,
    out: &mut Vec<SanMatcher>,
) -> Result<(), CompileError> {
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let mat = format!("{at}.match_typed_subject_alt_names[{i}].matcher");
        out.push(SanMatcher {
            of: Some(m.san_type),
            m: StringMatcher::compile(&m.matcher).map_err(|e| config(&mat, e))?,
            exact: m.matcher.exact.clone().filter(|_| !m.matcher.ignore_case),
        });
    }
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let mat = format!("{at}.match_subject_alt_names[{i}]");
        out.push(SanMatcher {
            of: None,
            m: StringMatcher::compile(m).map_err(|e| config(&mat, e))?,
            exact: m.exact.clone().filter(|_| !m.ignore_case),
        });
    }
    Ok(())
}

/// The context's validation: inline (`validation_context`, or a
/// combined context's default) merged with a validation context secret
/// (its `trusted_ca` wins; SAN matchers of both apply). `None` when no
/// trusted CA is configured.
fn validation(
    at: &str,
    c: &CommonTlsContext,
    secrets: &Secrets,
) -> Result<Option<Validation>, CompileError> {
    let inline_at = if c.validation_context.is_some() {
        format!("{at}.validation_context")
    } else {
        format!("{at}.combined_validation_context.default_validation_context")
    };
    let mut sans = Vec::new();
    let mut ca = None;
    if let Some(v) = c.inline_validation() {
        san_matchers(&inline_at, v, &mut sans)?;
        if let Some(d) = &v.trusted_ca {
            let cat = format!("{inline_at}.trusted_ca");
            ca = Some((cat.clone(), certs::read(&cat, d)?));
        }
    }
    if let Some(sds) = c.validation_secret() {
        let sat = if c.validation_context_sds_secret_config.is_some() {
            format!("{at}.validation_context_sds_secret_config")
        } else {
            format!("{at}.combined_validation_context.validation_context_sds_secret_config")
        };
        let secret = secrets.get(&sat, &sds.name)?;
        let v = secret.validation_context.as_ref().ok_or_else(|| {
            config(
                format!("{sat}.name"),
                format!("secret {:?} holds no validation_context", sds.name),
            )
        })?;
        let vat = format!("secret {:?}: validation_context", sds.name);
        san_matchers(&vat, v, &mut sans)?;
        if let Some(d) = &v.trusted_ca {
            let cat = format!("{vat}.trusted_ca");
            ca = Some((cat.clone(), certs::read(&cat, d)?));
        }
    }
    let Some((cat, pem)) = ca else {
        if !sans.is_empty() {
            return Err(config(
                format!("{inline_at}.trusted_ca"),
                "SAN matchers need a trusted CA to verify the certificate they read",
            ));
        }
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for (i, c) in certs::certificates(&cat, &pem)?.into_iter().enumerate() {
        roots
            .add(c)
            .map_err(|e| config(&cat, format!("certificate {i} is not a usable CA: {e}")))?;
    }
    Ok(Some(Validation {
        roots: Arc::new(roots),
        sans,
    }))
}

/// OpenSSL/BoringSSL names of TLS 1.2 suites rustls implements.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// Names BoringSSL accepts that rustls does not implement (CBC modes,
/// RSA and PSK key exchange), or TLS 1.3 suites (not configurable):
/// left out of the offer rather than refused, so Istio's and Envoy's
/// usual lists compile.
const LEFT_OUT: &[&str] = &[
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The protocol versions, suites and groups of `tls_params`, as a
/// crypto provider and a version list. `client`: Envoy's defaults differ
/// (clients: TLS 1.2 only; servers: up to 1.3).
fn parameters(
    at: &str,
    c: &CommonTlsContext,
    client: bool,
) -> Result<(Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>), CompileError> {
    let p = c.tls_params.clone().unwrap_or_default();
    let pat = format!("{at}.tls_params");
    let mut provider = rustls::crypto::ring::default_provider();
    let min = match p.tls_minimum_protocol_version {
        TlsVersion::TLS_AUTO => TlsVersion::TLSv1_2,
        v => v.max(TlsVersion::TLSv1_2),
    };
    let max = match p.tls_maximum_protocol_version {
        TlsVersion::TLS_AUTO if client => TlsVersion::TLSv1_2,
        TlsVersion::TLS_AUTO => TlsVersion::TLSv1_3,
        v => v,
    };
    if max < TlsVersion::TLSv1_2 {
        return Err(config(
            format!("{pat}.tls_maximum_protocol_version"),
            "weft's TLS speaks TLS 1.2 and 1.3 only",
        ));
    }
    if min > max {
        return Err(config(
            format!("{pat}.tls_minimum_protocol_version"),
            "above tls_maximum_protocol_version",
        ));
    }
    let mut versions = Vec::new();
    if min <= TlsVersion::TLSv1_2 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::TLSv1_3 {
        versions.push(&rustls::version::TLS13);
    }
    if !p.cipher_suites.is_empty() {
        let mut tls12 = Vec::new();
        for (i, entry) in p.cipher_suites.iter().enumerate() {
            let names = entry.trim_start_matches('[').trim_end_matches(']');
            for name in names.split('|').map(str::trim) {
                match tls12_suite(name) {
                    Some(s)
                        if !tls12
                            .iter()
                            .any(|t: &SupportedCipherSuite| t.suite() == s.suite()) =>
                    {
                        tls12.push(s)
                    }
                    Some(_) => {}
                    None if LEFT_OUT.contains(&name) => {
                        tracing::debug!(
                            suite = name,
                            "cipher suite not implemented by rustls; left out"
                        );
                    }
                    None => {
                        return Err(config(
                            format!("{pat}.cipher_suites[{i}]"),
                            format!("unknown cipher suite {name:?}"),
                        ))
                    }
                }
            }
        }
        if tls12.is_empty() && min <= TlsVersion::TLSv1_2 && max == TlsVersion::TLSv1_2 {
            return Err(config(
                format!("{pat}.cipher_suites"),
                "none of these suites is implemented by weft's TLS",
            ));
        }
        let tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied();
        provider.cipher_suites = tls13.chain(tls12).collect();
    }
    if !p.ecdh_curves.is_empty() {
        use rustls::crypto::ring::kx_group;
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for (i, name) in p.ecdh_curves.iter().enumerate() {
            let g: &'static dyn SupportedKxGroup = match name.as_str() {
                "X25519" => kx_group::X25519,
                "P-256" => kx_group::SECP256R1,
                "P-384" => kx_group::SECP384R1,
                "P-521" | "X25519Kyber768Draft00" | "X25519MLKEM768" => continue,
                other => {
                    return Err(config(
                        format!("{pat}.ecdh_curves[{i}]"),
                        format!("unknown curve {other:?}"),
                    ))
                }
            };
            groups.push(g);
        }
        if groups.is_empty() {
            return Err(config(
                format!("{pat}.ecdh_curves"),
                "none of these curves is implemented by weft's TLS",
            ));
        }
        provider.kx_groups = groups;
    }
    Ok((Arc::new(provider), versions))
}

fn alpn(c: &CommonTlsContext) -> Vec<Vec<u8>> {
    c.alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect()
}

fn tls_error(at: &str, e: rustls::Error) -> CompileError {
    config(at, format!("TLS configuration: {e}"))
}

/// A filter chain's TLS: the server configuration and the identities of
/// its certificate.
#[derive(Debug)]
pub struct Server {
    config: Arc<ServerConfig>,
    local_identities: Arc<[String]>,
}

impl Server {
    pub(crate) fn compile(
        at: &str,
        ctx: &DownstreamTlsContext,
        secrets: &Secrets,
    ) -> Result<Self, CompileError> {
        let cat = format!("{at}.common_tls_context");
        let c = ctx.common_tls_context.clone().unwrap_or_default();
        let (provider, versions) = parameters(&cat, &c, false)?;
        let me = context_identity(&cat, &c, secrets, &provider)?.ok_or_else(|| {
            config(
                format!("{cat}.tls_certificates"),
                "a TLS server needs a certificate",
            )
        })?;
        let require = ctx.require_client_certificate == Some(true);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|e| tls_error(&cat, e))?;
        let builder = match validation(&cat, &c, secrets)? {
            None if require => {
                return Err(config(
                    format!("{at}.require_client_certificate"),
                    "requiring a client certificate needs a trusted CA to check it with",
                ))
            }
            None => builder.with_no_client_auth(),
            Some(v) => {
                let inner = WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(&v.roots),
                    Arc::clone(&provider),
                );
                let inner = if require {
                    inner
                } else {
                    inner.allow_unauthenticated()
                };
                let inner = inner
                    .build()
                    .map_err(|e| config(&cat, format!("validation context: {e}")))?;
                builder.with_client_cert_verifier(Arc::new(ClientVerifier {
                    inner,
                    validation: v,
                }))
            }
        };
        let mut server = builder.with_cert_resolver(Arc::new(FixedCert(Arc::clone(&me.key))));
        server.alpn_protocols = alpn(&c);
        if !ctx.disable_stateless_session_resumption {
            server.ticketer =
                rustls::crypto::ring::Ticketer::new().map_err(|e| tls_error(at, e))?;
        }
        Ok(Server {
            config: Arc::new(server),
            local_identities: me.uris,
        })
    }

    /// The handshake, and what it established.
    pub(crate) async fn accept(
        &self,
        io: Rewind<TcpStream>,
    ) -> std::io::Result<(TlsServerStream, TlsInfo)> {
        let stream = tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
            .accept(io)
            .await?;
        let s = stream.get_ref().1;
        let peer_certificates: Vec<Vec<u8>> = s
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        let info = TlsInfo {
            version: match s.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                _ => "TLSv1.2",
            },
            server_name: s.server_name().map(str::to_string),
            alpn: s.alpn_protocol().map(<[u8]>::to_vec),
            peer_identities: peer_certificates
                .first()
                .map(|leaf| certs::sans(leaf, SanType::URI))
                .unwrap_or_default(),
            peer_certificates,
            local_identities: Arc::clone(&self.local_identities),
        };
        Ok((stream, info))
    }
}

/// A cluster's TLS: the client configuration and the server name sent.
#[derive(Debug)]
pub struct Client {
    config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
}

impl Client {
    pub(crate) fn compile(
        at: &str,
        ctx: &UpstreamTlsContext,
        secrets: &Secrets,
        http2: bool,
    ) -> Result<Self, CompileError> {
        let cat = format!("{at}.common_tls_context");
        let c = ctx.common_tls_context.clone().unwrap_or_default();
        let (provider, versions) = parameters(&cat, &c, true)?;
        let me = context_identity(&cat, &c, secrets, &provider)?;
        let verifier = ServerVerifier {
            validation: validation(&cat, &c, secrets)?,
            provider: Arc::clone(&provider),
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|e| tls_error(&cat, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut client = match me {
            Some(me) => builder.with_client_cert_resolver(Arc::new(FixedCert(me.key))),
            None => builder.with_no_client_auth(),
        };
        client.alpn_protocols = alpn(&c);
        if client.alpn_protocols.is_empty() && http2 {
            client.alpn_protocols = vec![b"h2".to_vec()];
        }
        client.resumption = match ctx.max_session_keys.unwrap_or(1) {
            0 => rustls::client::Resumption::disabled(),
            n => rustls::client::Resumption::in_memory_sessions(n as usize),
        };
        let sni = if ctx.sni.is_empty() {
            None
        } else {
            Some(ServerName::try_from(ctx.sni.clone()).map_err(|_| {
                config(
                    format!("{at}.sni"),
                    format!("{:?} is not a server name", ctx.sni),
                )
            })?)
        };
        Ok(Client {
            config: Arc::new(client),
            sni,
        })
    }

    /// The handshake over `tcp`; without `sni` no server name is sent
    /// (the address stands in, which rustls does not send).
    pub(crate) async fn connect(
        &self,
        addr: std::net::SocketAddr,
        tcp: TcpStream,
    ) -> std::io::Result<TlsClientStream> {
        let name = self
            .sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
    }
}

/// One certificate, whatever the peer asks for.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

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
struct ServerVerifier {
    validation: Option<Validation>,
    provider: Arc<CryptoProvider>,
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
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    validation: Validation,
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
