//! TLS in what a proxy gets: Envoy's TLS transport sockets for Istio's
//! settings — mesh mutual TLS (`ISTIO_MUTUAL`, auto mTLS, the inbound
//! side of a PeerAuthentication), a DestinationRule's client `tls`, and
//! a Gateway server's `tls`.
//!
//! Where certificates come from is Istio's arrangement, so an Envoy fed
//! by weft and a weft proxy read the same configuration:
//! - the workload's own certificate (`default`) and the mesh's trust
//!   bundle (`ROOTCA`) come from the node's agent over SDS, through the
//!   bootstrap's `sds-grpc` cluster; the private key never leaves the
//!   proxy's machine;
//! - a `credentialName` is a Kubernetes Secret the control plane serves
//!   as SDS secrets over the same ADS stream: `kubernetes://NAME` (the
//!   certificate and key) and `kubernetes://NAME-cacert` (its CA bundle);
//! - file paths (`serverCertificate`, `caCertificates`, ...) are read by
//!   the proxy from its own file system.

use weft_api::destination_rule::{ClientTlsMode, ClientTlsSettings};
use weft_api::gateway::{ServerTlsMode, ServerTlsSettings, TlsProtocol};

use super::pb::{self, core, matcher, tls};

/// The SDS name of a workload's certificate and key.
pub(crate) const WORKLOAD_CERT: &str = "default";
/// The SDS name of the mesh's trust bundle.
pub(crate) const ROOT_CA: &str = "ROOTCA";
/// The bootstrap cluster that reaches the node agent's SDS socket.
pub(crate) const SDS_CLUSTER: &str = "sds-grpc";
/// The SDS name prefix of a Kubernetes Secret served by the control plane.
pub(crate) const CREDENTIAL_PREFIX: &str = "kubernetes://";
/// The suffix of the SDS name of a Secret's CA bundle.
pub(crate) const CACERT_SUFFIX: &str = "-cacert";
/// Where Debian and most distributions keep the system's trusted roots:
/// what a client verifies a server with when a DestinationRule names no
/// CA (Istio verifies against the system roots by default).
pub(crate) const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a mesh client announces in ALPN for mutual TLS: a mesh server's
/// inbound chain for mTLS is chosen by it, so an application's own TLS
/// on a PERMISSIVE port is passed through untouched.
pub(crate) const CLIENT_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];
/// What an inbound mTLS filter chain matches: the values Istio's
/// sidecars send for TCP and for each HTTP version.
pub(crate) const MESH_ALPN: [&str; 5] = [
    "istio-peer-exchange",
    "istio",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// A secret from the node agent (the bootstrap's `sds-grpc` cluster).
fn from_agent(name: &str) -> tls::SdsSecretConfig {
    use core::api_config_source::ApiType;
    use core::grpc_service::{EnvoyGrpc, TargetSpecifier};
    tls::SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(core::ConfigSource {
            config_source_specifier: Some(
                core::config_source::ConfigSourceSpecifier::ApiConfigSource(
                    core::ApiConfigSource {
                        api_type: ApiType::Grpc as i32,
                        transport_api_version: core::ApiVersion::V3 as i32,
                        set_node_on_first_message_only: true,
                        grpc_services: vec![core::GrpcService {
                            target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                                cluster_name: SDS_CLUSTER.into(),
                                ..Default::default()
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ),
            ),
            initial_fetch_timeout: pb::seconds(0),
            resource_api_version: core::ApiVersion::V3 as i32,
            ..Default::default()
        }),
    }
}

/// A secret from the control plane, over the ADS stream.
fn from_control(name: String) -> tls::SdsSecretConfig {
    tls::SdsSecretConfig {
        name,
        sds_config: pb::ads(),
    }
}

fn exact(s: &str) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(s.to_string())),
        ..Default::default()
    }
}

