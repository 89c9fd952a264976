//! What a route does besides choosing where a request goes, as Istio
//! maps a VirtualService rule and a DestinationRule onto Envoy: retries,
//! hashing for consistent-hash load balancing, fault injection and CORS
//! (as the HTTP filters' per-route configuration), and header operations.

use weft_api::common::{HeaderOperations, Headers, Percent};
use weft_api::virtual_service::HttpRetry;

use super::cluster::Policy;
use super::pb::{self, common_fault, core, cors as cors_pb, fault as fault_pb, route as rt, types};
use super::route::string_match;
use super::Proxy;
use crate::context::Context;
use crate::model::Service;

const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Istio's retry policy: its default when the rule sets none, none when
/// `attempts` is 0.
pub(crate) fn retry(r: Option<&HttpRetry>) -> Option<rt::RetryPolicy> {
    let mut p = rt::RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.into(),
        num_retries: pb::u32_value(2),
        retry_host_predicate: vec![rt::retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(
                rt::retry_policy::retry_host_predicate::ConfigType::TypedConfig(pb::any(
                    &pb::previous_hosts::PreviousHostsPredicate {},
                )),
            ),
        }],
        host_selection_retry_max_attempts: 5,
        retriable_status_codes: vec![503],
        ..Default::default()
    };
    let Some(r) = r else { return Some(p) };
    let attempts = r.attempts.unwrap_or(0);
    if attempts <= 0 {
        return None;
    }
    p.num_retries = pb::u32_value(pb::count(attempts));
    if let Some(on) = &r.retry_on {
        let mut conditions = Vec::new();
        let mut codes = Vec::new();
        for c in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match c.parse::<u32>() {
                Ok(code) => codes.push(code),
                Err(_) => conditions.push(c.to_string()),
            }
        }
        if !codes.is_empty() && !conditions.iter().any(|c| c == "retriable-status-codes") {
            conditions.push("retriable-status-codes".into());
        }
        p.retry_on = conditions.join(",");
        p.retriable_status_codes = codes;
    }
    if let Some(t) = &r.per_try_timeout {
        p.per_try_timeout = pb::duration(t);
    }
    if let Some(b) = &r.backoff {
        p.retry_back_off = Some(rt::retry_policy::RetryBackOff {
            base_interval: pb::duration(b),
            ..Default::default()
        });
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        p.retry_host_predicate.clear();
        p.host_selection_retry_max_attempts = 0;
    }
    Some(p)
}

/// The route's hash policy from the destination's DestinationRule
/// `consistentHash` (empty when it hashes on nothing).
pub(crate) fn hash(
    ctx: &Context,
    proxy: &Proxy,
    s: &Service,
    port: u32,
) -> Vec<rt::route_action::HashPolicy> {
    use rt::route_action::hash_policy::{
        ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter,
    };
    let policy = Policy::of(ctx, s, port, None, &proxy.namespace);
    let Some(ch) = policy.load_balancer.and_then(|lb| lb.consistent_hash) else {
        return Vec::new();
    };
    let specifier = if let Some(name) = &ch.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &ch.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: c.name.clone(),
            path: c.path.clone().unwrap_or_default(),
            ttl: c.ttl.as_ref().and_then(pb::duration),
            ..Default::default()
        })
    } else if ch.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else if let Some(q) = &ch.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: q.clone() })
    } else {
        return Vec::new();
    };
    vec![rt::route_action::HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}

/// A percentage as Envoy's FractionalPercent per million, as Istio
/// writes it.
pub(crate) fn million(pct: f64) -> types::FractionalPercent {
    types::FractionalPercent {
        // Within 0..=1,000,000 once clamped.
        numerator: (pct.clamp(0.0, 100.0) * 10_000.0).round() as u32,
        denominator: types::fractional_percent::DenominatorType::Million as i32,
    }
}

