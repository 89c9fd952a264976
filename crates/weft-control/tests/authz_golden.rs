//! weft's AuthorizationPolicy translation checked against istiod's own
//! golden input/output pairs (istio/istio,
//! `pilot/pkg/security/authz/builder/testdata/http/`, vendored under
//! `tests/data/istio-authz/`, see its README for commits and license).
//!
//! Istio's builder test builds the HTTP RBAC filters of a sidecar in
//! namespace `foo` labelled `app: httpbin, version: v1`, with no trust
//! domain aliases unless a case says so. Here the same policies go
//! through weft's public path (the sidecar's inbound listener), the
//! `envoy.filters.http.rbac` filters are taken out of the inbound HTTP
//! connection manager in order, and each is compared with its golden
//! file as proto3 JSON.
//!
//! Both sides are normalized only in ways Envoy cannot tell apart:
//! camelCase vs proto field names, the deprecated header matcher forms
//! (`exact_match` … vs `string_match`), the deprecated `google_re2: {}`
//! engine marker (the only engine). Everything else must be equal,
//! except:
//!
//! - **Divergences** (`Divergence`): places where weft writes a different
//!   but deliberate form. Each rewrites the golden side into weft's form,
//!   must fire where it is declared, and says why.
//! - **Known differences** (`Known`): places where weft would allow or
//!   deny differently from istiod (weft bugs, or a golden file older than
//!   the shapes istiod writes today). Those subtrees are masked on both
//!   sides — weft's current behaviour there is NOT asserted — and the
//!   rest of the filter is still compared. The pairs with a mask are not
//!   in the "matches" set; the README lists them.

use serde_json::{Map, Value};
use weft_control::context::{Context, Mesh};
use weft_control::gen::{self, Proxy};
use weft_xds::Kind;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/istio-authz");

