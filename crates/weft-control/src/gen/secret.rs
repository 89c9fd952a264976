//! SDS secrets the control plane serves over ADS: the Kubernetes Secrets
//! a `credentialName` names, as Istio serves them to gateways.
//!
//! - `kubernetes://NAME`: the certificate chain and private key —
//!   `tls.crt` / `tls.key` of a `kubernetes.io/tls` Secret, or `cert` /
//!   `key` of a generic one;
//! - `kubernetes://NAME-cacert`: the CA bundle a MUTUAL server verifies
//!   clients with — `ca.crt` (or `cacert`) of the same Secret, else of a
//!   Secret named `NAME-cacert`.
//!
//! A proxy gets only Secrets of its own namespace (Istio's rule: a
//! gateway reads the credentials of the namespace it runs in). A name
//! that resolves to nothing, or to data that is not PEM, is reported by
//! the caller and not sent: a proxy keeps what it had (Envoy keeps its
//! last good secret, and warms a listener until one arrives).

use std::collections::BTreeSet;

use weft_api::k8s_openapi::api::core::v1::Secret;

use super::pb::{core, tls};
use super::tls::{CACERT_SUFFIX, CREDENTIAL_PREFIX};
use crate::context::Context;

/// Why a named credential is not served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("Secret {namespace}/{name} not found (credentialName {credential:?})")]
    NotFound {
        namespace: String,
        name: String,
        credential: String,
    },
    #[error("Secret {namespace}/{name}: {message}")]
    Invalid {
        namespace: String,
        name: String,
        message: String,
    },
}

fn key<'a>(s: &'a Secret, keys: &[&'a str]) -> Option<(&'a str, &'a [u8])> {
    let data = s.data.as_ref()?;
    keys.iter()
        .find_map(|k| data.get(*k).map(|v| (*k, v.0.as_slice())))
}

/// Checks that `bytes` (Secret key `field`) hold PEM blocks of `label`.
fn pem(bytes: &[u8], field: &str, labels: &[&str]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("data.{field} is not PEM text"))?;
    let found = labels.iter().any(|l| {
        text.contains(&format!("-----BEGIN {l}-----"))
            && text.contains(&format!("-----END {l}-----"))
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "data.{field} holds no PEM {} block",
            labels.join(" or ")
        ))
    }
}

fn inline(bytes: &[u8]) -> Option<core::DataSource> {
    Some(core::DataSource {
        specifier: Some(core::data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    })
}

const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"];

/// The SDS secret `name` (`kubernetes://...`) for a proxy in `namespace`.
pub(crate) fn resolve(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<tls::Secret, SecretError> {
    let credential = name.strip_prefix(CREDENTIAL_PREFIX).unwrap_or(name);
    let lookup = |n: &str| ctx.secrets.get(&(namespace.to_string(), n.to_string()));
    let invalid = |n: &str, message: String| SecretError::Invalid {
        namespace: namespace.to_string(),
        name: n.to_string(),
        message,
    };
    // The CA bundle: of the Secret itself, else of `NAME-cacert`.
    if let Some(base) = credential.strip_suffix(CACERT_SUFFIX) {
        let candidates = [base, credential];
        for n in candidates {
            let Some(s) = lookup(n) else { continue };
            if let Some((field, ca)) = key(s, &["ca.crt", "cacert"]) {
                pem(ca, field, &["CERTIFICATE"]).map_err(|m| invalid(n, m))?;
                return Ok(tls::Secret {
                    name: name.to_string(),
                    r#type: Some(tls::secret::Type::ValidationContext(
                        tls::CertificateValidationContext {
                            trusted_ca: inline(ca),
                            ..Default::default()
                        },
                    )),
                });
            }
        }
        return Err(SecretError::NotFound {
            namespace: namespace.to_string(),
            name: base.to_string(),
            credential: credential.to_string(),
        });
    }
    let s = lookup(credential).ok_or_else(|| SecretError::NotFound {
        namespace: namespace.to_string(),
        name: credential.to_string(),
        credential: credential.to_string(),
    })?;
    let (cf, cert) = key(s, &["tls.crt", "cert"])
        .ok_or_else(|| invalid(credential, "has no tls.crt (or cert)".into()))?;
    let (kf, private_key) = key(s, &["tls.key", "key"])
        .ok_or_else(|| invalid(credential, "has no tls.key (or key)".into()))?;
    pem(cert, cf, &["CERTIFICATE"]).map_err(|m| invalid(credential, m))?;
    pem(private_key, kf, &KEY_LABELS).map_err(|m| invalid(credential, m))?;
    Ok(tls::Secret {
        name: name.to_string(),
        r#type: Some(tls::secret::Type::TlsCertificate(tls::TlsCertificate {
            certificate_chain: inline(cert),
            private_key: inline(private_key),
            ..Default::default()
        })),
    })
}

