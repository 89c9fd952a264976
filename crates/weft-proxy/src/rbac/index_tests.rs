//! The index never changes a decision: random policy sets built from
//! the matchers it reads (and some it does not), checked on random
//! requests against the plain scan; and it does prune Istio-shaped sets.

use serde_json::{json, Value};
use weft_envoy::rbac::Rbac;

use crate::matchers::RequestView;
use crate::metadata::DynamicMetadata;
use crate::rbac::{Engine, Input};
use crate::transport::{ConnectionInfo, TlsInfo};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const METHODS: &[&str] = &["GET", "POST", "HEAD"];
const PATHS: &[&str] = &["/a", "/a/b", "/api/x", "/api/x.json", "/b", "/"];
const TENANTS: &[&str] = &["t1", "t2", "t3"];
const PEERS: &[&str] = &["spiffe://td/ns/a/sa/x", "spiffe://td/ns/b/sa/y"];

fn header(name: &str, exact: &str, invert: bool) -> Value {
    json!({"header": {"name": name, "string_match": {"exact": exact}, "invert_match": invert}})
}

fn permission(r: &mut Rng, depth: u32) -> Value {
    let leaf = depth == 0 || r.below(3) == 0;
    if !leaf {
        let n = 1 + r.below(3);
        let rules: Vec<Value> = (0..n).map(|_| permission(r, depth - 1)).collect();
        return match r.below(3) {
            0 => json!({"and_rules": {"rules": rules}}),
            1 => json!({"or_rules": {"rules": rules}}),
            _ => json!({"not_rule": rules[0]}),
        };
    }
    match r.below(9) {
        0 => json!({"any": true}),
        1 => header(":method", r.pick(METHODS), false),
        2 => json!({"url_path": {"path": {"exact": r.pick(PATHS)}}}),
        3 => json!({"url_path": {"path": {"prefix": r.pick(&["/a", "/api/", "/", "/b"])}}}),
        4 => json!({"url_path": {"path": {"suffix": ".json"}}}),
        5 => json!({"destination_port": r.pick(&[8443, 9080])}),
        6 => header(":path", r.pick(&["/a", "/a?q=1", "/b"]), false),
        7 => header("x-tenant", r.pick(TENANTS), r.below(4) == 0),
        _ => json!({"url_path": {"path": {"exact": "/A", "ignore_case": true}}}),
    }
}