fn file(path: &str) -> Option<core::DataSource> {
    Some(core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

/// The mesh's certificate and trust bundle, with the peer identities
/// accepted (`sans`: URI SANs; empty accepts any identity the bundle
/// vouches for, as an inbound side does).
fn mesh_common(sans: &[String], alpn: &[&str]) -> tls::CommonTlsContext {
    use tls::common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};
    use tls::subject_alt_name_matcher::SanType;
    tls::CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![from_agent(WORKLOAD_CERT)],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(tls::CertificateValidationContext {
                    match_typed_subject_alt_names: sans
                        .iter()
                        .map(|s| tls::SubjectAltNameMatcher {
                            san_type: SanType::Uri as i32,
                            matcher: Some(exact(s)),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(from_agent(ROOT_CA)),
                ..Default::default()
            },
        )),
        alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A client's side of mesh mutual TLS to a service whose workloads run
/// as `sans`, asking for `sni` (Istio's `outbound_.PORT_.SUBSET_.HOST`).
pub(crate) fn mesh_client(sni: String, sans: &[String]) -> tls::UpstreamTlsContext {
    tls::UpstreamTlsContext {
        common_tls_context: Some(mesh_common(sans, &CLIENT_ALPN)),
        sni,
        ..Default::default()
    }
}

/// A workload's inbound side of mesh mutual TLS: any mesh identity.
pub(crate) fn mesh_server() -> tls::DownstreamTlsContext {
    tls::DownstreamTlsContext {
        common_tls_context: Some(mesh_common(&[], &[])),
        require_client_certificate: pb::bool_value(true),
        ..Default::default()
    }
}

/// Istio's SNI for a mesh cluster: its name with `|` written `_.`.
pub(crate) fn mesh_sni(cluster: &str) -> String {
    cluster.replace('|', "_.")
}

/// The `tls` transport socket around an Upstream or Downstream context.
fn tls_socket<M: prost::Name>(ctx: &M) -> core::TransportSocket {
    core::TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pb::any(
            ctx,
        ))),
    }
}

pub(crate) fn upstream_socket(ctx: &tls::UpstreamTlsContext) -> core::TransportSocket {
    tls_socket(ctx)
}

pub(crate) fn downstream_socket(ctx: &tls::DownstreamTlsContext) -> core::TransportSocket {
    tls_socket(ctx)
}

pub(crate) fn plaintext_socket() -> core::TransportSocket {
    core::TransportSocket {
        name: "envoy.transport_sockets.raw_buffer".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pb::any(
            &pb::raw_buffer::RawBuffer {},
        ))),
    }
}

/// What a cluster's client TLS comes to.
pub(crate) enum Client {
    /// Plaintext, as the rule says.
    Plaintext,
    Tls(Box<tls::UpstreamTlsContext>),
}

/// A DestinationRule's client `tls` for a cluster. `sni` and `sans` are
/// what `ISTIO_MUTUAL` uses unless the rule names its own; `host` is the
/// SNI a `SIMPLE` or `MUTUAL` origination sends when the rule names none
/// (a single-host service's name; a wildcard sends none).
pub(crate) fn client(
    t: &ClientTlsSettings,
    mesh_sni: String,
    mesh_sans: &[String],
    host: &str,
) -> Client {
    let mode = t.mode.unwrap_or(ClientTlsMode::DISABLE);
    let sans: Vec<String> = if t.subject_alt_names.is_empty() {
        mesh_sans.to_vec()
    } else {
        t.subject_alt_names.clone()
    };
    match mode {
        ClientTlsMode::DISABLE => Client::Plaintext,
        ClientTlsMode::ISTIO_MUTUAL => Client::Tls(Box::new(mesh_client(
            t.sni.clone().unwrap_or(mesh_sni),
            &sans,
        ))),
        ClientTlsMode::SIMPLE => Client::Tls(Box::new(originate(t, false, host))),
        ClientTlsMode::MUTUAL => Client::Tls(Box::new(originate(t, true, host))),
    }
}

/// The SDS secrets (served by the control plane) a DestinationRule's
/// client `tls` names, as [`originate`] names them: MUTUAL's
/// `credentialName` certificate, and the `-cacert` bundle either mode
/// verifies the server with unless `caCertificates` or
/// `insecureSkipVerify` says otherwise.
pub(crate) fn client_credentials(t: &ClientTlsSettings) -> Vec<String> {
    let mode = t.mode.unwrap_or(ClientTlsMode::DISABLE);
    let Some(name) = &t.credential_name else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if mode == ClientTlsMode::MUTUAL {
        out.push(format!("{CREDENTIAL_PREFIX}{name}"));
    }
    if matches!(mode, ClientTlsMode::SIMPLE | ClientTlsMode::MUTUAL)
        && t.ca_certificates.is_none()
        && !t.insecure_skip_verify.unwrap_or(false)
    {
        out.push(format!("{CREDENTIAL_PREFIX}{name}{CACERT_SUFFIX}"));
    }
    out
}

