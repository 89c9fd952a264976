//! `envoy.config.route.v3`: route configurations, virtual hosts, routes.

use serde::Deserialize;

use crate::{Duration, FractionalPercent, HeaderValueOption, RegexMatcher, StringMatcher};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfiguration {
    pub name: String,
    /// Shared, so a table delivered again can keep the virtual hosts whose
    /// bytes did not change (and what was compiled from them).
    pub virtual_hosts: Vec<std::sync::Arc<VirtualHost>>,
    pub request_headers_to_add: Vec<HeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<HeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
    pub validate_clusters: Option<bool>,
    pub typed_per_filter_config: PerFilterConfig,
}

/// HTTP filter settings for a route, virtual host or table, keyed by the
/// filter's name in the connection manager; the most specific wins.
pub type PerFilterConfig = std::collections::BTreeMap<String, crate::TypedConfig>;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub request_headers_to_add: Vec<HeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<HeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
    /// Used by routes that have none of their own.
    pub retry_policy: Option<RetryPolicy>,
    /// Tell the upstream which attempt this is (`x-envoy-attempt-count`).
    pub include_request_attempt_count: bool,
    /// Tell the client how many attempts were made.
    pub include_attempt_count_in_response: bool,
    pub typed_per_filter_config: PerFilterConfig,
    /// Which requests must have come over TLS; the rest are redirected
    /// to https (Istio's gateway `httpsRedirect`).
    pub require_tls: TlsRequirement,
}

