//! The translation against the shapes istiod's builder golden files show
//! (principals in stock Envoy's `authenticated` form, which both Envoy
//! and weft proxy evaluate).

use serde_json::{json, Value};
use weft_api::security::{AuthorizationAction, AuthorizationPolicy};

use super::*;

fn policy(yaml: &str) -> Named<AuthorizationPolicy> {
    let loaded = weft_config::load_str("p.yaml", yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    let r = &loaded.resources[0];
    let weft_api::Spec::AuthorizationPolicy(spec) = &r.object.spec else {
        panic!("not an AuthorizationPolicy")
    };
    Named {
        namespace: r.object.namespace().to_string(),
        name: r.object.name().to_string(),
        spec: std::sync::Arc::new((**spec).clone()),
        digest: 0,
    }
}

fn filter_json(f: &pb::hcm::HttpFilter) -> Value {
    let Some(pb::hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("typed config")
    };
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
    use prost::Message;
    let rbac = Rbac::decode(any.value.as_slice()).expect("an RBAC filter");
    weft_xds::message::to_json(&rbac).expect("in the descriptor set")
}

const DENY_AND_ALLOW: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-deny, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source:
        principals: [deny]
";

#[test]
fn deny_then_allow_with_istio_names() {
    let deny = policy(DENY_AND_ALLOW);
    let allow = policy(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-allow, namespace: foo}
spec:
  rules:
  - from:
    - source:
        principals: [allow]
",
    );
    let applied = [
        Applied {
            policy: &deny,
            dry_run: false,
        },
        Applied {
            policy: &allow,
            dry_run: false,
        },
    ];
    let filters = http_filters(&applied);
    assert_eq!(filters.len(), 2);
    let any = json!([{"and_rules": {"rules": [{"any": true}]}}]);
    let by = |p: &str| {
        json!([{"and_ids": {"ids": [{"or_ids": {"ids": [
            {"authenticated": {"principal_name": {"exact": format!("spiffe://{p}")}}}
        ]}}]}}])
    };
    let deny = filter_json(&filters[0]);
    assert_eq!(deny["rules"]["action"], "DENY", "{deny:#}");
    let rule = &deny["rules"]["policies"]["ns[foo]-policy[httpbin-deny]-rule[0]"];
    assert_eq!(rule["permissions"], any, "{deny:#}");
    assert_eq!(rule["principals"], by("deny"), "{deny:#}");
    let allow = filter_json(&filters[1]);
    assert!(
        allow["rules"].get("action").is_none_or(|a| a == "ALLOW"),
        "{allow:#}"
    );
    let rule = &allow["rules"]["policies"]["ns[foo]-policy[httpbin-allow]-rule[0]"];
    assert_eq!(rule["principals"], by("allow"), "{allow:#}");
    assert_eq!(allow["shadow_rules_stat_prefix"], "istio_dry_run_allow_");
}

#[test]
fn an_empty_allow_policy_allows_nothing_and_dry_runs_are_shadow_rules() {
    let nothing = policy(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
",
    );
    let filters = http_filters(&[Applied {
        policy: &nothing,
        dry_run: false,
    }]);
    assert_eq!(filters.len(), 1);
    let f = filter_json(&filters[0]);
    // An ALLOW engine with no policy: nothing matches, everything denied.
    assert!(f["rules"].is_object(), "{f:#}");
    assert!(
        f["rules"]
            .get("policies")
            .is_none_or(|p| p.as_object().unwrap().is_empty()),
        "{f:#}"
    );

    let dry = http_filters(&[Applied {
        policy: &policy(DENY_AND_ALLOW),
        dry_run: true,
    }]);
    let f = filter_json(&dry[0]);
    assert!(f.get("rules").is_none(), "{f:#}");
    assert_eq!(f["shadow_rules"]["action"], "DENY", "{f:#}");
    assert_eq!(f["shadow_rules_stat_prefix"], "istio_dry_run_deny_");
}