/// The secrets `names` resolve to for a proxy in `namespace`, and what
/// could not be resolved.
pub(crate) fn resolve_all(
    ctx: &Context,
    namespace: &str,
    names: &BTreeSet<String>,
) -> (Vec<tls::Secret>, Vec<SecretError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match resolve(ctx, namespace, name) {
            Ok(s) => out.push(s),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

/// The secrets a proxy's clusters originate TLS with: every
/// `credentialName` of the DestinationRules that apply to `services`
/// for a proxy in `namespace` (traffic policy, port-level, subsets),
/// resolved in the proxy's namespace as Istio resolves them. What cannot
/// be resolved is logged, naming the Secret; the clusters naming it
/// wait for it.
pub(crate) fn for_clusters(
    ctx: &Context,
    proxy_id: &str,
    namespace: &str,
    services: &[&crate::model::Service],
) -> Vec<tls::Secret> {
    use weft_api::destination_rule::TrafficPolicy;
    fn of_policy(p: &TrafficPolicy, names: &mut BTreeSet<String>) {
        let settings = p
            .tls
            .iter()
            .chain(p.port_level_settings.iter().filter_map(|l| l.tls.as_ref()));
        for t in settings {
            names.extend(super::tls::client_credentials(t));
        }
    }
    let mut names = BTreeSet::new();
    for s in services {
        let Some(dr) = ctx.destination_rule_for(&s.hostname, namespace, &s.namespace) else {
            continue;
        };
        let policies = dr.spec.traffic_policy.iter().chain(
            dr.spec
                .subsets
                .iter()
                .filter_map(|ss| ss.traffic_policy.as_ref()),
        );
        for p in policies {
            of_policy(p, &mut names);
        }
    }
    let (secrets, problems) = resolve_all(ctx, namespace, &names);
    for p in problems {
        tracing::error!(proxy = %proxy_id, "{p}: the clusters naming it wait until it is served");
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, Mesh};

    fn ctx(yaml: &str) -> Context {
        let loaded = weft_config::load_str("s.yaml", yaml, &Default::default());
        Context::build(&loaded.resources, Mesh::default())
    }

    const PEM_CERT: &str =
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQUEKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";
    const PEM_KEY: &str =
        "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCkFBQUEKLS0tLS1FTkQgUFJJVkFURSBLRVktLS0tLQo=";

    #[test]
    fn a_tls_secret_and_its_ca_bundle() {
        let c = ctx(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: gw, namespace: ns}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {PEM_CERT}\n  tls.key: {PEM_KEY}\n  ca.crt: {PEM_CERT}\n"
        ));
        let s = resolve(&c, "ns", "kubernetes://gw").unwrap();
        assert!(matches!(
            s.r#type,
            Some(tls::secret::Type::TlsCertificate(_))
        ));
        let ca = resolve(&c, "ns", "kubernetes://gw-cacert").unwrap();
        assert!(matches!(
            ca.r#type,
            Some(tls::secret::Type::ValidationContext(_))
        ));
        // Another namespace's proxy does not get it.
        assert!(matches!(
            resolve(&c, "other", "kubernetes://gw"),
            Err(SecretError::NotFound { .. })
        ));
    }

    #[test]
    fn a_generic_secret_and_a_separate_cacert_secret() {
        let c = ctx(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: gw, namespace: ns}}\ndata:\n  cert: {PEM_CERT}\n  key: {PEM_KEY}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: gw-cacert, namespace: ns}}\ndata:\n  cacert: {PEM_CERT}\n"
        ));
        assert!(resolve(&c, "ns", "kubernetes://gw").is_ok());
        assert!(resolve(&c, "ns", "kubernetes://gw-cacert").is_ok());
    }

    #[test]
    fn malformed_data_names_the_secret_and_the_key() {
        let c = ctx(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: gw, namespace: ns}}\ndata:\n  tls.crt: {PEM_CERT}\n  tls.key: bm90IGEga2V5\n"
        ));
        let e = resolve(&c, "ns", "kubernetes://gw").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Secret ns/gw: data.tls.key holds no PEM PRIVATE KEY or EC PRIVATE KEY or RSA PRIVATE KEY block"
        );
        let e = resolve(&c, "ns", "kubernetes://gw-cacert").unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
    }
}