/// The workload of Istio's builder test: namespace `foo`, labels
/// `app: httpbin, version: v1`, a sidecar with one inbound HTTP port.
const MESH: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-v1, namespace: foo}
spec: {address: 10.0.0.1, serviceAccount: httpbin, labels: {app: httpbin, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: httpbin, namespace: foo}
spec:
  workloadSelector: {labels: {app: httpbin}}
  ingress:
  - port: {number: 8000, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:18000
  egress:
  - hosts: [./*]
";

fn read(name: &str) -> String {
    let path = format!("{DATA}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// weft's HTTP RBAC filters for the workload, in the order of the
/// inbound connection manager, as proto3 JSON.
fn weft_rbac(input: &str, mesh: Mesh) -> Vec<Value> {
    let yaml = format!("{MESH}\n---\n{}", read(input));
    let loaded = weft_config::load_str(input, &yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{input}: {:?}", loaded.issues);
    let ctx = Context::build(&loaded.resources, mesh);
    let proxy = Proxy::from_node(
        "sidecar~10.0.0.1~httpbin-v1.foo~foo.svc.cluster.local",
        None,
        &ctx,
    )
    .unwrap();
    let out = gen::sidecar(&ctx, &proxy);
    let listener = out[&Kind::Listener]["10.0.0.1_8000"].to_json().unwrap();
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "envoy.filters.http.rbac")
        .cloned()
        .collect()
}

fn golden(name: &str) -> Value {
    weft_yaml::parse_document(&read(name), &Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: empty"))
        .to_json()
}

// ---- normalization (forms Envoy treats the same) ----

fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Proto field names in snake_case (the keys of the `policies` map are
/// names, not fields, and stay as they are); deprecated header matcher
/// forms as `string_match`; no `google_re2: {}` (the deprecated marker
/// of the only regex engine).
fn normalize(v: &Value) -> Value {
    normalize_in(v, false)
}

fn normalize_in(v: &Value, map_keys: bool) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| normalize_in(x, false)).collect()),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, x) in o {
                let key = if map_keys || k.starts_with('@') {
                    k.clone()
                } else {
                    snake(k)
                };
                let child_is_map = key == "policies";
                out.insert(key, normalize_in(x, child_is_map));
            }
            if !map_keys {
                header_forms(&mut out);
                if out.get("google_re2") == Some(&Value::Object(Map::new())) {
                    out.remove("google_re2");
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// `HeaderMatcher.exact_match: X` (and prefix, suffix, contains,
/// safe_regex) is the deprecated spelling of `string_match: {exact: X}`.
fn header_forms(o: &mut Map<String, Value>) {
    if !o.contains_key("name") {
        return;
    }
    for (old, new) in [
        ("exact_match", "exact"),
        ("prefix_match", "prefix"),
        ("suffix_match", "suffix"),
        ("contains_match", "contains"),
        ("safe_regex_match", "safe_regex"),
    ] {
        if let Some(v) = o.remove(old) {
            let mut m = Map::new();
            m.insert(new.into(), v);
            o.insert("string_match".into(), Value::Object(m));
        }
    }
}

// ---- walking ----

/// Calls `f` on every object of `v` (children first), with whether it
/// sits under `principals` (an RBAC Principal) rather than
/// `permissions`; `f` may replace the object.
fn rewrite(
    v: &mut Value,
    in_principals: bool,
    f: &mut dyn FnMut(&mut Value, bool) -> usize,
) -> usize {
    let mut n = 0;
    match v {
        Value::Array(a) => {
            for x in a {
                n += rewrite(x, in_principals, f);
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let p = match k.as_str() {
                    "principals" => true,
                    "permissions" => false,
                    _ => in_principals,
                };
                n += rewrite(x, p, f);
            }
        }
        _ => return 0,
    }
    n + f(v, in_principals)
}

// ---- deliberate divergences: the golden side rewritten into weft's form ----

/// A place where weft writes a different form than istiod on purpose.
struct Divergence {
    what: &'static str,
    /// Rewrites one golden filter; returns how many places it changed.
    apply: fn(&mut Value) -> usize,
}

/// weft's regex escaping (the characters of a Kubernetes name or SPIFFE
/// segment that mean something to RE2).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if ".+*?()|[]{}^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An Envoy uri_template (`*` one segment, `**` the rest) as the
/// anchored regex weft writes for Istio's `{*}` / `{**}`.
fn template_regex(t: &str) -> String {
    let mut out = String::from("^");
    let mut rest = t;
    while let Some(i) = rest.find('*') {
        out.push_str(&escape(&rest[..i]));
        if rest[i..].starts_with("**") {
            out.push_str(".+");
            rest = &rest[i + 2..];
        } else {
            out.push_str("[^/]+");
            rest = &rest[i + 1..];
        }
    }
    out.push_str(&escape(rest));
    out.push('$');
    out
}

/// (1) Path templates. istiod writes Envoy's `uri_template` extension
/// (`envoy.path.match.uri_template`); weft proxy does not load that
/// extension, so weft writes an anchored `safe_regex` url_path matcher:
/// `{*}` → `[^/]+` (one segment), `{**}` → `.+`. Equivalent for templates
/// Envoy accepts, with two edges: Envoy's `*` only takes its allowed
/// segment characters (others arrive percent-encoded), and Envoy's `**`
/// also matches zero segments and must be the last operator — istiod
/// passes `/{**}/path/template` through as `/**/path/template`, which
/// Envoy's template validation rejects, while weft's regex accepts it.
fn uri_template(v: &mut Value) -> usize {
    rewrite(v, false, &mut |x, _| {
        let Some(t) = x
            .pointer("/uri_template/typed_config/path_template")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return 0;
        };
        *x = serde_json::json!({"url_path": {"path": {"safe_regex": {"regex": template_regex(&t)}}}});
        1
    })
}

/// (2) JWT claims (`request.auth.claims[..]`, `request.auth.audiences`,
/// `request.auth.presenter`). istiod writes one metadata matcher per
/// claim whose value is `or_match[list_match.one_of(or_match(V)),
/// or_match(V)]` over all values V; weft writes `or_ids` of one matcher
/// per value v, each `or_match[list_match.one_of(v), v]`. Both read: the
/// claim is a string matching some v, or a list with an element matching
/// some v — equivalent (and under `not_id` equally so).
fn claims_per_value(v: &mut Value) -> usize {
    rewrite(v, false, &mut |x, in_principals| {
        if !in_principals {
            return 0;
        }
        let Some(m) = x.get("metadata") else { return 0 };
        let vms = m
            .pointer("/value/or_match/value_matchers")
            .and_then(Value::as_array);
        let Some([list, plain]) = vms.map(Vec::as_slice) else {
            return 0;
        };
        let (Some(one_of), Some(values)) = (
            list.pointer("/list_match/one_of/or_match/value_matchers")
                .and_then(Value::as_array),
            plain
                .pointer("/or_match/value_matchers")
                .and_then(Value::as_array),
        ) else {
            return 0;
        };
        assert_eq!(
            one_of, values,
            "claim matcher with different list and string values"
        );
        let ids = values
            .iter()
            .map(|one| {
                serde_json::json!({"metadata": {
                    "filter": m["filter"],
                    "path": m["path"],
                    "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": one}}, one]}},
                }})
            })
            .collect::<Vec<_>>();
        *x = serde_json::json!({"or_ids": {"ids": ids}});
        1
    })
}

