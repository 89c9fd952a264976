//! AuthorizationPolicy's CUSTOM action → an external authorizer, as
//! istiod builds it: an RBAC filter whose *shadow* rules (action DENY,
//! stat prefix `istio_ext_authz_`) mark the requests a CUSTOM policy
//! selects, then Envoy's `envoy.filters.http.ext_authz` enabled only for
//! marked requests (`filter_enabled_metadata` on
//! `istio_ext_authz_shadow_effective_policy_id`), sending them to the
//! mesh config's `extensionProviders` entry the policy names.
//!
//! Fail-safe as istiod: a CUSTOM policy whose provider is unknown, is not
//! an ext_authz provider, names a service the registry does not have, or
//! differs from the provider already chosen for the workload (one per
//! workload) becomes plain DENY rules named `…-deny-due-to-bad-CUSTOM-action`.
//! CUSTOM on TCP ports is not implemented: `authz::network_filters` denies
//! what it selects.

use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as ext_authz;
use weft_api::mesh_config::{MeshExtensionProvider, RequestBody};
use weft_api::security::AuthorizationAction;

use super::authz::{policy_name, rule_policy, Applied, Layer, Owner};
use super::pb::{self, core, hcm, matcher};
use crate::context::Context;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;

/// The shadow engine's stat prefix, hence its metadata keys' prefix.
const SHADOW_PREFIX: &str = "istio_ext_authz_";
/// Every CUSTOM policy's name starts with this.
const POLICY_PREFIX: &str = "istio-ext-authz-";

