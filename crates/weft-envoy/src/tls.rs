//! `envoy.extensions.transport_sockets.tls.v3`: the TLS transport
//! socket's contexts (a cluster's `UpstreamTlsContext`, a filter chain's
//! `DownstreamTlsContext`), what they share (`CommonTlsContext`:
//! certificates, validation, protocol parameters, ALPN) and `Secret`, a
//! certificate or validation context delivered by name (from the
//! bootstrap's `static_resources.secrets` or SDS over ADS).
//!
//! The proxy builds TLS from these (weft-proxy's `transport::tls`);
//! fields it does not implement are refused by name in [`crate::check`].

use serde::Deserialize;

use crate::xds::ConfigSource;
use crate::StringMatcher;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsContext {
    pub common_tls_context: Option<CommonTlsContext>,
    /// The server name sent in the ClientHello (none when empty).
    pub sni: String,
    pub allow_renegotiation: bool,
    /// Sessions kept for resumption (Envoy: 1; 0 disables resumption).
    pub max_session_keys: Option<u32>,
    pub auto_host_sni: bool,
    pub auto_sni_san_validation: bool,
    pub enforce_rsa_key_usage: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamTlsContext {
    pub common_tls_context: Option<CommonTlsContext>,
    pub require_client_certificate: Option<bool>,
    pub require_sni: Option<bool>,
    pub session_ticket_keys: Option<serde_json::Value>,
    pub session_ticket_keys_sds_secret_config: Option<SdsSecretConfig>,
    pub disable_stateless_session_resumption: bool,
    pub disable_stateful_session_resumption: bool,
    pub session_timeout: Option<crate::Duration>,
    pub ocsp_staple_policy: Option<String>,
    pub full_scan_certs_on_sni_mismatch: Option<bool>,
    pub prefer_client_ciphers: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommonTlsContext {
    pub tls_params: Option<TlsParameters>,
    pub tls_certificates: Vec<TlsCertificate>,
    pub tls_certificate_sds_secret_configs: Vec<SdsSecretConfig>,
    pub validation_context: Option<CertificateValidationContext>,
    pub validation_context_sds_secret_config: Option<SdsSecretConfig>,
    pub combined_validation_context: Option<CombinedValidationContext>,
    pub alpn_protocols: Vec<String>,
    pub tls_certificate_provider_instance: Option<serde_json::Value>,
    pub validation_context_certificate_provider_instance: Option<serde_json::Value>,
    pub custom_handshaker: Option<serde_json::Value>,
    pub key_log: Option<serde_json::Value>,
    pub custom_tls_certificate_selector: Option<serde_json::Value>,
}

/// `envoy.extensions.transport_sockets.tls.v3.TlsParameters`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsParameters {
    pub tls_minimum_protocol_version: TlsVersion,
    pub tls_maximum_protocol_version: TlsVersion,
    /// OpenSSL/BoringSSL names; `[A|B]` is a group of equal preference.
    pub cipher_suites: Vec<String>,
    pub ecdh_curves: Vec<String>,
    pub signature_algorithms: Vec<String>,
    pub compliance_policies: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[allow(non_camel_case_types)]
pub enum TlsVersion {
    #[default]
    TLS_AUTO,
    TLSv1_0,
    TLSv1_1,
    TLSv1_2,
    TLSv1_3,
}

/// A certificate chain and its private key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsCertificate {
    pub certificate_chain: Option<DataSource>,
    pub private_key: Option<DataSource>,
    pub password: Option<DataSource>,
    pub pkcs12: Option<DataSource>,
    pub watched_directory: Option<serde_json::Value>,
    pub private_key_provider: Option<serde_json::Value>,
    pub ocsp_staple: Option<DataSource>,
    pub signed_certificate_timestamp: Vec<DataSource>,
}

/// `envoy.config.core.v3.DataSource`: bytes from a file or inline.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSource {
    pub filename: Option<String>,
    pub inline_string: Option<String>,
    /// Base64, as proto3 JSON writes bytes.
    pub inline_bytes: Option<String>,
    pub environment_variable: Option<String>,
    pub watched_directory: Option<serde_json::Value>,
}

/// A secret by name: from the bootstrap's static secrets when
/// `sds_config` is unset, else from that config source.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdsSecretConfig {
    pub name: String,
    pub sds_config: Option<ConfigSource>,
}

/// `envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CertificateValidationContext {
    pub trusted_ca: Option<DataSource>,
    pub match_typed_subject_alt_names: Vec<SubjectAltNameMatcher>,
    /// Deprecated: matched against SANs of every type.
    pub match_subject_alt_names: Vec<StringMatcher>,
    pub allow_expired_certificate: bool,
    pub verify_certificate_spki: Vec<String>,
    pub verify_certificate_hash: Vec<String>,
    pub require_signed_certificate_timestamp: Option<bool>,
    pub crl: Option<DataSource>,
    pub trust_chain_verification: Option<String>,
    pub custom_validator_config: Option<serde_json::Value>,
    pub only_verify_leaf_cert_crl: bool,
    pub max_verify_depth: Option<u32>,
    pub watched_directory: Option<serde_json::Value>,
    pub ca_certificate_provider_instance: Option<serde_json::Value>,
    pub system_root_certs: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectAltNameMatcher {
    pub san_type: SanType,
    pub matcher: StringMatcher,
    pub oid: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum SanType {
    #[default]
    SAN_TYPE_UNSPECIFIED,
    EMAIL,
    DNS,
    URI,
    IP_ADDRESS,
    OTHER_NAME,
}

/// A validation context from SDS merged over a default one (what Istio
/// sends: SAN matchers inline, the root certificates by SDS).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CombinedValidationContext {
    pub default_validation_context: Option<CertificateValidationContext>,
    pub validation_context_sds_secret_config: Option<SdsSecretConfig>,
}

/// `envoy.extensions.transport_sockets.tls.v3.Secret`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Secret {
    pub name: String,
    pub tls_certificate: Option<TlsCertificate>,
    pub validation_context: Option<CertificateValidationContext>,
    pub session_ticket_keys: Option<serde_json::Value>,
    pub generic_secret: Option<serde_json::Value>,
}

impl CommonTlsContext {
    /// The inline validation context, whichever field carries it.
    pub fn inline_validation(&self) -> Option<&CertificateValidationContext> {
        self.validation_context.as_ref().or_else(|| {
            self.combined_validation_context
                .as_ref()
                .and_then(|c| c.default_validation_context.as_ref())
        })
    }

    /// The validation context's secret, whichever field names it.
    pub fn validation_secret(&self) -> Option<&SdsSecretConfig> {
        self.validation_context_sds_secret_config
            .as_ref()
            .or_else(|| {
                self.combined_validation_context
                    .as_ref()
                    .and_then(|c| c.validation_context_sds_secret_config.as_ref())
            })
    }
}
