//! Role based access control: `envoy.config.rbac.v3` (policies of
//! permissions and principals) and the two filters that enforce it, the
//! HTTP filter (`envoy.extensions.filters.http.rbac.v3.RBAC`, with its
//! per-route `RBACPerRoute`) and the network filter
//! (`envoy.extensions.filters.network.rbac.v3.RBAC`).
//!
//! A protobuf `oneof` is a set of optional fields here; [`crate::check`]
//! insists on exactly one and refuses by name what weft does not
//! implement (CEL conditions, matcher trees, extension matchers).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::listener::CidrRange;
use crate::route::HeaderMatcher;
use crate::{Duration, StringMatcher};

/// `envoy.config.rbac.v3.RBAC`: an action and the policies it applies to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rbac {
    pub action: RbacAction,
    /// By name; Envoy evaluates them in the names' lexicographic order,
    /// which is this map's.
    pub policies: BTreeMap<String, Policy>,
    pub audit_logging_options: Option<serde_json::Value>,
}

/// `RBAC.Action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum RbacAction {
    /// Allowed when a policy matches.
    #[default]
    ALLOW,
    /// Allowed when no policy matches.
    DENY,
    /// Always allowed; whether a policy matched is recorded.
    LOG,
}

/// `envoy.config.rbac.v3.Policy`: matches when one of its permissions
/// and one of its principals match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
    /// CEL: refused by weft.
    pub condition: Option<serde_json::Value>,
    pub checked_condition: Option<serde_json::Value>,
    pub cel_config: Option<serde_json::Value>,
}

/// `envoy.config.rbac.v3.Permission`: what the request or connection
/// does (exactly one field set).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permission {
    pub and_rules: Option<PermissionSet>,
    pub or_rules: Option<PermissionSet>,
    pub any: Option<bool>,
    pub header: Option<HeaderMatcher>,
    pub url_path: Option<PathMatcher>,
    pub destination_ip: Option<CidrRange>,
    pub destination_port: Option<u32>,
    pub destination_port_range: Option<Int32Range>,
    pub metadata: Option<MetadataMatcher>,
    pub not_rule: Option<Box<Permission>>,
    pub requested_server_name: Option<StringMatcher>,
    /// An extension matcher: refused by weft.
    pub matcher: Option<serde_json::Value>,
    /// A path template extension: refused by weft.
    pub uri_template: Option<serde_json::Value>,
    pub sourced_metadata: Option<SourcedMetadata>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermissionSet {
    pub rules: Vec<Permission>,
}

/// `envoy.config.rbac.v3.Principal`: who the downstream is (exactly one
/// field set).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Principal {
    pub and_ids: Option<PrincipalSet>,
    pub or_ids: Option<PrincipalSet>,
    pub any: Option<bool>,
    pub authenticated: Option<Authenticated>,
    /// Deprecated: the connection's peer, as `direct_remote_ip`.
    pub source_ip: Option<CidrRange>,
    pub direct_remote_ip: Option<CidrRange>,
    pub remote_ip: Option<CidrRange>,
    pub header: Option<HeaderMatcher>,
    pub url_path: Option<PathMatcher>,
    pub metadata: Option<MetadataMatcher>,
    /// Filter state objects: weft has none, refused.
    pub filter_state: Option<serde_json::Value>,
    pub not_id: Option<Box<Principal>>,
    pub sourced_metadata: Option<SourcedMetadata>,
    /// An extension principal: refused by weft.
    pub custom: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalSet {
    pub ids: Vec<Principal>,
}

/// `Principal.Authenticated`: the peer certificate's identity.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authenticated {
    /// Matched against the URI SANs, then the DNS SANs, then the
    /// subject; unset, any authenticated peer.
    pub principal_name: Option<StringMatcher>,
}

/// `envoy.type.matcher.v3.PathMatcher`: the path without its query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathMatcher {
    pub path: Option<StringMatcher>,
}

/// `envoy.type.v3.Int32Range`: `[start, end)`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Int32Range {
    pub start: i32,
    pub end: i32,
}

/// `envoy.type.matcher.v3.MetadataMatcher`: a value in the dynamic
/// metadata, found by filter namespace and path.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataMatcher {
    pub filter: String,
    pub path: Vec<PathSegment>,
    pub value: Option<ValueMatcher>,
    pub invert: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathSegment {
    pub key: Option<String>,
}

/// `envoy.type.matcher.v3.ValueMatcher` (exactly one field set).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueMatcher {
    pub null_match: Option<serde_json::Value>,
    pub double_match: Option<DoubleMatcher>,
    pub string_match: Option<StringMatcher>,
    pub bool_match: Option<bool>,
    pub present_match: Option<bool>,
    pub list_match: Option<ListMatcher>,
    pub or_match: Option<OrMatcher>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoubleMatcher {
    pub range: Option<DoubleRange>,
    pub exact: Option<f64>,
}

/// `envoy.type.v3.DoubleRange`: `[start, end)`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoubleRange {
    pub start: f64,
    pub end: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListMatcher {
    pub one_of: Option<Box<ValueMatcher>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrMatcher {
    pub value_matchers: Vec<ValueMatcher>,
}

/// `envoy.config.rbac.v3.SourcedMetadata`: a metadata matcher and which
/// metadata it reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcedMetadata {
    pub metadata_matcher: Option<MetadataMatcher>,
    pub metadata_source: MetadataSource,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum MetadataSource {
    /// The request's (or connection's) dynamic metadata.
    #[default]
    DYNAMIC,
    /// The route's metadata (weft's routes carry none: refused).
    ROUTE,
}

/// `envoy.extensions.filters.http.rbac.v3.RBAC`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRbac {
    /// Absent: nothing enforced. Present with no policies: ALLOW denies
    /// everything, DENY nothing.
    pub rules: Option<Rbac>,
    /// Put before the names of the rules' statistics and metadata keys.
    pub rules_stat_prefix: String,
    /// The xDS matcher tree form: refused by weft.
    pub matcher: Option<serde_json::Value>,
    /// Evaluated, counted and recorded, never enforced.
    pub shadow_rules: Option<Rbac>,
    pub shadow_matcher: Option<serde_json::Value>,
    pub shadow_rules_stat_prefix: String,
    /// Count per policy too.
    pub track_per_rule_stats: bool,
}

/// `envoy.extensions.filters.http.rbac.v3.RBACPerRoute`: replaces the
/// filter's rules on a route; without `rbac` the route is not checked.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRbacPerRoute {
    pub rbac: Option<HttpRbac>,
}

/// `envoy.extensions.filters.network.rbac.v3.RBAC`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkRbac {
    pub rules: Option<Rbac>,
    pub matcher: Option<serde_json::Value>,
    pub shadow_rules: Option<Rbac>,
    pub shadow_matcher: Option<serde_json::Value>,
    pub shadow_rules_stat_prefix: String,
    /// Required: statistics go under `<stat_prefix>.rbac.`.
    pub stat_prefix: String,
    pub enforcement_type: EnforcementType,
    /// How long a denied connection waits before it is closed.
    pub delay_deny: Option<Duration>,
}

/// `RBAC.EnforcementType` of the network filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum EnforcementType {
    /// Decide once, when the first bytes arrive from downstream.
    #[default]
    ONE_TIME_ON_FIRST_BYTE,
    /// Decide again on every read from downstream.
    CONTINUOUS,
}
