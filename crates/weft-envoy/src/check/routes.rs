//! Route tables: virtual hosts, routes, retry policies and matchers.

use std::collections::HashSet;

use super::filters::per_filter_config;
use super::{exactly_one, known_cluster, regex, At};
use crate::route::{HeaderMatcher, Route, RouteConfiguration, VirtualHost};
use crate::{FieldError, TypedConfig};

/// `validate_default`: Envoy checks cluster references in inline route
/// tables unless told not to, and in RDS tables only when told to.
pub(super) fn route_config(
    at: &At,
    rc: &RouteConfiguration,
    clusters: &HashSet<&str>,
    validate_default: bool,
) -> Result<(), FieldError> {
    let validate = rc.validate_clusters.unwrap_or(validate_default);
    per_filter_config(at, &rc.typed_per_filter_config)?;
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        virtual_host(&at.key("virtual_hosts").idx(i), vh, clusters, validate)?;
    }
    Ok(())
}

/// One virtual host; `validate`: check its routes' cluster references.
pub(super) fn virtual_host(
    vat: &At,
    vh: &VirtualHost,
    clusters: &HashSet<&str>,
    validate: bool,
) -> Result<(), FieldError> {
    if vh.domains.is_empty() {
        return Err(vat
            .key("domains")
            .err("a virtual host needs at least one domain"));
    }
    per_filter_config(vat, &vh.typed_per_filter_config)?;
    if let Some(p) = &vh.retry_policy {
        retry_policy(&vat.key("retry_policy"), p)?;
    }
    for (j, r) in vh.routes.iter().enumerate() {
        route(&vat.key("routes").idx(j), r, clusters, validate)?;
    }
    Ok(())
}

fn route(at: &At, r: &Route, clusters: &HashSet<&str>, validate: bool) -> Result<(), FieldError> {
    per_filter_config(at, &r.typed_per_filter_config)?;
    let m = &r.match_;
    let mat = at.key("match");
    exactly_one(
        &mat,
        "a route match",
        &[
            ("prefix", m.prefix.is_some()),
            ("path", m.path.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
            ("path_separated_prefix", m.path_separated_prefix.is_some()),
        ],
    )?;
    if let Some(re) = &m.safe_regex {
        regex(&mat.key("safe_regex").key("regex"), &re.regex)?;
    }
    if let Some(rf) = &m.runtime_fraction {
        // No runtime layer: the default value is what applies.
        if rf.default_value.numerator > rf.default_value.denominator.value() {
            return Err(mat
                .key("runtime_fraction")
                .key("default_value")
                .key("numerator")
                .err("larger than the denominator"));
        }
    }
    for (i, h) in m.headers.iter().enumerate() {
        header_matcher(&mat.key("headers").idx(i), h)?;
    }
    for (i, q) in m.query_parameters.iter().enumerate() {
        if let Some(re) = q.string_match.as_ref().and_then(|s| s.safe_regex.as_ref()) {
            let qat = mat.key("query_parameters").idx(i).key("string_match");
            regex(&qat.key("safe_regex").key("regex"), &re.regex)?;
        }
    }
    exactly_one(
        at,
        "a route",
        &[
            ("route", r.route.is_some()),
            ("redirect", r.redirect.is_some()),
            ("direct_response", r.direct_response.is_some()),
        ],
    )?;
    if let Some(a) = &r.route {
        let aat = at.key("route");
        exactly_one(
            &aat,
            "a route action",
            &[
                ("cluster", a.cluster.is_some()),
                ("weighted_clusters", a.weighted_clusters.is_some()),
                ("cluster_header", a.cluster_header.is_some()),
            ],
        )?;
        if a.cluster_header.is_some() {
            return Err(aat.key("cluster_header").err("not implemented by weft yet"));
        }
        if validate {
            if let Some(c) = &a.cluster {
                known_cluster(&aat.key("cluster"), c, clusters)?;
            }
        }
        if let Some(w) = &a.weighted_clusters {
            let total: u64 = w
                .clusters
                .iter()
                .map(|c| u64::from(c.weight.unwrap_or(0)))
                .sum();
            if total == 0 {
                return Err(aat
                    .key("weighted_clusters")
                    .err("needs at least one cluster with a weight above 0"));
            }
            for (i, c) in w.clusters.iter().enumerate() {
                if validate {
                    let cat = aat.key("weighted_clusters").key("clusters").idx(i);
                    known_cluster(&cat.key("name"), &c.name, clusters)?;
                }
            }
        }
        if let Some(rr) = &a.regex_rewrite {
            regex(
                &aat.key("regex_rewrite").key("pattern").key("regex"),
                &rr.pattern.regex,
            )?;
        }
        if let Some(p) = &a.retry_policy {
            retry_policy(&aat.key("retry_policy"), p)?;
        }
        for (i, m) in a.request_mirror_policies.iter().enumerate() {
            let mat = aat.key("request_mirror_policies").idx(i);
            if m.cluster_header.is_some() {
                return Err(mat.key("cluster_header").err("not implemented by weft yet"));
            }
            if m.trace_sampled == Some(true) {
                return Err(mat
                    .key("trace_sampled")
                    .err("tracing is not implemented by weft yet"));
            }
            if m.cluster.is_empty() {
                return Err(mat.key("cluster").err("a mirror policy needs a cluster"));
            }
            if validate {
                known_cluster(&mat.key("cluster"), &m.cluster, clusters)?;
            }
            if let Some(rf) = &m.runtime_fraction {
                if rf.default_value.numerator > rf.default_value.denominator.value() {
                    return Err(mat
                        .key("runtime_fraction")
                        .key("default_value")
                        .key("numerator")
                        .err("larger than the denominator"));
                }
            }
        }
        for (i, h) in a.hash_policy.iter().enumerate() {
            let hat = aat.key("hash_policy").idx(i);
            exactly_one(
                &hat,
                "a hash policy",
                &[
                    ("header", h.header.is_some()),
                    ("cookie", h.cookie.is_some()),
                    ("connection_properties", h.connection_properties.is_some()),
                    ("query_parameter", h.query_parameter.is_some()),
                    ("filter_state", h.filter_state.is_some()),
                ],
            )?;
            if h.filter_state.is_some() {
                return Err(hat.key("filter_state").err("not implemented by weft yet"));
            }
            if let Some(rr) = h.header.as_ref().and_then(|x| x.regex_rewrite.as_ref()) {
                regex(
                    &hat.key("header")
                        .key("regex_rewrite")
                        .key("pattern")
                        .key("regex"),
                    &rr.pattern.regex,
                )?;
            }
        }
        if a.prefix_rewrite.is_some() && a.regex_rewrite.is_some() {
            return Err(aat.err("prefix_rewrite and regex_rewrite are mutually exclusive"));
        }
    }
    if let Some(d) = &r.direct_response {
        if !(200..=599).contains(&d.status) {
            return Err(at.key("direct_response").key("status").err(format!(
                "status {} is out of range: expected 200–599",
                d.status
            )));
        }
        if d.body.as_ref().is_some_and(|b| b.filename.is_some()) {
            return Err(at
                .key("direct_response")
                .key("body")
                .key("filename")
                .err("not implemented by weft yet; use inline_string"));
        }
    }
    Ok(())
}

/// The `retry_on` conditions weft implements. Envoy ignores tokens it
/// does not know (with a warning); the ones it knows that weft does not
/// implement are refused by name.
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    // No HTTP/3 upstreams, so this condition never arises, as in Envoy
    // with an HTTP/1 or HTTP/2 cluster.
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

fn retry_policy(at: &At, p: &crate::route::RetryPolicy) -> Result<(), FieldError> {
    for token in p.retry_on.split(',').map(str::trim) {
        if token == "reset-before-request" {
            return Err(at
                .key("retry_on")
                .err("reset-before-request is not implemented by weft yet"));
        }
    }
    for (i, h) in p.retry_host_predicate.iter().enumerate() {
        let hat = at.key("retry_host_predicate").idx(i);
        if !matches!(h.typed_config, Some(TypedConfig::PreviousHosts)) {
            return Err(hat.key("typed_config").err(format!(
                "{:?} needs the typed_config of envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate (the only host predicate weft implements)",
                h.name
            )));
        }
    }
    if let Some(b) = &p.retry_back_off {
        let bat = at.key("retry_back_off");
        let base = b.base_interval.map(|d| d.0);
        if base.is_none_or(|d| d.is_zero()) {
            return Err(bat
                .key("base_interval")
                .err("must be set and greater than 0"));
        }
        if let (Some(base), Some(max)) = (base, b.max_interval.map(|d| d.0)) {
            if max < base {
                return Err(bat
                    .key("max_interval")
                    .err("must not be less than base_interval"));
            }
        }
    }
    for (i, code) in p.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            return Err(at
                .key("retriable_status_codes")
                .idx(i)
                .err(format!("{code} is not an HTTP status")));
        }
    }
    for (i, h) in p.retriable_headers.iter().enumerate() {
        header_matcher(&at.key("retriable_headers").idx(i), h)?;
    }
    for (i, h) in p.retriable_request_headers.iter().enumerate() {
        header_matcher(&at.key("retriable_request_headers").idx(i), h)?;
    }
    Ok(())
}

