//! The RBAC filter of the rule cases: `n` policies in the shape istiod
//! gives an AuthorizationPolicy's rules (one policy per rule, named
//! `ns[NS]-policy[NAME]-rule[I]`; permissions an `and_rules` of
//! `or_rules`, one per attribute: `:method` headers, `url_path` prefix,
//! exact and suffix matches, `destination_port`; principals an `and_ids`
//! of `or_ids`: request headers, `remote_ip` and `direct_remote_ip`
//! CIDRs, and `not_id` for `notValues`), ALLOW.
//!
//! The worst case, on purpose: the request under load
//! ([`crate::request`]) is allowed by one policy only, the one whose
//! name sorts last. Envoy evaluates policies in their names'
//! lexicographic order and stops at the first that matches, so every
//! request evaluates all `n` policies. weft gives the same answer but,
//! from 4 policies on, evaluates only those its index leaves (those
//! whose method, path, port, principal and header conditions the
//! request meets; see weft-proxy's `rbac::index`). The others fail at
//! different depths, as real rule sets do, in a repeating pattern of
//! four:
//!
//! - 0: the method matches, the paths (`/svc-I/` prefix, `/svc-I`
//!   exact) do not;
//! - 1: the methods (POST, PUT, DELETE) do not match;
//! - 2: method, path and port match; the principal (from loopback and
//!   not tenant `tenant-final`, i.e. `notValues`) does not;
//! - 3: method and path match, the destination port does not.
//!
//! The policy that allows: GET or HEAD, a path under `/api/` (or
//! `/healthz` exactly), the listener's port, from a header
//! `x-tenant: tenant-final`, from loopback (`remote_ip`, or
//! `direct_remote_ip`), and not with an `x-blocked` header.

use serde_json::{json, Value};

const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The tenant the request under load says it is.
pub const TENANT: &str = "tenant-final";

/// Policy `i`'s name, as istiod names a rule of a policy.
fn name(i: usize) -> String {
    format!("ns[bench]-policy[authz-{i}]-rule[0]")
}

/// The index of the policy whose name sorts last (the one that allows
/// the request): 9 of 10 and also 9 of 1,000 (`authz-9]` sorts after
/// `authz-99]` and `authz-999]`), hence found, not assumed.
pub fn last(n: usize) -> usize {
    (0..n)
        .max_by_key(|&i| name(i))
        .expect("at least one policy")
}

fn method(m: &str) -> Value {
    json!({"header": {"name": ":method", "string_match": {"exact": m}}})
}

fn path(kind: &str, p: &str) -> Value {
    json!({"url_path": {"path": {kind: p}}})
}

fn or_rules(rules: Vec<Value>) -> Value {
    json!({"or_rules": {"rules": rules}})
}

fn or_ids(ids: Vec<Value>) -> Value {
    json!({"or_ids": {"ids": ids}})
}

fn cidr(field: &str, addr: &str, len: u32) -> Value {
    json!({field: {"address_prefix": addr, "prefix_len": len}})
}

fn header(name: &str, exact: &str) -> Value {
    json!({"header": {"name": name, "string_match": {"exact": exact}}})
}

/// A policy: each list is one attribute's `or_rules` / `or_ids`, all
/// of which must match (`and_rules` / `and_ids`), istiod's nesting.
fn policy(permissions: Vec<Value>, principals: Vec<Value>) -> Value {
    json!({
        "permissions": [{"and_rules": {"rules": permissions}}],
        "principals": [{"and_ids": {"ids": principals}}]
    })
}

/// Policy `i` of the pattern (see the module's comment); `port` is the
/// listener's.
fn failing(i: usize, port: u16) -> Value {
    let (a, b) = ((i / 250) % 250, i % 250);
    let net = format!("10.{a}.{b}.0");
    let get = or_rules(vec![method("GET"), method("HEAD")]);
    let api = or_rules(vec![path("prefix", "/api/"), path("suffix", ".json")]);
    let port_is = |p: u16| or_rules(vec![json!({"destination_port": p})]);
    let caller = vec![
        or_ids(vec![header("x-tenant", &format!("tenant-{i}"))]),
        or_ids(vec![cidr("remote_ip", &net, 24)]),
    ];
    match i % 4 {
        0 => policy(
            vec![
                get,
                or_rules(vec![
                    path("prefix", &format!("/svc-{i}/")),
                    path("exact", &format!("/svc-{i}")),
                ]),
                port_is(port),
            ],
            caller,
        ),
        1 => policy(
            vec![
                or_rules(vec![method("POST"), method("PUT"), method("DELETE")]),
                api,
                port_is(port),
            ],
            caller,
        ),
        2 => policy(
            vec![get, api, port_is(port)],
            vec![
                or_ids(vec![
                    cidr("remote_ip", "127.0.0.0", 8),
                    cidr("direct_remote_ip", &net, 24),
                ]),
                json!({"not_id": or_ids(vec![header("x-tenant", TENANT)])}),
            ],
        ),
        _ => policy(vec![get, api, port_is(port.wrapping_add(1).max(1))], caller),
    }
}

/// The one policy that allows the request under load.
fn allowing(port: u16) -> Value {
    policy(
        vec![
            or_rules(vec![method("GET"), method("HEAD")]),
            or_rules(vec![path("prefix", "/api/"), path("exact", "/healthz")]),
            or_rules(vec![json!({"destination_port": port})]),
        ],
        vec![
            or_ids(vec![header("x-tenant", TENANT)]),
            or_ids(vec![
                cidr("remote_ip", "127.0.0.0", 8),
                cidr("direct_remote_ip", "127.0.0.1", 32),
            ]),
            json!({"not_id": or_ids(vec![
                json!({"header": {"name": "x-blocked", "present_match": true}})
            ])}),
        ],
    )
}

/// The filter's `typed_config`: `n` policies, ALLOW.
pub fn filter(n: usize, port: u16) -> Value {
    let allow = last(n);
    let policies: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            let p = if i == allow {
                allowing(port)
            } else {
                failing(i, port)
            };
            (name(i), p)
        })
        .collect();
    json!({"@type": RBAC, "rules": {"action": "ALLOW", "policies": policies}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowing_policy_sorts_last() {
        assert_eq!(last(10), 9);
        assert_eq!(last(1000), 9);
        for n in [1, 10, 1000] {
            let f = filter(n, 8080);
            let policies = f["rules"]["policies"].as_object().unwrap();
            assert_eq!(policies.len(), n);
            let last_name = policies.keys().max().unwrap();
            assert_eq!(last_name, &name(last(n)));
            // The allowing shape (the only one with the x-blocked
            // exception) is that policy's alone.
            let allowing: Vec<&String> = policies
                .iter()
                .filter(|(_, p)| p.to_string().contains("x-blocked"))
                .map(|(k, _)| k)
                .collect();
            assert_eq!(allowing, vec![last_name]);
        }
    }
}
