//! The mesh's certificate authority (Istio's Citadel role in istiod).
//!
//! Its signing certificate comes from one of two places ([`CaSource`]):
//!
//! - **self-signed** (the default): an ECDSA P-256 root valid ten years,
//!   created on first start in the state directory (`root-cert.pem`,
//!   `root-key.pem` mode 0600) and reused on every restart, so
//!   certificates issued before a restart stay trusted;
//! - **plug-in** (Istio's `cacerts`): `ca-cert.pem` (the intermediate
//!   that signs), `ca-key.pem` (its key), `root-cert.pem` (the mesh's
//!   root of trust) and `cert-chain.pem` (the chain from `ca-cert.pem` up
//!   to the root: the intermediates, with or without the root at the
//!   end; empty when `ca-cert.pem` is the root). Two meshes given
//!   intermediates of one root trust each other's workloads.
//!
//! It signs a workload's CSR ([`Ca::sign_csr`]) into a certificate whose
//! only SAN is the workload's SPIFFE id (critical, as the subject is
//! empty), with Istio's key usages (digitalSignature, keyEncipherment;
//! serverAuth and clientAuth), a random serial, and a lifetime of 24 h
//! unless the request asks otherwise, never beyond the maximum (90 days,
//! Istio's `MAX_WORKLOAD_CERT_TTL`) nor the signing certificate's own
//! end. The answer is Istio's: the chain leaf first, then the
//! intermediates, the root last, one PEM certificate per element. It also
//! issues the control plane's own serving certificate
//! ([`Ca::issue_serving`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::auth::Entitlement;
use crate::identity::Identity;
use crate::x509::{self, Info, X509Error};

mod load;
mod signing;

pub use load::{ROOT_CERT_FILE, ROOT_KEY_FILE};

/// How long a self-signed root is valid (Istio: ten years).
pub const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A workload certificate's lifetime when the request names none
/// (Istio's `DEFAULT_WORKLOAD_CERT_TTL`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest lifetime a request may ask (Istio's
/// `MAX_WORKLOAD_CERT_TTL`).
pub const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates start this long before they are issued, so a peer whose
/// clock is a little behind accepts them.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Where the signing certificate and key come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// A root created in (and reused from) this state directory.
    SelfSigned { state_dir: PathBuf },
    /// Istio's `cacerts` layout in this directory.
    Plugin { cacerts: PathBuf },
}

#[derive(Clone, Debug)]
pub struct CaOptions {
    pub trust_domain: String,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for CaOptions {
    fn default() -> CaOptions {
        CaOptions {
            trust_domain: crate::identity::DEFAULT_TRUST_DOMAIN.into(),
            default_ttl: DEFAULT_TTL,
            max_ttl: MAX_TTL,
        }
    }
}

/// Why the CA could not start or would not sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file could not be read or written. Retryable once the file
    /// system is fixed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A CA file holds something unusable (a key that does not match its
    /// certificate, a chain that does not lead to the root...). Not
    /// retryable: the files must be fixed.
    #[error("{path}: {why}")]
    BadFile { path: PathBuf, why: String },
    #[error(transparent)]
    Certificate(#[from] X509Error),
    /// The configured trust domain is not one. Not retryable.
    #[error("{0}")]
    TrustDomain(crate::identity::IdentityError),
    /// The CSR cannot be read or its signature does not verify. The
    /// caller's fault; not retryable.
    #[error("malformed CSR: {0}")]
    MalformedCsr(String),
    /// The CSR asks for names this CA does not issue. Not retryable.
    #[error("CSR refused: {0}")]
    RefusedCsr(String),
    /// The caller may not have the identity it asks for. Not retryable.
    #[error("{identity} is not an identity the caller may be issued")]
    NotEntitled { identity: String },
    /// The requested lifetime is negative or beyond the maximum.
    #[error("requested lifetime {requested}s: {why}")]
    BadTtl { requested: i64, why: String },
    /// rcgen refused to build or sign a certificate: a bug or an
    /// unsupported key. Not retryable.
    #[error("signing failed: {0}")]
    Signing(String),
}

impl CaError {
    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, CaError::Io { .. })
    }
}

/// The names on the control plane's serving certificate.
#[derive(Clone, Debug)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Default for ServingNames {
    /// istiod's service names (what pilot-agent dials), and the loopback
    /// addresses a local mesh uses.
    fn default() -> ServingNames {
        ServingNames {
            dns: [
                "istiod.istio-system.svc",
                "istiod.istio-system.svc.cluster.local",
                "istiod.istio-system",
                "istiod",
                "istio-pilot.istio-system.svc",
                "localhost",
            ]
            .map(String::from)
            .to_vec(),
            ips: vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()],
        }
    }
}

/// A certificate with its private key (the control plane's serving
/// certificate), the chain leaf first.
#[derive(Debug)]
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_after: SystemTime,
    pub not_before: SystemTime,
}