pub(super) fn header_matcher(at: &At, h: &HeaderMatcher) -> Result<(), FieldError> {
    if h.name.is_empty() {
        return Err(at.key("name").err("a header matcher needs a name"));
    }
    let set = [
        ("exact_match", h.exact_match.is_some()),
        ("safe_regex_match", h.safe_regex_match.is_some()),
        ("present_match", h.present_match.is_some()),
        ("prefix_match", h.prefix_match.is_some()),
        ("suffix_match", h.suffix_match.is_some()),
        ("contains_match", h.contains_match.is_some()),
        ("string_match", h.string_match.is_some()),
    ];
    if set.iter().filter(|(_, s)| *s).count() > 1 {
        exactly_one(at, "a header matcher", &set)?;
    }
    if let Some(re) = &h.safe_regex_match {
        regex(&at.key("safe_regex_match").key("regex"), &re.regex)?;
    }
    if let Some(re) = h.string_match.as_ref().and_then(|s| s.safe_regex.as_ref()) {
        regex(
            &at.key("string_match").key("safe_regex").key("regex"),
            &re.regex,
        )?;
    }
    Ok(())
}

/// A string matcher names exactly one pattern (Envoy's oneof).
pub(super) fn string_matcher(at: &At, m: &crate::StringMatcher) -> Result<(), FieldError> {
    exactly_one(
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
    // Envoy's validation: only an exact match may be empty.
    for (field, v) in [
        ("prefix", &m.prefix),
        ("suffix", &m.suffix),
        ("contains", &m.contains),
    ] {
        if v.as_deref() == Some("") {
            return Err(at.key(field).err("must not be empty"));
        }
    }
    if let Some(re) = &m.safe_regex {
        regex(&at.key("safe_regex").key("regex"), &re.regex)?;
    }
    Ok(())
}