/// (3) `experimental.envoy.filters.*[key]`: istiod writes one metadata
/// permission whose value is `or_match` of the values; weft writes
/// `or_rules` of one metadata permission per value. Equivalent.
fn metadata_per_value(v: &mut Value) -> usize {
    rewrite(v, false, &mut |x, in_principals| {
        if in_principals {
            return 0;
        }
        let Some(m) = x.get("metadata") else { return 0 };
        let Some(values) = m
            .pointer("/value/or_match/value_matchers")
            .and_then(Value::as_array)
        else {
            return 0;
        };
        if !values.iter().all(|one| one.get("string_match").is_some()) {
            return 0;
        }
        let rules = values
            .iter()
            .map(|one| serde_json::json!({"metadata": {"filter": m["filter"], "path": m["path"], "value": one}}))
            .collect::<Vec<_>>();
        *x = serde_json::json!({"or_rules": {"rules": rules}});
        1
    })
}

/// (4) A policy without rules (`allow-nil-rule`): istiod writes an ALLOW
/// filter with a policy that never matches (`not_rule: any` /
/// `not_id: any`); weft writes the ALLOW filter with no policies. Both
/// allow nothing — equivalent.
fn never_matching_policy(v: &mut Value) -> usize {
    let never = serde_json::json!({
        "permissions": [{"not_rule": {"any": true}}],
        "principals": [{"not_id": {"any": true}}],
    });
    let Some(rules) = v.pointer_mut("/typed_config/rules") else {
        return 0;
    };
    let Some(policies) = rules.get_mut("policies").and_then(Value::as_object_mut) else {
        return 0;
    };
    let before = policies.len();
    policies.retain(|_, p| *p != never);
    let n = before - policies.len();
    if policies.is_empty() {
        rules.as_object_mut().unwrap().remove("policies");
    }
    n
}

/// (5) Principal suffixes (`*suffix`). istiod writes
/// `spiffe://.*SUFFIX` without escaping SUFFIX; weft RE2-escapes it, so
/// `*/ns/foo/sa/rule[0]-x` matches that literal identity, where istiod's
/// regex reads `[0]` as a character class (matching `rule0-x`, not
/// `rule[0]-x`) and `.` as any character. Identical for suffixes without
/// regex metacharacters; where they differ weft follows the policy text.
fn principal_suffix_escaped(v: &mut Value) -> usize {
    rewrite(v, true, &mut |x, _| {
        let Some(r) = x
            .pointer("/authenticated/principal_name/safe_regex/regex")
            .and_then(Value::as_str)
        else {
            return 0;
        };
        let Some(suffix) = r.strip_prefix("spiffe://.*") else {
            return 0;
        };
        let escaped = format!("spiffe://.*{}", escape(suffix));
        if escaped == r {
            return 0;
        }
        x["authenticated"]["principal_name"]["safe_regex"]["regex"] = Value::String(escaped);
        1
    })
}