/// The CA: immutable once open, shared by reference.
pub struct Ca {
    opts: CaOptions,
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate's end: nothing issued outlives it.
    signer_not_after: SystemTime,
    /// From the signing certificate up to (not including) the root;
    /// empty when the root signs.
    intermediates: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
    root_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.opts.trust_domain)
            .field("intermediates", &self.intermediates.len())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Opens the CA: loads (or, self-signed, creates) its files.
    pub fn open(source: &CaSource, opts: CaOptions) -> Result<Ca, CaError> {
        Identity::new(&opts.trust_domain, "ns", "sa").map_err(CaError::TrustDomain)?;
        let loaded = match source {
            CaSource::SelfSigned { state_dir } => load::self_signed(state_dir, &opts)?,
            CaSource::Plugin { cacerts } => load::plugin(cacerts)?,
        };
        let signer_info = Info::read("the signing certificate", &loaded.signer)?;
        let issuer = Issuer::from_ca_cert_der(&loaded.signer, loaded.key)
            .map_err(|e| CaError::Signing(format!("the signing certificate cannot sign: {e}")))?;
        Ok(Ca {
            opts,
            issuer,
            signer_not_after: signer_info.not_after,
            intermediates: loaded.intermediates,
            root_pem: x509::to_pem(&loaded.root),
            root: loaded.root,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.opts.trust_domain
    }

    /// The root of trust as PEM (what bootstraps and agents are given;
    /// Istio's `root-cert.pem`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// Signs `csr_pem` for a caller entitled to `entitlement`, valid
    /// `ttl` (the default when `None` or zero). The chain, leaf first,
    /// root last, one PEM certificate each.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        entitlement: &Entitlement,
        ttl_seconds: Option<i64>,
    ) -> Result<Vec<String>, CaError> {
        let ttl = self.ttl(ttl_seconds)?;
        let csr = signing::read_csr(csr_pem)?;
        let id = signing::spiffe_id(&csr, &self.opts.trust_domain)?;
        if !entitlement.allows(&id) {
            return Err(CaError::NotEntitled {
                identity: id.to_string(),
            });
        }
        let params = self.leaf_params(ttl, vec![uri_san(&id)?])?;
        let leaf = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        tracing::debug!(identity = %id, ttl_s = ttl.as_secs(), "issued a workload certificate");
        Ok(self.chain_pem(leaf.der()))
    }

    /// A fresh key and a certificate for the control plane's serving
    /// port: `names`, and the SPIFFE id of istiod's service account.
    pub fn issue_serving(&self, names: &ServingNames, ttl: Duration) -> Result<Issued, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let id = Identity::new(&self.opts.trust_domain, "istio-system", "istiod")
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let mut sans = vec![uri_san(&id)?];
        for d in &names.dns {
            let name = d
                .clone()
                .try_into()
                .map_err(|e| CaError::Signing(format!("DNS name {d:?}: {e}")))?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let params = self.leaf_params(ttl.min(self.opts.max_ttl), sans)?;
        let (not_before, not_after) = (
            SystemTime::from(params.not_before),
            SystemTime::from(params.not_after),
        );
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.intermediates.iter().cloned());
        chain.push(self.root.clone());
        Ok(Issued {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_before,
            not_after,
        })
    }

    fn ttl(&self, requested: Option<i64>) -> Result<Duration, CaError> {
        match requested {
            None | Some(0) => Ok(self.opts.default_ttl),
            Some(s) if s < 0 => Err(CaError::BadTtl {
                requested: s,
                why: "negative".into(),
            }),
            Some(s) => {
                let ttl = Duration::from_secs(s as u64);
                if ttl > self.opts.max_ttl {
                    return Err(CaError::BadTtl {
                        requested: s,
                        why: format!("longer than the maximum, {}s", self.opts.max_ttl.as_secs()),
                    });
                }
                Ok(ttl)
            }
        }
    }

    /// A leaf's parameters: no subject (the SAN says who), Istio's key
    /// usages, a random serial, `ttl` from a minute ago.
    fn leaf_params(&self, ttl: Duration, sans: Vec<SanType>) -> Result<CertificateParams, CaError> {
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = (now - BACKDATE).into();
        let end = (now + ttl).min(self.signer_not_after);
        params.not_after = end.into();
        Ok(params)
    }

    fn chain_pem(&self, leaf: &CertificateDer<'_>) -> Vec<String> {
        let mut chain = vec![x509::to_pem(leaf)];
        chain.extend(self.intermediates.iter().map(x509::to_pem));
        chain.push(self.root_pem.clone());
        chain
    }
}

fn uri_san(id: &Identity) -> Result<SanType, CaError> {
    Ok(SanType::URI(
        id.uri()
            .try_into()
            .map_err(|e| CaError::Signing(format!("{id}: {e}")))?,
    ))
}

/// 16 random bytes, the first in 0x40..=0x7f: positive, and with no
/// leading zero digit, so every reader (Envoy's admin, x509-parser)
/// prints the same hex.
pub(crate) fn random_serial() -> SerialNumber {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The distinguished name of a CA weft creates: the trust domain as the
/// organization (as Istio's self-signed root), and a common name.
pub(crate) fn ca_name(trust_domain: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests;