fn percentage(p: Option<&Percent>, legacy: Option<i32>) -> Option<types::FractionalPercent> {
    Some(match (p, legacy) {
        (Some(p), _) => million(p.value),
        (None, Some(v)) => types::FractionalPercent {
            numerator: pb::count(v.min(100)),
            denominator: types::fractional_percent::DenominatorType::Hundred as i32,
        },
        (None, None) => million(100.0),
    })
}

/// `fault` as the fault filter's per-route configuration.
pub(crate) fn fault(f: &weft_api::virtual_service::HttpFaultInjection) -> pb::Any {
    let mut o = fault_pb::HttpFault::default();
    if let Some(d) = &f.delay {
        if let Some(fixed) = &d.fixed_delay {
            o.delay = Some(common_fault::FaultDelay {
                fault_delay_secifier: Some(
                    common_fault::fault_delay::FaultDelaySecifier::FixedDelay(pb::duration_of(
                        fixed,
                    )),
                ),
                percentage: percentage(d.percentage.as_ref(), d.percent),
            });
        }
    }
    if let Some(a) = &f.abort {
        use fault_pb::fault_abort::ErrorType;
        let error_type = if let Some(s) = a.http_status {
            Some(ErrorType::HttpStatus(pb::count(s)))
        } else {
            a.grpc_status
                .as_deref()
                .map(|g| ErrorType::GrpcStatus(grpc_code(g)))
        };
        o.abort = Some(fault_pb::FaultAbort {
            percentage: percentage(a.percentage.as_ref(), None),
            error_type,
            ..Default::default()
        });
    }
    pb::any(&o)
}

/// `corsPolicy` as the CORS filter's per-route policy.
pub(crate) fn cors(c: &weft_api::virtual_service::CorsPolicy) -> pb::Any {
    use weft_api::virtual_service::UnmatchedPreflights;
    let mut origins: Vec<_> = c.allow_origins.iter().filter_map(string_match).collect();
    origins.extend(c.allow_origin.iter().map(|o| pb::matcher::StringMatcher {
        match_pattern: Some(pb::matcher::string_matcher::MatchPattern::Exact(o.clone())),
        ..Default::default()
    }));
    let p = cors_pb::CorsPolicy {
        allow_origin_string_match: origins,
        forward_not_matching_preflights: pb::bool_value(
            c.unmatched_preflights != Some(UnmatchedPreflights::IGNORE),
        ),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_ref()
            .map(|age| age.as_std().as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.and_then(pb::bool_value),
        ..Default::default()
    };
    pb::any(&p)
}

/// A `grpcStatus` name (or number) as its code.
fn grpc_code(name: &str) -> u32 {
    weft_api::virtual_service::GRPC_CODES
        .iter()
        .position(|n| *n == name)
        .map_or_else(|| name.parse().unwrap_or(2), |i| i as u32)
}

/// Header operations, gathered from Istio's `headers` blocks (a rule's,
/// a destination's) for a route or a weighted cluster.
#[derive(Default)]
pub(crate) struct HeaderOps {
    pub request_add: Vec<core::HeaderValueOption>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<core::HeaderValueOption>,
    pub response_remove: Vec<String>,
}

impl HeaderOps {
    pub fn add(&mut self, h: &Headers) {
        if let Some(req) = &h.request {
            side(req, &mut self.request_add, &mut self.request_remove);
        }
        if let Some(resp) = &h.response {
            side(resp, &mut self.response_add, &mut self.response_remove);
        }
    }
}

/// `set` overwrites, `add` appends, `remove` removes.
fn side(ops: &HeaderOperations, add: &mut Vec<core::HeaderValueOption>, remove: &mut Vec<String>) {
    use core::header_value_option::HeaderAppendAction;
    let option = |k: &String, v: &String, action: HeaderAppendAction| core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    for (k, v) in &ops.set {
        add.push(option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    }
    for (k, v) in &ops.add {
        add.push(option(k, v, HeaderAppendAction::AppendIfExistsOrAdd));
    }
    remove.extend(ops.remove.iter().cloned());
}