/// Istio's default timeout for a check (MeshConfig's documented 600 s).
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The provider `name` as ext_authz config, or why it cannot be used.
fn provider_filter(ctx: &Context, name: &str) -> Result<ext_authz::ExtAuthz, String> {
    let p: &MeshExtensionProvider = ctx
        .mesh
        .extension_providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("no extensionProviders entry named {name:?}"))?;
    let cluster = |service: &str, port: u32| -> Result<(String, String), String> {
        // `namespace/host` or `host`: the host must be a registry service.
        let host = service.split_once('/').map_or(service, |(_, h)| h);
        let svc = ctx.service(host).ok_or_else(|| {
            format!("provider {name:?}: service {service:?} is not in the registry")
        })?;
        if !svc.ports.iter().any(|sp| sp.number == port) {
            return Err(format!(
                "provider {name:?}: service {host} has no port {port}"
            ));
        }
        Ok((
            super::cluster_name("outbound", port, "", host),
            host.to_string(),
        ))
    };
    let duration = |d: Option<&weft_api::Duration>| {
        pb::duration_of(
            &d.cloned()
                .unwrap_or_else(|| weft_api::Duration::from_std(DEFAULT_TIMEOUT)),
        )
    };
    let status = |s: Option<&String>| -> Result<Option<envoy_types::pb::envoy::r#type::v3::HttpStatus>, String> {
        let code = match s {
            None => 403,
            Some(s) => s
                .parse::<i32>()
                .map_err(|_| format!("provider {name:?}: statusOnError {s:?} is not an HTTP status"))?,
        };
        Ok(Some(envoy_types::pb::envoy::r#type::v3::HttpStatus { code }))
    };
    let enabled = Some(matcher::MetadataMatcher {
        filter: "envoy.filters.http.rbac".into(),
        path: vec![matcher::metadata_matcher::PathSegment {
            segment: Some(matcher::metadata_matcher::path_segment::Segment::Key(
                format!("{SHADOW_PREFIX}shadow_effective_policy_id"),
            )),
        }],
        value: Some(matcher::ValueMatcher {
            match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(
                matcher::StringMatcher {
                    match_pattern: Some(matcher::string_matcher::MatchPattern::Prefix(
                        POLICY_PREFIX.trim_end_matches('-').into(),
                    )),
                    ..Default::default()
                },
            )),
        }),
        ..Default::default()
    });
    if let Some(h) = &p.envoy_ext_authz_http {
        let (cluster, host) = cluster(&h.service, h.port)?;
        let patterns = |names: &[String]| {
            (!names.is_empty()).then(|| matcher::ListStringMatcher {
                patterns: names.iter().map(|n| header_pattern(n)).collect(),
            })
        };
        let mut request_headers = h.include_request_headers_in_check.clone();
        request_headers.extend(h.include_headers_in_check.iter().cloned());
        return Ok(ext_authz::ExtAuthz {
            services: Some(ext_authz::ext_authz::Services::HttpService(
                ext_authz::HttpService {
                    server_uri: Some(core::HttpUri {
                        uri: format!("http://{host}"),
                        timeout: Some(duration(h.timeout.as_ref())),
                        http_upstream_type: Some(core::http_uri::HttpUpstreamType::Cluster(
                            cluster,
                        )),
                    }),
                    path_prefix: h.path_prefix.clone().unwrap_or_default(),
                    authorization_request: (!h.include_additional_headers_in_check.is_empty())
                        .then(|| ext_authz::AuthorizationRequest {
                            headers_to_add: h
                                .include_additional_headers_in_check
                                .iter()
                                .map(|(k, v)| core::HeaderValue {
                                    key: k.clone(),
                                    value: v.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        }),
                    authorization_response: {
                        let r = ext_authz::AuthorizationResponse {
                            allowed_upstream_headers: patterns(&h.headers_to_upstream_on_allow),
                            allowed_client_headers: patterns(&h.headers_to_downstream_on_deny),
                            allowed_client_headers_on_success: patterns(
                                &h.headers_to_downstream_on_allow,
                            ),
                            ..Default::default()
                        };
                        (r != Default::default()).then_some(r)
                    },
                    ..Default::default()
                },
            )),
            allowed_headers: patterns(&request_headers),
            transport_api_version: core::ApiVersion::V3 as i32,
            failure_mode_allow: h.fail_open.unwrap_or(false),
            clear_route_cache: h.clear_route_cache.unwrap_or(false),
            status_on_error: status(h.status_on_error.as_ref())?,
            with_request_body: h.include_request_body_in_check.as_ref().map(body),
            filter_enabled_metadata: enabled,
            ..Default::default()
        });
    }
    if let Some(g) = &p.envoy_ext_authz_grpc {
        let (cluster, host) = cluster(&g.service, g.port)?;
        return Ok(ext_authz::ExtAuthz {
            services: Some(ext_authz::ext_authz::Services::GrpcService(
                core::GrpcService {
                    target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                        core::grpc_service::EnvoyGrpc {
                            cluster_name: cluster,
                            authority: host,
                            ..Default::default()
                        },
                    )),
                    timeout: Some(duration(g.timeout.as_ref())),
                    ..Default::default()
                },
            )),
            transport_api_version: core::ApiVersion::V3 as i32,
            failure_mode_allow: g.fail_open.unwrap_or(false),
            clear_route_cache: g.clear_route_cache.unwrap_or(false),
            status_on_error: status(g.status_on_error.as_ref())?,
            with_request_body: g.include_request_body_in_check.as_ref().map(body),
            filter_enabled_metadata: enabled,
            ..Default::default()
        });
    }
    Err(format!(
        "provider {name:?} is not envoyExtAuthzHttp or envoyExtAuthzGrpc"
    ))
}

/// A header name list entry: exact, `prefix*`, `*suffix`, case-insensitive
/// (header names are).
fn header_pattern(n: &str) -> matcher::StringMatcher {
    use matcher::string_matcher::MatchPattern as M;
    let p = if let Some(prefix) = n.strip_suffix('*') {
        M::Prefix(prefix.into())
    } else if let Some(suffix) = n.strip_prefix('*') {
        M::Suffix(suffix.into())
    } else {
        M::Exact(n.into())
    };
    matcher::StringMatcher {
        match_pattern: Some(p),
        ignore_case: true,
    }
}