/// (6) Trust domain aliases: the wildcard case runs istiod with trust
/// domain `td1` and alias `foobar`, and istiod adds the exact id in
/// `td1` for a principal whose `*bar` trust domain matches an alias.
/// weft has no trust domain aliases (one trust domain per mesh), so it
/// writes only the principal as given.
fn alias_expansion(v: &mut Value) -> usize {
    rewrite(v, true, &mut |x, _| {
        let Some(ids) = x.pointer_mut("/or_ids/ids").and_then(Value::as_array_mut) else {
            return 0;
        };
        let before = ids.len();
        ids.retain(|id| {
            id.pointer("/authenticated/principal_name/exact")
                != Some(&Value::from(
                    "spiffe://td1/ns/foo/sa/rule[0]-from[1]-principal[1]",
                ))
        });
        before - ids.len()
    })
}

const URI_TEMPLATE: Divergence = Divergence {
    what: "path templates as anchored regex, not uri_template",
    apply: uri_template,
};
const CLAIMS: Divergence = Divergence {
    what: "JWT claim matchers per value",
    apply: claims_per_value,
};
const METADATA: Divergence = Divergence {
    what: "experimental metadata matchers per value",
    apply: metadata_per_value,
};
const NIL_RULES: Divergence = Divergence {
    what: "no policy instead of a never-matching one",
    apply: never_matching_policy,
};
const SUFFIX_ESCAPED: Divergence = Divergence {
    what: "principal suffixes regex-escaped",
    apply: principal_suffix_escaped,
};
const ALIASES: Divergence = Divergence {
    what: "no trust domain alias expansion",
    apply: alias_expansion,
};

// ---- known differences: masked on both sides, not asserted ----

/// A place where weft's RBAC decides differently from the golden file;
/// replaced by a marker on both sides (each side must have it).
struct Known {
    what: &'static str,
    /// Masks one filter (golden or weft); returns how many places.
    mask: fn(&mut Value, &'static str) -> usize,
}

/// GOLDEN OLDER THAN ISTIOD: the stored `multiple-policies-out.yaml`
/// has no `extended-` variant and still matches request principals on the
/// retired `istio_authn` filter's `request.auth.principal`; current
/// istiod writes the `envoy.filters.http.jwt_authn` payload `iss`/`sub`
/// form (see `extended-single-policy-out.yaml` and
/// `extended-allow-full-rule-out.yaml`, compared in full), which is what
/// weft writes. The old form is not compared.
fn stale_request_principals(v: &mut Value, marker: &'static str) -> usize {
    let Some(p) =
        v.pointer_mut("/typed_config/rules/policies/ns[foo]-policy[httpbin-6]-rule[0]/principals")
    else {
        return 0;
    };
    *p = Value::String(marker.into());
    1
}

const STALE_REQUEST_PRINCIPALS: Known = Known {
    what: "KNOWN DIFFERENCE: stored golden predates the jwt_authn request principal form",
    mask: stale_request_principals,
};

// ---- the check ----

struct Case {
    input: &'static str,
    outputs: &'static [&'static str],
    divergences: &'static [Divergence],
    known: &'static [Known],
    mesh: fn() -> Mesh,
}

