//! External authorization, as Envoy's `envoy.filters.http.ext_authz`
//! does it: a request is sent for a check to an authorization service
//! on a cluster, and goes on or is answered by what it says.
//!
//! - The HTTP service ([`http`]) gets the request's method, its path
//!   after `path_prefix`, its Host, `authorization` and the headers
//!   `allowed_headers` selects, `content-length: 0` and
//!   `headers_to_add`. A 200 allows (its `allowed_upstream_headers` set
//!   on the request, `..._to_append` appended, and
//!   `allowed_client_headers_on_success` added to the response); a 5xx
//!   is a failure; anything else denies with its status, body and
//!   `allowed_client_headers` (all but Host when unset; with the list,
//!   also `www-authenticate`, `location` and `content-length`).
//! - A failure (no cluster, connection refused, reset, timeout) denies
//!   with `status_on_error` (403) and no body, unless
//!   `failure_mode_allow` (then `x-envoy-auth-failure-mode-allowed:
//!   true` goes upstream with `failure_mode_allow_header_add`).
//! - `filter_enabled_metadata` (Istio's CUSTOM action: RBAC's shadow
//!   result) and `filter_enabled` choose which requests are checked;
//!   the others pass, or are denied with `deny_at_disable`. A route's
//!   `ExtAuthzPerRoute` turns the filter off or adds context
//!   extensions (which only the gRPC service receives).

mod grpc;
mod http;

use std::collections::BTreeMap;

use ::http::{HeaderMap, HeaderName, HeaderValue, Method};
use bytes::Bytes;
use weft_envoy::ext_authz as cfg;

use crate::matchers::StringMatcher;
use crate::metadata::DynamicMetadata;
use crate::rbac::matcher::MetadataMatch;
use crate::transport::ConnectionInfo;

static FAILURE_ALLOWED: HeaderName = HeaderName::from_static("x-envoy-auth-failure-mode-allowed");

/// A compiled `ExtAuthz`.
#[derive(Debug)]
pub struct ExtAuthz {
    service: Service,
    failure_mode_allow: bool,
    failure_header: bool,
    status_on_error: u16,
    enabled_metadata: Option<MetadataMatch>,
    /// (numerator, denominator) of `filter_enabled`'s default value.
    enabled_share: Option<(u32, u32)>,
    deny_at_disable: bool,
}

#[derive(Debug)]
enum Service {
    Http(http::HttpService),
    Grpc(grpc::GrpcService),
}

/// A compiled `ExtAuthzPerRoute`.
#[derive(Debug)]
pub enum ExtAuthzPerRoute {
    Disabled,
    Check {
        context_extensions: BTreeMap<String, String>,
    },
}

impl ExtAuthzPerRoute {
    pub(crate) fn compile(c: &cfg::ExtAuthzPerRoute) -> Self {
        match &c.check_settings {
            Some(s) if !c.disabled => ExtAuthzPerRoute::Check {
                context_extensions: s.context_extensions.clone(),
            },
            _ => ExtAuthzPerRoute::Disabled,
        }
    }
}

/// Header names matched by any of a list of string matchers.
#[derive(Debug, Default)]
struct Names(Vec<StringMatcher>);

impl Names {
    fn compile(at: &str, l: &Option<cfg::ListStringMatcher>) -> Result<Self, String> {
        l.iter()
            .flat_map(|l| l.patterns.iter())
            .enumerate()
            .map(|(i, m)| StringMatcher::compile(m).map_err(|e| format!("{at}.patterns[{i}]: {e}")))
            .collect::<Result<_, _>>()
            .map(Names)
    }

    fn exact(mut self, names: &[&str]) -> Self {
        for n in names {
            let m = weft_envoy::StringMatcher {
                exact: Some((*n).to_string()),
                ..Default::default()
            };
            self.0
                .push(StringMatcher::compile(&m).expect("an exact matcher compiles"));
        }
        self
    }

    fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|m| m.matches(name))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A request as the filter sees it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub authority: &'a str,
    pub path_and_query: &'a str,
    pub scheme: &'a str,
    /// `HTTP/1.1` or `HTTP/2`, as the gRPC check names it.
    pub protocol: &'static str,
    pub headers: &'a mut HeaderMap,
}

/// What the authorization service said.
enum Checked {
    Allowed {
        /// Set on the request sent upstream.
        set: Vec<(HeaderName, HeaderValue)>,
        /// Appended to it.
        append: Vec<(HeaderName, HeaderValue)>,
        /// Added to the response the client gets.
        response: Vec<(HeaderName, HeaderValue)>,
        /// Removed from the request sent upstream.
        remove: Vec<HeaderName>,
    },
    Denied(Denial),
    /// No answer, or not one that decides (a 5xx from an HTTP service).
    Failed,
}

