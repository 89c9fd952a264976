//! The external authorization filter's settings, by Envoy's rules (one
//! service, its cluster and timeout, status codes, matchers), and what
//! weft does not implement, refused by name: the request body in the
//! check, re-routing after the check, Google gRPC, header mutation
//! rules and validation, the top-level header lists, typed and route
//! metadata, TLS session and shadow mode, and per-route service or body
//! overrides.

use super::rbac::metadata_matcher;
use super::routes::string_matcher;
use super::{exactly_one, At};
use crate::ext_authz::{ExtAuthz, ExtAuthzPerRoute, HttpService, ListStringMatcher};
use crate::xds::{ApiVersion, GrpcService};
use crate::FieldError;

const NOT_IMPLEMENTED: &str = "not implemented by weft";

/// Refuses the first field in `set` that is in use.
fn refuse(at: &At, set: &[(&str, bool, &str)]) -> Result<(), FieldError> {
    match set.iter().find(|(_, used, _)| *used) {
        Some((name, _, why)) => Err(at.key(name).err(format!("{NOT_IMPLEMENTED}: {why}"))),
        None => Ok(()),
    }
}

/// The filter's settings on the connection manager.
pub(super) fn ext_authz(at: &At, e: &ExtAuthz) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "with_request_body",
                e.with_request_body.is_some(),
                "the request body in the check",
            ),
            (
                "clear_route_cache",
                e.clear_route_cache,
                "routing again after the check",
            ),
            (
                "allowed_headers",
                e.allowed_headers.is_some() && e.http_service.is_none(),
                "the filter-level header list with a gRPC service",
            ),
            (
                "allowed_headers",
                e.allowed_headers.is_some()
                    && e.http_service
                        .as_ref()
                        .and_then(|h| h.authorization_request.as_ref())
                        .is_some_and(|r| r.allowed_headers.is_some()),
                "both it and http_service.authorization_request.allowed_headers",
            ),
            (
                "disallowed_headers",
                e.disallowed_headers.is_some(),
                "the filter-level header list",
            ),
            (
                "validate_mutations",
                e.validate_mutations,
                "validating the authorizer's header mutations",
            ),
            (
                "typed_metadata_context_namespaces",
                !e.typed_metadata_context_namespaces.is_empty(),
                "typed metadata in the check",
            ),
            (
                "route_metadata_context_namespaces",
                !e.route_metadata_context_namespaces.is_empty(),
                "route metadata in the check",
            ),
            (
                "route_typed_metadata_context_namespaces",
                !e.route_typed_metadata_context_namespaces.is_empty(),
                "route metadata in the check",
            ),
            (
                "bootstrap_metadata_labels_key",
                !e.bootstrap_metadata_labels_key.is_empty(),
                "node metadata labels in the check",
            ),
            (
                "include_tls_session",
                e.include_tls_session,
                "the TLS session in the check",
            ),
            (
                "charge_cluster_response_stats",
                e.charge_cluster_response_stats.is_some(),
                "per-cluster response statistics",
            ),
            (
                "encode_raw_headers",
                e.encode_raw_headers,
                "raw headers in the check",
            ),
            (
                "decoder_header_mutation_rules",
                e.decoder_header_mutation_rules.is_some(),
                "header mutation rules",
            ),
            (
                "enable_dynamic_metadata_ingestion",
                e.enable_dynamic_metadata_ingestion.is_some(),
                "dynamic metadata from the authorizer",
            ),
            (
                "filter_metadata",
                e.filter_metadata.is_some(),
                "filter metadata",
            ),
            (
                "emit_filter_state_stats",
                e.emit_filter_state_stats,
                "filter state statistics",
            ),
            (
                "max_denied_response_body_bytes",
                e.max_denied_response_body_bytes != 0,
                "a limit on the denied body",
            ),
            (
                "enforce_response_header_limits",
                e.enforce_response_header_limits,
                "response header limits",
            ),
            ("shadow_mode", e.shadow_mode, "shadow mode"),
            (
                "emit_client_span",
                e.emit_client_span.is_some(),
                "tracing spans",
            ),
        ],
    )?;
    exactly_one(
        at,
        "an ext_authz filter",
        &[
            ("grpc_service", e.grpc_service.is_some()),
            ("http_service", e.http_service.is_some()),
        ],
    )?;
    if e.transport_api_version == ApiVersion::V2 {
        return Err(at
            .key("transport_api_version")
            .err("V2 is no longer supported; use V3"));
    }
    if let Some(g) = &e.grpc_service {
        grpc_service(&at.key("grpc_service"), g)?;
    }
    if let Some(h) = &e.http_service {
        http_service(&at.key("http_service"), h)?;
    }
    list(&at.key("allowed_headers"), &e.allowed_headers)?;
    if let Some(s) = &e.status_on_error {
        if s.number().is_none_or(|c| c < 100) {
            return Err(at
                .key("status_on_error")
                .key("code")
                .err(format!("{}: not an HTTP status Envoy knows", s.code)));
        }
    }
    if let Some(p) = &e.filter_enabled {
        if p.default_value.numerator > p.default_value.denominator.value() {
            return Err(at
                .key("filter_enabled")
                .key("default_value")
                .key("numerator")
                .err("larger than the denominator"));
        }
    }
    if let Some(m) = &e.filter_enabled_metadata {
        metadata_matcher(&at.key("filter_enabled_metadata"), m)?;
    }
    Ok(())
}

