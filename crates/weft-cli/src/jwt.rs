//! `weft jwt`: the demo issuer's tools — make a signing key, print its
//! public key set (JWKS) for a RequestAuthentication, and sign tokens
//! with it, so the JWT steps of the tour need nothing from outside.
//! Keys are ECDSA P-256 in PKCS#8 PEM; tokens are ES256.

use std::path::Path;

use anyhow::{bail, Context as _};
use base64::Engine;
use serde_json::{json, Map, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn load(key: &Path) -> anyhow::Result<rcgen::KeyPair> {
    let pem = std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    rcgen::KeyPair::from_pem(&pem)
        .with_context(|| format!("{}: not a PKCS#8 PEM key", key.display()))
}

/// The key's id: its RFC 7638 thumbprint (SHA-256 of the required
/// members in lexical order), as issuers commonly name keys.
fn kid(key: &rcgen::KeyPair) -> String {
    let point = key.public_key_raw();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64(&point[1..33]),
        b64(&point[33..65])
    );
    b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// The public half of `key` as a JWKS.
pub fn jwks(key: &Path) -> anyhow::Result<Value> {
    let k = load(key)?;
    let point = k.public_key_raw();
    if point.len() != 65 {
        bail!("{}: not a P-256 key", key.display());
    }
    Ok(
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
        "kid": kid(&k), "x": b64(&point[1..33]), "y": b64(&point[33..65])}]}),
    )
}

/// A new key written to `out` (refusing to overwrite one).
pub fn new_key(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!("{} exists; not overwriting a key", out.display());
    }
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    std::fs::write(out, k.serialize_pem()).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// A token signed with `key`: `iss`, `sub`, `aud` when given, `iat` and
/// `exp` (`ttl` seconds on), and each `NAME=VALUE` claim (VALUE as JSON
/// when it parses, else a string).
pub fn token(
    key: &Path,
    iss: &str,
    sub: &str,
    aud: &[String],
    claims: &[String],
    ttl: i64,
) -> anyhow::Result<String> {
    let k = load(key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut payload = Map::new();
    payload.insert("iss".into(), json!(iss));
    payload.insert("sub".into(), json!(sub));
    match aud {
        [] => {}
        [one] => {
            payload.insert("aud".into(), json!(one));
        }
        many => {
            payload.insert("aud".into(), json!(many));
        }
    }
    payload.insert("iat".into(), json!(now));
    payload.insert("exp".into(), json!(now + ttl));
    for c in claims {
        let Some((name, value)) = c.split_once('=') else {
            bail!("--claim {c:?}: expected NAME=VALUE");
        };
        let v = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        payload.insert(name.to_string(), v);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid(&k));
    let signer = jsonwebtoken::EncodingKey::from_ec_der(&k.serialize_der());
    Ok(jsonwebtoken::encode(&header, &payload, &signer)?)
}
