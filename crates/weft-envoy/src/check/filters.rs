//! HTTP filters' settings (on the connection manager and per route in
//! `typed_per_filter_config`), by Envoy's rules.

use super::routes::{header_matcher, string_matcher};
use super::{exactly_one, At};
use crate::{FieldError, TypedConfig};

/// The connection manager's HTTP filters: implemented ones, the router
/// last.
pub(super) fn http_filters(
    at: &At,
    filters: &[crate::filters::HttpFilter],
) -> Result<(), FieldError> {
    match filters.last() {
        Some(f) if matches!(f.typed_config, Some(TypedConfig::Router(_))) => {}
        _ => {
            return Err(at
                .key("http_filters")
                .err("the last HTTP filter must be envoy.filters.http.router"))
        }
    }
    for (i, f) in filters.iter().enumerate() {
        let fat = at.key("http_filters").idx(i);
        match &f.typed_config {
            Some(TypedConfig::Router(_)) if i + 1 == filters.len() => {}
            Some(TypedConfig::Router(_)) => {
                return Err(fat.err("the router must be the last HTTP filter"))
            }
            Some(TypedConfig::Fault(fault)) => http_fault(&fat.key("typed_config"), fault)?,
            Some(TypedConfig::LocalRateLimit(l)) => {
                local_rate_limit(&fat.key("typed_config"), l, false)?
            }
            Some(TypedConfig::Cors) => {}
            Some(TypedConfig::Rbac(r)) => super::rbac::http_rbac(&fat.key("typed_config"), r)?,
            Some(TypedConfig::JwtAuthn(j)) => {
                super::jwt::jwt_authentication(&fat.key("typed_config"), j)?
            }
            Some(TypedConfig::ExtAuthz(e)) => {
                super::ext_authz::ext_authz(&fat.key("typed_config"), e)?
            }
            Some(TypedConfig::IstioStats(s)) => super::istio::stats(&fat.key("typed_config"), s)?,
            Some(TypedConfig::PeerMetadata(p)) => {
                super::istio::peer_metadata(&fat.key("typed_config"), p)?
            }
            _ => {
                return Err(fat.err(format!(
                    "HTTP filter {:?} is not implemented by weft yet",
                    f.name
                )))
            }
        }
    }
    Ok(())
}

/// Filter settings by route: only filters weft implements, each checked
/// as the filter's own configuration.
pub(super) fn per_filter_config(
    at: &At,
    c: &crate::route::PerFilterConfig,
) -> Result<(), FieldError> {
    for (name, config) in c {
        let cat = at.key("typed_per_filter_config").key(name);
        match config {
            TypedConfig::Fault(f) => http_fault(&cat, f)?,
            TypedConfig::LocalRateLimit(l) => local_rate_limit(&cat, l, true)?,
            TypedConfig::CorsPolicy(c) => cors_policy(&cat, c)?,
            TypedConfig::RbacPerRoute(r) => {
                if let Some(rbac) = &r.rbac {
                    super::rbac::http_rbac(&cat.key("rbac"), rbac)?
                }
            }
            TypedConfig::JwtAuthnPerRoute(p) => super::jwt::per_route(&cat, p)?,
            TypedConfig::ExtAuthzPerRoute(p) => super::ext_authz::per_route(&cat, p)?,
            _ => {
                return Err(cat.err(
                    "not a per-route filter configuration weft implements (the fault, local rate limit, CORS, RBAC, JWT and ext_authz filters' are)",
                ))
            }
        }
    }
    Ok(())
}

fn cors_policy(at: &At, c: &crate::filters::CorsPolicy) -> Result<(), FieldError> {
    for (i, m) in c.allow_origin_string_match.iter().enumerate() {
        let mat = at.key("allow_origin_string_match").idx(i);
        string_matcher(&mat, m)?;
    }
    for (field, p) in [
        ("filter_enabled", &c.filter_enabled),
        ("shadow_enabled", &c.shadow_enabled),
    ] {
        fraction(&at.key(field), p)?;
    }
    Ok(())
}

fn fraction(
    at: &At,
    p: &Option<crate::filters::RuntimeFractionalPercent>,
) -> Result<(), FieldError> {
    match p {
        Some(p) if p.default_value.numerator > p.default_value.denominator.value() => Err(at
            .key("default_value")
            .key("numerator")
            .err("larger than the denominator")),
        _ => Ok(()),
    }
}