/// `VirtualHost.TlsRequirementType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum TlsRequirement {
    #[default]
    NONE,
    /// Requests the connection manager did not mark internal.
    EXTERNAL_ONLY,
    ALL,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    pub route: Option<RouteAction>,
    pub redirect: Option<RedirectAction>,
    pub direct_response: Option<DirectResponseAction>,
    pub request_headers_to_add: Vec<HeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<HeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
    pub typed_per_filter_config: PerFilterConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMatch {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub safe_regex: Option<RegexMatcher>,
    pub path_separated_prefix: Option<String>,
    pub case_sensitive: Option<bool>,
    pub headers: Vec<HeaderMatcher>,
    pub query_parameters: Vec<QueryParameterMatcher>,
    pub grpc: Option<serde_json::Value>,
    pub runtime_fraction: Option<RuntimeFraction>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeFraction {
    pub default_value: FractionalPercent,
    pub runtime_key: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderMatcher {
    pub name: String,
    pub exact_match: Option<String>,
    pub safe_regex_match: Option<RegexMatcher>,
    pub present_match: Option<bool>,
    pub prefix_match: Option<String>,
    pub suffix_match: Option<String>,
    pub contains_match: Option<String>,
    pub string_match: Option<StringMatcher>,
    pub invert_match: bool,
    pub treat_missing_header_as_empty: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryParameterMatcher {
    pub name: String,
    pub string_match: Option<StringMatcher>,
    pub present_match: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAction {
    pub cluster: Option<String>,
    pub weighted_clusters: Option<WeightedCluster>,
    pub cluster_header: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<RegexRewrite>,
    pub host_rewrite_literal: Option<String>,
    pub auto_host_rewrite: Option<bool>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub upgrade_configs: Vec<crate::filters::UpgradeConfig>,
    pub retry_policy: Option<RetryPolicy>,
    /// What RING_HASH and MAGLEV clusters hash a request by.
    pub hash_policy: Vec<HashPolicy>,
    /// Copies of requests sent to other clusters, answers ignored.
    pub request_mirror_policies: Vec<RequestMirrorPolicy>,
    /// The stream's longest life on this route (Istio sets it on every
    /// route so a gRPC client's `grpc-timeout` is honoured).
    pub max_stream_duration: Option<MaxStreamDuration>,
}

/// `RouteAction.MaxStreamDuration`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaxStreamDuration {
    /// Replaces the connection manager's; zero turns it off.
    pub max_stream_duration: Option<Duration>,
    /// When set, a `grpc-timeout` header becomes the stream's maximum
    /// duration, capped at this (zero: not capped).
    pub grpc_timeout_header_max: Option<Duration>,
    /// Taken off the `grpc-timeout` header's value.
    pub grpc_timeout_header_offset: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestMirrorPolicy {
    pub cluster: String,
    pub cluster_header: Option<String>,
    /// The share of requests mirrored (all when unset).
    pub runtime_fraction: Option<RuntimeFraction>,
    /// Only requests whose trace is sampled (no tracing in weft yet: a
    /// value of `true` is refused, `false` changes nothing).
    pub trace_sampled: Option<bool>,
    /// Keep the Host as it is instead of appending `-shadow`.
    pub disable_shadow_host_suffix_append: bool,
}

/// `RouteAction.HashPolicy`: exactly one source per entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashPolicy {
    pub header: Option<HashHeader>,
    pub cookie: Option<HashCookie>,
    pub connection_properties: Option<HashConnection>,
    pub query_parameter: Option<HashQuery>,
    pub filter_state: Option<serde_json::Value>,
    /// Stop at this entry when it produced a hash.
    pub terminal: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashHeader {
    pub header_name: String,
    pub regex_rewrite: Option<RegexRewrite>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashCookie {
    pub name: String,
    /// With a TTL, a missing cookie is generated and set on the response.
    pub ttl: Option<Duration>,
    pub path: Option<String>,
    pub attributes: Vec<CookieAttribute>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieAttribute {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashConnection {
    pub source_ip: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashQuery {
    pub name: String,
}

/// `envoy.config.route.v3.RetryPolicy`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Comma-separated conditions (`5xx`, `reset`, `unavailable`, ...).
    pub retry_on: String,
    /// Envoy's default is 1.
    pub num_retries: Option<u32>,
    pub per_try_timeout: Option<Duration>,
    pub retry_host_predicate: Vec<RetryHostPredicate>,
    /// How often a retry may pick a host again to satisfy the host
    /// predicates (an int64, so a string in proto3 JSON).
    pub host_selection_retry_max_attempts: Option<crate::Int64>,
    pub retriable_status_codes: Vec<u32>,
    pub retry_back_off: Option<RetryBackOff>,
    pub retriable_headers: Vec<HeaderMatcher>,
    pub retriable_request_headers: Vec<HeaderMatcher>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryHostPredicate {
    pub name: String,
    pub typed_config: Option<crate::TypedConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBackOff {
    pub base_interval: Option<Duration>,
    pub max_interval: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightedCluster {
    pub clusters: Vec<ClusterWeight>,
    pub total_weight: Option<u32>,
    pub runtime_key_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterWeight {
    pub name: String,
    pub weight: Option<u32>,
    pub request_headers_to_add: Vec<HeaderValueOption>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<HeaderValueOption>,
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegexRewrite {
    pub pattern: RegexMatcher,
    pub substitution: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectAction {
    pub https_redirect: bool,
    pub scheme_redirect: Option<String>,
    pub host_redirect: Option<String>,
    pub port_redirect: Option<u32>,
    pub path_redirect: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<RegexRewrite>,
    pub response_code: RedirectResponseCode,
    pub strip_query: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum RedirectResponseCode {
    #[default]
    MOVED_PERMANENTLY,
    FOUND,
    SEE_OTHER,
    TEMPORARY_REDIRECT,
    PERMANENT_REDIRECT,
}

impl RedirectResponseCode {
    pub fn status(self) -> u16 {
        match self {
            RedirectResponseCode::MOVED_PERMANENTLY => 301,
            RedirectResponseCode::FOUND => 302,
            RedirectResponseCode::SEE_OTHER => 303,
            RedirectResponseCode::TEMPORARY_REDIRECT => 307,
            RedirectResponseCode::PERMANENT_REDIRECT => 308,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectResponseAction {
    pub status: u32,
    pub body: Option<DataSource>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSource {
    pub inline_string: Option<String>,
    pub inline_bytes: Option<String>,
    pub filename: Option<String>,
}