/// TLS origination as a DestinationRule's `SIMPLE` (`mutual` false) or
/// `MUTUAL` asks: the client certificate (MUTUAL: `credentialName`
/// served by the control plane, else the files), the server's
/// validation, and the SNI (the rule's, else the host's unless it is a
/// wildcard).
fn originate(t: &ClientTlsSettings, mutual: bool, host: &str) -> tls::UpstreamTlsContext {
    let mut common = tls::CommonTlsContext::default();
    if mutual {
        if let Some(name) = &t.credential_name {
            common
                .tls_certificate_sds_secret_configs
                .push(from_control(format!("{CREDENTIAL_PREFIX}{name}")));
        } else {
            common.tls_certificates.push(tls::TlsCertificate {
                certificate_chain: t.client_certificate.as_deref().and_then(file),
                private_key: t.private_key.as_deref().and_then(file),
                ..Default::default()
            });
        }
    }
    if !t.insecure_skip_verify.unwrap_or(false) {
        common.validation_context_type = Some(server_validation(t));
    }
    let sni = t.sni.clone().unwrap_or_else(|| {
        if host.contains('*') {
            String::new()
        } else {
            host.to_string()
        }
    });
    tls::UpstreamTlsContext {
        common_tls_context: Some(common),
        sni,
        ..Default::default()
    }
}

/// How an originating client checks the server: the rule's SANs (any SAN
/// type, as Istio matches user-written ones) against `caCertificates`,
/// else the `credentialName`'s `-cacert` secret (its `ca.crt`, which is
/// all SIMPLE needs of it), else the system's roots.
fn server_validation(t: &ClientTlsSettings) -> tls::common_tls_context::ValidationContextType {
    use tls::common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};
    #[allow(deprecated)]
    let mut validation = tls::CertificateValidationContext {
        match_subject_alt_names: t.subject_alt_names.iter().map(|s| exact(s)).collect(),
        ..Default::default()
    };
    match (&t.ca_certificates, &t.credential_name) {
        (Some(path), _) => validation.trusted_ca = file(path),
        (None, Some(name)) => {
            return ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(validation),
                    validation_context_sds_secret_config: Some(from_control(format!(
                        "{CREDENTIAL_PREFIX}{name}{CACERT_SUFFIX}"
                    ))),
                    ..Default::default()
                },
            );
        }
        (None, _) => validation.trusted_ca = file(SYSTEM_ROOTS),
    }
    ValidationContextType::ValidationContext(validation)
}

fn version(v: Option<TlsProtocol>) -> i32 {
    use tls::tls_parameters::TlsProtocol as P;
    (match v {
        None | Some(TlsProtocol::TLS_AUTO) => P::TlsAuto,
        Some(TlsProtocol::TLSV1_0) => P::TlSv10,
        Some(TlsProtocol::TLSV1_1) => P::TlSv11,
        Some(TlsProtocol::TLSV1_2) => P::TlSv12,
        Some(TlsProtocol::TLSV1_3) => P::TlSv13,
    }) as i32
}

/// The SDS secrets (served by the control plane) a server's TLS names.
pub(crate) fn server_credentials(t: &ServerTlsSettings) -> Vec<String> {
    let mode = t.mode.unwrap_or(ServerTlsMode::PASSTHROUGH);
    if !matches!(
        mode,
        ServerTlsMode::SIMPLE | ServerTlsMode::MUTUAL | ServerTlsMode::OPTIONAL_MUTUAL
    ) {
        return Vec::new();
    }
    let names: Vec<&String> = t
        .credential_name
        .iter()
        .chain(&t.credential_names)
        .collect();
    let mut out: Vec<String> = names
        .iter()
        .map(|n| format!("{CREDENTIAL_PREFIX}{n}"))
        .collect();
    if mode != ServerTlsMode::SIMPLE {
        match (&t.ca_cert_credential_name, names.first()) {
            (Some(n), _) => out.push(format!("{CREDENTIAL_PREFIX}{n}{CACERT_SUFFIX}")),
            (None, Some(n)) if t.ca_certificates.is_none() => {
                out.push(format!("{CREDENTIAL_PREFIX}{n}{CACERT_SUFFIX}"))
            }
            _ => {}
        }
    }
    out
}

/// Whether a server's TLS is terminated by the proxy.
pub fn terminates(t: &ServerTlsSettings) -> bool {
    !matches!(
        t.mode.unwrap_or(ServerTlsMode::PASSTHROUGH),
        ServerTlsMode::PASSTHROUGH | ServerTlsMode::AUTO_PASSTHROUGH
    )
}

