//! Engines on requests and connections made up here; the parity tests
//! (`tests/rbac.rs`) check the same against Envoy over real sockets.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::stats::Store;
use crate::transport::TlsInfo;

fn engine(rbac: Value) -> Engine {
    let r: Rbac = serde_json::from_value(rbac).unwrap();
    Engine::compile("rules", &r).unwrap()
}

fn conn(tls: Option<TlsInfo>) -> ConnectionInfo {
    ConnectionInfo {
        peer: "192.0.2.7:4000".parse().unwrap(),
        original_dst: None,
        local: Some("10.0.0.1:8443".parse().unwrap()),
        tls: tls.map(Box::new),
        requested_server_name: Some("api.example.com".into()),
        client_cert: None,
    }
}

fn mtls(uri: &str, dns: &str, subject: &str) -> TlsInfo {
    TlsInfo {
        peer_identities: vec![uri.to_string()],
        peer_dns_sans: vec![dns.to_string()],
        peer_subject: subject.to_string(),
        ..Default::default()
    }
}

struct Req {
    method: &'static str,
    path: &'static str,
    headers: ::http::HeaderMap,
}

fn req(method: &'static str, path: &'static str, headers: &[(&'static str, &str)]) -> Req {
    let mut h = ::http::HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, v.parse().unwrap());
    }
    Req {
        method,
        path,
        headers: h,
    }
}

fn decide<'e>(e: &'e Engine, c: &ConnectionInfo, r: &Req) -> Decision<'e> {
    let metadata = DynamicMetadata::default();
    e.decide(&Input {
        conn: c,
        request: RequestView {
            method: r.method,
            authority: "api.example.com",
            scheme: "http",
            path_and_query: r.path,
            headers: &r.headers,
        },
        remote: c.peer.ip(),
        metadata: &metadata,
    })
}

fn policy(permission: Value, principal: Value) -> Value {
    json!({"permissions": [permission], "principals": [principal]})
}

#[test]
fn allow_deny_and_log_with_the_first_policy_by_name() {
    let any = json!({"any": true});
    let get = json!({"header": {"name": ":method", "string_match": {"exact": "GET"}}});
    let policies = json!({"zeta": policy(any.clone(), any.clone()), "alpha": policy(get, any)});
    let c = conn(None);
    let allow = engine(json!({"action": "ALLOW", "policies": policies}));
    let d = decide(&allow, &c, &req("GET", "/", &[]));
    assert_eq!((d.allowed, d.policy), (true, Some("alpha")));
    let d = decide(&allow, &c, &req("POST", "/", &[]));
    assert_eq!((d.allowed, d.policy), (true, Some("zeta")));
    let deny = engine(json!({"action": "DENY", "policies": policies}));
    assert_eq!(
        decide(&deny, &c, &req("GET", "/", &[])),
        Decision {
            allowed: false,
            policy: Some("alpha")
        }
    );
    let log = engine(json!({"action": "LOG", "policies": policies}));
    assert!(decide(&log, &c, &req("GET", "/", &[])).allowed);
    // Rules without policies: ALLOW lets nothing through, DENY all.
    let r = req("GET", "/", &[]);
    assert!(!decide(&engine(json!({"action": "ALLOW"})), &c, &r).allowed);
    assert!(decide(&engine(json!({"action": "DENY"})), &c, &r).allowed);
}

