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
//!   secrets name the bootstrap's `static_resources.secrets`, or SDS
//!   secrets delivered over ADS (`sds_config: {ads: {}}`), held in
//!   `SdsSecrets` (`secrets`): one slot per name, shared by every context naming
//!   it and swapped whole when a new version arrives. A context with SDS
//!   secrets keeps its built rustls configuration with the slot versions
//!   it was built from; the first handshake after a slot changes rebuilds
//!   it, so new handshakes use the new secret and open connections are
//!   untouched. Until its secrets arrive a context is pending: a listener
//!   warms (xds), a handshake is refused. A delivered secret is checked
//!   (`check_secret`) before it is stored; a bad one is refused and the
//!   last good one stays. SDS from a config source of its own (Istio's
//!   agent socket) is refused by name in weft-envoy's checks.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use weft_envoy::tls::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SanType, Secret,
    TlsCertificate, UpstreamTlsContext,
};

use super::certs;
use super::params::{alpn, parameters};
use super::secrets::{fresh, versions, Fail, Secrets, Slot};
use super::verify::{ClientVerifier, FixedCert, SanMatcher, ServerVerifier, Validation};
use super::{TlsClientStream, TlsInfo, TlsServerStream};
use crate::error::CompileError;
use crate::io::Rewind;
use crate::matchers::StringMatcher;

pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError::Config {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether a delivered secret can be used: its certificate and key
/// (belonging together), or its validation context.
pub(crate) fn check_secret(name: &str, s: &Secret) -> Result<(), CompileError> {
    let at = format!("Secret {name:?}");
    if let Some(t) = &s.tls_certificate {
        let provider = rustls::crypto::ring::default_provider();
        identity(&format!("{at}: tls_certificate"), t, &provider)?;
    }
    if let Some(v) = &s.validation_context {
        let vat = format!("{at}: validation_context");
        san_matchers(&vat, v, &mut Vec::new())?;
        if let Some(d) = &v.trusted_ca {
            let cat = format!("{vat}.trusted_ca");
            roots(&cat, &certs::read(&cat, d)?)?;
        }
    }
    Ok(())
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
) -> Result<Option<Identity>, Fail> {
    if let Some(t) = c.tls_certificates.first() {
        return Ok(Some(identity(
            &format!("{at}.tls_certificates[0]"),
            t,
            provider,
        )?));
    }
    let Some(sds) = c.tls_certificate_sds_secret_configs.first() else {
        return Ok(None);
    };
    let sat = format!("{at}.tls_certificate_sds_secret_configs[0]");
    let secret = secrets.get(&sat, sds)?;
    let t = secret.tls_certificate.as_ref().ok_or_else(|| {
        config(
            format!("{sat}.name"),
            format!("secret {:?} holds no tls_certificate", sds.name),
        )
    })?;
    Ok(Some(identity(
        &format!("secret {:?}: tls_certificate", sds.name),
        t,
        provider,
    )?))
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
) -> Result<Option<Validation>, Fail> {
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
        let secret = secrets.get(&sat, sds)?;
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
            return Err(Fail::Config(config(
                format!("{inline_at}.trusted_ca"),
                "SAN matchers need a trusted CA to verify the certificate they read",
            )));
        }
        return Ok(None);
    };
    Ok(Some(Validation {
        roots: Arc::new(roots(&cat, &pem)?),
        sans,
    }))
}

fn roots(at: &str, pem: &[u8]) -> Result<RootCertStore, CompileError> {
    let mut roots = RootCertStore::empty();
    for (i, c) in certs::certificates(at, pem)?.into_iter().enumerate() {
        roots
            .add(c)
            .map_err(|e| config(at, format!("certificate {i} is not a usable CA: {e}")))?;
    }
    Ok(roots)
}

fn tls_error(at: &str, e: rustls::Error) -> CompileError {
    config(at, format!("TLS configuration: {e}"))
}

/// A filter chain's TLS: its context, and the rustls configuration
/// built from it (with the SDS slot versions it was built from).
#[derive(Debug)]
pub struct Server {
    at: String,
    ctx: DownstreamTlsContext,
    secrets: Secrets,
    slots: Vec<Arc<Slot>>,
    built: ArcSwapOption<ServerBuilt>,
}

#[derive(Debug)]
struct ServerBuilt {
    versions: Vec<u64>,
    config: Arc<ServerConfig>,
    local_identities: Arc<[String]>,
}

