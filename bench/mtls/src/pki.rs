//! The mesh's certificates, made at start with rcgen into the run's
//! temporary directory: one root, and ECDSA P-256 leaves with a SPIFFE
//! URI SAN and nothing else, as Istio's workload certificates are (no
//! DNS name: peers are checked by SAN matchers, never by host name).
//! Both proxies load the same files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/server";

/// A leaf as files (for the proxies) and PEM (for the bench's own TLS
/// client).
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Pki {
    pub root: PathBuf,
    pub root_pem: String,
    pub client: Leaf,
    pub server: Leaf,
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

fn leaf(dir: &Path, name: &str, uri: &str, issuer: &Issuer<'_, KeyPair>) -> Leaf {
    let mut p = CertificateParams::default();
    // Istio's leaves have an empty subject; a CN does no harm and makes
    // `openssl x509 -text` readable.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::URI(uri.try_into().expect("URI"))];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let key = p256();
    let cert = p.signed_by(&key, issuer).expect("leaf certificate");
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &cert_pem).expect("write certificate");
    std::fs::write(&key, &key_pem).expect("write key");
    Leaf {
        cert,
        key,
        cert_pem,
        key_pem,
    }
}

/// Writes `root.pem`, `client.{crt,key}` and `server.{crt,key}` in `dir`.
pub fn generate(dir: &Path) -> Pki {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "cluster.local");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = p256();
    let root_pem = p.self_signed(&key).expect("root certificate").pem();
    let root = dir.join("root.pem");
    std::fs::write(&root, &root_pem).expect("write root");
    let issuer = Issuer::new(p, key);
    Pki {
        root,
        root_pem,
        client: leaf(dir, "client", CLIENT_ID, &issuer),
        server: leaf(dir, "server", SERVER_ID, &issuer),
    }
}

/// What [`generate`] wrote to `dir` earlier.
pub fn load(dir: &Path) -> Pki {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
    };
    let leaf = |name: &str| Leaf {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        cert_pem: read(&format!("{name}.crt")),
        key_pem: read(&format!("{name}.key")),
    };
    Pki {
        root: dir.join("root.pem"),
        root_pem: read("root.pem"),
        client: leaf("client"),
        server: leaf("server"),
    }
}
