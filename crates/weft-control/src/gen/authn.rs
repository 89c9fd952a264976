//! RequestAuthentication → Envoy's JWT filter (`envoy.filters.http.jwt_authn`)
//! on a workload's inbound HTTP ports and a gateway's HTTP servers, as
//! istiod generates it; and where a verified token's payload is for
//! AuthorizationPolicy to match (request principals, audiences,
//! presenter, claims), so both halves agree on one place.
//!
//! Istio's semantics, which the filter's requirement encodes:
//! - every rule of every RequestAuthentication that selects the workload
//!   is a provider (`origins-N`, in order);
//! - a request without a token passes (AuthorizationPolicy decides what
//!   an unauthenticated request may do), unless a rule says
//!   `presence: REQUIRED`;
//! - a request with a token passes only if some provider verifies it;
//!   an invalid, expired or unknown-issuer token is refused with 401;
//! - the verified payload goes to dynamic metadata under `payload`, with
//!   `scope`, `permission` and the rule's `spaceDelimitedClaims` split
//!   into lists.

use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use weft_api::security::{JwtPresence, JwtRule, RequestAuthentication};

use super::pb::{self, hcm, matcher, route as rt};
use crate::context::{Context, Named};
use crate::jwks::{self, FAIL_CLOSED_JWKS};

/// The filter, and the metadata namespace it writes the payload to.
pub(crate) const FILTER: &str = "envoy.filters.http.jwt_authn";
/// The key of the payload in the filter's metadata.
pub(crate) const PAYLOAD: &str = "payload";
/// Claims Istio always reads as space-delimited lists.
const SPACE_DELIMITED: [&str; 2] = ["scope", "permission"];

/// The RequestAuthentications that apply to a workload, in age order.
pub(crate) fn applied<'a>(
    ctx: &'a Context,
    namespace: &str,
    labels: &weft_api::Map<String, String>,
) -> Vec<&'a Named<RequestAuthentication>> {
    ctx.request_authentications
        .iter()
        .filter(|p| {
            super::authz::selects(
                ctx,
                &p.namespace,
                p.spec.selector.as_ref(),
                p.spec.target_ref.is_some() || !p.spec.target_refs.is_empty(),
                namespace,
                labels,
            )
        })
        .collect()
}

/// The JWT filter for a workload, `None` when no rule applies.
pub(crate) fn jwt_filter(
    ctx: &Context,
    namespace: &str,
    labels: &weft_api::Map<String, String>,
) -> Option<hcm::HttpFilter> {
    let rules: Vec<(&Named<RequestAuthentication>, &JwtRule)> = applied(ctx, namespace, labels)
        .into_iter()
        .flat_map(|p| p.spec.jwt_rules.iter().map(move |r| (p, r)))
        .collect();
    if rules.is_empty() {
        return None;
    }
    let mut providers = Vec::new();
    for (i, (policy, rule)) in rules.iter().enumerate() {
        providers.push((format!("origins-{i}"), provider(ctx, policy, rule)));
    }
    let required = rules
        .iter()
        .any(|(_, r)| r.presence == Some(JwtPresence::REQUIRED));
    let config = jwt::JwtAuthentication {
        rules: vec![jwt::RequirementRule {
            r#match: Some(rt::RouteMatch {
                path_specifier: Some(rt::route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(jwt::requirement_rule::RequirementType::Requires(
                requirement(
                    &providers
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>(),
                    required,
                ),
            )),
        }],
        providers: pb::map(providers),
        bypass_cors_preflight: true,
        ..Default::default()
    };
    Some(hcm::HttpFilter {
        name: FILTER.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(pb::any(&config))),
        ..Default::default()
    })
}

/// Istio's requirement over `names`: one of them verifies the token, or
/// (unless `required`) there is no token for any of them. Two or more
/// providers: any one of them, or all of them "verified or missing" —
/// so a token no provider verifies is refused, and none at all passes.
fn requirement(names: &[&str], required: bool) -> jwt::JwtRequirement {
    use jwt::jwt_requirement::RequiresType as R;
    let provider = |n: &str| jwt::JwtRequirement {
        requires_type: Some(R::ProviderName(n.to_string())),
    };
    let missing = jwt::JwtRequirement {
        requires_type: Some(R::AllowMissing(Default::default())),
    };
    let any = |requirements| jwt::JwtRequirement {
        requires_type: Some(R::RequiresAny(jwt::JwtRequirementOrList { requirements })),
    };
    if required {
        return match names {
            [one] => provider(one),
            _ => any(names.iter().map(|n| provider(n)).collect()),
        };
    }
    let mut or: Vec<jwt::JwtRequirement> = names.iter().map(|n| provider(n)).collect();
    if names.len() == 1 {
        or.push(missing);
    } else {
        or.push(jwt::JwtRequirement {
            requires_type: Some(R::RequiresAll(jwt::JwtRequirementAndList {
                requirements: names
                    .iter()
                    .map(|n| any(vec![provider(n), missing.clone()]))
                    .collect(),
            })),
        });
    }
    any(or)
}