impl Server {
    /// Builds the configuration now when it can; a context whose SDS
    /// secrets have not arrived compiles as pending.
    pub(crate) fn compile(
        at: &str,
        ctx: &DownstreamTlsContext,
        secrets: &Secrets,
    ) -> Result<Self, CompileError> {
        let c = ctx.common_tls_context.clone().unwrap_or_default();
        let server = Server {
            at: at.to_string(),
            ctx: ctx.clone(),
            secrets: secrets.clone(),
            slots: secrets.slots(&c),
            built: ArcSwapOption::empty(),
        };
        match server.build(versions(&server.slots)) {
            Ok(b) => server.built.store(Some(Arc::new(b))),
            Err(Fail::Pending(_)) => {}
            Err(Fail::Config(e)) => return Err(e),
        }
        Ok(server)
    }

    fn build(&self, versions: Vec<u64>) -> Result<ServerBuilt, Fail> {
        let (at, ctx, secrets) = (&self.at, &self.ctx, &self.secrets);
        let cat = format!("{at}.common_tls_context");
        let c = ctx.common_tls_context.clone().unwrap_or_default();
        let (provider, tls_versions) = parameters(&cat, &c, false)?;
        let me = context_identity(&cat, &c, secrets, &provider)?.ok_or_else(|| {
            config(
                format!("{cat}.tls_certificates"),
                "a TLS server needs a certificate",
            )
        })?;
        let require = ctx.require_client_certificate == Some(true);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&tls_versions)
            .map_err(|e| tls_error(&cat, e))?;
        let builder = match validation(&cat, &c, secrets)? {
            None if require => {
                return Err(Fail::Config(config(
                    format!("{at}.require_client_certificate"),
                    "requiring a client certificate needs a trusted CA to check it with",
                )))
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
        Ok(ServerBuilt {
            versions,
            config: Arc::new(server),
            local_identities: me.uris,
        })
    }

    /// The configuration for a new handshake: rebuilt first when an SDS
    /// secret changed since it was built; an error while secrets are
    /// missing.
    fn current(&self) -> std::io::Result<Arc<ServerBuilt>> {
        let built = self.built.load_full();
        if let Some(b) = &built {
            if fresh(&b.versions, &self.slots) {
                return Ok(Arc::clone(b));
            }
        }
        let now = versions(&self.slots);
        match self.build(now.clone()) {
            Ok(b) => {
                let b = Arc::new(b);
                self.built.store(Some(Arc::clone(&b)));
                Ok(b)
            }
            Err(e) => {
                let why = match e {
                    Fail::Pending(name) => format!("secret {name:?} has not arrived"),
                    Fail::Config(e) => e.to_string(),
                };
                match built {
                    // A checked secret that still does not build: the
                    // last configuration goes on.
                    // Not tried again until a secret changes again.
                    Some(b) => {
                        tracing::warn!("TLS context {}: {why}; keeping the last one", self.at);
                        let kept = Arc::new(ServerBuilt {
                            versions: now,
                            config: Arc::clone(&b.config),
                            local_identities: Arc::clone(&b.local_identities),
                        });
                        self.built.store(Some(Arc::clone(&kept)));
                        Ok(kept)
                    }
                    None => Err(std::io::Error::other(why)),
                }
            }
        }
    }

    /// Whether an SDS secret it needs has not arrived yet (a listener
    /// with such a chain warms).
    pub(crate) fn pending(&self) -> bool {
        !self.slots.is_empty() && self.current().is_err()
    }

    /// The handshake, and what it established.
    pub(crate) async fn accept(
        &self,
        io: Rewind<TcpStream>,
    ) -> std::io::Result<(TlsServerStream, TlsInfo)> {
        let built = self.current()?;
        let stream = tokio_rustls::TlsAcceptor::from(Arc::clone(&built.config))
            .accept(io)
            .await?;
        let s = stream.get_ref().1;
        let peer_certificates: Vec<Vec<u8>> = s
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        let peer = peer_certificates
            .first()
            .map(|leaf| certs::identity(leaf))
            .unwrap_or_default();
        let info = TlsInfo {
            version: match s.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                _ => "TLSv1.2",
            },
            server_name: s.server_name().map(str::to_string),
            alpn: s.alpn_protocol().map(<[u8]>::to_vec),
            peer_identities: peer.uris,
            peer_dns_sans: peer.dns,
            peer_subject: peer.subject,
            peer_certificates,
            local_identities: Arc::clone(&built.local_identities),
        };
        Ok((stream, info))
    }
}

