//! JWT authentication, as Envoy's `envoy.filters.http.jwt_authn` does
//! it: providers (where a token is, which keys sign it, what a verified
//! token leaves behind) and requirements (which providers a request
//! needs), chosen by the filter's rules or by a route's
//! `PerRouteConfig`. Compiled once per configuration: keys are parsed
//! then, and a request takes no lock.
//!
//! - [`token`]: a token's form and Envoy's words for what is wrong.
//! - [`provider`]: extraction, verification, outputs.
//!
//! A request that fails gets a 401 with the verdict as its body (a 403
//! for audiences not allowed) and a `www-authenticate` header naming
//! the request's URL as realm.

mod provider;
mod token;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderValue, Method};
use regex::Regex;
use weft_envoy::jwt::{JwtAuthentication, JwtRequirement, PerRouteConfig};

use crate::matchers::{full_regex, HeaderMatch, RequestView};
use crate::metadata::DynamicMetadata;
use provider::Provider;
pub(crate) use token::Status;

/// The filter's metadata namespace.
pub(crate) static NAMESPACE: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("envoy.filters.http.jwt_authn"));

/// Why a JWT configuration could not be compiled. `field` is relative
/// to the filter's settings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> JwtError {
    JwtError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A compiled `JwtRequirement`.
#[derive(Debug)]
enum Requirement {
    Provider(usize),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    AllowMissing,
    AllowMissingOrFailed,
}

impl Requirement {
    fn compile(at: &str, r: &JwtRequirement, providers: &[Provider]) -> Result<Self, JwtError> {
        let list = |key: &str, l: &weft_envoy::jwt::JwtRequirementList| {
            l.requirements
                .iter()
                .enumerate()
                .map(|(i, r)| Self::compile(&format!("{at}.{key}.requirements[{i}]"), r, providers))
                .collect::<Result<Vec<_>, _>>()
        };
        if let Some(name) = &r.provider_name {
            return providers
                .iter()
                .position(|p| p.name == *name)
                .map(Requirement::Provider)
                .ok_or_else(|| {
                    invalid(
                        format!("{at}.provider_name"),
                        format!("no provider named {name:?}"),
                    )
                });
        }
        if let Some(l) = &r.requires_any {
            return Ok(Requirement::Any(list("requires_any", l)?));
        }
        if let Some(l) = &r.requires_all {
            return Ok(Requirement::All(list("requires_all", l)?));
        }
        if r.allow_missing.is_some() {
            return Ok(Requirement::AllowMissing);
        }
        if r.allow_missing_or_failed.is_some() {
            return Ok(Requirement::AllowMissingOrFailed);
        }
        Err(invalid(at, "a requirement needs one of provider_name, requires_any, requires_all, allow_missing_or_failed, allow_missing"))
    }
}

/// Which requests a rule covers.
#[derive(Debug)]
enum PathTest {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct Rule {
    path: PathTest,
    headers: Vec<HeaderMatch>,
    /// `None`: matching requests need nothing.
    requirement: Option<Arc<Requirement>>,
}

/// A request as the filter sees it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a mut HeaderMap,
}

/// A refused request: the status, body and `www-authenticate`.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub status: u16,
    pub body: &'static str,
    pub www_authenticate: HeaderValue,
}

/// A compiled `JwtAuthentication`.
#[derive(Debug)]
pub struct JwtAuthn {
    providers: Vec<Provider>,
    rules: Vec<Rule>,
    requirement_map: BTreeMap<String, Arc<Requirement>>,
    bypass_cors_preflight: bool,
}

/// A compiled `PerRouteConfig`.
#[derive(Debug)]
pub enum JwtPerRoute {
    Disabled,
    Requirement(String),
}

impl JwtPerRoute {
    pub(crate) fn compile(c: &PerRouteConfig) -> Self {
        if c.disabled {
            JwtPerRoute::Disabled
        } else {
            JwtPerRoute::Requirement(c.requirement_name.clone())
        }
    }
}

