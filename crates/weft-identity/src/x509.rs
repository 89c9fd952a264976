//! Reading certificates: PEM bundles split into certificates, and what
//! the CA, the agent and tests need to know of one (serial, validity,
//! SANs, whether it is a CA) read with x509-parser.

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A PEM text or a certificate in it could not be read. Not retryable:
/// the bytes are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("{what}: not PEM: {detail}")]
    Pem { what: String, detail: String },
    #[error("{what}: no certificate in it")]
    Empty { what: String },
    #[error("{what}: not an X.509 certificate: {detail}")]
    Certificate { what: String, detail: String },
}

/// The certificates of a PEM bundle, in order; other blocks (keys) are
/// skipped. `what` names the bundle in errors.
pub fn certs_from_pem(what: &str, text: &str) -> Result<Vec<CertificateDer<'static>>, X509Error> {
    let blocks = pem::parse_many(text).map_err(|e| X509Error::Pem {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    for c in &certs {
        Info::read(what, c)?;
    }
    Ok(certs)
}

/// Like [`certs_from_pem`], and at least one.
pub fn nonempty_certs_from_pem(
    what: &str,
    text: &str,
) -> Result<Vec<CertificateDer<'static>>, X509Error> {
    let certs = certs_from_pem(what, text)?;
    if certs.is_empty() {
        return Err(X509Error::Empty {
            what: what.to_string(),
        });
    }
    Ok(certs)
}

/// One certificate as PEM text.
pub fn to_pem(cert: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", cert.as_ref().to_vec()))
}

/// What weft reads of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Lower-case hex without leading zeros (as Envoy's admin `/certs`
    /// shows it).
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub ip_sans: Vec<std::net::IpAddr>,
    pub is_ca: bool,
    pub subject: String,
    pub issuer: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
}

impl Info {
    pub fn read(what: &str, der: &CertificateDer<'_>) -> Result<Info, X509Error> {
        let bad = |detail: String| X509Error::Certificate {
            what: what.to_string(),
            detail,
        };
        let (rest, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad(format!("{} bytes after the certificate", rest.len())));
        }
        let mut info = Info {
            serial: hex_trimmed(cert.raw_serial()),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            uri_sans: Vec::new(),
            dns_sans: Vec::new(),
            ip_sans: Vec::new(),
            is_ca: cert.is_ca(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            public_key: cert.public_key().raw.to_vec(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => info.uri_sans.push(u.to_string()),
                    GeneralName::DNSName(d) => info.dns_sans.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            info.ip_sans.push(a.into());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            info.ip_sans.push(a.into());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// The certificate's whole validity period.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

fn hex_trimmed(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_serials_have_no_leading_zeros() {
        assert_eq!(hex_trimmed(&[0, 0x0a, 0xbc]), "abc");
        assert_eq!(hex_trimmed(&[0]), "0");
    }

    #[test]
    fn bad_pem_is_named() {
        let e = nonempty_certs_from_pem("root-cert.pem", "hello").unwrap_err();
        assert!(e.to_string().starts_with("root-cert.pem"), "{e}");
        let e = nonempty_certs_from_pem(
            "root-cert.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not an X.509"), "{e}");
    }
}