#[test]
fn permissions_read_the_request_and_the_connection() {
    let c = conn(None);
    let any = json!({"any": true});
    let allows = |permission: Value, r: &Req| {
        let e = engine(json!({"policies": {"p": policy(permission, any.clone())}}));
        decide(&e, &c, r).allowed
    };
    let r = req("GET", "/api/v1?x=/admin", &[("x-tenant", "blue")]);
    assert!(allows(
        json!({"url_path": {"path": {"prefix": "/api/"}}}),
        &r
    ));
    // The query is not part of the URL path; `:path` keeps it.
    assert!(!allows(
        json!({"url_path": {"path": {"suffix": "admin"}}}),
        &r
    ));
    assert!(allows(
        json!({"header": {"name": ":path", "suffix_match": "admin"}}),
        &r
    ));
    assert!(allows(
        json!({"header": {"name": "x-tenant", "present_match": true}}),
        &r
    ));
    assert!(allows(
        json!({"not_rule": {"header": {"name": "x-other", "present_match": true}}}),
        &r
    ));
    assert!(allows(json!({"destination_port": 8443}), &r));
    assert!(!allows(json!({"destination_port": 80}), &r));
    assert!(allows(
        json!({"destination_port_range": {"start": 8000, "end": 8444}}),
        &r
    ));
    assert!(!allows(
        json!({"destination_port_range": {"start": 8000, "end": 8443}}),
        &r
    ));
    assert!(allows(
        json!({"destination_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}),
        &r
    ));
    assert!(allows(
        json!({"requested_server_name": {"suffix": ".example.com"}}),
        &r
    ));
    assert!(allows(
        json!({"and_rules": {"rules": [{"destination_port": 8443}, {"url_path": {"path": {"exact": "/api/v1"}}}]}}),
        &r
    ));
    assert!(!allows(
        json!({"and_rules": {"rules": [{"destination_port": 8443}, {"url_path": {"path": {"exact": "/"}}}]}}),
        &r
    ));
    assert!(allows(
        json!({"or_rules": {"rules": [{"destination_port": 1}, {"any": true}]}}),
        &r
    ));
}

#[test]
fn authenticated_reads_uri_sans_then_dns_sans_then_the_subject() {
    let principal = |name: Value| {
        engine(
            json!({"policies": {"p": policy(json!({"any": true}), json!({"authenticated": {"principal_name": name}}))}}),
        )
    };
    let spiffe = "spiffe://cluster.local/ns/default/sa/allowed";
    let c = conn(Some(mtls(
        spiffe,
        "allowed.test",
        "CN=allowed,O=weft tests",
    )));
    let r = req("GET", "/", &[]);
    assert!(decide(&principal(json!({"exact": spiffe})), &c, &r).allowed);
    assert!(decide(&principal(json!({"exact": "allowed.test"})), &c, &r).allowed);
    assert!(decide(&principal(json!({"prefix": "CN=allowed,"})), &c, &r).allowed);
    assert!(!decide(&principal(json!({"exact": "other"})), &c, &r).allowed);
    let any_peer = engine(
        json!({"policies": {"p": policy(json!({"any": true}), json!({"authenticated": {}}))}}),
    );
    assert!(decide(&any_peer, &c, &r).allowed);
    // A plaintext connection has no principal at all.
    assert!(!decide(&any_peer, &conn(None), &r).allowed);
    assert!(!decide(&principal(json!({"exact": ""})), &conn(None), &r).allowed);
}

#[test]
fn remote_and_direct_remote_addresses_differ_behind_a_proxy() {
    let e = |field: &str| {
        engine(json!({"policies": {"p": policy(json!({"any": true}),
            json!({field: {"address_prefix": "203.0.113.0", "prefix_len": 24}}))}}))
    };
    let c = conn(None);
    let r = req("GET", "/", &[]);
    let metadata = DynamicMetadata::default();
    let input = |remote: &str| Input {
        conn: &c,
        request: RequestView {
            method: "GET",
            authority: "a",
            scheme: "http",
            path_and_query: "/",
            headers: &r.headers,
        },
        remote: remote.parse().unwrap(),
        metadata: &metadata,
    };
    assert!(e("remote_ip").decide(&input("203.0.113.9")).allowed);
    assert!(!e("direct_remote_ip").decide(&input("203.0.113.9")).allowed);
    assert!(!e("source_ip").decide(&input("203.0.113.9")).allowed);
    assert!(e("remote_ip").reads_remote());
    assert!(!e("direct_remote_ip").reads_remote());
}

#[test]
fn metadata_principals_read_what_an_earlier_filter_wrote() {
    let e = engine(
        json!({"policies": {"admins": policy(json!({"any": true}), json!({"metadata": {
            "filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": "payload"}, {"key": "groups"}],
            "value": {"list_match": {"one_of": {"string_match": {"exact": "admin"}}}}
        }}))}}),
    );
    let c = conn(None);
    let r = req("GET", "/", &[]);
    let mut metadata = DynamicMetadata::default();
    fn input<'a>(c: &'a ConnectionInfo, r: &'a Req, m: &'a DynamicMetadata) -> Input<'a> {
        Input {
            conn: c,
            request: RequestView {
                method: "GET",
                authority: "a",
                scheme: "http",
                path_and_query: "/",
                headers: &r.headers,
            },
            remote: c.peer.ip(),
            metadata: m,
        }
    }
    assert!(!e.decide(&input(&c, &r, &metadata)).allowed);
    let (ns, key) = (
        Arc::from("envoy.filters.http.jwt_authn"),
        Arc::from("payload"),
    );
    metadata.set(&ns, &key, json!({"sub": "x", "groups": ["dev", "admin"]}));
    assert!(e.decide(&input(&c, &r, &metadata)).allowed);
}

