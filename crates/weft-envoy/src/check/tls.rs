//! TLS transport sockets and secrets: the fields weft's TLS does not
//! implement, refused by name, and the shapes Envoy refuses.

use super::At;
use crate::core::TransportSocket;
use crate::tls::{
    CertificateValidationContext, CommonTlsContext, DataSource, SdsSecretConfig, Secret,
    TlsCertificate,
};
use crate::{FieldError, TypedConfig};

/// Which side a transport socket is on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A cluster's (weft connects).
    Upstream,
    /// A filter chain's (weft accepts).
    Downstream,
}

fn refuse(at: &At, set: &[(&str, bool)]) -> Result<(), FieldError> {
    match set.iter().find(|(_, on)| *on) {
        Some((name, _)) => Err(at.key(name).err("not implemented by weft yet")),
        None => Ok(()),
    }
}

pub(crate) fn transport_socket(
    at: &At,
    ts: &TransportSocket,
    side: Side,
) -> Result<(), FieldError> {
    let tat = at.key("typed_config");
    match (&ts.typed_config, side) {
        (Some(TypedConfig::UpstreamTlsContext(u)), Side::Upstream) => {
            if u.allow_renegotiation {
                return Err(tat
                    .key("allow_renegotiation")
                    .err("renegotiation is not supported by weft's TLS (rustls)"));
            }
            refuse(
                &tat,
                &[
                    ("auto_host_sni", u.auto_host_sni),
                    ("auto_sni_san_validation", u.auto_sni_san_validation),
                    (
                        "enforce_rsa_key_usage",
                        u.enforce_rsa_key_usage == Some(false),
                    ),
                ],
            )?;
            if let Some(c) = &u.common_tls_context {
                common(&tat.key("common_tls_context"), c)?;
            }
            Ok(())
        }
        (Some(TypedConfig::DownstreamTlsContext(d)), Side::Downstream) => {
            refuse(
                &tat,
                &[
                    ("require_sni", d.require_sni == Some(true)),
                    ("session_ticket_keys", d.session_ticket_keys.is_some()),
                    (
                        "session_ticket_keys_sds_secret_config",
                        d.session_ticket_keys_sds_secret_config.is_some(),
                    ),
                    (
                        "disable_stateful_session_resumption",
                        d.disable_stateful_session_resumption,
                    ),
                    ("session_timeout", d.session_timeout.is_some()),
                    ("ocsp_staple_policy", d.ocsp_staple_policy.is_some()),
                    (
                        "full_scan_certs_on_sni_mismatch",
                        d.full_scan_certs_on_sni_mismatch == Some(true),
                    ),
                    ("prefer_client_ciphers", d.prefer_client_ciphers),
                ],
            )?;
            let Some(c) = &d.common_tls_context else {
                return Err(tat
                    .key("common_tls_context")
                    .err("a TLS server needs a certificate"));
            };
            let cat = tat.key("common_tls_context");
            common(&cat, c)?;
            if c.tls_certificates.is_empty() && c.tls_certificate_sds_secret_configs.is_empty() {
                return Err(cat
                    .key("tls_certificates")
                    .err("a TLS server needs a certificate"));
            }
            if d.require_client_certificate == Some(true)
                && c.inline_validation().is_none()
                && c.validation_secret().is_none()
            {
                return Err(tat.key("require_client_certificate").err(
                    "requiring a client certificate needs a validation context to check it with",
                ));
            }
            Ok(())
        }
        (Some(TypedConfig::DownstreamTlsContext(_)), Side::Upstream) => {
            Err(tat.err("a cluster's TLS transport socket takes an UpstreamTlsContext"))
        }
        (Some(TypedConfig::UpstreamTlsContext(_)), Side::Downstream) => {
            Err(tat.err("a filter chain's TLS transport socket takes a DownstreamTlsContext"))
        }
        _ => Ok(()),
    }
}