impl JwtAuthn {
    pub(crate) fn compile(c: &JwtAuthentication) -> Result<Self, JwtError> {
        let providers = c
            .providers
            .iter()
            .map(|(name, p)| Provider::compile(&format!("providers.{name}"), name, p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut requirement_map = BTreeMap::new();
        for (name, r) in &c.requirement_map {
            let at = format!("requirement_map.{name}");
            requirement_map.insert(
                name.clone(),
                Arc::new(Requirement::compile(&at, r, &providers)?),
            );
        }
        let mut rules = Vec::with_capacity(c.rules.len());
        for (i, r) in c.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let m = &r.match_;
            let path = match (&m.prefix, &m.path, &m.safe_regex) {
                (Some(p), _, _) => PathTest::Prefix(p.clone()),
                (_, Some(p), _) => PathTest::Exact(p.clone()),
                (_, _, Some(re)) => PathTest::Regex(
                    full_regex(&re.regex)
                        .map_err(|e| invalid(format!("{at}.match.safe_regex"), e))?,
                ),
                _ => {
                    return Err(invalid(
                        format!("{at}.match"),
                        "needs prefix, path or safe_regex",
                    ))
                }
            };
            let headers = m
                .headers
                .iter()
                .enumerate()
                .map(|(j, h)| {
                    HeaderMatch::compile(h)
                        .map_err(|e| invalid(format!("{at}.match.headers[{j}]"), e))
                })
                .collect::<Result<_, _>>()?;
            let requirement = match (&r.requires, &r.requirement_name) {
                (Some(req), _) => Some(Arc::new(Requirement::compile(
                    &format!("{at}.requires"),
                    req,
                    &providers,
                )?)),
                (None, Some(name)) => {
                    Some(Arc::clone(requirement_map.get(name).ok_or_else(|| {
                        invalid(
                            format!("{at}.requirement_name"),
                            format!("no requirement named {name:?}"),
                        )
                    })?))
                }
                (None, None) => None,
            };
            rules.push(Rule {
                path,
                headers,
                requirement,
            });
        }
        Ok(JwtAuthn {
            providers,
            rules,
            requirement_map,
            bypass_cors_preflight: c.bypass_cors_preflight,
        })
    }

    /// Checks a request; on success the verified tokens' outputs are in
    /// its headers and `metadata`, and the new path (with query) when a
    /// token was taken out of the query.
    pub(crate) fn check(
        &self,
        per_route: Option<&JwtPerRoute>,
        req: Request,
        metadata: &mut DynamicMetadata,
    ) -> Result<Option<String>, Rejection> {
        if self.bypass_cors_preflight
            && *req.method == Method::OPTIONS
            && req.headers.contains_key(http::header::ORIGIN)
            && req
                .headers
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Ok(None);
        }
        let (path, query) = req
            .path_and_query
            .split_once('?')
            .unwrap_or((req.path_and_query, ""));
        let requirement = match per_route {
            Some(JwtPerRoute::Disabled) => return Ok(None),
            // A name the filter does not know needs nothing.
            Some(JwtPerRoute::Requirement(name)) => self.requirement_map.get(name).map(|r| &**r),
            None => {
                let view = RequestView {
                    method: req.method.as_str(),
                    authority: req.authority,
                    scheme: req.scheme,
                    path_and_query: req.path_and_query,
                    headers: req.headers,
                };
                self.rules
                    .iter()
                    .find(|r| {
                        let p = match &r.path {
                            PathTest::Prefix(p) => path.starts_with(p.as_str()),
                            PathTest::Exact(p) => path == p,
                            PathTest::Regex(re) => re.is_match(path),
                        };
                        p && r.headers.iter().all(|h| h.matches(&view))
                    })
                    .and_then(|r| r.requirement.as_deref())
            }
        };
        let Some(requirement) = requirement else {
            return Ok(None);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut params = Vec::new();
        let mut out = Out {
            headers: req.headers,
            metadata,
            params: &mut params,
        };
        match self.verify(requirement, &mut out, query, now) {
            Ok(()) if params.is_empty() => Ok(None),
            Ok(()) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
                        !params.iter().any(|p| p == k)
                    })
                    .collect();
                Ok(Some(if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }))
            }
            Err(status) => Err(rejection(
                status,
                req.scheme,
                req.authority,
                req.path_and_query,
            )),
        }
    }

    fn verify(&self, r: &Requirement, out: &mut Out, query: &str, now: u64) -> Result<(), Status> {
        match r {
            Requirement::Provider(i) => {
                let p = &self.providers[*i];
                let found = p.extract(out.headers, query);
                if found.is_empty() {
                    return Err(Status::Missing);
                }
                for f in &found {
                    let jwt = p.verify(&f.token, now)?;
                    p.output(&jwt, out.headers, out.metadata);
                    p.remove_token(p, f, out.headers, out.params);
                }
                Ok(())
            }
            Requirement::All(list) => list
                .iter()
                .try_for_each(|r| self.verify(r, out, query, now)),
            Requirement::Any(list) => {
                // All failed: the first verdict about a token that was
                // there and meant for a provider, else the first.
                let (mut specific, mut generic) = (None, None);
                for r in list {
                    match self.verify(r, out, query, now) {
                        Ok(()) => return Ok(()),
                        Err(s @ (Status::Missing | Status::UnknownIssuer)) => {
                            generic.get_or_insert(s);
                        }
                        Err(s) => {
                            specific.get_or_insert(s);
                        }
                    }
                }
                Err(specific.or(generic).unwrap_or(Status::Missing))
            }
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {
                let status = self.verify_any_issuer(out, query, now);
                match (r, status) {
                    (_, Ok(())) | (_, Err(Status::Missing)) => Ok(()),
                    (Requirement::AllowMissingOrFailed, Err(_)) => Ok(()),
                    (_, Err(s)) => Err(s),
                }
            }
        }
    }

    /// Every token in any provider's locations, each verified by the
    /// provider of its issuer.
    fn verify_any_issuer(&self, out: &mut Out, query: &str, now: u64) -> Result<(), Status> {
        let mut tokens: Vec<(usize, provider::Found)> = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            for f in p.extract(out.headers, query) {
                if !tokens.iter().any(|(_, t)| t.token == f.token) {
                    tokens.push((i, f));
                }
            }
        }
        if tokens.is_empty() {
            return Err(Status::Missing);
        }
        for (i, f) in &tokens {
            let jwt = token::Jwt::parse(&f.token)?;
            let p = self
                .providers
                .iter()
                .find(|p| p.issues(&jwt.iss))
                .ok_or(Status::UnknownIssuer)?;
            let jwt = p.verify(&f.token, now)?;
            p.output(&jwt, out.headers, out.metadata);
            // The location is the finding provider's.
            self.providers[*i].remove_token(p, f, out.headers, out.params);
        }
        Ok(())
    }
}

/// Where verified tokens leave their outputs.
struct Out<'a> {
    headers: &'a mut HeaderMap,
    metadata: &'a mut DynamicMetadata,
    /// Query parameters to take out of the path.
    params: &'a mut Vec<String>,
}

/// How much of the path (with query) Envoy puts in the realm.
const REALM_PATH_MAX: usize = 256;

/// Envoy's reply for a failed requirement. The realm is the request's
/// URL, its path and query cut to 256 bytes.
fn rejection(status: Status, scheme: &str, authority: &str, path_and_query: &str) -> Rejection {
    let mut end = path_and_query.len().min(REALM_PATH_MAX);
    while !path_and_query.is_char_boundary(end) {
        end -= 1;
    }
    let realm = format!("{scheme}://{authority}{}", &path_and_query[..end]);
    let value = match status {
        Status::Missing => format!("Bearer realm=\"{realm}\""),
        _ => format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
    };
    Rejection {
        status: if status == Status::AudienceNotAllowed {
            403
        } else {
            401
        },
        body: status.message(),
        www_authenticate: HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
    }
}

#[cfg(test)]
mod tests;
