//! A test certificate authority (rcgen, ring): a root, intermediates,
//! and leaves with DNS and URI (SPIFFE) SANs in the validity window a
//! test chooses (current, expired, not yet valid), as PEM text or files
//! in a temporary directory. Leaves are good for both TLS server and
//! client use, as Istio's workload certificates are.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// When a certificate is valid, relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago to a year from now.
    Current,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    NotYetValid,
}

impl Validity {
    fn apply(self, p: &mut CertificateParams) {
        let now = OffsetDateTime::now_utc();
        let (from, to) = match self {
            Validity::Current => (now - Duration::days(1), now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(1), now + Duration::days(30)),
        };
        p.not_before = from;
        p.not_after = to;
    }
}

/// A certificate authority: a root, or an intermediate with the chain up
/// to (not including) its root.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    /// This CA's certificate and the intermediates above it, leaf-most
    /// first (what a leaf it signs appends to its chain).
    chain: Vec<String>,
}

/// A leaf certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The leaf, then the intermediates that lead to the root.
    pub chain_pem: String,
    pub key_pem: String,
}

/// Files written for a leaf: certificate chain and private key.
#[derive(Clone, Debug)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_params(name: &str, v: Validity) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weft tests");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    v.apply(&mut p);
    p
}

impl Ca {
    /// A self-signed root.
    pub fn root(name: &str) -> Ca {
        let params = ca_params(name, Validity::Current);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("root certificate");
        Ca {
            pem: cert.pem(),
            params,
            key,
            chain: Vec::new(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let params = ca_params(name, Validity::Current);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.issuer())
            .expect("intermediate certificate");
        let pem = cert.pem();
        let mut chain = vec![pem.clone()];
        chain.extend(self.chain.iter().cloned());
        Ca {
            pem,
            params,
            key,
            chain,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// This CA's own certificate (what `trusted_ca` holds for a root).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A leaf with these DNS names and URIs (`spiffe://...`) as SANs.
    pub fn leaf(&self, dns: &[&str], uris: &[&str], validity: Validity) -> Leaf {
        let cn = dns.first().or(uris.first()).copied().unwrap_or("leaf");
        self.leaf_with_subject(&[("CN", cn)], dns, uris, validity)
    }

    /// A leaf as [`Ca::leaf`], its subject these attributes in this
    /// order, each by its short name: `C`, `ST`, `L`, `O`, `OU`, `CN`.
    pub fn leaf_with_subject(
        &self,
        subject: &[(&str, &str)],
        dns: &[&str],
        uris: &[&str],
        validity: Validity,
    ) -> Leaf {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (name, value) in subject {
            let kind = match *name {
                "C" => DnType::CountryName,
                "ST" => DnType::StateOrProvinceName,
                "L" => DnType::LocalityName,
                "O" => DnType::OrganizationName,
                "OU" => DnType::OrganizationalUnitName,
                "CN" => DnType::CommonName,
                other => panic!("no subject attribute {other:?} in the test CA"),
            };
            dn.push(kind, *value);
        }
        p.distinguished_name = dn;
        p.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().expect("DNS name")))
            .chain(
                uris.iter()
                    .map(|u| SanType::URI((*u).try_into().expect("URI"))),
            )
            .collect();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        validity.apply(&mut p);
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer()).expect("leaf certificate");
        let mut chain_pem = cert.pem();
        for c in &self.chain {
            chain_pem.push_str(c);
        }
        Leaf {
            chain_pem,
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes this CA's certificate to `dir/NAME.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("{name}.pem"));
        std::fs::write(&p, &self.pem).expect("write CA");
        p
    }
}

impl Leaf {
    /// Writes `dir/NAME.crt` (the chain) and `dir/NAME.key`.
    pub fn write(&self, dir: &Path, name: &str) -> LeafFiles {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.chain_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        LeafFiles { cert, key }
    }
}