/// One rule as a provider. Keys by URL come from the context's fetched
/// key sets; what could not be fetched fails closed.
fn provider(
    ctx: &Context,
    policy: &Named<RequestAuthentication>,
    rule: &JwtRule,
) -> jwt::JwtProvider {
    let jwks_text = match jwks::source_of(rule) {
        None => rule.jwks.clone().unwrap_or_default(),
        Some(source) => match ctx.jwks.get(&source) {
            Ok(text) => text.to_string(),
            Err(e) => {
                tracing::error!(
                    "RequestAuthentication {}/{}: issuer {}: {e}; its tokens are refused",
                    policy.namespace,
                    policy.name,
                    rule.issuer
                );
                FAIL_CLOSED_JWKS.to_string()
            }
        },
    };
    let mut space_delimited: Vec<String> = SPACE_DELIMITED.iter().map(|c| c.to_string()).collect();
    for c in &rule.space_delimited_claims {
        if !space_delimited.contains(c) {
            space_delimited.push(c.clone());
        }
    }
    jwt::JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        jwks_source_specifier: Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(
            pb::core::DataSource {
                specifier: Some(pb::core::data_source::Specifier::InlineString(jwks_text)),
                ..Default::default()
            },
        )),
        forward: rule.forward_original_token.unwrap_or(false),
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| jwt::JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| jwt::JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..Default::default()
            })
            .collect(),
        payload_in_metadata: PAYLOAD.into(),
        normalize_payload_in_metadata: Some(jwt::jwt_provider::NormalizePayload {
            space_delimited_claims: space_delimited,
        }),
        ..Default::default()
    }
}

// ---- what AuthorizationPolicy matches in the payload ----

/// `[payload, keys...]` in the JWT filter's metadata, matched by `value`.
fn payload_matcher(keys: &[&str], value: matcher::ValueMatcher) -> matcher::MetadataMatcher {
    use matcher::metadata_matcher::{path_segment::Segment, PathSegment};
    matcher::MetadataMatcher {
        filter: FILTER.into(),
        path: std::iter::once(PAYLOAD)
            .chain(keys.iter().copied())
            .map(|k| PathSegment {
                segment: Some(Segment::Key(k.to_string())),
            })
            .collect(),
        value: Some(value),
        ..Default::default()
    }
}

fn string_value(m: matcher::StringMatcher) -> matcher::ValueMatcher {
    matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// A claim (`keys` a nested path) matched by `m` whether the claim is a
/// string or a list with such a string in it: Istio's reading of
/// `request.auth.claims[...]`, `request.auth.audiences` (`aud`) and
/// `request.auth.presenter` (`azp`).
pub(crate) fn claim(keys: &[&str], m: matcher::StringMatcher) -> matcher::MetadataMatcher {
    use matcher::value_matcher::MatchPattern as P;
    let one = string_value(m);
    payload_matcher(
        keys,
        matcher::ValueMatcher {
            match_pattern: Some(P::OrMatch(matcher::OrMatcher {
                value_matchers: vec![
                    matcher::ValueMatcher {
                        match_pattern: Some(P::ListMatch(Box::new(matcher::ListMatcher {
                            match_pattern: Some(matcher::list_matcher::MatchPattern::OneOf(
                                Box::new(one.clone()),
                            )),
                        }))),
                    },
                    one,
                ],
            })),
        },
    )
}

/// A request principal (`iss/sub`, with Istio's `*` prefix and suffix
/// forms) as matchers of the payload's `iss` and `sub`, both of which
/// must match. The issuer is what comes before the last `/` (issuers are
/// often URLs).
pub(crate) fn request_principal(v: &str) -> [matcher::MetadataMatcher; 2] {
    use matcher::string_matcher::MatchPattern as M;
    let any = || {
        M::SafeRegex(matcher::RegexMatcher {
            regex: ".+".into(),
            ..Default::default()
        })
    };
    let (iss, sub) = match v.rsplit_once('/') {
        Some((i, s)) => (i, Some(s)),
        None => (v, None),
    };
    let (iss_m, sub_m) = if v == "*" {
        (any(), any())
    } else if let Some(rest) = v.strip_prefix('*') {
        match sub {
            Some(sub) => (
                match iss {
                    "*" => any(),
                    i => M::Suffix(i.trim_start_matches('*').into()),
                },
                M::Exact(sub.into()),
            ),
            None => (any(), M::Suffix(rest.into())),
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        match sub {
            Some(sub) => (
                M::Exact(iss.into()),
                match sub {
                    "*" => any(),
                    s => M::Prefix(s.trim_end_matches('*').into()),
                },
            ),
            None => (M::Prefix(rest.into()), any()),
        }
    } else {
        (
            M::Exact(iss.into()),
            M::Exact(sub.unwrap_or_default().into()),
        )
    };
    let m = |p| matcher::StringMatcher {
        match_pattern: Some(p),
        ..Default::default()
    };
    [
        payload_matcher(&["iss"], string_value(m(iss_m))),
        payload_matcher(&["sub"], string_value(m(sub_m))),
    ]
}

/// The HTTP filters that guard a workload's inbound HTTP (or a gateway's
/// server), in Istio's order: the JWT filter first, so that the filters
/// after it see the verified payload; CUSTOM's external authorizer; then
/// DENY, ALLOW and AUDIT.
pub(crate) fn http_filters(
    ctx: &Context,
    namespace: &str,
    labels: &weft_api::Map<String, String>,
    applied: &[super::authz::Applied],
) -> Vec<hcm::HttpFilter> {
    let mut out: Vec<hcm::HttpFilter> = jwt_filter(ctx, namespace, labels).into_iter().collect();
    out.extend(super::custom::http_filters(ctx, applied));
    out.extend(super::authz::http_filters(applied));
    out
}

#[cfg(test)]
#[path = "authn_tests.rs"]
mod tests;
