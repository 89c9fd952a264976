//! A JWT taken apart (RFC 7519 compact form, `header.payload.signature`)
//! and checked for form, with the verdicts Envoy words them in: each
//! [`Status`] carries the body Envoy's 401 (or 403) says.

use std::str::FromStr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// base64url, padded or not, and with nonzero bits after the last
/// byte (Envoy's decoder accepts all three).
pub(super) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a requirement failed, as Envoy's JWT library names the cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Missing,
    NotYetValid,
    Expired,
    BadFormat,
    HeaderBadBase64,
    HeaderBadJson,
    HeaderBadAlg,
    HeaderNotImplementedAlg,
    HeaderBadKid,
    PayloadBadBase64,
    PayloadBadJson,
    IssNotString,
    SubNotString,
    IatNotInteger,
    IatOutOfRange,
    NbfNotInteger,
    NbfOutOfRange,
    ExpNotInteger,
    ExpOutOfRange,
    JtiNotString,
    AudNotString,
    SignatureBadBase64,
    UnknownIssuer,
    AudienceNotAllowed,
    VerificationFail,
    KidAlgMismatch,
}

impl Status {
    /// The body of the local reply.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Status::Missing => "Jwt is missing",
            Status::NotYetValid => "Jwt not yet valid",
            Status::Expired => "Jwt is expired",
            Status::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Status::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            Status::HeaderBadJson => "Jwt header is an invalid JSON",
            Status::HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            Status::HeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            Status::HeaderBadKid => "Jwt header [kid] field is not a string",
            Status::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Status::PayloadBadJson => "Jwt payload is an invalid JSON",
            Status::IssNotString => "Jwt payload [iss] field is not a string",
            Status::SubNotString => "Jwt payload [sub] field is not a string",
            Status::IatNotInteger => "Jwt payload [iat] field is not an integer",
            Status::IatOutOfRange => "Jwt payload [iat] field is not a positive 64 bit integer",
            Status::NbfNotInteger => "Jwt payload [nbf] field is not an integer",
            Status::NbfOutOfRange => "Jwt payload [nbf] field is not a positive 64 bit integer",
            Status::ExpNotInteger => "Jwt payload [exp] field is not an integer",
            Status::ExpOutOfRange => "Jwt payload [exp] field is not a positive 64 bit integer",
            Status::JtiNotString => "Jwt payload [jti] field is not a string",
            Status::AudNotString => "Jwt payload [aud] field is not a string or string list",
            Status::SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            Status::UnknownIssuer => "Jwt issuer is not configured",
            Status::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Status::VerificationFail => "Jwt verification fails",
            Status::KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
        }
    }
}

/// A token in good form; nothing about it is trusted yet.
#[derive(Debug)]
pub(crate) struct Jwt<'a> {
    pub alg: Algorithm,
    /// As written in the header (for key matching by name).
    pub alg_name: String,
    pub kid: Option<String>,
    pub iss: String,
    pub aud: Vec<String>,
    /// 0 when absent.
    pub nbf: u64,
    pub exp: u64,
    pub payload: Map<String, Value>,
    /// The payload as it came, base64url.
    pub payload_b64: &'a str,
    /// `header.payload`: what the signature signs.
    pub signed: &'a str,
    /// base64url, re-encoded canonically (what the verifier decodes).
    pub signature: String,
}

fn object(b64: &str, bad64: Status, badjson: Status) -> Result<Map<String, Value>, Status> {
    let raw = B64URL.decode(b64).map_err(|_| bad64)?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(badjson),
    }
}

fn time(v: Option<&Value>, not_int: Status, range: Status) -> Result<u64, Status> {
    match v {
        None => Ok(0),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Ok(u),
            (None, Some(_)) => Err(range),
            _ => Err(not_int),
        },
        Some(_) => Err(not_int),
    }
}

impl<'a> Jwt<'a> {
    pub(crate) fn parse(token: &'a str) -> Result<Self, Status> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Status::BadFormat);
        };
        let header = object(h, Status::HeaderBadBase64, Status::HeaderBadJson)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(Status::HeaderBadAlg),
        };
        let alg = Algorithm::from_str(&alg_name).map_err(|_| Status::HeaderNotImplementedAlg)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(Status::HeaderBadKid),
        };
        let payload = object(p, Status::PayloadBadBase64, Status::PayloadBadJson)?;
        let string = |k: &str, bad: Status| match payload.get(k) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad),
        };
        let iss = string("iss", Status::IssNotString)?;
        string("sub", Status::SubNotString)?;
        string("jti", Status::JtiNotString)?;
        time(
            payload.get("iat"),
            Status::IatNotInteger,
            Status::IatOutOfRange,
        )?;
        let nbf = time(
            payload.get("nbf"),
            Status::NbfNotInteger,
            Status::NbfOutOfRange,
        )?;
        let exp = time(
            payload.get("exp"),
            Status::ExpNotInteger,
            Status::ExpOutOfRange,
        )?;
        let aud = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_string).ok_or(Status::AudNotString))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Status::AudNotString),
        };
        let signature = B64URL.encode(B64URL.decode(s).map_err(|_| Status::SignatureBadBase64)?);
        Ok(Jwt {
            alg,
            alg_name,
            kid,
            iss,
            aud,
            nbf,
            exp,
            payload,
            payload_b64: p,
            signed: &token[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// `exp` and `nbf` against `now` (seconds), with `skew` either way.
    pub(crate) fn check_time(&self, now: u64, skew: u64) -> Result<(), Status> {
        if self.nbf > now.saturating_add(skew) {
            return Err(Status::NotYetValid);
        }
        if self.exp != 0 && now > self.exp.saturating_add(skew) {
            return Err(Status::Expired);
        }
        Ok(())
    }
}
