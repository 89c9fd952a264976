//! `x-forwarded-client-cert` (XFCC), as Envoy's HTTP connection manager
//! treats it (`forward_client_cert_details`,
//! `set_current_client_cert_details`).
//!
//! The header is a comma-separated list of elements, one per proxy that
//! added one. An element is `;`-separated `Key=value` pairs about the
//! client certificate of the connection the request came in on: `By`
//! (each URI SAN of the proxy's own certificate), `Hash` (SHA-256 of the
//! client's leaf certificate, lowercase hex), then those configured, in
//! this order: `Cert` and `Chain` (URL-encoded PEM, quoted), `Subject`
//! (RFC 2253, quoted; present even when empty), `URI` (each URI SAN, or
//! `URI=` when there is none) and `DNS` (each DNS SAN).
//!
//! What becomes of the header: SANITIZE (the default) removes it;
//! FORWARD_ONLY passes it on, APPEND_FORWARD appends this connection's
//! element and SANITIZE_SET replaces it with that element — those three
//! only on mutual TLS (the client presented a certificate), anything
//! else is treated as SANITIZE; ALWAYS_FORWARD_ONLY passes it on
//! whatever the connection. Several header lines reach the next hop as
//! one, joined by commas, as Envoy's header map keeps this header.
//!
//! The element depends only on the connection, so it is made once when
//! the connection starts ([`ClientCertPolicy::element`]); a request only
//! copies it.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use weft_envoy::filters::{ForwardClientCertDetails, HttpConnectionManager};
use weft_envoy::tls::SanType;

use crate::transport::certs;
use crate::transport::{ConnectionInfo, TlsInfo};

pub(crate) static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// A connection manager's XFCC settings, compiled.
#[derive(Debug, Clone, Default)]
pub struct ClientCertPolicy {
    forward: ForwardClientCertDetails,
    cert: bool,
    chain: bool,
    subject: bool,
    uri: bool,
    dns: bool,
}

impl ClientCertPolicy {
    pub(crate) fn compile(h: &HttpConnectionManager) -> Self {
        let d = h
            .set_current_client_cert_details
            .clone()
            .unwrap_or_default();
        ClientCertPolicy {
            forward: h.forward_client_cert_details,
            cert: d.cert,
            chain: d.chain,
            subject: d.subject.unwrap_or(false),
            uri: d.uri,
            dns: d.dns,
        }
    }

    /// Whether requests carry an element of their connection's.
    fn sets(&self) -> bool {
        matches!(
            self.forward,
            ForwardClientCertDetails::APPEND_FORWARD | ForwardClientCertDetails::SANITIZE_SET
        )
    }

    /// This connection's element, when the mode adds one and the client
    /// presented a certificate (None otherwise, and for an element that
    /// is not a valid header value: the header is then removed).
    pub(crate) fn element(&self, tls: Option<&TlsInfo>) -> Option<HeaderValue> {
        if !self.sets() {
            return None;
        }
        let tls = tls?;
        let leaf = tls.peer_certificates.first()?;
        let mut parts: Vec<String> = tls
            .local_identities
            .iter()
            .map(|uri| format!("By={uri}"))
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
        parts.push(format!("Hash={}", hex(digest.as_ref())));
        if self.cert {
            parts.push(format!(
                "Cert=\"{}\"",
                url_encoded_pem(&tls.peer_certificates[..1])
            ));
        }
        if self.chain {
            parts.push(format!(
                "Chain=\"{}\"",
                url_encoded_pem(&tls.peer_certificates)
            ));
        }
        if self.subject {
            parts.push(format!("Subject=\"{}\"", certs::subject_rfc2253(leaf)));
        }
        if self.uri {
            let uris = certs::sans(leaf, SanType::URI);
            if uris.is_empty() {
                parts.push("URI=".into());
            }
            parts.extend(uris.iter().map(|u| format!("URI={u}")));
        }
        if self.dns {
            let names = certs::sans(leaf, SanType::DNS);
            parts.extend(names.iter().map(|d| format!("DNS={d}")));
        }
        let element = parts.join(";");
        match HeaderValue::from_str(&element) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::debug!(
                    "x-forwarded-client-cert element is not a valid header value: {element:?}"
                );
                None
            }
        }
    }

    /// Sets the request's XFCC header for the connection it came on.
    pub(crate) fn apply(&self, h: &mut HeaderMap, conn: &ConnectionInfo) {
        use ForwardClientCertDetails as F;
        let mtls = conn
            .tls
            .as_ref()
            .is_some_and(|t| !t.peer_certificates.is_empty());
        match self.forward {
            F::ALWAYS_FORWARD_ONLY => coalesce(h),
            F::SANITIZE => {
                h.remove(&XFCC);
            }
            _ if !mtls => {
                h.remove(&XFCC);
            }
            F::FORWARD_ONLY => coalesce(h),
            F::APPEND_FORWARD | F::SANITIZE_SET => {
                let Some(element) = &conn.client_cert else {
                    h.remove(&XFCC);
                    return;
                };
                let before = (self.forward == F::APPEND_FORWARD)
                    .then(|| joined(h))
                    .flatten();
                let value = match before {
                    Some(before) => {
                        let mut v = before.into_bytes();
                        v.push(b',');
                        v.extend_from_slice(element.as_bytes());
                        HeaderValue::from_bytes(&v).unwrap_or_else(|_| element.clone())
                    }
                    None => element.clone(),
                };
                h.insert(XFCC.clone(), value);
            }
        }
    }
}

/// The header's lines joined by commas, empty ones left out (None when
/// nothing is left).
fn joined(h: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = h
        .get_all(&XFCC)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Several lines of the header become one, as Envoy keeps it.
fn coalesce(h: &mut HeaderMap) {
    if h.get_all(&XFCC).iter().nth(1).is_none() {
        return;
    }
    match joined(h).and_then(|v| HeaderValue::from_str(&v).ok()) {
        Some(v) => {
            h.insert(XFCC.clone(), v);
        }
        None => {
            h.remove(&XFCC);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Certificates as PEM (64-character base64 lines, each certificate
/// ending in a newline), with the characters PEM holds that a URL
/// cannot (newline, space, `+`, `/`, `=`) percent-encoded.
fn url_encoded_pem(certs: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN%20CERTIFICATE-----%0A");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            for &c in line {
                match c {
                    b'+' => out.push_str("%2B"),
                    b'/' => out.push_str("%2F"),
                    b'=' => out.push_str("%3D"),
                    c => out.push(char::from(c)),
                }
            }
            out.push_str("%0A");
        }
        out.push_str("-----END%20CERTIFICATE-----%0A");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_url_encoded_in_64_character_lines() {
        let der = vec![0xfbu8; 60];
        let pem = url_encoded_pem(&[der]);
        assert!(
            pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A%2B%2Fv7"),
            "{pem}"
        );
        assert!(pem.ends_with("%0A-----END%20CERTIFICATE-----%0A"), "{pem}");
        // 60 bytes are 80 base64 characters: one full line, one of 16.
        assert_eq!(pem.matches("%0A").count(), 4, "{pem}");
    }

    #[test]
    fn lines_are_joined_without_empty_ones() {
        let mut h = HeaderMap::new();
        h.append(&XFCC, HeaderValue::from_static("a"));
        h.append(&XFCC, HeaderValue::from_static(""));
        h.append(&XFCC, HeaderValue::from_static("b"));
        coalesce(&mut h);
        assert_eq!(h.get_all(&XFCC).iter().collect::<Vec<_>>(), ["a,b"]);
    }
}
