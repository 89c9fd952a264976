//! The JWT filter against the shapes istiod generates for
//! RequestAuthentication (providers `origins-N`, the requirement that
//! lets requests without a token through, the payload in metadata), and
//! request principals as istiod's generator splits them.

use serde_json::{json, Value};

use super::*;
use crate::context::Mesh;

const JWKS: &str = r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"x","kid":"k"}]}"#;

fn ctx(yaml: &str, keys: crate::jwks::Keys) -> Context {
    let loaded = weft_config::load_str("ra.yaml", yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let mut ctx = Context::build(&loaded.resources, Mesh::default());
    ctx.jwks = std::sync::Arc::new(keys);
    ctx
}

fn labels(pairs: &[(&str, &str)]) -> weft_api::Map<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn filter(ctx: &Context, ns: &str, l: &[(&str, &str)]) -> Option<Value> {
    let f = jwt_filter(ctx, ns, &labels(l))?;
    assert_eq!(f.name, FILTER);
    let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("typed config")
    };
    use prost::Message;
    let config = jwt::JwtAuthentication::decode(any.value.as_slice()).expect("a JWT filter");
    Some(weft_xds::message::to_json(&config).expect("in the descriptor set"))
}

fn ra(ns: &str, name: &str, body: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}\n---\n"
    )
}

#[test]
fn one_rule_is_one_provider_and_a_missing_token_passes() {
    let yaml = ra(
        "foo",
        "jwt",
        &format!(
            "  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: https://secret.foo.com
    jwks: '{JWKS}'
    audiences: [api]
    fromHeaders: [{{name: x-jwt, prefix: 'Bearer '}}]
    fromParams: [token]
    forwardOriginalToken: true
    outputPayloadToHeader: x-payload
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
    spaceDelimitedClaims: [roles, scope]"
        ),
    );
    let ctx = ctx(&yaml, Default::default());
    assert_eq!(filter(&ctx, "foo", &[("app", "other")]), None);
    assert_eq!(filter(&ctx, "bar", &[("app", "httpbin")]), None);
    let got = filter(&ctx, "foo", &[("app", "httpbin")]).unwrap();
    assert_eq!(
        got,
        json!({
            "providers": {"origins-0": {
                "issuer": "https://secret.foo.com",
                "audiences": ["api"],
                "local_jwks": {"inline_string": JWKS},
                "forward": true,
                "from_headers": [{"name": "x-jwt", "value_prefix": "Bearer "}],
                "from_params": ["token"],
                "forward_payload_header": "x-payload",
                "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}],
                "payload_in_metadata": "payload",
                "normalize_payload_in_metadata": {
                    "space_delimited_claims": ["scope", "permission", "roles"]}
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "origins-0"}, {"allow_missing": {}}]}}}],
            "bypass_cors_preflight": true
        })
    );
}

