//! Envoy parity for the JWT authentication filter: one bootstrap under
//! Envoy and weft, a key set made here (an RSA and a P-256 key in an
//! inline JWKS), tokens signed here, and the same requests to both.
//! Compared: status, body, content type, `www-authenticate`, and what
//! the backend sees (the token header removed, the payload header, a
//! claim header); RBAC after the JWT filter reads the payload from
//! dynamic metadata (`metadata` principal on `[payload, sub]`).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use support::pair::{bootstrap, socket, static_cluster, Pair, HCM, ROUTER};
use support::*;

const JWT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
const JWT_PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig";
const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const ISSUER: &str = "https://issuer.test";

struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    p384: EncodingKey,
    ed: EncodingKey,
    /// A key no JWKS has, under a known kid (a forged signature).
    other: EncodingKey,
    jwks: Value,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn keys() -> Keys {
    let mut rng = rsa::rand_core::OsRng;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
    let other = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
    let point = ec.public_key_raw();
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("a P-384 key");
    let p384_point = p384.public_key_raw();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("an Ed25519 key");
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
         "n": b64(&rsa_key.n().to_bytes_be()), "e": b64(&rsa_key.e().to_bytes_be())},
        {"kty": "EC", "kid": "e1", "crv": "P-256",
         "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        {"kty": "RSA", "kid": "r2",
         "n": b64(&rsa_key.n().to_bytes_be()), "e": b64(&rsa_key.e().to_bytes_be())},
        {"kty": "EC", "kid": "e2", "crv": "P-384", "alg": "ES384",
         "x": b64(&p384_point[1..49]), "y": b64(&p384_point[49..97])},
        {"kty": "OKP", "kid": "d1", "crv": "Ed25519", "x": b64(ed.public_key_raw())}
    ]});
    let der = |k: &rsa::RsaPrivateKey| k.to_pkcs1_der().expect("DER").as_bytes().to_vec();
    Keys {
        rsa: EncodingKey::from_rsa_der(&der(&rsa_key)),
        ec: EncodingKey::from_ec_der(&ec.serialize_der()),
        p384: EncodingKey::from_ec_der(&p384.serialize_der()),
        ed: EncodingKey::from_ed_der(&ed.serialize_der()),
        other: EncodingKey::from_rsa_der(&der(&other)),
        jwks,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, &claims, key).expect("a signed token")
}

