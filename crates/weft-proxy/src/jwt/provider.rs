//! One JWT provider, compiled: where its tokens are, its keys (parsed
//! once from the inline or file JWKS), and what a verified token leaves
//! behind (metadata, headers, the token itself removed or kept).

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use weft_envoy::jwt::JwtProvider;

use super::token::{Jwt, Status, B64URL};
use super::JwtError;
use crate::metadata::DynamicMetadata;
use base64::Engine;

/// Where a token is looked for.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// A header, after `prefix` (when set).
    Header { name: HeaderName, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// A token found in a request, and where.
#[derive(Debug)]
pub(crate) struct Found {
    pub token: String,
    pub location: usize,
}

/// The characters a compact JWT is made of (and padding).
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+' | '/')
}

impl Location {
    fn find(&self, headers: &HeaderMap, query: &str, out: &mut Vec<Found>, location: usize) {
        match self {
            Location::Header { name, prefix } => {
                for v in headers.get_all(name) {
                    let Ok(v) = v.to_str() else { continue };
                    let token = if prefix.is_empty() {
                        v.to_string()
                    } else {
                        let Some(at) = v.find(prefix.as_str()) else {
                            continue;
                        };
                        let rest = &v[at + prefix.len()..];
                        let end = rest.find(|c| !token_char(c)).unwrap_or(rest.len());
                        rest[..end].to_string()
                    };
                    out.push(Found { token, location });
                }
            }
            Location::Param(p) => {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == p {
                        out.push(Found {
                            token: v.to_string(),
                            location,
                        });
                    }
                }
            }
            Location::Cookie(c) => {
                for v in headers.get_all(http::header::COOKIE) {
                    let Ok(v) = v.to_str() else { continue };
                    for pair in v.split(';') {
                        if let Some((k, v)) = pair.trim().split_once('=') {
                            if k == c {
                                out.push(Found {
                                    token: v.to_string(),
                                    location,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A key of the provider's JWKS.
struct Key {
    kid: Option<String>,
    alg: Option<String>,
    kty: String,
    crv: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &self.kty)
            .finish()
    }
}

impl Key {
    /// Whether this key's type can check a signature made with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let crv = self.crv.as_deref();
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => self.kty == "RSA",
            ES256 => self.kty == "EC" && crv.is_none_or(|c| c == "P-256"),
            ES384 => self.kty == "EC" && crv.is_none_or(|c| c == "P-384"),
            EdDSA => self.kty == "OKP",
            HS256 | HS384 | HS512 => self.kty == "oct",
        }
    }
}

/// A compiled `JwtProvider`.
#[derive(Debug)]
pub(crate) struct Provider {
    pub name: String,
    issuer: String,
    /// Sanitized as Envoy compares them (no scheme, no trailing slash).
    audiences: Vec<String>,
    keys: Vec<Key>,
    pub locations: Vec<Location>,
    forward: bool,
    forward_payload_header: Option<HeaderName>,
    pad_forward_payload_header: bool,
    payload_in_metadata: Option<Arc<str>>,
    /// Claims written to metadata as lists of their space-separated
    /// words (`normalize_payload_in_metadata`).
    space_delimited_claims: Vec<String>,
    claim_to_headers: Vec<(HeaderName, String)>,
    clock_skew: u64,
}

/// An audience as Envoy compares it: without `http://` / `https://`
/// and a trailing `/`.
fn sanitize(aud: &str) -> &str {
    let a = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    a.strip_suffix('/').unwrap_or(a)
}

fn header_name(at: &str, name: &str) -> Result<HeaderName, JwtError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| JwtError::Invalid {
        field: at.to_string(),
        message: format!("{name:?} is not a valid header name"),
    })
}

fn jwks(at: &str, text: &str) -> Result<Vec<Key>, JwtError> {
    let err = |message: String| JwtError::Invalid {
        field: at.to_string(),
        message,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
    let Some(Value::Array(list)) = v.get("keys") else {
        return Err(err("a JWKS needs a \"keys\" list".into()));
    };
    let mut keys = Vec::with_capacity(list.len());
    for (i, k) in list.iter().enumerate() {
        let s = |f: &str| k.get(f).and_then(Value::as_str).map(str::to_string);
        let jwk: Jwk = serde_json::from_value(k.clone())
            .map_err(|e| err(format!("keys[{i}]: not a key weft can use: {e}")))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| err(format!("keys[{i}]: {e}")))?;
        keys.push(Key {
            kid: s("kid"),
            alg: s("alg"),
            kty: s("kty").unwrap_or_default(),
            crv: s("crv"),
            key,
        });
    }
    Ok(keys)
}

impl Provider {
    /// `at` is where errors point, e.g. `providers.name`.
    pub(crate) fn compile(at: &str, name: &str, p: &JwtProvider) -> Result<Self, JwtError> {
        let jat = format!("{at}.local_jwks");
        let text = match &p.local_jwks {
            Some(ds) => match (&ds.inline_string, &ds.inline_bytes, &ds.filename) {
                (Some(s), _, _) => s.clone(),
                (_, Some(b), _) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| JwtError::Invalid {
                        field: format!("{jat}.inline_bytes"),
                        message: "not base64 of UTF-8 text".into(),
                    })?,
                (_, _, Some(f)) => std::fs::read_to_string(f).map_err(|e| JwtError::Invalid {
                    field: format!("{jat}.filename"),
                    message: format!("cannot read {f}: {e}"),
                })?,
                _ => String::new(),
            },
            None => {
                return Err(JwtError::Invalid {
                    field: jat,
                    message: "required (remote_jwks is not implemented by weft)".into(),
                })
            }
        };
        let keys = jwks(&jat, &text)?;
        let mut locations = Vec::new();
        for (i, h) in p.from_headers.iter().enumerate() {
            locations.push(Location::Header {
                name: header_name(&format!("{at}.from_headers[{i}].name"), &h.name)?,
                prefix: h.value_prefix.clone(),
            });
        }
        locations.extend(p.from_params.iter().cloned().map(Location::Param));
        locations.extend(p.from_cookies.iter().cloned().map(Location::Cookie));
        if locations.is_empty() {
            locations.push(Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".into(),
            });
            locations.push(Location::Param("access_token".into()));
        }
        let claim_to_headers = p
            .claim_to_headers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let h = header_name(
                    &format!("{at}.claim_to_headers[{i}].header_name"),
                    &c.header_name,
                )?;
                Ok((h, c.claim_name.clone()))
            })
            .collect::<Result<_, JwtError>>()?;
        Ok(Provider {
            name: name.to_string(),
            issuer: p.issuer.clone(),
            audiences: p
                .audiences
                .iter()
                .map(|a| sanitize(a).to_string())
                .collect(),
            keys,
            locations,
            forward: p.forward,
            forward_payload_header: match p.forward_payload_header.as_str() {
                "" => None,
                h => Some(header_name(&format!("{at}.forward_payload_header"), h)?),
            },
            pad_forward_payload_header: p.pad_forward_payload_header,
            payload_in_metadata: match p.payload_in_metadata.as_str() {
                "" => None,
                k => Some(Arc::from(k)),
            },
            space_delimited_claims: p
                .normalize_payload_in_metadata
                .as_ref()
                .map(|n| n.space_delimited_claims.clone())
                .unwrap_or_default(),
            claim_to_headers,
            clock_skew: u64::from(p.clock_skew_seconds.unwrap_or(60)),
        })
    }

    /// The tokens in this provider's locations.
    pub(crate) fn extract(&self, headers: &HeaderMap, query: &str) -> Vec<Found> {
        let mut out = Vec::new();
        for (i, l) in self.locations.iter().enumerate() {
            l.find(headers, query, &mut out, i);
        }
        out
    }

    /// Whether this provider takes tokens from `iss`.
    pub(crate) fn issues(&self, iss: &str) -> bool {
        self.issuer.is_empty() || self.issuer == iss
    }

    /// Verifies a token: its form, issuer, times, audiences and
    /// signature, in Envoy's order. The payload when it holds.
    pub(crate) fn verify<'t>(&self, token: &'t str, now: u64) -> Result<Jwt<'t>, Status> {
        let jwt = Jwt::parse(token)?;
        if !self.issues(&jwt.iss) {
            return Err(Status::UnknownIssuer);
        }
        jwt.check_time(now, self.clock_skew)?;
        if !self.audiences.is_empty()
            && !jwt
                .aud
                .iter()
                .any(|a| self.audiences.iter().any(|x| x == sanitize(a)))
        {
            return Err(Status::AudienceNotAllowed);
        }
        let mut matched = false;
        for k in &self.keys {
            if let (Some(want), Some(have)) = (&jwt.kid, &k.kid) {
                if want != have {
                    continue;
                }
            }
            if k.alg.as_ref().is_some_and(|a| *a != jwt.alg_name) {
                continue;
            }
            matched = true;
            if k.fits(jwt.alg)
                && jsonwebtoken::crypto::verify(
                    &jwt.signature,
                    jwt.signed.as_bytes(),
                    &k.key,
                    jwt.alg,
                )
                .unwrap_or(false)
            {
                return Ok(jwt);
            }
        }
        Err(if matched {
            Status::VerificationFail
        } else {
            Status::KidAlgMismatch
        })
    }

    /// What a verified token leaves: the payload in metadata and a
    /// header, claims in headers, and the token removed unless
    /// forwarded.
    pub(crate) fn output(
        &self,
        jwt: &Jwt,
        headers: &mut HeaderMap,
        metadata: &mut DynamicMetadata,
    ) {
        if let Some(key) = &self.payload_in_metadata {
            let mut payload = jwt.payload.clone();
            for claim in &self.space_delimited_claims {
                // Only a string is split (Envoy leaves other types as
                // they are); empty words from repeated spaces are dropped.
                if let Some(Value::String(s)) = payload.get(claim) {
                    let words = s
                        .split(' ')
                        .filter(|w| !w.is_empty())
                        .map(|w| Value::String(w.to_string()))
                        .collect();
                    payload.insert(claim.clone(), Value::Array(words));
                }
            }
            metadata.set(&super::NAMESPACE, key, Value::Object(payload));
        }
        if let Some(h) = &self.forward_payload_header {
            let v = if self.pad_forward_payload_header {
                let raw = B64URL.decode(jwt.payload_b64).unwrap_or_default();
                base64::engine::general_purpose::URL_SAFE.encode(raw)
            } else {
                jwt.payload_b64.trim_end_matches('=').to_string()
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(h.clone(), v);
            }
        }
        for (h, claim) in &self.claim_to_headers {
            if let Some(v) = claim_value(&jwt.payload, claim) {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(h.clone(), v);
                }
            }
        }
    }

    /// Removes the header a token was found in (by this provider's
    /// locations) unless `verifier`, the provider that verified it,
    /// forwards tokens; a query parameter's name goes to `params`, for
    /// the caller to take out of the path. Cookies stay, as in Envoy.
    pub(crate) fn remove_token(
        &self,
        verifier: &Provider,
        found: &Found,
        headers: &mut HeaderMap,
        params: &mut Vec<String>,
    ) {
        if verifier.forward {
            return;
        }
        match self.locations.get(found.location) {
            Some(Location::Header { name, .. }) => {
                headers.remove(name);
            }
            Some(Location::Param(p)) => params.push(p.clone()),
            _ => {}
        }
    }
}

/// A claim as a header value: strings as they are, numbers and booleans
/// printed; nested claims by dotted name.
fn claim_value(payload: &Map<String, Value>, claim: &str) -> Option<String> {
    let mut parts = claim.split('.');
    let mut v = payload.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