fn common(at: &At, c: &CommonTlsContext) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "tls_certificate_provider_instance",
                c.tls_certificate_provider_instance.is_some(),
            ),
            (
                "validation_context_certificate_provider_instance",
                c.validation_context_certificate_provider_instance.is_some(),
            ),
            ("custom_handshaker", c.custom_handshaker.is_some()),
            ("key_log", c.key_log.is_some()),
            (
                "custom_tls_certificate_selector",
                c.custom_tls_certificate_selector.is_some(),
            ),
        ],
    )?;
    let validations = [
        ("validation_context", c.validation_context.is_some()),
        (
            "validation_context_sds_secret_config",
            c.validation_context_sds_secret_config.is_some(),
        ),
        (
            "combined_validation_context",
            c.combined_validation_context.is_some(),
        ),
    ];
    if validations.iter().filter(|(_, s)| *s).count() > 1 {
        super::exactly_one(at, "a TLS context's validation", &validations)?;
    }
    if let Some(p) = &c.tls_params {
        let pat = at.key("tls_params");
        refuse(
            &pat,
            &[
                ("signature_algorithms", !p.signature_algorithms.is_empty()),
                ("compliance_policies", !p.compliance_policies.is_empty()),
            ],
        )?;
    }
    let certs = c.tls_certificates.len() + c.tls_certificate_sds_secret_configs.len();
    if certs > 1 {
        return Err(at.key("tls_certificates").err(
            "more than one certificate (one per key type in Envoy) is not implemented by weft yet",
        ));
    }
    for (i, t) in c.tls_certificates.iter().enumerate() {
        tls_certificate(&at.key("tls_certificates").idx(i), t)?;
    }
    for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
        sds_secret(&at.key("tls_certificate_sds_secret_configs").idx(i), s)?;
    }
    if let Some(v) = &c.validation_context {
        validation_context(&at.key("validation_context"), v)?;
    }
    if let Some(s) = &c.validation_context_sds_secret_config {
        sds_secret(&at.key("validation_context_sds_secret_config"), s)?;
    }
    if let Some(cv) = &c.combined_validation_context {
        let cat = at.key("combined_validation_context");
        if let Some(v) = &cv.default_validation_context {
            validation_context(&cat.key("default_validation_context"), v)?;
        }
        match &cv.validation_context_sds_secret_config {
            Some(s) => sds_secret(&cat.key("validation_context_sds_secret_config"), s)?,
            None => {
                return Err(cat
                    .key("validation_context_sds_secret_config")
                    .err("required"))
            }
        }
    }
    Ok(())
}

/// A secret by name: the bootstrap's static secrets (no `sds_config`),
/// SDS over the ADS stream (`sds_config: {ads: {}}`), or SDS from a gRPC
/// config source of its own (`api_config_source` naming a static cluster,
/// a Unix socket in Istio's bootstrap).
fn sds_secret(at: &At, s: &SdsSecretConfig) -> Result<(), FieldError> {
    if s.name.is_empty() {
        return Err(at.key("name").err("a secret needs a name"));
    }
    if let Some(src) = &s.sds_config {
        let sat = at.key("sds_config");
        match &src.api_config_source {
            Some(api) => super::sds_api_source(&sat.key("api_config_source"), api)?,
            None => super::config_source(&sat, src)?,
        }
    }
    Ok(())
}

fn tls_certificate(at: &At, t: &TlsCertificate) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            ("password", t.password.is_some()),
            ("pkcs12", t.pkcs12.is_some()),
            ("watched_directory", t.watched_directory.is_some()),
            ("private_key_provider", t.private_key_provider.is_some()),
            ("ocsp_staple", t.ocsp_staple.is_some()),
            (
                "signed_certificate_timestamp",
                !t.signed_certificate_timestamp.is_empty(),
            ),
        ],
    )?;
    match (&t.certificate_chain, &t.private_key) {
        (Some(c), Some(k)) => {
            data_source(&at.key("certificate_chain"), c)?;
            data_source(&at.key("private_key"), k)
        }
        (None, _) => Err(at.key("certificate_chain").err("required")),
        (_, None) => Err(at.key("private_key").err("required")),
    }
}

fn data_source(at: &At, d: &DataSource) -> Result<(), FieldError> {
    if d.watched_directory.is_some() {
        return Err(at
            .key("watched_directory")
            .err("not implemented by weft yet"));
    }
    super::exactly_one(
        at,
        "a data source",
        &[
            ("filename", d.filename.is_some()),
            ("inline_string", d.inline_string.is_some()),
            ("inline_bytes", d.inline_bytes.is_some()),
            ("environment_variable", d.environment_variable.is_some()),
        ],
    )
}

