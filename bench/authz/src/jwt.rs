//! The JWT case: a key set made at start (a P-256 key for ES256, a
//! 2048-bit RSA key for RS256, both in one inline JWKS), the filter
//! with one provider whose rule (prefix `/`) requires it, and a token
//! of each algorithm signed here, valid for a day, carried by every
//! request under load.
//!
//! Every request is verified in full by both proxies: Envoy caches
//! verified tokens only when a provider sets `jwt_cache_config` (not
//! set here), and weft has no such cache.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const JWT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
pub const ISSUER: &str = "https://issuer.bench.test";
pub const AUDIENCE: &str = "bench-api";
/// The provider's name, as istiod names a RequestAuthentication's
/// first JWT rule.
const PROVIDER: &str = "origins-0";

/// The signing algorithms measured, each a case of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// The JWKS and one valid token per algorithm.
pub struct Tokens {
    pub jwks: Value,
    pub es256: String,
    pub rs256: String,
}

impl Tokens {
    pub fn of(&self, alg: Alg) -> &str {
        match alg {
            Alg::Es256 => &self.es256,
            Alg::Rs256 => &self.rs256,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims the size and shape of an identity provider's access token.
fn claims() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": ISSUER, "sub": "user-1234", "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 86_400,
        "jti": "8d3c1f0e-5b7a-4e1c-9f2d-bench0000001",
        "email": "user-1234@bench.test", "scope": "items:read items:write",
        "groups": ["dev", "ops"], "azp": "bench-client"
    })
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    encode(&h, &claims(), key).expect("a signed token")
}

/// New keys, their JWKS, and a token signed with each.
pub fn tokens() -> Tokens {
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
    let point = ec.public_key_raw();
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
    let jwks = json!({"keys": [
        {"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
         "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())}
    ]});
    let rsa_der = rsa.to_pkcs1_der().expect("RSA DER");
    Tokens {
        es256: sign(
            &EncodingKey::from_ec_der(&ec.serialize_der()),
            Algorithm::ES256,
            "ec-1",
        ),
        rs256: sign(
            &EncodingKey::from_rsa_der(rsa_der.as_bytes()),
            Algorithm::RS256,
            "rsa-1",
        ),
        jwks,
    }
}

/// The filter's `typed_config`: one provider (the token from
/// `Authorization: Bearer`, the default; its payload into dynamic
/// metadata under `payload`), required on every path.
pub fn filter(jwks: &Value) -> Value {
    json!({
        "@type": JWT,
        "providers": {PROVIDER: {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": jwks.to_string()},
            "payload_in_metadata": "payload"
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}}]
    })
}
