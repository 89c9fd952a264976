//! The CA's files: the self-signed root in the state directory (created
//! once, then reused) and Istio's plug-in `cacerts` directory, each
//! checked before the CA signs with it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ca_name, random_serial, CaError, CaOptions, BACKDATE, ROOT_TTL};
use crate::x509::{self, Info};

/// The self-signed root's certificate in the state directory.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// Its key (mode 0600).
pub const ROOT_KEY_FILE: &str = "root-key.pem";

/// What the CA signs with.
pub(super) struct Loaded {
    pub signer: CertificateDer<'static>,
    pub key: KeyPair,
    pub intermediates: Vec<CertificateDer<'static>>,
    pub root: CertificateDer<'static>,
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, why: impl Into<String>) -> CaError {
    CaError::BadFile {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// The root in `state_dir`, created when the directory holds none.
pub(super) fn self_signed(state_dir: &Path, opts: &CaOptions) -> Result<Loaded, CaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::Io { path, source }
    };
    crate::files::create_private_dir(state_dir).map_err(io(state_dir))?;
    let cert_path = state_dir.join(ROOT_CERT_FILE);
    let key_path = state_dir.join(ROOT_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            crate::files::check_private(&key_path).map_err(io(&key_path))?;
            let key = read_key(&key_path)?;
            let root = one_cert(&cert_path)?;
            check_pair(&cert_path, &root, &key)?;
            check_ca(&cert_path, &root)?;
            tracing::info!(path = %cert_path.display(), "using the mesh root from the state directory");
            Ok(Loaded {
                signer: root.clone(),
                key,
                intermediates: Vec::new(),
                root,
            })
        }
        (false, false) => {
            let (root, key) = new_root(&opts.trust_domain)?;
            // The key first: a crash between the two leaves a key with
            // no certificate, which the next start reports.
            crate::files::write_private(&key_path, key.serialize_pem().as_bytes())
                .map_err(io(&key_path))?;
            crate::files::write_public(&cert_path, x509::to_pem(&root).as_bytes())
                .map_err(io(&cert_path))?;
            tracing::info!(path = %cert_path.display(), "created a self-signed mesh root");
            Ok(Loaded {
                signer: root.clone(),
                key,
                intermediates: Vec::new(),
                root,
            })
        }
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            Err(bad(
                present,
                format!(
                    "{} is missing: restore it, or remove both files to create a new root (workloads that trust the old root will not trust certificates of the new one)",
                    missing.display()
                ),
            ))
        }
    }
}

fn new_root(trust_domain: &str) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name(trust_domain, "weft mesh root");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + ROOT_TTL).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    Ok((cert.der().clone(), key))
}

/// Istio's `cacerts`: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
/// `cert-chain.pem`.
pub(super) fn plugin(dir: &Path) -> Result<Loaded, CaError> {
    let file = |name: &str| -> PathBuf { dir.join(name) };
    let (cert_path, key_path, root_path, chain_path) = (
        file("ca-cert.pem"),
        file("ca-key.pem"),
        file("root-cert.pem"),
        file("cert-chain.pem"),
    );
    let signer = one_cert(&cert_path)?;
    let key = read_key(&key_path)?;
    check_pair(&cert_path, &signer, &key)?;
    check_ca(&cert_path, &signer)?;
    let root = one_cert(&root_path)?;
    check_ca(&root_path, &root)?;
    let chain_text = match std::fs::read_to_string(&chain_path) {
        Ok(t) => t,
        // Optional when the signing certificate is the root.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && signer == root => String::new(),
        Err(source) => {
            return Err(CaError::Io {
                path: chain_path,
                source,
            })
        }
    };
    let mut chain = x509::certs_from_pem(&chain_path.display().to_string(), &chain_text)?;
    // The root at the end of the chain is sent once, last.
    if chain.last() == Some(&root) {
        chain.pop();
    }
    let intermediates = if signer == root {
        if !chain.is_empty() {
            return Err(bad(
                &chain_path,
                "ca-cert.pem is the root, so the chain should be empty",
            ));
        }
        Vec::new()
    } else {
        if chain.is_empty() {
            chain.push(signer.clone());
        }
        if chain[0] != signer {
            return Err(bad(
                &chain_path,
                "does not start with ca-cert.pem (the chain runs from the signing certificate up to the root)",
            ));
        }
        chain
    };
    // Each certificate is signed by the next, the last by the root.
    let mut links: Vec<&CertificateDer<'static>> = intermediates.iter().collect();
    links.push(&root);
    for pair in links.windows(2) {
        verify_issued_by(&chain_path, pair[0], pair[1])?;
    }
    verify_issued_by(&root_path, &root, &root)?;
    tracing::info!(dir = %dir.display(), intermediates = intermediates.len(), "using plug-in CA certificates");
    Ok(Loaded {
        signer,
        key,
        intermediates,
        root,
    })
}