fn body(b: &RequestBody) -> ext_authz::BufferSettings {
    ext_authz::BufferSettings {
        max_request_bytes: b.max_request_bytes.unwrap_or(0),
        allow_partial_message: b.allow_partial_message.unwrap_or(false),
        pack_as_bytes: b.pack_as_bytes.unwrap_or(false),
    }
}

/// The filters for the CUSTOM policies among `applied`: the marking (and
/// fail-safe denying) RBAC filter, then ext_authz; none without CUSTOM.
pub(crate) fn http_filters(ctx: &Context, applied: &[Applied]) -> Vec<hcm::HttpFilter> {
    let custom: Vec<&Applied> = applied
        .iter()
        .filter(|a| a.policy.spec.action == Some(AuthorizationAction::CUSTOM))
        .collect();
    if custom.is_empty() {
        return Vec::new();
    }
    let provider_of = |a: &Applied| {
        a.policy
            .spec
            .provider
            .as_ref()
            .and_then(|p| p.name.clone())
            .unwrap_or_default()
    };
    // One provider per workload: the oldest policy's.
    let chosen = provider_of(custom[0]);
    let filter = provider_filter(ctx, &chosen);
    let mut shadow = Vec::new();
    let mut deny = Vec::new();
    for a in &custom {
        let p = a.policy;
        let owner = Owner {
            namespace: &p.namespace,
        };
        let why_bad = if provider_of(a) != chosen {
            Some(format!(
                "provider {:?}: only one provider per workload ({chosen:?} is used)",
                provider_of(a)
            ))
        } else {
            filter.as_ref().err().cloned()
        };
        if a.dry_run {
            tracing::error!(
                "AuthorizationPolicy {}/{}: weft does not dry-run CUSTOM policies (Istio documents dry run for ALLOW and DENY); the policy is enforced",
                p.namespace,
                p.name
            );
        }
        for (i, rule) in p.spec.rules.iter().enumerate() {
            let name = format!("{POLICY_PREFIX}{}", policy_name(p, i));
            match (
                rule_policy(rule, AuthorizationAction::CUSTOM, Layer::Http, owner),
                &why_bad,
            ) {
                (Ok(Some(policy)), None) => shadow.push((name, policy)),
                (Ok(Some(policy)), Some(why)) => {
                    tracing::error!(
                        "AuthorizationPolicy {}/{}: {why}; its rules deny",
                        p.namespace,
                        p.name
                    );
                    deny.push((format!("{name}-deny-due-to-bad-CUSTOM-action"), policy));
                }
                (Ok(None), _) => {}
                (Err(e), _) => {
                    tracing::error!(
                        "AuthorizationPolicy {}/{}: spec.rules[{i}].{e}; the rule denies every request",
                        p.namespace,
                        p.name
                    );
                    deny.push((
                        format!("{name}-deny-due-to-bad-CUSTOM-action"),
                        super::authz::deny_all(),
                    ));
                }
            }
        }
    }
    let engine = |policies: Vec<(String, rbac::Policy)>| {
        (!policies.is_empty()).then(|| rbac::Rbac {
            action: rbac::rbac::Action::Deny as i32,
            policies: pb::map(policies),
            ..Default::default()
        })
    };
    let has_shadow = !shadow.is_empty();
    let config = envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac {
        rules: engine(deny),
        shadow_rules: engine(shadow),
        shadow_rules_stat_prefix: if has_shadow {
            SHADOW_PREFIX.into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    let mut out = Vec::new();
    if config.rules.is_some() || config.shadow_rules.is_some() {
        out.push(hcm::HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(pb::any(&config))),
            ..Default::default()
        });
    }
    if let (true, Ok(f)) = (has_shadow, filter) {
        out.push(hcm::HttpFilter {
            name: "envoy.filters.http.ext_authz".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(pb::any(&f))),
            ..Default::default()
        });
    }
    out
}
