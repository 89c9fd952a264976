//! JWT authentication: the `envoy.filters.http.jwt_authn` filter's
//! settings (`envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`)
//! and its per-route `PerRouteConfig`.
//!
//! Providers say how a token is found, verified and passed on; rules
//! (or named requirements picked by route) say which providers a
//! request needs. [`crate::check`] refuses by name what weft does not
//! implement: remote JWKS (the control plane inlines keys, as istiod
//! does), filter-state rules, subjects, max lifetime, token caching,
//! header/failed-status metadata and payload normalization.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::route::{DataSource, RouteMatch};

/// `JwtAuthentication`: the filter's settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtAuthentication {
    /// By name.
    pub providers: BTreeMap<String, JwtProvider>,
    /// The first whose `match` matches decides the requirement.
    pub rules: Vec<RequirementRule>,
    /// Named requirements, chosen by a route's `PerRouteConfig`.
    pub requirement_map: BTreeMap<String, JwtRequirement>,
    pub bypass_cors_preflight: bool,
    pub stat_prefix: String,
    /// Not implemented by weft.
    pub filter_state_rules: Option<serde_json::Value>,
    pub strip_failure_response: bool,
}

/// `JwtProvider`: one issuer's tokens.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtProvider {
    pub issuer: String,
    /// A token must name one of these in `aud` (any when empty).
    pub audiences: Vec<String>,
    /// The keys: inline or a file. weft reads them once per
    /// configuration.
    pub local_jwks: Option<DataSource>,
    /// Refused by weft.
    pub remote_jwks: Option<serde_json::Value>,
    /// Keep the token in the request sent upstream.
    pub forward: bool,
    /// Where the token is looked for. With none of the three set: the
    /// `Authorization` header after `Bearer ` and the `access_token`
    /// query parameter.
    pub from_headers: Vec<JwtHeader>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// A header upstream gets the verified payload in (base64url).
    pub forward_payload_header: String,
    pub pad_forward_payload_header: bool,
    /// The dynamic metadata key (in `envoy.filters.http.jwt_authn`)
    /// the verified payload is written under.
    pub payload_in_metadata: String,
    /// Claims copied into request headers.
    pub claim_to_headers: Vec<JwtClaimToHeader>,
    /// Slack for `exp` and `nbf`; Envoy's default is 60 s.
    pub clock_skew_seconds: Option<u32>,
    /// Not implemented by weft (refused when set).
    pub subjects: Option<serde_json::Value>,
    pub require_expiration: bool,
    pub max_lifetime: Option<serde_json::Value>,
    pub header_in_metadata: String,
    pub failed_status_in_metadata: String,
    /// How the payload in metadata is reshaped for matching.
    pub normalize_payload_in_metadata: Option<NormalizePayload>,
    pub jwt_cache_config: Option<serde_json::Value>,
    pub clear_route_cache: bool,
}

/// `JwtProvider.NormalizePayload`: claims that are space-delimited
/// strings become lists in the payload written to metadata (RFC 8693's
/// `scope`), so that RBAC can match one of the values.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizePayload {
    pub space_delimited_claims: Vec<String>,
}

/// `JwtHeader`: a header the token is read from, after a prefix.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtHeader {
    pub name: String,
    pub value_prefix: String,
}

/// `JwtClaimToHeader`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtClaimToHeader {
    pub header_name: String,
    pub claim_name: String,
    /// Refused by weft (claims by path segments).
    pub claim_path: Vec<serde_json::Value>,
}

/// `RequirementRule`: requests that match need `requires` (or the
/// named requirement); one without either needs nothing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequirementRule {
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    pub requires: Option<JwtRequirement>,
    pub requirement_name: Option<String>,
}

/// `JwtRequirement`: exactly one of its fields.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtRequirement {
    pub provider_name: Option<String>,
    /// Refused by weft.
    pub provider_and_audiences: Option<serde_json::Value>,
    pub requires_any: Option<JwtRequirementList>,
    pub requires_all: Option<JwtRequirementList>,
    /// `{}`: a missing or failing token passes.
    pub allow_missing_or_failed: Option<Empty>,
    /// `{}`: a missing token passes, a failing one does not.
    pub allow_missing: Option<Empty>,
    /// Refused by weft.
    pub extract_only_without_validation: Option<serde_json::Value>,
}

/// `JwtRequirementOrList` / `JwtRequirementAndList`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtRequirementList {
    pub requirements: Vec<JwtRequirement>,
}

/// `google.protobuf.Empty`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `PerRouteConfig`: exactly one of the two.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerRouteConfig {
    pub disabled: bool,
    pub requirement_name: String,
}
