//! The JWT authentication filter's settings, by Envoy's rules (one
//! field of each oneof, providers and requirement names that exist,
//! keys present), and what weft does not implement, refused by name:
//! remote JWKS, filter-state rules, subjects, lifetimes, caching,
//! header and failure metadata, payload normalization, provider and
//! audience overrides, and rule matches other than prefix / path /
//! safe_regex / headers.

use super::routes::header_matcher;
use super::{exactly_one, regex, At};
use crate::jwt::{JwtAuthentication, JwtProvider, JwtRequirement, PerRouteConfig, RequirementRule};
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
pub(super) fn jwt_authentication(at: &At, j: &JwtAuthentication) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "filter_state_rules",
                j.filter_state_rules.is_some(),
                "requirements from filter state",
            ),
            (
                "strip_failure_response",
                j.strip_failure_response,
                "failures passed on without a reply",
            ),
        ],
    )?;
    for (name, p) in &j.providers {
        provider(&at.key("providers").key(name), p)?;
    }
    for (i, r) in j.rules.iter().enumerate() {
        rule(&at.key("rules").idx(i), r, j)?;
    }
    for (name, r) in &j.requirement_map {
        requirement(&at.key("requirement_map").key(name), r, j)?;
    }
    Ok(())
}

/// A route's `PerRouteConfig`: which named requirement, or none.
pub(super) fn per_route(at: &At, p: &PerRouteConfig) -> Result<(), FieldError> {
    exactly_one(
        at,
        "a JWT per-route config",
        &[
            ("disabled", p.disabled),
            ("requirement_name", !p.requirement_name.is_empty()),
        ],
    )
}

fn provider(at: &At, p: &JwtProvider) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "remote_jwks",
                p.remote_jwks.is_some(),
                "keys fetched from a URI; inline them in local_jwks (as istiod does)",
            ),
            ("subjects", p.subjects.is_some(), "subject matching"),
            (
                "require_expiration",
                p.require_expiration,
                "required expiration",
            ),
            (
                "max_lifetime",
                p.max_lifetime.is_some(),
                "a maximum lifetime",
            ),
            (
                "header_in_metadata",
                !p.header_in_metadata.is_empty(),
                "the token header in metadata",
            ),
            (
                "failed_status_in_metadata",
                !p.failed_status_in_metadata.is_empty(),
                "the failure status in metadata",
            ),
            (
                "jwt_cache_config",
                p.jwt_cache_config.is_some(),
                "a token cache",
            ),
            (
                "clear_route_cache",
                p.clear_route_cache,
                "clearing the route cache",
            ),
        ],
    )?;
    match &p.local_jwks {
        None => {
            return Err(at.err(
                "a provider needs its keys: local_jwks (remote_jwks is not implemented by weft)",
            ))
        }
        Some(ds) => {
            let dat = at.key("local_jwks");
            exactly_one(
                &dat,
                "local_jwks",
                &[
                    ("inline_string", ds.inline_string.is_some()),
                    ("inline_bytes", ds.inline_bytes.is_some()),
                    ("filename", ds.filename.is_some()),
                ],
            )?;
        }
    }
    for (i, h) in p.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            return Err(at.key("from_headers").idx(i).key("name").err("required"));
        }
    }
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let cat = at.key("claim_to_headers").idx(i);
        if c.header_name.is_empty() {
            return Err(cat.key("header_name").err("required"));
        }
        if !c.claim_path.is_empty() {
            return Err(cat
                .key("claim_path")
                .err(format!("{NOT_IMPLEMENTED}: use claim_name")));
        }
        if c.claim_name.is_empty() {
            return Err(cat.key("claim_name").err("required"));
        }
    }
    Ok(())
}

fn rule(at: &At, r: &RequirementRule, j: &JwtAuthentication) -> Result<(), FieldError> {
    let m = &r.match_;
    let mat = at.key("match");
    exactly_one(
        &mat,
        "a rule match",
        &[
            ("prefix", m.prefix.is_some()),
            ("path", m.path.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
            ("path_separated_prefix", m.path_separated_prefix.is_some()),
        ],
    )?;
    refuse(
        &mat,
        &[
            (
                "path_separated_prefix",
                m.path_separated_prefix.is_some(),
                "in a JWT rule; use prefix, path or safe_regex",
            ),
            (
                "case_sensitive",
                m.case_sensitive.is_some(),
                "in a JWT rule",
            ),
            (
                "query_parameters",
                !m.query_parameters.is_empty(),
                "in a JWT rule",
            ),
            ("grpc", m.grpc.is_some(), "in a JWT rule"),
            (
                "runtime_fraction",
                m.runtime_fraction.is_some(),
                "in a JWT rule",
            ),
        ],
    )?;
    if let Some(re) = &m.safe_regex {
        regex(&mat.key("safe_regex").key("regex"), &re.regex)?;
    }
    for (i, h) in m.headers.iter().enumerate() {
        header_matcher(&mat.key("headers").idx(i), h)?;
    }
    if r.requires.is_some() && r.requirement_name.is_some() {
        return Err(at.err("a rule sets requires and requirement_name; only one may be set"));
    }
    if let Some(req) = &r.requires {
        requirement(&at.key("requires"), req, j)?;
    }
    if let Some(name) = &r.requirement_name {
        if !j.requirement_map.contains_key(name) {
            return Err(at
                .key("requirement_name")
                .err(format!("no requirement named {name:?} in requirement_map")));
        }
    }
    Ok(())
}

fn requirement(at: &At, r: &JwtRequirement, j: &JwtAuthentication) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "provider_and_audiences",
                r.provider_and_audiences.is_some(),
                "audiences overridden by requirement",
            ),
            (
                "extract_only_without_validation",
                r.extract_only_without_validation.is_some(),
                "extraction without validation",
            ),
        ],
    )?;
    exactly_one(
        at,
        "a JWT requirement",
        &[
            ("provider_name", r.provider_name.is_some()),
            ("requires_any", r.requires_any.is_some()),
            ("requires_all", r.requires_all.is_some()),
            (
                "allow_missing_or_failed",
                r.allow_missing_or_failed.is_some(),
            ),
            ("allow_missing", r.allow_missing.is_some()),
        ],
    )?;
    if let Some(name) = &r.provider_name {
        if !j.providers.contains_key(name) {
            return Err(at
                .key("provider_name")
                .err(format!("no provider named {name:?}")));
        }
    }
    for (key, list) in [
        ("requires_any", &r.requires_any),
        ("requires_all", &r.requires_all),
    ] {
        if let Some(list) = list {
            let lat = at.key(key).key("requirements");
            if list.requirements.len() < 2 {
                return Err(lat.err("needs at least two requirements"));
            }
            for (i, sub) in list.requirements.iter().enumerate() {
                requirement(&lat.idx(i), sub, j)?;
            }
        }
    }
    Ok(())
}