impl Case {
    const fn new(input: &'static str, outputs: &'static [&'static str]) -> Case {
        Case {
            input,
            outputs,
            divergences: &[],
            known: &[],
            mesh: Mesh::default,
        }
    }
}

fn check(case: Case) {
    let got = weft_rbac(case.input, (case.mesh)());
    assert_eq!(
        got.len(),
        case.outputs.len(),
        "{}: weft wrote {} RBAC filters, istiod {}: {got:#?}",
        case.input,
        got.len(),
        case.outputs.len()
    );
    let mut fired = vec![0; case.divergences.len()];
    for (got, name) in got.iter().zip(case.outputs) {
        let mut want = normalize(&golden(name));
        let mut got = normalize(got);
        for (d, n) in case.divergences.iter().zip(&mut fired) {
            *n += (d.apply)(&mut want);
        }
        for k in case.known {
            let w = (k.mask)(&mut want, k.what);
            let g = (k.mask)(&mut got, k.what);
            assert!(
                w > 0,
                "{name}: known difference {:?} not in the golden file",
                k.what
            );
            assert_eq!(
                w, g,
                "{name}: known difference {:?} masked {w} places in the golden file, {g} in weft's",
                k.what
            );
        }
        if got != want {
            panic!(
                "{name}: weft's filter differs from istiod's\n--- istiod (normalized)\n{}\n--- weft\n{}",
                serde_json::to_string_pretty(&want).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            );
        }
    }
    for (d, n) in case.divergences.iter().zip(fired) {
        assert!(
            n > 0,
            "{}: divergence {:?} declared but not found",
            case.input,
            d.what
        );
    }
}

// ---- the pairs that match (modulo the documented, equivalent forms) ----

#[test]
fn single_policy() {
    check(Case {
        known: &[],
        ..Case::new(
            "single-policy-in.yaml",
            &["extended-single-policy-out.yaml"],
        )
    });
}

#[test]
fn deny_and_allow() {
    check(Case::new(
        "deny-and-allow-in.yaml",
        &[
            "deny-and-allow-out1.yaml",
            "extended-deny-and-allow-out2.yaml",
        ],
    ));
}

#[test]
fn allow_empty_rule() {
    check(Case::new(
        "allow-empty-rule-in.yaml",
        &["extended-allow-empty-rule-out.yaml"],
    ));
}

#[test]
fn deny_empty_rule() {
    check(Case::new(
        "deny-empty-rule-in.yaml",
        &["extended-deny-empty-rule-out.yaml"],
    ));
}

#[test]
fn allow_nil_rule() {
    check(Case {
        divergences: &[NIL_RULES],
        ..Case::new(
            "allow-nil-rule-in.yaml",
            &["extended-allow-nil-rule-out.yaml"],
        )
    });
}

#[test]
fn allow_path() {
    check(Case {
        divergences: &[URI_TEMPLATE],
        ..Case::new("allow-path-in.yaml", &["extended-allow-path-out.yaml"])
    });
}

#[test]
fn dry_run_allow() {
    check(Case::new(
        "dry-run-allow-in.yaml",
        &["extended-dry-run-allow-out.yaml"],
    ));
}

#[test]
fn dry_run_allow_and_deny() {
    check(Case::new(
        "dry-run-allow-and-deny-in.yaml",
        &[
            "extended-dry-run-allow-and-deny-out1.yaml",
            "extended-dry-run-allow-and-deny-out2.yaml",
        ],
    ));
}

#[test]
fn dry_run_mix() {
    check(Case::new("dry-run-mix-in.yaml", &["dry-run-mix-out.yaml"]));
}

#[test]
fn audit_full_rule() {
    check(Case::new(
        "audit-full-rule-in.yaml",
        &["audit-full-rule-out.yaml"],
    ));
}

#[test]
fn simple_policy_principal_with_wildcard() {
    check(Case {
        divergences: &[SUFFIX_ESCAPED, ALIASES],
        mesh: || Mesh {
            trust_domain: "td1".into(),
            ..Mesh::default()
        },
        ..Case::new(
            "simple-policy-principal-with-wildcard-in.yaml",
            &["extended-simple-policy-principal-with-wildcard-out.yaml"],
        )
    });
}

// ---- pairs with a known difference: compared except the masked part ----

#[test]
fn multiple_policies_but_a_stale_golden() {
    check(Case {
        known: &[STALE_REQUEST_PRINCIPALS],
        ..Case::new("multiple-policies-in.yaml", &["multiple-policies-out.yaml"])
    });
}

#[test]
fn allow_full_rule() {
    check(Case {
        divergences: &[URI_TEMPLATE, CLAIMS, METADATA],
        known: &[],
        ..Case::new(
            "allow-full-rule-in.yaml",
            &["extended-allow-full-rule-out.yaml"],
        )
    });
}