fn grpc_service(at: &At, g: &GrpcService) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "google_grpc",
                g.google_grpc.is_some(),
                "Google gRPC; use envoy_grpc",
            ),
            (
                "initial_metadata",
                !g.initial_metadata.is_empty(),
                "initial metadata",
            ),
        ],
    )?;
    match &g.envoy_grpc {
        Some(e) if e.cluster_name.is_empty() => {
            Err(at.key("envoy_grpc").key("cluster_name").err("required"))
        }
        Some(_) => Ok(()),
        None => Err(at.key("envoy_grpc").err("required")),
    }
}

fn http_service(at: &At, h: &HttpService) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "path_override",
                !h.path_override.is_empty(),
                "a fixed check path; use path_prefix",
            ),
            ("retry_policy", h.retry_policy.is_some(), "retried checks"),
        ],
    )?;
    let uat = at.key("server_uri");
    let Some(u) = &h.server_uri else {
        return Err(uat.err("required"));
    };
    if u.uri.is_empty() {
        return Err(uat.key("uri").err("required"));
    }
    if u.cluster.is_empty() {
        return Err(uat.key("cluster").err("required"));
    }
    if u.timeout.is_none() {
        return Err(uat.key("timeout").err("required"));
    }
    if let Some(r) = &h.authorization_request {
        let rat = at.key("authorization_request");
        list(&rat.key("allowed_headers"), &r.allowed_headers)?;
        for (i, hv) in r.headers_to_add.iter().enumerate() {
            if hv.key.is_empty() {
                return Err(rat.key("headers_to_add").idx(i).key("key").err("required"));
            }
        }
    }
    if let Some(r) = &h.authorization_response {
        let rat = at.key("authorization_response");
        refuse(
            &rat,
            &[(
                "dynamic_metadata_from_headers",
                r.dynamic_metadata_from_headers.is_some(),
                "dynamic metadata from the authorizer's headers",
            )],
        )?;
        for (name, l) in [
            ("allowed_upstream_headers", &r.allowed_upstream_headers),
            (
                "allowed_upstream_headers_to_append",
                &r.allowed_upstream_headers_to_append,
            ),
            ("allowed_client_headers", &r.allowed_client_headers),
            (
                "allowed_client_headers_on_success",
                &r.allowed_client_headers_on_success,
            ),
        ] {
            list(&rat.key(name), l)?;
        }
    }
    Ok(())
}

fn list(at: &At, l: &Option<ListStringMatcher>) -> Result<(), FieldError> {
    for (i, m) in l.iter().flat_map(|l| l.patterns.iter()).enumerate() {
        string_matcher(&at.key("patterns").idx(i), m)?;
    }
    Ok(())
}

/// A route's `ExtAuthzPerRoute`.
pub(super) fn per_route(at: &At, p: &ExtAuthzPerRoute) -> Result<(), FieldError> {
    exactly_one(
        at,
        "an ext_authz per-route config",
        &[
            ("disabled", p.disabled),
            ("check_settings", p.check_settings.is_some()),
        ],
    )?;
    if let Some(c) = &p.check_settings {
        refuse(
            &at.key("check_settings"),
            &[
                (
                    "with_request_body",
                    c.with_request_body.is_some(),
                    "the request body in the check",
                ),
                (
                    "grpc_service",
                    c.grpc_service.is_some(),
                    "a service by route",
                ),
                (
                    "http_service",
                    c.http_service.is_some(),
                    "a service by route",
                ),
                (
                    "emit_client_span",
                    c.emit_client_span.is_some(),
                    "tracing spans",
                ),
            ],
        )?;
    }
    Ok(())
}
