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

/// A certificate's subject as Envoy prints it (BoringSSL's
/// `X509_NAME_print_ex` with `XN_FLAG_RFC2253`): the RDNs last first,
/// `,` between them and `+` inside one, attributes by their short names
/// (an OID without one in dotted form, its value dumped as `#` and the
/// DER in hex), values in UTF-8 with RFC 2253's specials escaped by a
/// backslash and control and non-ASCII bytes as `\XX`. Empty for a
/// certificate that does not parse.
pub(crate) fn subject_rfc2253(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => rfc2253(cert.subject()),
        Err(_) => String::new(),
    }
}

/// A distinguished name in that form (see [`subject_rfc2253`]).
pub(crate) fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            match short_name(&oid) {
                Some(name) => {
                    out.push_str(name);
                    out.push('=');
                    attribute_value(&mut out, atv.attr_value());
                }
                None => {
                    out.push_str(&oid);
                    out.push('=');
                    dump(&mut out, atv.attr_value());
                }
            }
        }
    }
    out
}

/// What a peer certificate says of its holder: its URI and DNS SANs and
/// its subject (RFC 2253 form), as RBAC's `authenticated` principal
/// reads it.
#[derive(Debug, Default)]
pub(crate) struct PeerIdentity {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub subject: String,
}

/// The identity of a certificate, read with one parse (empty for one
/// that does not parse).
pub(crate) fn identity(der: &[u8]) -> PeerIdentity {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return PeerIdentity::default();
    };
    let mut out = PeerIdentity {
        subject: rfc2253(cert.subject()),
        ..Default::default()
    };
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for g in &ext.value.general_names {
            match g {
                GeneralName::URI(s) => out.uris.push(s.to_string()),
                GeneralName::DNSName(s) => out.dns.push(s.to_string()),
                _ => {}
            }
        }
    }
    out
}

/// OpenSSL's short names for the attribute types certificates use.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// A string value, decoded by its ASN.1 type into characters; a value
/// of any other type is dumped.
fn attribute_value(out: &mut String, v: &x509_parser::der_parser::asn1_rs::Any) {
    use x509_parser::der_parser::asn1_rs::Tag;
    let data = v.data;
    let chars: Option<Vec<char>> = match v.tag() {
        Tag::Utf8String => std::str::from_utf8(data).ok().map(|s| s.chars().collect()),
        // One byte a character (Latin-1, as OpenSSL reads them).
        Tag::NumericString
        | Tag::PrintableString
        | Tag::T61String
        | Tag::VideotexString
        | Tag::Ia5String
        | Tag::UtcTime
        | Tag::GeneralizedTime
        | Tag::GraphicString
        | Tag::VisibleString
        | Tag::GeneralString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => data
            .len()
            .is_multiple_of(2)
            .then(|| {
                char::decode_utf16(data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
                    .collect::<Result<Vec<char>, _>>()
                    .ok()
            })
            .flatten(),
        Tag::UniversalString => data
            .len()
            .is_multiple_of(4)
            .then(|| {
                data.chunks(4)
                    .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect::<Option<Vec<char>>>()
            })
            .flatten(),
        _ => None,
    };
    let Some(chars) = chars else {
        return dump(out, v);
    };
    let last = chars.len().saturating_sub(1);
    for (i, c) in chars.iter().enumerate() {
        let mut utf8 = [0u8; 4];
        for &b in c.encode_utf8(&mut utf8).as_bytes() {
            match b {
                b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                b'#' if i == 0 => out.push_str("\\#"),
                b' ' if i == 0 || i == last => out.push_str("\\ "),
                0..=0x1f | 0x7f..=0xff => out.push_str(&format!("\\{b:02X}")),
                _ => out.push(char::from(b)),
            }
        }
    }
}

/// `#` and the value's DER in uppercase hex, as OpenSSL dumps a value it
/// does not print as text.
fn dump(out: &mut String, v: &x509_parser::der_parser::asn1_rs::Any) {
    let h = &v.header;
    let mut der = Vec::with_capacity(v.data.len() + 6);
    let constructed = if h.is_constructed() { 0x20 } else { 0 };
    der.push(((h.class() as u8) << 6) | constructed | (h.tag().0 as u8 & 0x1f));
    let len = v.data.len();
    match len {
        0..=0x7f => der.push(len as u8),
        _ => {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            der.push(0x80 | bytes.len() as u8);
            der.extend(bytes);
        }
    }
    der.extend_from_slice(v.data);
    out.push('#');
    for b in der {
        out.push_str(&format!("{b:02X}"));
    }
}
