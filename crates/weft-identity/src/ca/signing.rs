//! Reading a workload's CSR: PEM, a signature that verifies with the
//! key it carries (the caller holds that key), and exactly one SAN, a
//! SPIFFE id of this mesh's trust domain. Everything else in the CSR
//! (its subject, other extensions) is ignored: the CA decides what the
//! certificate says.

use rcgen::CertificateSigningRequestParams;
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::CaError;
use crate::identity::Identity;

pub(super) struct Csr {
    pub public_key: rcgen::PublicKey,
    /// URI SANs.
    uris: Vec<String>,
    /// Every other SAN, as text (only to say why the CSR is refused).
    others: Vec<String>,
}

pub(super) fn read_csr(csr_pem: &str) -> Result<Csr, CaError> {
    let malformed = |why: String| CaError::MalformedCsr(why);
    let block = pem::parse(csr_pem.trim()).map_err(|e| malformed(format!("not PEM: {e}")))?;
    if !matches!(
        block.tag(),
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
    ) {
        return Err(malformed(format!(
            "a PEM {:?} block; expected CERTIFICATE REQUEST",
            block.tag()
        )));
    }
    let der = block.contents();
    let (rest, req) = X509CertificationRequest::from_der(der)
        .map_err(|e| malformed(format!("not PKCS#10: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} bytes after the request", rest.len())));
    }
    req.verify_signature()
        .map_err(|e| malformed(format!("its signature does not verify with its key: {e}")))?;
    let mut uris = Vec::new();
    let mut others = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    other => others.push(format!("{other:?}")),
                }
            }
        }
    }
    let params =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
            .map_err(|e| malformed(format!("unsupported request: {e}")))?;
    Ok(Csr {
        public_key: params.public_key,
        uris,
        others,
    })
}

/// The one identity the CSR asks for, of `trust_domain`.
pub(super) fn spiffe_id(csr: &Csr, trust_domain: &str) -> Result<Identity, CaError> {
    let refused = |why: String| CaError::RefusedCsr(why);
    if !csr.others.is_empty() {
        return Err(refused(format!(
            "only a SPIFFE id may be asked; it also asks {}",
            csr.others.join(", ")
        )));
    }
    let [uri] = csr.uris.as_slice() else {
        return Err(refused(format!(
            "it must ask exactly one URI SAN (the SPIFFE id), it asks {}",
            csr.uris.len()
        )));
    };
    let id: Identity = uri.parse().map_err(|e| refused(format!("{e}")))?;
    if id.trust_domain() != trust_domain {
        return Err(refused(format!(
            "{id} is not of this mesh's trust domain {trust_domain:?}"
        )));
    }
    Ok(id)
}
