//! Certificates as configuration gives them: Envoy's `DataSource` read
//! (a file, inline text or base64 bytes, an environment variable), PEM
//! parsed into DER, and what a certificate names (its SANs, read with
//! x509-parser) for SAN matchers and identities.

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use weft_envoy::tls::{DataSource, SanType};
use x509_parser::extensions::GeneralName;

use crate::error::CompileError;

fn config(field: &str, message: impl Into<String>) -> CompileError {
    CompileError::Config {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The bytes of a data source; `at` names it in errors. A file is read
/// when the configuration compiles, as Envoy reads it when it loads.
pub(crate) fn read(at: &str, d: &DataSource) -> Result<Vec<u8>, CompileError> {
    if let Some(f) = &d.filename {
        return std::fs::read(f)
            .map_err(|e| config(&format!("{at}.filename"), format!("cannot read {f:?}: {e}")));
    }
    if let Some(s) = &d.inline_string {
        return Ok(s.as_bytes().to_vec());
    }
    if let Some(b) = &d.inline_bytes {
        return base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| config(&format!("{at}.inline_bytes"), format!("not base64: {e}")));
    }
    if let Some(v) = &d.environment_variable {
        return std::env::var(v).map(String::into_bytes).map_err(|_| {
            config(
                &format!("{at}.environment_variable"),
                format!("{v:?} is not set"),
            )
        });
    }
    Err(config(
        at,
        "a data source needs filename, inline_string, inline_bytes or environment_variable",
    ))
}

/// The certificates of a PEM bundle, in order; at least one.
pub(crate) fn certificates(
    at: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CompileError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| config(at, format!("malformed PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(config(at, "no PEM certificate found"));
    }
    for (i, c) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(c).is_err() {
            return Err(config(
                at,
                format!("certificate {i} is not a valid X.509 certificate"),
            ));
        }
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(at: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, CompileError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| config(at, format!("no valid PEM private key: {e}")))
}

/// A certificate's subject alternative names of one type, as strings
/// (an IP address in its usual text form). Empty for a certificate
/// that does not parse or has none.
pub(crate) fn sans(der: &[u8], of: SanType) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|g| match (g, of) {
            (GeneralName::DNSName(s), SanType::DNS) => Some(s.to_string()),
            (GeneralName::URI(s), SanType::URI) => Some(s.to_string()),
            (GeneralName::RFC822Name(s), SanType::EMAIL) => Some(s.to_string()),
            (GeneralName::IPAddress(b), SanType::IP_ADDRESS) => ip(b),
            _ => None,
        })
        .collect()
}

fn ip(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?).to_string()),
        _ => None,
    }
}

/// Whether a DNS SAN (which may be a `*.` wildcard) names `host` the
/// way Envoy's exact DNS matching reads it: a wildcard stands for one
/// label.
pub(crate) fn dns_matches(san: &str, host: &str) -> bool {
    if san.eq_ignore_ascii_case(host) {
        return true;
    }
    match san.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}
