//! The CORS filter (`envoy.filters.http.cors`). The filter has no
//! settings of its own: policies come from `typed_per_filter_config` of
//! the route, virtual host and route table, most specific first, and each
//! setting is taken from the first policy that sets it. A request whose
//! `Origin` a policy allows is a CORS request: a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here with 200 and the
//! allowed methods, headers and max age; any other gets
//! `Access-Control-Allow-Origin` (and credentials / exposed headers) on
//! whatever response it ends with.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use weft_envoy::filters::RuntimeFractionalPercent;

use crate::matchers::StringMatcher;
use crate::stats::{Counter, Store};

/// One compiled `CorsPolicy`.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<StringMatcher>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    allow_credentials: Option<bool>,
    /// None: enabled for every request.
    enabled: Option<(u32, u32)>,
    shadow: Option<(u32, u32)>,
    private_network: Option<bool>,
    forward_not_matching_preflights: Option<bool>,
}

fn value(field: &str, v: &str) -> Result<Option<HeaderValue>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(v)
        .map(Some)
        .map_err(|_| format!("{field}: {v:?} is not a valid header value"))
}

fn share(p: &Option<RuntimeFractionalPercent>) -> Option<(u32, u32)> {
    p.as_ref().map(|p| {
        (
            p.default_value.numerator,
            p.default_value.denominator.value(),
        )
    })
}

fn roll((n, d): (u32, u32)) -> bool {
    n > 0 && fastrand::u32(0..d.max(1)) < n
}

impl CorsPolicy {
    pub fn compile(c: &weft_envoy::filters::CorsPolicy) -> Result<Self, String> {
        let origins = c
            .allow_origin_string_match
            .iter()
            .enumerate()
            .map(|(i, m)| {
                StringMatcher::compile(m)
                    .map_err(|e| format!("allow_origin_string_match[{i}]: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(CorsPolicy {
            origins,
            allow_methods: value("allow_methods", &c.allow_methods)?,
            allow_headers: value("allow_headers", &c.allow_headers)?,
            expose_headers: value("expose_headers", &c.expose_headers)?,
            max_age: value("max_age", &c.max_age)?,
            allow_credentials: c.allow_credentials,
            enabled: share(&c.filter_enabled),
            shadow: share(&c.shadow_enabled),
            private_network: c.allow_private_network_access,
            forward_not_matching_preflights: c.forward_not_matching_preflights,
        })
    }

    fn enabled(&self) -> bool {
        self.enabled.is_none_or(roll)
    }

    fn shadow_enabled(&self) -> bool {
        self.shadow.is_some_and(roll)
    }
}

/// The filter: its counters (`http.<prefix>.cors.*`).
#[derive(Debug)]
pub struct CorsFilter {
    origin_valid: Counter,
    origin_invalid: Counter,
}

impl CorsFilter {
    pub fn new(store: &Store, hcm_prefix: &str) -> Self {
        let scope = store.scope(
            &format!("http.{hcm_prefix}.cors."),
            "envoy_http_cors_",
            vec![("envoy_http_conn_manager_prefix", hcm_prefix.to_string())],
        );
        CorsFilter {
            origin_valid: scope.counter("origin_valid"),
            origin_invalid: scope.counter("origin_invalid"),
        }
    }

    /// Looks at the request's origin. `levels` are the route's, virtual
    /// host's and table's CORS policies under this filter's name.
    /// Only routes that forward have CORS (as in Envoy, direct responses
    /// and redirects do not).
    pub fn decide(
        &self,
        levels: [Option<&CorsPolicy>; 3],
        req: &HeaderMap,
        method: &Method,
    ) -> Cors {
        let policies: Vec<&CorsPolicy> = levels.into_iter().flatten().collect();
        // The most specific policy decides whether the filter is on.
        let Some(first) = policies.first() else {
            return Cors::Pass;
        };
        let (enabled, shadow) = (first.enabled(), first.shadow_enabled());
        if !enabled && !shadow {
            return Cors::Pass;
        }
        let Some(origin) = req.get(http::header::ORIGIN).filter(|o| !o.is_empty()) else {
            return Cors::Pass;
        };
        let pick = |f: fn(&CorsPolicy) -> Option<&HeaderValue>| {
            policies.iter().find_map(|p| f(p)).cloned()
        };
        let flag = |f: fn(&CorsPolicy) -> Option<bool>| policies.iter().find_map(|p| f(p));
        let preflight = method == Method::OPTIONS
            && req
                .get("access-control-request-method")
                .is_some_and(|m| !m.is_empty());
        let allowed = origin_allowed(&policies, origin);
        if allowed {
            self.origin_valid.inc();
        } else {
            self.origin_invalid.inc();
        }
        if !enabled {
            return Cors::Pass;
        }
        let credentials = flag(|p| p.allow_credentials) == Some(true);
        // What a CORS answer carries, preflight or not.
        let mut h = HeaderMap::new();
        // Credentials go on a preflight answer even to an origin not
        // allowed (Envoy does so).
        if credentials {
            h.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
        if allowed {
            h.insert("access-control-allow-origin", origin.clone());
            if let Some(v) = pick(|p| p.expose_headers.as_ref()) {
                h.insert("access-control-expose-headers", v);
            }
        }
        if !preflight {
            return match allowed {
                true => Cors::Response(Box::new(h)),
                false => Cors::Pass,
            };
        }
        // A preflight from an origin not allowed goes on to the upstream
        // unless told otherwise; then it is answered, without the origin.
        if !allowed && flag(|p| p.forward_not_matching_preflights) != Some(false) {
            return Cors::Pass;
        }
        for (name, v) in [
            (
                "access-control-allow-methods",
                pick(|p| p.allow_methods.as_ref()),
            ),
            (
                "access-control-allow-headers",
                pick(|p| p.allow_headers.as_ref()),
            ),
            ("access-control-max-age", pick(|p| p.max_age.as_ref())),
        ] {
            if let Some(v) = v {
                h.insert(HeaderName::from_static(name), v);
            }
        }
        let asks_private = req
            .get("access-control-request-private-network")
            .is_some_and(|v| v == "true");
        if asks_private && flag(|p| p.private_network) == Some(true) {
            h.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        Cors::Reply(Box::new(h))
    }
}

/// An origin is allowed by the first policy that lists origins, when one
/// of its matchers takes the origin or a literal `*`.
fn origin_allowed(policies: &[&CorsPolicy], origin: &HeaderValue) -> bool {
    let Some(p) = policies.iter().find(|p| !p.origins.is_empty()) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("");
    p.origins
        .iter()
        .any(|m| m.matches("*") || m.matches(origin))
}

/// What the filter decided.
pub enum Cors {
    Pass,
    /// Answer now: 200 with these headers (a preflight).
    Reply(Box<HeaderMap>),
    /// Go on, and set these on the response, whatever it is.
    Response(Box<HeaderMap>),
}