#[test]
fn operations_conditions_and_values_read_as_istio_writes_them() {
    let p = policy(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
  rules:
  - from:
    - source:
        serviceAccounts: [my-ns/my-sa, sa-only]
        namespaces: [ns, \"ns-prefix-*\"]
        ipBlocks: [1.2.3.4, 5.6.0.0/16]
    to:
    - operation:
        hosts: [exact.com, \"*.suffix.com\", \"*\"]
        methods: [GET]
        paths: [/exact, /prefix/*, \"*/suffix\", \"*\"]
        notPorts: [\"8000\"]
    when:
    - key: request.headers[X-header]
      values: [header]
    - key: destination.port
      values: [\"91\"]
",
    );
    let filters = http_filters(&[Applied {
        policy: &p,
        dry_run: false,
    }]);
    let f = filter_json(&filters[0]);
    let rule = &f["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"];
    let perms = &rule["permissions"][0]["and_rules"]["rules"];
    assert_eq!(
        perms[0]["or_rules"]["rules"][1],
        json!({"header": {"name": ":authority", "string_match": {"suffix": ".suffix.com", "ignore_case": true}}}),
        "{rule:#}"
    );
    assert_eq!(
        perms[0]["or_rules"]["rules"][2],
        json!({"header": {"name": ":authority", "present_match": true}})
    );
    assert_eq!(
        perms[1]["or_rules"]["rules"][0],
        json!({"header": {"name": ":method", "exact_match": "GET"}})
    );
    assert_eq!(
        perms[2]["or_rules"]["rules"],
        json!([
            {"url_path": {"path": {"exact": "/exact"}}},
            {"url_path": {"path": {"prefix": "/prefix/"}}},
            {"url_path": {"path": {"suffix": "/suffix"}}},
            {"url_path": {"path": {"safe_regex": {"regex": ".+"}}}}
        ])
    );
    assert_eq!(
        perms[3],
        json!({"not_rule": {"or_rules": {"rules": [{"destination_port": 8000}]}}})
    );
    assert_eq!(
        perms[4],
        json!({"or_rules": {"rules": [{"destination_port": 91}]}})
    );
    let ids = &rule["principals"][0]["and_ids"]["ids"];
    assert_eq!(
        ids[0]["or_ids"]["ids"],
        json!([
            {"authenticated": {"principal_name": {"safe_regex": {"regex": "spiffe://.+/ns/my-ns/(.+/|)sa/my-sa(/.+)?"}}}},
            {"authenticated": {"principal_name": {"safe_regex": {"regex": "spiffe://.+/ns/foo/(.+/|)sa/sa-only(/.+)?"}}}}
        ])
    );
    assert_eq!(
        ids[1]["or_ids"]["ids"][1],
        json!({"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/ns-prefix-.*/.*"}}}})
    );
    assert_eq!(
        ids[2]["or_ids"]["ids"][1],
        json!({"direct_remote_ip": {"address_prefix": "5.6.0.0", "prefix_len": 16}})
    );
    // As istiod writes request.headers[] now: the joined value as a whole.
    assert_eq!(
        ids[3]["or_ids"]["ids"][0]["header"],
        json!({"name": "X-header", "string_match": {"exact": "header"}})
    );
}

#[test]
fn on_tcp_http_fields_drop_an_allow_rule_but_a_deny_rule_still_denies() {
    let rule = |action: &str| {
        policy(&format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: foo}}
spec:
  action: {action}
  rules:
  - to:
    - operation:
        methods: [GET]
        ports: [\"9000\"]
"
        ))
    };
    let allow = rule("ALLOW");
    let e = engines(
        &[Applied {
            policy: &allow,
            dry_run: false,
        }],
        AuthorizationAction::ALLOW,
        Layer::Tcp,
    );
    assert!(
        e.rules.unwrap().policies.is_empty(),
        "the ALLOW rule never matches on TCP"
    );
    let deny = rule("DENY");
    let e = engines(
        &[Applied {
            policy: &deny,
            dry_run: false,
        }],
        AuthorizationAction::DENY,
        Layer::Tcp,
    );
    let rules = e.rules.unwrap();
    let p = &rules.policies["ns[foo]-policy[p]-rule[0]"];
    // The method is dropped; the port is kept.
    assert_eq!(
        format!("{:?}", p.permissions)
            .matches("DestinationPort(9000)")
            .count(),
        1,
        "{p:?}"
    );
    assert!(!format!("{:?}", p.permissions).contains(":method"), "{p:?}");
}

#[test]
fn untranslatable_rules_fail_closed_and_custom_denies_what_it_selects() {
    let bad = |action: &str| {
        policy(&format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: foo}}
spec:
  action: {action}
  rules:
  - when:
    - key: request.bogus
      values: [x]
"
        ))
    };
    // An ALLOW rule weft cannot read allows nothing: an ALLOW engine
    // without policies.
    let allow = bad("ALLOW");
    let f = filter_json(
        &http_filters(&[Applied {
            policy: &allow,
            dry_run: false,
        }])[0],
    );
    assert!(
        f["rules"]
            .get("policies")
            .is_none_or(|p| p.as_object().unwrap().is_empty()),
        "{f:#}"
    );
    // A DENY rule weft cannot read denies everything.
    let deny = bad("DENY");
    let f = filter_json(
        &http_filters(&[Applied {
            policy: &deny,
            dry_run: false,
        }])[0],
    );
    let p = &f["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"];
    assert_eq!(p["permissions"], json!([{"any": true}]), "{f:#}");
    assert_eq!(p["principals"], json!([{"any": true}]), "{f:#}");
    // CUSTOM without a provider in the mesh config: its rules deny, in
    // their own filter before the others, named as istiod names them.
    let custom = policy(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules:
  - to:
    - operation: {paths: [/admin]}
",
    );
    let applied = [
        Applied {
            policy: &allow,
            dry_run: false,
        },
        Applied {
            policy: &custom,
            dry_run: false,
        },
    ];
    assert_eq!(http_filters(&applied).len(), 1, "ALLOW only");
    let ctx = crate::context::Context::build(
        &[] as &[weft_config::Resource],
        crate::context::Mesh::default(),
    );
    let filters = crate::gen::custom::http_filters(&ctx, &applied);
    assert_eq!(filters.len(), 1, "no authorizer to call");
    let first = filter_json(&filters[0]);
    assert_eq!(first["rules"]["action"], "DENY", "{first:#}");
    assert!(
        first["rules"]["policies"]
            ["istio-ext-authz-ns[foo]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"]
            .is_object(),
        "{first:#}"
    );
}

#[test]
fn path_templates_are_one_segment_or_more() {
    assert_eq!(
        path_template("/path/template/{*}"),
        "^/path/template/[^/]+$"
    );
    assert_eq!(path_template("/{**}/path/template"), "^/.+/path/template$");
    assert_eq!(path_template("/a.b/{*}/c"), "^/a\\.b/[^/]+/c$");
    let re = regex::Regex::new(&path_template("/users/{*}/orders")).unwrap();
    assert!(re.is_match("/users/42/orders"));
    assert!(!re.is_match("/users/42/x/orders"));
    assert!(!re.is_match("/users//orders"));
}