/// A Gateway server's (or Sidecar ingress listener's) TLS termination,
/// with `alpn` the protocols it offers. None for modes that do not
/// terminate (PASSTHROUGH, AUTO_PASSTHROUGH).
pub(crate) fn server(t: &ServerTlsSettings, alpn: &[&str]) -> Option<tls::DownstreamTlsContext> {
    use tls::common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};
    let mode = t.mode.unwrap_or(ServerTlsMode::PASSTHROUGH);
    let mut common = match mode {
        ServerTlsMode::PASSTHROUGH | ServerTlsMode::AUTO_PASSTHROUGH => return None,
        ServerTlsMode::ISTIO_MUTUAL => mesh_common(&t.subject_alt_names, &[]),
        ServerTlsMode::SIMPLE | ServerTlsMode::MUTUAL | ServerTlsMode::OPTIONAL_MUTUAL => {
            let mut common = tls::CommonTlsContext::default();
            let names: Vec<&String> = t
                .credential_name
                .iter()
                .chain(t.credential_names.iter())
                .collect();
            for name in &names {
                common
                    .tls_certificate_sds_secret_configs
                    .push(from_control(format!("{CREDENTIAL_PREFIX}{name}")));
            }
            if names.is_empty() {
                let files = std::iter::once((&t.server_certificate, &t.private_key)).chain(
                    t.tls_certificates
                        .iter()
                        .map(|c| (&c.server_certificate, &c.private_key)),
                );
                for (cert, key) in files {
                    if cert.is_some() || key.is_some() {
                        common.tls_certificates.push(tls::TlsCertificate {
                            certificate_chain: cert.as_deref().and_then(file),
                            private_key: key.as_deref().and_then(file),
                            ..Default::default()
                        });
                    }
                }
            }
            if mode != ServerTlsMode::SIMPLE {
                #[allow(deprecated)]
                let validation = tls::CertificateValidationContext {
                    trusted_ca: t.ca_certificates.as_deref().and_then(file),
                    match_subject_alt_names: t.subject_alt_names.iter().map(|s| exact(s)).collect(),
                    verify_certificate_spki: t.verify_certificate_spki.clone(),
                    verify_certificate_hash: t.verify_certificate_hash.clone(),
                    ..Default::default()
                };
                let ca_secret = match (&t.ca_cert_credential_name, names.first()) {
                    (Some(n), _) => Some(format!("{n}{CACERT_SUFFIX}")),
                    (None, Some(n)) if t.ca_certificates.is_none() => {
                        Some(format!("{n}{CACERT_SUFFIX}"))
                    }
                    _ => None,
                };
                common.validation_context_type = Some(match ca_secret {
                    Some(name) => ValidationContextType::CombinedValidationContext(
                        CombinedCertificateValidationContext {
                            default_validation_context: Some(validation),
                            validation_context_sds_secret_config: Some(from_control(format!(
                                "{CREDENTIAL_PREFIX}{name}"
                            ))),
                            ..Default::default()
                        },
                    ),
                    None => ValidationContextType::ValidationContext(validation),
                });
            }
            common
        }
    };
    common.alpn_protocols = alpn.iter().map(|s| s.to_string()).collect();
    if t.min_protocol_version.is_some()
        || t.max_protocol_version.is_some()
        || !t.cipher_suites.is_empty()
        || !t.ecdh_curves.is_empty()
    {
        common.tls_params = Some(tls::TlsParameters {
            tls_minimum_protocol_version: version(t.min_protocol_version),
            tls_maximum_protocol_version: version(t.max_protocol_version),
            cipher_suites: t.cipher_suites.clone(),
            ecdh_curves: t.ecdh_curves.clone(),
            ..Default::default()
        });
    }
    Some(tls::DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: pb::bool_value(matches!(
            mode,
            ServerTlsMode::MUTUAL | ServerTlsMode::ISTIO_MUTUAL
        )),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_sni_is_istios() {
        assert_eq!(
            mesh_sni("outbound|9080|v1|reviews.default.svc.cluster.local"),
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
        );
        assert_eq!(
            mesh_sni("outbound|9080||reviews.default.svc.cluster.local"),
            "outbound_.9080_._.reviews.default.svc.cluster.local"
        );
    }
}