/// The local rate limit filter's settings, by Envoy's rules: a bucket
/// with a fill interval of at least 50 ms; per route one is required.
pub(super) fn local_rate_limit(
    at: &At,
    l: &crate::filters::LocalRateLimit,
    per_route: bool,
) -> Result<(), FieldError> {
    if l.stat_prefix.is_empty() {
        return Err(at.key("stat_prefix").err("required"));
    }
    let refuse = [
        ("descriptors", !l.descriptors.is_empty()),
        ("stage", l.stage != 0),
        (
            "local_rate_limit_per_downstream_connection",
            l.local_rate_limit_per_downstream_connection,
        ),
        (
            "enable_x_ratelimit_headers",
            l.enable_x_ratelimit_headers
                .as_deref()
                .is_some_and(|v| v != "OFF"),
        ),
        (
            "rate_limited_as_resource_exhausted",
            l.rate_limited_as_resource_exhausted,
        ),
        ("enable_retry_after_header", l.enable_retry_after_header),
    ];
    for (field, set) in refuse {
        if set {
            return Err(at.key(field).err("not implemented by weft yet"));
        }
    }
    if let Some(s) = &l.status {
        match s.number() {
            Some(c) if c >= 400 => {}
            _ => {
                return Err(at.key("status").key("code").err(format!(
                    "{}: expected an HTTP status of 400 or more",
                    s.code
                )))
            }
        }
    }
    match &l.token_bucket {
        Some(b) => {
            let bat = at.key("token_bucket");
            if b.max_tokens == 0 {
                return Err(bat.key("max_tokens").err("must be greater than 0"));
            }
            if b.tokens_per_fill == Some(0) {
                return Err(bat.key("tokens_per_fill").err("must be greater than 0"));
            }
            match b.fill_interval {
                Some(d) if d.0 >= std::time::Duration::from_millis(50) => {}
                _ => return Err(bat.key("fill_interval").err("required, and at least 50ms")),
            }
        }
        None if per_route => return Err(at.key("token_bucket").err("required per route")),
        None => {}
    }
    for (field, p) in [
        ("filter_enabled", &l.filter_enabled),
        ("filter_enforced", &l.filter_enforced),
    ] {
        fraction(&at.key(field), p)?;
    }
    Ok(())
}

/// The fault filter's settings, by Envoy's rules.
pub(super) fn http_fault(at: &At, f: &crate::filters::HttpFault) -> Result<(), FieldError> {
    if !f.downstream_nodes.is_empty() {
        return Err(at
            .key("downstream_nodes")
            .err("not implemented by weft yet"));
    }
    if f.response_rate_limit.is_some() {
        return Err(at
            .key("response_rate_limit")
            .err("not implemented by weft yet"));
    }
    let percent = |pat: At, p: &Option<crate::FractionalPercent>| match p {
        Some(p) if p.numerator > p.denominator.value() => {
            Err(pat.key("numerator").err("larger than the denominator"))
        }
        _ => Ok(()),
    };
    if let Some(d) = &f.delay {
        let dat = at.key("delay");
        exactly_one(
            &dat,
            "a fault delay",
            &[
                ("fixed_delay", d.fixed_delay.is_some()),
                ("header_delay", d.header_delay.is_some()),
            ],
        )?;
        percent(dat.key("percentage"), &d.percentage)?;
    }
    if let Some(a) = &f.abort {
        let aat = at.key("abort");
        exactly_one(
            &aat,
            "a fault abort",
            &[
                ("http_status", a.http_status.is_some()),
                ("grpc_status", a.grpc_status.is_some()),
                ("header_abort", a.header_abort.is_some()),
            ],
        )?;
        if let Some(code) = a.http_status {
            if !(200..600).contains(&code) {
                return Err(aat
                    .key("http_status")
                    .err(format!("{code} is out of range: expected 200–599")));
            }
        }
        percent(aat.key("percentage"), &a.percentage)?;
    }
    for (i, h) in f.headers.iter().enumerate() {
        header_matcher(&at.key("headers").idx(i), h)?;
    }
    Ok(())
}