fn one_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let text = read(path)?;
    let mut certs = x509::nonempty_certs_from_pem(&path.display().to_string(), &text)?;
    if certs.len() > 1 {
        return Err(bad(
            path,
            format!("holds {} certificates; expected one", certs.len()),
        ));
    }
    Ok(certs.remove(0))
}

/// A PKCS#8 private key (`BEGIN PRIVATE KEY`; ECDSA P-256/P-384,
/// RSA or Ed25519). rcgen on ring reads no other form: a PKCS#1 or SEC1
/// key is refused with the command that converts it.
fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivateKeyDer;
    let text = read(path)?;
    let der = PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| bad(path, format!("no private key: {e}")))?;
    if !matches!(der, PrivateKeyDer::Pkcs8(_)) {
        return Err(bad(
            path,
            format!(
                "a PKCS#1 or SEC1 key; convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.p8 && mv {0}.p8 {0}",
                path.display()
            ),
        ));
    }
    KeyPair::try_from(&der).map_err(|e| bad(path, format!("unusable private key: {e}")))
}

/// The key is the certificate's.
fn check_pair(path: &Path, cert: &CertificateDer<'_>, key: &KeyPair) -> Result<(), CaError> {
    use rcgen::PublicKeyData;
    let info = Info::read(&path.display().to_string(), cert)?;
    if info.public_key != key.subject_public_key_info() {
        return Err(bad(
            path,
            "the private key does not belong to this certificate",
        ));
    }
    Ok(())
}

fn check_ca(path: &Path, cert: &CertificateDer<'_>) -> Result<(), CaError> {
    let info = Info::read(&path.display().to_string(), cert)?;
    if !info.is_ca {
        return Err(bad(
            path,
            "not a CA certificate (basicConstraints CA:FALSE or missing)",
        ));
    }
    if info.not_after <= SystemTime::now() {
        return Err(bad(path, "expired"));
    }
    Ok(())
}

/// `cert`'s signature verifies with `issuer`'s key, and its issuer is
/// `issuer`'s subject.
fn verify_issued_by(
    path: &Path,
    cert: &CertificateDer<'_>,
    issuer: &CertificateDer<'_>,
) -> Result<(), CaError> {
    fn parse<'a>(path: &Path, c: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, CaError> {
        X509Certificate::from_der(c.as_ref())
            .map(|(_, c)| c)
            .map_err(|e| bad(path, e.to_string()))
    }
    let (c, i) = (parse(path, cert)?, parse(path, issuer)?);
    if c.issuer().as_raw() != i.subject().as_raw() {
        return Err(bad(
            path,
            format!(
                "{} is issued by {}, not by {}",
                c.subject(),
                c.issuer(),
                i.subject()
            ),
        ));
    }
    c.verify_signature(Some(i.public_key())).map_err(|e| {
        bad(
            path,
            format!(
                "{}'s signature does not verify with {}'s key: {e}",
                c.subject(),
                i.subject()
            ),
        )
    })
}