fn validation_context(at: &At, v: &CertificateValidationContext) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            ("allow_expired_certificate", v.allow_expired_certificate),
            (
                "verify_certificate_spki",
                !v.verify_certificate_spki.is_empty(),
            ),
            (
                "verify_certificate_hash",
                !v.verify_certificate_hash.is_empty(),
            ),
            (
                "require_signed_certificate_timestamp",
                v.require_signed_certificate_timestamp == Some(true),
            ),
            ("crl", v.crl.is_some()),
            (
                "trust_chain_verification",
                v.trust_chain_verification
                    .as_deref()
                    .is_some_and(|t| t != "VERIFY_TRUST_CHAIN"),
            ),
            (
                "custom_validator_config",
                v.custom_validator_config.is_some(),
            ),
            ("only_verify_leaf_cert_crl", v.only_verify_leaf_cert_crl),
            ("max_verify_depth", v.max_verify_depth.is_some()),
            ("watched_directory", v.watched_directory.is_some()),
            (
                "ca_certificate_provider_instance",
                v.ca_certificate_provider_instance.is_some(),
            ),
            ("system_root_certs", v.system_root_certs.is_some()),
        ],
    )?;
    if let Some(d) = &v.trusted_ca {
        data_source(&at.key("trusted_ca"), d)?;
    }
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let mat = at.key("match_typed_subject_alt_names").idx(i);
        if m.oid.is_some() {
            return Err(mat.key("oid").err("not implemented by weft yet"));
        }
        use crate::tls::SanType::*;
        match m.san_type {
            DNS | URI | EMAIL | IP_ADDRESS => {}
            SAN_TYPE_UNSPECIFIED => {
                return Err(mat.key("san_type").err("must be set"));
            }
            OTHER_NAME => {
                return Err(mat
                    .key("san_type")
                    .err("OTHER_NAME is not implemented by weft yet"));
            }
        }
        string_matcher(&mat.key("matcher"), &m.matcher)?;
    }
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        string_matcher(&at.key("match_subject_alt_names").idx(i), m)?;
    }
    Ok(())
}

fn string_matcher(at: &At, m: &crate::StringMatcher) -> Result<(), FieldError> {
    super::exactly_one(
        at,
        "a string matcher",
        &[
            ("exact", m.exact.is_some()),
            ("prefix", m.prefix.is_some()),
            ("suffix", m.suffix.is_some()),
            ("contains", m.contains.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
        ],
    )?;
    if let Some(r) = &m.safe_regex {
        super::regex(&at.key("safe_regex").key("regex"), &r.regex)?;
    }
    Ok(())
}

pub(crate) fn secret(at: &At, s: &Secret) -> Result<(), FieldError> {
    if s.name.is_empty() {
        return Err(at.key("name").err("a secret needs a name"));
    }
    refuse(
        at,
        &[
            ("session_ticket_keys", s.session_ticket_keys.is_some()),
            ("generic_secret", s.generic_secret.is_some()),
        ],
    )?;
    match (&s.tls_certificate, &s.validation_context) {
        (Some(t), None) => tls_certificate(&at.key("tls_certificate"), t),
        (None, Some(v)) => validation_context(&at.key("validation_context"), v),
        _ => super::exactly_one(
            at,
            "a secret",
            &[
                ("tls_certificate", s.tls_certificate.is_some()),
                ("validation_context", s.validation_context.is_some()),
            ],
        ),
    }
}

/// Whether a static listener or cluster names an SDS secret (which
/// comes over ADS).
pub(crate) fn uses_sds(b: &crate::Bootstrap) -> bool {
    let r = &b.static_resources;
    let chains = r
        .listeners
        .iter()
        .flat_map(|l| l.filter_chains.iter().chain(l.default_filter_chain.iter()))
        .filter_map(|c| c.transport_socket.as_ref());
    let clusters = r.clusters.iter().flat_map(|c| {
        c.transport_socket.iter().chain(
            c.transport_socket_matches
                .iter()
                .filter_map(|m| m.transport_socket.as_ref()),
        )
    });
    chains.chain(clusters).any(|ts| {
        let common = match &ts.typed_config {
            Some(TypedConfig::UpstreamTlsContext(u)) => u.common_tls_context.as_ref(),
            Some(TypedConfig::DownstreamTlsContext(d)) => d.common_tls_context.as_ref(),
            _ => None,
        };
        common.is_some_and(|c| {
            c.tls_certificate_sds_secret_configs
                .iter()
                .chain(c.validation_secret())
                .any(|s| s.sds_config.as_ref().is_some_and(|c| c.ads.is_some()))
        })
    })
}