/// A request refused: the reply's status, headers (set over the local
/// reply's) and body.
#[derive(Debug)]
pub(crate) struct Denial {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// How a check reaches its authorizer: a request to a cluster by name,
/// answered with the response's head, body and trailers (`None`: no such
/// cluster, no endpoint, a failure, or the timeout). The connection
/// manager passes the router's; taking it as a parameter keeps this
/// filter below the router and the snapshot that hold it.
pub(crate) trait Caller {
    fn call(
        &self,
        cluster: &str,
        req: ::http::Request<crate::body::Body>,
        host: &str,
        path: &str,
        timeout: std::time::Duration,
    ) -> impl std::future::Future<
        Output = Option<(
            ::http::response::Parts,
            bytes::Bytes,
            Option<::http::HeaderMap>,
        )>,
    > + Send;
}

/// The filter's verdict on a request that may go on: headers for the
/// response the client gets.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

impl ExtAuthz {
    pub(crate) fn compile(c: &cfg::ExtAuthz) -> Result<Self, (String, String)> {
        let service = match (&c.http_service, &c.grpc_service) {
            (Some(h), _) => Service::Http(
                http::HttpService::compile(h, &c.allowed_headers).map_err(|(f, m)| {
                    // The filter-level list is named as it is, not under the service.
                    if f == "allowed_headers" {
                        (f, m)
                    } else {
                        (format!("http_service.{f}"), m)
                    }
                })?,
            ),
            (None, Some(g)) => Service::Grpc(
                grpc::GrpcService::compile(g).map_err(|(f, m)| (format!("grpc_service.{f}"), m))?,
            ),
            (None, None) => {
                return Err((String::new(), "needs grpc_service or http_service".into()))
            }
        };
        if !c.metadata_context_namespaces.is_empty() {
            return Err((
                "metadata_context_namespaces".into(),
                "not implemented by weft yet: dynamic metadata in the gRPC check".into(),
            ));
        }
        if c.include_peer_certificate {
            return Err((
                "include_peer_certificate".into(),
                "not implemented by weft yet: the peer certificate in the gRPC check".into(),
            ));
        }
        let enabled_metadata = c
            .filter_enabled_metadata
            .as_ref()
            .map(|m| MetadataMatch::compile("filter_enabled_metadata", m))
            .transpose()
            .map_err(|e| match e {
                crate::rbac::RbacError::Invalid { field, message } => (field, message),
            })?;
        let status_on_error = match &c.status_on_error {
            Some(s) => s.number().ok_or_else(|| {
                (
                    "status_on_error.code".to_string(),
                    format!("{}: not an HTTP status", s.code),
                )
            })?,
            None => 403,
        };
        Ok(ExtAuthz {
            service,
            failure_mode_allow: c.failure_mode_allow,
            failure_header: c.failure_mode_allow_header_add,
            status_on_error,
            enabled_metadata,
            enabled_share: c.filter_enabled.as_ref().map(|p| {
                (
                    p.default_value.numerator,
                    p.default_value.denominator.value(),
                )
            }),
            deny_at_disable: c
                .deny_at_disable
                .as_ref()
                .and_then(|f| f.default_value)
                .unwrap_or(false),
        })
    }

    fn enabled(&self, metadata: &DynamicMetadata) -> bool {
        let share = self
            .enabled_share
            .is_none_or(|(n, d)| n >= d || fastrand::u32(0..d.max(1)) < n);
        share
            && self
                .enabled_metadata
                .as_ref()
                .is_none_or(|m| m.matches(metadata))
    }

    fn error(&self) -> Denial {
        Denial {
            status: self.status_on_error,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Checks a request: `Ok` lets it on (its headers changed as the
    /// service said), `Err` is the reply that ends it.
    pub(crate) async fn check(
        &self,
        per_route: Option<&ExtAuthzPerRoute>,
        caller: &impl Caller,
        conn: &ConnectionInfo,
        req: Request<'_>,
        metadata: &DynamicMetadata,
    ) -> Result<Pass, Denial> {
        if let Some(ExtAuthzPerRoute::Disabled) = per_route {
            return Ok(Pass::default());
        }
        if !self.enabled(metadata) {
            return if self.deny_at_disable {
                Err(self.error())
            } else {
                Ok(Pass::default())
            };
        }
        let checked = match &self.service {
            Service::Http(s) => s.check(caller, &req).await,
            Service::Grpc(s) => {
                let extensions = match per_route {
                    Some(ExtAuthzPerRoute::Check { context_extensions }) => {
                        Some(context_extensions)
                    }
                    _ => None,
                };
                s.check(caller, conn, &req, extensions).await
            }
        };
        match checked {
            Checked::Allowed {
                set,
                append,
                response,
                remove,
            } => {
                for k in remove {
                    req.headers.remove(k);
                }
                for (k, v) in set {
                    req.headers.insert(k, v);
                }
                for (k, v) in append {
                    req.headers.append(k, v);
                }
                Ok(Pass {
                    response_headers: response,
                })
            }
            Checked::Denied(d) => Err(d),
            Checked::Failed if self.failure_mode_allow => {
                if self.failure_header {
                    req.headers
                        .insert(FAILURE_ALLOWED.clone(), HeaderValue::from_static("true"));
                }
                Ok(Pass::default())
            }
            Checked::Failed => Err(self.error()),
        }
    }
}