#[test]
fn rules_from_the_root_and_the_namespace_all_apply() {
    let yaml = ra(
        "istio-system",
        "mesh",
        &format!("  jwtRules:\n  - issuer: a\n    jwks: '{JWKS}'"),
    ) + &ra(
        "foo",
        "ns",
        &format!("  jwtRules:\n  - issuer: b\n    jwks: '{JWKS}'"),
    ) + &ra(
        "istio-system",
        "root-selector",
        &format!("  selector: {{matchLabels: {{app: httpbin}}}}\n  jwtRules:\n  - issuer: c\n    jwks: '{JWKS}'"),
    );
    let ctx = ctx(&yaml, Default::default());
    let got = filter(&ctx, "foo", &[("app", "httpbin")]).unwrap();
    let issuers: Vec<&str> = (0..3)
        .map(|i| {
            got["providers"][format!("origins-{i}")]["issuer"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(issuers, ["a", "b", "c"]);
    let any_missing = |n: &str| {
        json!({"requires_any": {"requirements": [
        {"provider_name": n}, {"allow_missing": {}}]}})
    };
    assert_eq!(
        got["rules"][0]["requires"],
        json!({"requires_any": {"requirements": [
            {"provider_name": "origins-0"},
            {"provider_name": "origins-1"},
            {"provider_name": "origins-2"},
            {"requires_all": {"requirements": [
                any_missing("origins-0"), any_missing("origins-1"), any_missing("origins-2")]}}
        ]}})
    );
    // Another namespace sees the mesh-wide rule and the root namespace's
    // selector (which selects across namespaces, as istiod's does).
    let other = filter(&ctx, "bar", &[("app", "httpbin")]).unwrap();
    assert_eq!(other["providers"].as_object().unwrap().len(), 2);
}

#[test]
fn presence_required_drops_allow_missing() {
    let yaml = ra(
        "foo",
        "jwt",
        &format!("  jwtRules:\n  - issuer: a\n    jwks: '{JWKS}'\n    presence: REQUIRED"),
    );
    let got = filter(&ctx(&yaml, Default::default()), "foo", &[]).unwrap();
    assert_eq!(
        got["rules"][0]["requires"],
        json!({"provider_name": "origins-0"})
    );
}

#[test]
fn keys_by_url_come_fetched_and_fail_closed_without() {
    let yaml = ra(
        "foo",
        "jwt",
        "  jwtRules:\n  - issuer: a\n    jwksUri: https://a.test/jwks\n  - issuer: https://b.test",
    );
    let jwks_of = |got: &Value, i: usize| {
        got["providers"][format!("origins-{i}")]["local_jwks"]["inline_string"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let none = filter(&ctx(&yaml, Default::default()), "foo", &[]).unwrap();
    assert_eq!(jwks_of(&none, 0), crate::jwks::FAIL_CLOSED_JWKS);
    assert_eq!(jwks_of(&none, 1), crate::jwks::FAIL_CLOSED_JWKS);
    let mut keys = crate::jwks::Keys::default();
    keys.insert(
        crate::jwks::Source::Uri("https://a.test/jwks".into()),
        Ok(JWKS.into()),
    );
    keys.insert(
        crate::jwks::Source::Discovery("https://b.test".into()),
        Ok(JWKS.into()),
    );
    let c = ctx(&yaml, keys);
    assert_eq!(
        c.jwks_sources()
            .into_iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>(),
        [
            "jwksUri https://a.test/jwks",
            "the OpenID discovery of issuer https://b.test"
        ]
    );
    let fetched = filter(&c, "foo", &[]).unwrap();
    assert_eq!(jwks_of(&fetched, 0), JWKS);
    assert_eq!(jwks_of(&fetched, 1), JWKS);
}

/// istiod's table for request principals (pilot's authz model tests).
#[test]
fn request_principals_split_at_the_last_slash() {
    let m = |v: &str| -> Vec<Value> {
        request_principal(v)
            .iter()
            .map(|m| {
                let j = weft_xds::message::to_json(m).unwrap();
                assert_eq!(j["filter"], FILTER);
                j["value"]["string_match"].clone()
            })
            .collect()
    };
    let any = json!({"safe_regex": {"regex": ".+"}});
    let cases = [
        ("*", [any.clone(), any.clone()]),
        ("foo*", [json!({"prefix": "foo"}), any.clone()]),
        ("foo/*", [json!({"exact": "foo"}), any.clone()]),
        (
            "foo/bar*",
            [json!({"exact": "foo"}), json!({"prefix": "bar"})],
        ),
        ("*foo", [any.clone(), json!({"suffix": "foo"})]),
        ("*/foo", [any.clone(), json!({"exact": "foo"})]),
        (
            "*bar/foo",
            [json!({"suffix": "bar"}), json!({"exact": "foo"})],
        ),
        (
            "foo/bar",
            [json!({"exact": "foo"}), json!({"exact": "bar"})],
        ),
        (
            "https://accounts.example.com/1234",
            [
                json!({"exact": "https://accounts.example.com"}),
                json!({"exact": "1234"}),
            ],
        ),
    ];
    for (v, want) in cases {
        assert_eq!(m(v), want, "{v}");
    }
}

#[test]
fn a_claim_matches_a_string_or_a_list_member() {
    let got = weft_xds::message::to_json(&claim(
        &["groups", "team"],
        matcher::StringMatcher {
            match_pattern: Some(matcher::string_matcher::MatchPattern::Exact("a".into())),
            ..Default::default()
        },
    ))
    .unwrap();
    let a = json!({"string_match": {"exact": "a"}});
    assert_eq!(
        got,
        json!({"filter": FILTER,
            "path": [{"key": "payload"}, {"key": "groups"}, {"key": "team"}],
            "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": a}}, a]}}})
    );
}