#[test]
fn the_http_filter_counts_and_records_as_envoy_names_them() {
    let store = Store::new();
    let config: weft_envoy::rbac::HttpRbac = serde_json::from_value(json!({
        "rules_stat_prefix": "rp.",
        "shadow_rules_stat_prefix": "sp_",
        "track_per_rule_stats": true,
        "rules": {"action": "ALLOW", "policies": {"get": policy(
            json!({"header": {"name": ":method", "exact_match": "GET"}}), json!({"any": true}))}},
        "shadow_rules": {"action": "DENY", "policies": {"s": policy(
            json!({"url_path": {"path": {"prefix": "/s"}}}), json!({"any": true}))}}
    }))
    .unwrap();
    let f = HttpRbac::compile(&config, &store, "main", std::iter::empty()).unwrap();
    let c = conn(None);
    let run = |r: &Req, metadata: &mut DynamicMetadata| {
        let rq = super::http::Request {
            conn: &c,
            view: RequestView {
                method: r.method,
                authority: "a",
                scheme: "http",
                path_and_query: r.path,
                headers: &r.headers,
            },
            use_remote_address: false,
            xff_num_trusted_hops: 0,
        };
        f.allows(None, &rq, metadata)
    };
    let mut m = DynamicMetadata::default();
    assert!(run(&req("GET", "/x", &[]), &mut m));
    let ns = "envoy.filters.http.rbac";
    assert_eq!(
        m.field(ns, "rp.enforced_engine_result"),
        Some(&json!("allowed"))
    );
    assert_eq!(
        m.field(ns, "rp.enforced_effective_policy_id"),
        Some(&json!("get"))
    );
    assert_eq!(
        m.field(ns, "sp_shadow_engine_result"),
        Some(&json!("allowed"))
    );
    assert_eq!(m.field(ns, "sp_shadow_effective_policy_id"), None);
    let mut m = DynamicMetadata::default();
    assert!(!run(&req("POST", "/s", &[]), &mut m));
    assert_eq!(
        m.field(ns, "sp_shadow_effective_policy_id"),
        Some(&json!("s"))
    );
    // A route without `rbac` turns the filter off.
    let off = RbacPerRoute::compile(&Default::default()).unwrap();
    let rq = super::http::Request {
        conn: &c,
        view: RequestView {
            method: "POST",
            authority: "a",
            scheme: "http",
            path_and_query: "/s",
            headers: &::http::HeaderMap::new(),
        },
        use_remote_address: false,
        xff_num_trusted_hops: 0,
    };
    assert!(f.allows(Some(&off), &rq, &mut DynamicMetadata::default()));
    let text = store.text();
    for line in [
        "http.main.rbac.rp.allowed: 1",
        "http.main.rbac.rp.denied: 1",
        "http.main.rbac.rp.policy.get.allowed: 1",
        "http.main.rbac.sp_.shadow_allowed: 1",
        "http.main.rbac.sp_.shadow_denied: 1",
        "http.main.rbac.sp_.policy.s.shadow_denied: 1",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line}\n{text}");
    }
    assert!(!text.contains("policy.get.denied"), "{text}");
}

#[test]
fn the_network_gate_decides_once_or_on_every_read() {
    let store = Store::new();
    let filters = |enforcement: &str, action: &str| {
        let c: weft_envoy::rbac::NetworkRbac = serde_json::from_value(json!({
            "stat_prefix": format!("t{enforcement}{action}"),
            "enforcement_type": enforcement,
            "delay_deny": "1.5s",
            "rules": {"action": action, "policies": {"p": policy(
                // A connection has no path: the negation matches.
                json!({"not_rule": {"url_path": {"path": {"prefix": "/"}}}}),
                json!({"direct_remote_ip": {"address_prefix": "192.0.2.0", "prefix_len": 24}}))}}
        }))
        .unwrap();
        Arc::new(NetworkRbacs::compile(std::iter::once(("f".to_string(), &c)), &store).unwrap())
    };
    let info = Arc::new(conn(None));
    let mut once = Gate::new(
        filters("ONE_TIME_ON_FIRST_BYTE", "ALLOW"),
        Arc::clone(&info),
    );
    assert_eq!(once.on_data(), crate::io::Verdict::Done);
    let mut every = Gate::new(filters("CONTINUOUS", "ALLOW"), Arc::clone(&info));
    assert_eq!(every.on_data(), crate::io::Verdict::Pass);
    assert_eq!(every.on_data(), crate::io::Verdict::Pass);
    let mut denied = Gate::new(filters("ONE_TIME_ON_FIRST_BYTE", "DENY"), info);
    assert_eq!(
        denied.on_data(),
        crate::io::Verdict::Refuse(Some(std::time::Duration::from_millis(1500)))
    );
    let text = store.text();
    for line in [
        "tONE_TIME_ON_FIRST_BYTEALLOW.rbac.allowed: 1",
        "tCONTINUOUSALLOW.rbac.allowed: 2",
        "tONE_TIME_ON_FIRST_BYTEDENY.rbac.denied: 1",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line}\n{text}");
    }
}