fn claims(extra: Value) -> Value {
    let mut c =
        json!({"iss": ISSUER, "sub": "alice", "aud": "api", "exp": now() + 3600, "iat": now()});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn listener(port: u16, jwks: &Value) -> Value {
    let provider = json!({
        "issuer": ISSUER,
        "audiences": ["api"],
        "local_jwks": {"inline_string": jwks.to_string()},
        "payload_in_metadata": "payload",
        "normalize_payload_in_metadata": {"space_delimited_claims": ["scope", "perms"]},
        "forward_payload_header": "x-jwt-payload",
        "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
    });
    let mut forwarding = provider.clone();
    forwarding["forward"] = json!(true);
    forwarding["from_headers"] = json!([{"name": "x-token", "value_prefix": "T "}]);
    forwarding["from_params"] = json!(["tok"]);
    let mut cookie = provider.clone();
    cookie["from_cookies"] = json!(["session"]);
    let jwt = json!({
        "@type": JWT,
        "providers": {"main": provider, "fwd": forwarding, "cookie": cookie},
        "requirement_map": {"either": {"requires_any": {"requirements": [
            {"provider_name": "fwd"}, {"provider_name": "cookie"}]}}},
        "rules": [
            {"match": {"prefix": "/open"}},
            {"match": {"prefix": "/optional"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "main"}, {"allow_missing": {}}]}}},
            {"match": {"prefix": "/fwd"}, "requires": {"provider_name": "fwd"}},
            {"match": {"prefix": "/cookie"}, "requires": {"provider_name": "cookie"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}
        ]
    });
    let alice = json!({"metadata": {"filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": "sub"}],
        "value": {"string_match": {"exact": "alice"}}}});
    // Istio's shape for a claim: one of a list, or the string itself.
    let write = json!({"string_match": {"exact": "write"}});
    let scope_write = json!({"metadata": {"filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": "scope"}],
        "value": {"or_match": {"value_matchers": [
            {"list_match": {"one_of": write}}, write]}}}});
    let rbac = json!({"@type": RBAC, "rules": {"policies": {
        "rest": {"permissions": [{"not_rule": {"url_path": {"path": {"prefix": "/rbac"}}}}],
                 "principals": [{"any": true}]},
        "writers": {"permissions": [{"url_path": {"path": {"prefix": "/rbac/scoped"}}}],
                  "principals": [scope_write]},
        "alice": {"permissions": [{"url_path": {"path": {"prefix": "/rbac"}}}],
                  "principals": [alice]}
    }}});
    json!({
        "name": "jwt",
        "address": socket(port),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": HCM, "stat_prefix": "jwt",
                "http_filters": [
                    {"name": "envoy.filters.http.jwt_authn", "typed_config": jwt},
                    {"name": "envoy.filters.http.rbac", "typed_config": rbac},
                    {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
                "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/off"}, "route": {"cluster": "backend"},
                         "typed_per_filter_config": {"envoy.filters.http.jwt_authn":
                            {"@type": JWT_PER_ROUTE, "disabled": true}}},
                        {"match": {"prefix": "/named"}, "route": {"cluster": "backend"},
                         "typed_per_filter_config": {"envoy.filters.http.jwt_authn":
                            {"@type": JWT_PER_ROUTE, "requirement_name": "either"}}},
                        {"match": {"prefix": "/", "headers": [{"name": "x-unrouted", "present_match": false}]},
                         "route": {"cluster": "backend"}}]}]}}}]}]
    })
}

