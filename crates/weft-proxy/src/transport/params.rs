//! Envoy's `tls_params` as rustls reads them: protocol versions (with
//! Envoy's client and server defaults), TLS 1.2 cipher suites by their
//! OpenSSL names, key exchange groups; and ALPN.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use weft_envoy::tls::{CommonTlsContext, TlsVersion};

use super::tls::config;
use crate::error::CompileError;

/// OpenSSL/BoringSSL names of TLS 1.2 suites rustls implements.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// Names BoringSSL accepts that rustls does not implement (CBC modes,
/// RSA and PSK key exchange), or TLS 1.3 suites (not configurable):
/// left out of the offer rather than refused, so Istio's and Envoy's
/// usual lists compile.
const LEFT_OUT: &[&str] = &[
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The suites Envoy (BoringSSL) offers and prefers when `cipher_suites`
/// is unset, in its order: AES-128-GCM before AES-256-GCM (rustls'
/// own default puts AES-256 first), so weft negotiates what Envoy
/// negotiates — and the cheaper SHA-256 key schedule.
fn envoy_default_suites() -> Vec<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ]
}

/// The protocol versions, suites and groups of `tls_params`, as a
/// crypto provider and a version list. `client`: Envoy's defaults differ
/// (clients: TLS 1.2 only; servers: up to 1.3).
pub(crate) fn parameters(
    at: &str,
    c: &CommonTlsContext,
    client: bool,
) -> Result<(Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>), CompileError> {
    let p = c.tls_params.clone().unwrap_or_default();
    let pat = format!("{at}.tls_params");
    let mut provider = rustls::crypto::ring::default_provider();
    let min = match p.tls_minimum_protocol_version {
        TlsVersion::TLS_AUTO => TlsVersion::TLSv1_2,
        v => v.max(TlsVersion::TLSv1_2),
    };
    let max = match p.tls_maximum_protocol_version {
        TlsVersion::TLS_AUTO if client => TlsVersion::TLSv1_2,
        TlsVersion::TLS_AUTO => TlsVersion::TLSv1_3,
        v => v,
    };
    if max < TlsVersion::TLSv1_2 {
        return Err(config(
            format!("{pat}.tls_maximum_protocol_version"),
            "weft's TLS speaks TLS 1.2 and 1.3 only",
        ));
    }
    if min > max {
        return Err(config(
            format!("{pat}.tls_minimum_protocol_version"),
            "above tls_maximum_protocol_version",
        ));
    }
    let mut versions = Vec::new();
    if min <= TlsVersion::TLSv1_2 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::TLSv1_3 {
        versions.push(&rustls::version::TLS13);
    }
    if p.cipher_suites.is_empty() {
        provider.cipher_suites = envoy_default_suites();
    } else {
        let mut tls12 = Vec::new();
        for (i, entry) in p.cipher_suites.iter().enumerate() {
            let names = entry.trim_start_matches('[').trim_end_matches(']');
            for name in names.split('|').map(str::trim) {
                match tls12_suite(name) {
                    Some(s)
                        if !tls12
                            .iter()
                            .any(|t: &SupportedCipherSuite| t.suite() == s.suite()) =>
                    {
                        tls12.push(s)
                    }
                    Some(_) => {}
                    None if LEFT_OUT.contains(&name) => {
                        tracing::debug!(
                            suite = name,
                            "cipher suite not implemented by rustls; left out"
                        );
                    }
                    None => {
                        return Err(config(
                            format!("{pat}.cipher_suites[{i}]"),
                            format!("unknown cipher suite {name:?}"),
                        ))
                    }
                }
            }
        }
        if tls12.is_empty() && min <= TlsVersion::TLSv1_2 && max == TlsVersion::TLSv1_2 {
            return Err(config(
                format!("{pat}.cipher_suites"),
                "none of these suites is implemented by weft's TLS",
            ));
        }
        let tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied();
        provider.cipher_suites = tls13.chain(tls12).collect();
    }
    if !p.ecdh_curves.is_empty() {
        use rustls::crypto::ring::kx_group;
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for (i, name) in p.ecdh_curves.iter().enumerate() {
            let g: &'static dyn SupportedKxGroup = match name.as_str() {
                "X25519" => kx_group::X25519,
                "P-256" => kx_group::SECP256R1,
                "P-384" => kx_group::SECP384R1,
                "P-521" | "X25519Kyber768Draft00" | "X25519MLKEM768" => continue,
                other => {
                    return Err(config(
                        format!("{pat}.ecdh_curves[{i}]"),
                        format!("unknown curve {other:?}"),
                    ))
                }
            };
            groups.push(g);
        }
        if groups.is_empty() {
            return Err(config(
                format!("{pat}.ecdh_curves"),
                "none of these curves is implemented by weft's TLS",
            ));
        }
        provider.kx_groups = groups;
    }
    Ok((Arc::new(provider), versions))
}

pub(crate) fn alpn(c: &CommonTlsContext) -> Vec<Vec<u8>> {
    c.alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect()
}