/// A cluster's TLS: its context, the server name sent, and the rustls
/// configuration built from it (as [`Server`]'s).
#[derive(Debug)]
pub struct Client {
    at: String,
    ctx: UpstreamTlsContext,
    http2: bool,
    secrets: Secrets,
    slots: Vec<Arc<Slot>>,
    built: ArcSwapOption<ClientBuilt>,
    sni: Option<ServerName<'static>>,
}

#[derive(Debug)]
struct ClientBuilt {
    versions: Vec<u64>,
    config: Arc<ClientConfig>,
}

impl Client {
    pub(crate) fn compile(
        at: &str,
        ctx: &UpstreamTlsContext,
        secrets: &Secrets,
        http2: bool,
    ) -> Result<Self, CompileError> {
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
        let c = ctx.common_tls_context.clone().unwrap_or_default();
        let client = Client {
            at: at.to_string(),
            ctx: ctx.clone(),
            http2,
            secrets: secrets.clone(),
            slots: secrets.slots(&c),
            built: ArcSwapOption::empty(),
            sni,
        };
        match client.build(versions(&client.slots)) {
            Ok(b) => client.built.store(Some(Arc::new(b))),
            Err(Fail::Pending(_)) => {}
            Err(Fail::Config(e)) => return Err(e),
        }
        Ok(client)
    }

    fn build(&self, versions: Vec<u64>) -> Result<ClientBuilt, Fail> {
        let (ctx, secrets) = (&self.ctx, &self.secrets);
        let cat = format!("{}.common_tls_context", self.at);
        let c = ctx.common_tls_context.clone().unwrap_or_default();
        let (provider, tls_versions) = parameters(&cat, &c, true)?;
        let me = context_identity(&cat, &c, secrets, &provider)?;
        let verifier = ServerVerifier {
            validation: validation(&cat, &c, secrets)?,
            provider: Arc::clone(&provider),
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&tls_versions)
            .map_err(|e| tls_error(&cat, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut client = match me {
            Some(me) => builder.with_client_cert_resolver(Arc::new(FixedCert(me.key))),
            None => builder.with_no_client_auth(),
        };
        client.alpn_protocols = alpn(&c);
        if client.alpn_protocols.is_empty() && self.http2 {
            client.alpn_protocols = vec![b"h2".to_vec()];
        }
        client.resumption = match ctx.max_session_keys.unwrap_or(1) {
            0 => rustls::client::Resumption::disabled(),
            n => rustls::client::Resumption::in_memory_sessions(n as usize),
        };
        Ok(ClientBuilt {
            versions,
            config: Arc::new(client),
        })
    }

    fn current(&self) -> std::io::Result<Arc<ClientBuilt>> {
        let built = self.built.load_full();
        if let Some(b) = &built {
            if fresh(&b.versions, &self.slots) {
                return Ok(Arc::clone(b));
            }
        }
        let now = versions(&self.slots);
        match self.build(now.clone()) {
            Ok(b) => {
                let b = Arc::new(b);
                self.built.store(Some(Arc::clone(&b)));
                Ok(b)
            }
            Err(e) => {
                let why = match e {
                    Fail::Pending(name) => format!("secret {name:?} has not arrived"),
                    Fail::Config(e) => e.to_string(),
                };
                match built {
                    Some(b) => {
                        tracing::warn!("TLS context {}: {why}; keeping the last one", self.at);
                        let kept = Arc::new(ClientBuilt {
                            versions: now,
                            config: Arc::clone(&b.config),
                        });
                        self.built.store(Some(Arc::clone(&kept)));
                        Ok(kept)
                    }
                    None => Err(std::io::Error::other(why)),
                }
            }
        }
    }

    /// Whether an SDS secret it needs has not arrived yet (its cluster
    /// warms).
    pub(crate) fn pending(&self) -> bool {
        !self.slots.is_empty() && self.current().is_err()
    }

    /// The handshake over `tcp`; without `sni` no server name is sent
    /// (the address stands in, which rustls does not send).
    pub(crate) async fn connect(
        &self,
        addr: std::net::SocketAddr,
        tcp: TcpStream,
    ) -> std::io::Result<TlsClientStream> {
        let built = self.current()?;
        let name = self
            .sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        tokio_rustls::TlsConnector::from(Arc::clone(&built.config))
            .connect(name, tcp)
            .await
    }
}