/// What is compared of a reply.
fn summary(r: &Reply) -> Value {
    let seen = r.seen();
    let header = |name: &str| {
        seen.as_ref()
            .and_then(|s| s["headers"].get(name).cloned())
            .unwrap_or(Value::Null)
    };
    json!({
        "status": r.status,
        "body": if seen.is_some() { Value::Null } else { json!(r.body) },
        "content-type": r.headers.get("content-type"),
        "www-authenticate": r.headers.get("www-authenticate"),
        "authorization": header("authorization"),
        "x-token": header("x-token"),
        "cookie": header("cookie"),
        "x-jwt-payload": header("x-jwt-payload"),
        "x-sub": header("x-sub"),
        "path": seen.as_ref().map(|s| s["path"].clone()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_authn_matches_envoy() {
    let k = keys();
    let backend = echo_backend("backend").await.port();
    let jwks = k.jwks.clone();
    let pair = Pair::start(|listen, admin| {
        bootstrap(
            admin,
            vec![listener(listen, &jwks)],
            &[static_cluster("backend", backend, false)],
        )
    })
    .await;
    let rs = |c: Value| sign(&k.rsa, Algorithm::RS256, Some("r1"), claims(c));
    let valid = rs(json!({}));
    let es = sign(&k.ec, Algorithm::ES256, Some("e1"), claims(json!({})));
    let no_kid = sign(&k.ec, Algorithm::ES256, None, claims(json!({})));
    let bob = rs(json!({"sub": "bob"}));
    // Space-delimited claims: split into lists in metadata (repeated
    // spaces too), left alone when not a string.
    let scoped = [
        rs(json!({"sub": "bob", "scope": "read write"})),
        rs(json!({"sub": "bob", "scope": "read  write "})),
        rs(json!({"sub": "bob", "scope": "read"})),
        rs(json!({"sub": "bob", "scope": "write"})),
        rs(json!({"sub": "bob", "scope": ["read", "write"]})),
        rs(json!({"sub": "bob", "scope": 7})),
    ];
    let ps_r2 = sign(&k.rsa, Algorithm::PS256, Some("r2"), claims(json!({})));
    let rs512_r2 = sign(&k.rsa, Algorithm::RS512, Some("r2"), claims(json!({})));
    // r1 is RS256 only; e1 takes any alg but is no RSA key.
    let ps_no_kid = sign(&k.rsa, Algorithm::PS256, None, claims(json!({})));
    let ps_r1 = sign(&k.rsa, Algorithm::PS384, Some("r1"), claims(json!({})));
    let es384 = sign(&k.p384, Algorithm::ES384, Some("e2"), claims(json!({})));
    let es384_no_kid = sign(&k.p384, Algorithm::ES384, None, claims(json!({})));
    let eddsa = sign(&k.ed, Algorithm::EdDSA, Some("d1"), claims(json!({})));
    let eddsa_wrong_kid = sign(&k.ed, Algorithm::EdDSA, Some("e1"), claims(json!({})));
    let expired = rs(json!({"exp": now() - 3600}));
    let skewed = rs(json!({"exp": now() - 30}));
    let early = rs(json!({"nbf": now() + 3600}));
    let wrong_iss = rs(json!({"iss": "https://other.test"}));
    let wrong_aud = rs(json!({"aud": ["web", "mobile"]}));
    let url_aud = rs(json!({"aud": "https://api/"}));
    let forged = sign(&k.other, Algorithm::RS256, Some("r1"), claims(json!({})));
    let unknown_kid = sign(&k.rsa, Algorithm::RS256, Some("nope"), claims(json!({})));
    // A signature byte changed, and (the same signature to a lenient
    // decoder) only the unused bits after the last byte.
    let mut tampered = valid.clone();
    let mid = valid.len() - 20;
    let c = if &valid[mid..=mid] == "A" { "B" } else { "A" };
    tampered.replace_range(mid..=mid, c);
    let mut trailing = valid.clone();
    let last = trailing.pop().unwrap();
    trailing.push(match last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        c => c,
    });
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        ("/".into(), vec![]),
        ("/".into(), vec![("authorization".into(), bearer(&valid))]),
        ("/".into(), vec![("authorization".into(), bearer(&es))]),
        ("/".into(), vec![("authorization".into(), bearer(&no_kid))]),
        ("/".into(), vec![("authorization".into(), bearer(&ps_r2))]),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&rs512_r2))],
        ),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&ps_no_kid))],
        ),
        ("/".into(), vec![("authorization".into(), bearer(&ps_r1))]),
        ("/".into(), vec![("authorization".into(), bearer(&es384))]),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&es384_no_kid))],
        ),
        ("/".into(), vec![("authorization".into(), bearer(&eddsa))]),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&eddsa_wrong_kid))],
        ),
        ("/".into(), vec![("authorization".into(), bearer(&expired))]),
        ("/".into(), vec![("authorization".into(), bearer(&skewed))]),
        ("/".into(), vec![("authorization".into(), bearer(&early))]),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&wrong_iss))],
        ),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&wrong_aud))],
        ),
        ("/".into(), vec![("authorization".into(), bearer(&url_aud))]),
        ("/".into(), vec![("authorization".into(), bearer(&forged))]),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&tampered))],
        ),
        (
            "/".into(),
            vec![("authorization".into(), bearer(&unknown_kid))],
        ),
        (
            "/".into(),
            vec![("authorization".into(), bearer("not-a-jwt"))],
        ),
        (
            "/".into(),
            vec![("authorization".into(), format!("Basic {valid}"))],
        ),
        (format!("/q?access_token={valid}"), vec![]),
        (format!("/q?access_token={expired}"), vec![]),
        ("/open".into(), vec![]),
        (
            "/open".into(),
            vec![("authorization".into(), bearer(&expired))],
        ),
        ("/optional".into(), vec![]),
        (
            "/optional".into(),
            vec![("authorization".into(), bearer(&valid))],
        ),
        (
            "/optional".into(),
            vec![("authorization".into(), bearer(&expired))],
        ),
        (
            "/fwd".into(),
            vec![("x-token".into(), format!("T {valid}"))],
        ),
        (
            "/fwd".into(),
            vec![("authorization".into(), bearer(&valid))],
        ),
        (format!("/fwd?tok={valid}"), vec![]),
        (
            "/rbac".into(),
            vec![("authorization".into(), bearer(&valid))],
        ),
        ("/rbac".into(), vec![("authorization".into(), bearer(&bob))]),
        (
            "/rbac/scoped".into(),
            vec![("authorization".into(), bearer(&scoped[0]))],
        ),
        (
            "/rbac/scoped".into(),
            vec![("authorization".into(), bearer(&scoped[1]))],
        ),
        (
            "/rbac/scoped".into(),
            vec![("authorization".into(), bearer(&scoped[2]))],
        ),
        (
            "/rbac/scoped".into(),
            vec![("authorization".into(), bearer(&scoped[3]))],
        ),
        (
            "/rbac/scoped".into(),
            vec![("authorization".into(), bearer(&scoped[4]))],
        ),
        (
            "/rbac/scoped".into(),
            vec![("authorization".into(), bearer(&scoped[5]))],
        ),
        ("/rbac".into(), vec![]),
        (
            "/cookie".into(),
            vec![("cookie".into(), format!("a=b; session={valid}"))],
        ),
        (
            "/cookie".into(),
            vec![("cookie".into(), format!("session={expired}"))],
        ),
        (
            "/cookie".into(),
            vec![("authorization".into(), bearer(&valid))],
        ),
        ("/off".into(), vec![]),
        (
            "/off".into(),
            vec![("authorization".into(), bearer(&expired))],
        ),
        ("/named".into(), vec![]),
        (
            "/named".into(),
            vec![("x-token".into(), format!("T {valid}"))],
        ),
        (
            "/named".into(),
            vec![("cookie".into(), format!("session={valid}"))],
        ),
        (
            "/named".into(),
            vec![("cookie".into(), format!("session={forged}"))],
        ),
        ("/nowhere".into(), vec![("x-unrouted".into(), "1".into())]),
        (
            "/nowhere".into(),
            vec![
                ("x-unrouted".into(), "1".into()),
                ("authorization".into(), bearer(&valid)),
            ],
        ),
        ("/open".into(), vec![("x-unrouted".into(), "1".into())]),
    ];
    let mut diffs = Vec::new();
    let mut scoped_statuses = Vec::new();
    for (path, headers) in &cases {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut got = Vec::new();
        for port in [pair.envoy_port, pair.weft_port] {
            let url = format!("http://127.0.0.1:{port}{path}");
            let r = request("GET", &url, &h, false).await.expect("a reply");
            let mut s = summary(&r);
            // The realm names the port each listens on.
            if let Some(w) = s["www-authenticate"].as_str() {
                s["www-authenticate"] = json!(w.replace(&port.to_string(), "PORT"));
            }
            got.push(s);
        }
        if path == "/rbac/scoped" {
            scoped_statuses.push(got[0]["status"].clone());
        }
        if got[0] != got[1] {
            diffs.push(format!(
                "{path} {headers:?}\n  envoy: {}\n  weft:  {}",
                got[0], got[1]
            ));
        }
    }
    pair.stop();
    // What Envoy decided for the scoped tokens, in order: the words of a
    // space-delimited string are list members; a list stays a list.
    assert_eq!(
        scoped_statuses,
        [
            json!(200),
            json!(200),
            json!(403),
            json!(200),
            json!(200),
            json!(403)
        ],
        "scope: \"read write\", \"read  write \", \"read\", \"write\", [read, write], 7"
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