fn principal(r: &mut Rng, depth: u32) -> Value {
    let leaf = depth == 0 || r.below(3) == 0;
    if !leaf {
        let n = 1 + r.below(3);
        let ids: Vec<Value> = (0..n).map(|_| principal(r, depth - 1)).collect();
        return match r.below(3) {
            0 => json!({"and_ids": {"ids": ids}}),
            1 => json!({"or_ids": {"ids": ids}}),
            _ => json!({"not_id": ids[0]}),
        };
    }
    match r.below(7) {
        0 => json!({"any": true}),
        1 => json!({"authenticated": {"principal_name": {"exact": r.pick(PEERS)}}}),
        2 => json!({"authenticated": {"principal_name": {"prefix": "spiffe://td/ns/a/"}}}),
        3 => header("x-tenant", r.pick(TENANTS), r.below(3) == 0),
        4 => json!({"remote_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}}),
        5 => json!({"authenticated": {}}),
        _ => header(":method", r.pick(METHODS), false),
    }
}

fn engine(policies: serde_json::Map<String, Value>, action: &str) -> Engine {
    let r: Rbac = serde_json::from_value(json!({"action": action, "policies": policies})).unwrap();
    Engine::compile("rules", &r).unwrap()
}

struct Request {
    method: &'static str,
    path: String,
    headers: ::http::HeaderMap,
    conn: ConnectionInfo,
}

fn request(r: &mut Rng) -> Request {
    let mut headers = ::http::HeaderMap::new();
    for _ in 0..r.below(3) {
        headers.append("x-tenant", r.pick(TENANTS).parse().unwrap());
    }
    let mut path = r.pick(PATHS).to_string();
    if r.below(3) == 0 {
        path.push_str("?q=1");
    }
    let tls = (r.below(3) != 0).then(|| {
        Box::new(TlsInfo {
            peer_identities: vec![r.pick(PEERS).to_string()],
            peer_subject: "CN=x".into(),
            ..Default::default()
        })
    });
    let port = r.pick(&[8443, 9080]);
    Request {
        method: r.pick(METHODS),
        path,
        headers,
        conn: ConnectionInfo {
            peer: "127.0.0.1:4000".parse().unwrap(),
            original_dst: None,
            local: Some(([10, 0, 0, 1], port).into()),
            tls,
            requested_server_name: None,
            client_cert: None,
        },
    }
}

fn input<'a>(q: &'a Request, metadata: &'a DynamicMetadata) -> Input<'a> {
    Input {
        conn: &q.conn,
        request: RequestView {
            method: q.method,
            authority: "svc",
            scheme: "http",
            path_and_query: &q.path,
            headers: &q.headers,
        },
        remote: q.conn.peer.ip(),
        metadata,
    }
}

#[test]
fn the_index_decides_as_the_scan_does_on_random_policies_and_requests() {
    let metadata = DynamicMetadata::default();
    let mut checked = 0;
    for seed in 1..=200u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let n = 4 + r.below(70);
        let policies = (0..n)
            .map(|i| {
                let perms: Vec<Value> =
                    (0..1 + r.below(2)).map(|_| permission(&mut r, 3)).collect();
                let ids: Vec<Value> = (0..1 + r.below(2)).map(|_| principal(&mut r, 3)).collect();
                (
                    format!("p{i:03}"),
                    json!({"permissions": perms, "principals": ids}),
                )
            })
            .collect();
        let e = engine(policies, "ALLOW");
        assert!(e.index.is_some(), "seed {seed}: {n} policies get an index");
        for _ in 0..100 {
            let q = request(&mut r);
            let i = input(&q, &metadata);
            assert_eq!(
                e.decide(&i).policy,
                e.decide_linear(&i),
                "seed {seed}: {} {} {:?} port {:?} peer {:?}",
                q.method,
                q.path,
                q.headers,
                q.conn.local,
                q.conn.tls.as_ref().map(|t| &t.peer_identities)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 20_000);
}

#[test]
fn an_istio_shaped_policy_set_leaves_one_candidate() {
    // 200 rules as istiod writes `from.principals` + `to.paths` +
    // `to.methods` + `when request.headers[x-tenant] notValues`.
    let policies = (0..200)
        .map(|i| {
            let perm = json!({"and_rules": {"rules": [
                {"or_rules": {"rules": [header(":method", "GET", false)]}},
                {"or_rules": {"rules": [
                    {"url_path": {"path": {"prefix": format!("/svc-{i}/")}}},
                    {"url_path": {"path": {"exact": format!("/svc-{i}")}}}]}}]}});
            let id = json!({"and_ids": {"ids": [
                {"or_ids": {"ids": [{"authenticated": {"principal_name":
                    {"exact": format!("spiffe://td/ns/n/sa/sa-{}", i % 50)}}}]}},
                {"not_id": {"or_ids": {"ids": [header("x-tenant", "blocked", false)]}}}]}});
            (
                format!("ns[n]-policy[p{i}]-rule[0]"),
                json!({"permissions": [perm], "principals": [id]}),
            )
        })
        .collect();
    let e = engine(policies, "ALLOW");
    let metadata = DynamicMetadata::default();
    let mut q = Request {
        method: "GET",
        path: "/svc-57/items?x=1".into(),
        headers: ::http::HeaderMap::new(),
        conn: ConnectionInfo {
            peer: "10.1.1.1:4000".parse().unwrap(),
            original_dst: None,
            local: Some(([10, 0, 0, 1], 9080).into()),
            tls: Some(Box::new(TlsInfo {
                peer_identities: vec!["spiffe://td/ns/n/sa/sa-7".into()],
                ..Default::default()
            })),
            requested_server_name: None,
            client_cert: None,
        },
    };
    let ix = e.index.as_ref().unwrap();
    let found: Vec<usize> = ix.candidates(&input(&q, &metadata)).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let d = e.decide(&input(&q, &metadata));
    assert_eq!(d.policy, Some("ns[n]-policy[p57]-rule[0]"));
    // The wrong peer, a blocked tenant, or a POST: no candidate left.
    q.headers.insert("x-tenant", "blocked".parse().unwrap());
    assert_eq!(ix.candidates(&input(&q, &metadata)).count(), 0);
    assert!(!e.decide(&input(&q, &metadata)).allowed);
    q.headers.clear();
    q.method = "POST";
    assert_eq!(ix.candidates(&input(&q, &metadata)).count(), 0);
    q.method = "GET";
    q.conn.tls = None;
    assert_eq!(ix.candidates(&input(&q, &metadata)).count(), 0);
}
