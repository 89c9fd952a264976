//! Compiled route tables: virtual host selection by domain and route
//! matching, with Envoy's precedence rules. Built once per config
//! snapshot; the request path only reads them.

use regex::Regex;
use weft_envoy::route as cfg;

use crate::headers::HeaderOps;
use crate::matchers::{
    compile_rewrite, full_regex, HeaderMatch, HeaderTest, RequestView, StringMatcher,
};

/// One HTTP connection manager's routes.
#[derive(Debug)]
pub struct RouteTable {
    domains: std::sync::Arc<domains::Domains>,
    pub hosts: Vec<std::sync::Arc<VirtualHost>>,
    pub headers: HeaderOps,
    pub filters: PerFilter,
}

/// Per-route settings of HTTP filters, by filter name (the fault, local
/// rate limit, CORS and RBAC filters have them in weft).
#[derive(Debug, Default)]
pub struct PerFilter(Vec<(String, PerRoute)>);

#[derive(Debug)]
pub enum PerRoute {
    Fault(std::sync::Arc<crate::fault::Fault>),
    RateLimit(std::sync::Arc<crate::ratelimit::RateLimit>),
    Cors(std::sync::Arc<crate::cors::CorsPolicy>),
    Rbac(std::sync::Arc<crate::rbac::RbacPerRoute>),
    Jwt(std::sync::Arc<crate::jwt::JwtPerRoute>),
    ExtAuthz(std::sync::Arc<crate::ext_authz::ExtAuthzPerRoute>),
}

impl PerFilter {
    fn compile(c: &cfg::PerFilterConfig, store: &crate::stats::Store) -> Result<Self, String> {
        let mut out = Vec::new();
        for (name, config) in c {
            let at = |e: String| format!("typed_per_filter_config.{name}: {e}");
            let compiled = match config {
                weft_envoy::TypedConfig::Fault(f) => PerRoute::Fault(std::sync::Arc::new(
                    crate::fault::Fault::compile(f).map_err(at)?,
                )),
                weft_envoy::TypedConfig::LocalRateLimit(l) => {
                    PerRoute::RateLimit(std::sync::Arc::new(
                        crate::ratelimit::RateLimit::compile(l, store).map_err(at)?,
                    ))
                }
                weft_envoy::TypedConfig::CorsPolicy(c) => PerRoute::Cors(std::sync::Arc::new(
                    crate::cors::CorsPolicy::compile(c).map_err(at)?,
                )),
                weft_envoy::TypedConfig::RbacPerRoute(r) => PerRoute::Rbac(std::sync::Arc::new(
                    crate::rbac::RbacPerRoute::compile(r).map_err(|e| at(e.to_string()))?,
                )),
                weft_envoy::TypedConfig::JwtAuthnPerRoute(j) => {
                    PerRoute::Jwt(std::sync::Arc::new(crate::jwt::JwtPerRoute::compile(j)))
                }
                weft_envoy::TypedConfig::ExtAuthzPerRoute(e) => PerRoute::ExtAuthz(
                    std::sync::Arc::new(crate::ext_authz::ExtAuthzPerRoute::compile(e)),
                ),
                _ => return Err(at("not a filter configuration weft implements".into())),
            };
            out.push((name.clone(), compiled));
        }
        Ok(PerFilter(out))
    }

    /// The settings for the filter configured under `filter`.
    pub fn get(&self, filter: &str) -> Option<&PerRoute> {
        self.0.iter().find(|(n, _)| n == filter).map(|(_, p)| p)
    }
}

#[derive(Debug)]
pub struct VirtualHost {
    /// What it was compiled from (a later table holding the same one
    /// reuses this compiled host).
    source: std::sync::Arc<cfg::VirtualHost>,
    pub name: String,
    pub routes: Vec<Route>,
    pub headers: HeaderOps,
    /// `include_request_attempt_count`: x-envoy-attempt-count upstream.
    pub attempt_count_upstream: bool,
    /// `include_attempt_count_in_response`: and back to the client.
    pub attempt_count_downstream: bool,
    pub filters: PerFilter,
    /// `require_tls`: which requests on a plaintext connection are
    /// redirected to https.
    pub require_tls: cfg::TlsRequirement,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    matcher: RouteMatch,
    pub action: Action,
    pub headers: HeaderOps,
    pub filters: PerFilter,
}

#[derive(Debug)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    Direct { status: u16, body: Option<String> },
}

#[derive(Debug)]
pub struct Forward {
    pub targets: Targets,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub host_rewrite: Option<String>,
    pub auto_host_rewrite: bool,
    /// Route timeout; Envoy's default is 15 s, zero disables it.
    pub timeout: std::time::Duration,
    /// The prefix this route matched on, for `prefix_rewrite`.
    pub matched_prefix: Option<String>,
    pub websocket: Option<bool>,
    /// The route's retry policy, else its virtual host's.
    pub retry: Option<std::sync::Arc<crate::retry::RetryPolicy>>,
    /// What RING_HASH and MAGLEV clusters hash the request by.
    pub hash: Option<crate::hashing::HashPolicy>,
    pub mirrors: Vec<Mirror>,
    /// Replaces the connection manager's stream idle timeout (zero: off).
    pub idle_timeout: Option<std::time::Duration>,
    pub max_stream: Option<crate::stream_timers::MaxStream>,
}

/// A request mirror policy: the cluster, the share of requests as
/// (numerator, denominator), and whether the Host gets `-shadow`.
#[derive(Debug)]
pub struct Mirror {
    pub cluster: String,
    pub share: (u32, u32),
    pub shadow_suffix: bool,
}

#[derive(Debug)]
pub enum Targets {
    One(String),
    /// (cluster, cumulative weight end, per-cluster header ops)
    Weighted(Vec<(String, u64, HeaderOps)>, u64),
}

impl Targets {
    /// The cluster for one request, and header operations that come with
    /// a weighted pick.
    pub fn pick(&self) -> (&str, Option<&HeaderOps>) {
        match self {
            Targets::One(c) => (c, None),
            Targets::Weighted(list, _) => {
                let (name, _, ops) = pick_cumulative(list, |(_, end, _)| *end);
                (name, Some(ops))
            }
        }
    }
}

/// A random entry of a list whose entries carry the running total of the
/// weights up to and including themselves (the last entry's is the sum).
/// The list must not be empty; configuration checks make sure of that.
pub(crate) fn pick_cumulative<T>(list: &[T], end: impl Fn(&T) -> u64) -> &T {
    let total = list.last().map_or(1, &end).max(1);
    let r = fastrand::u64(0..total);
    let i = list.partition_point(|e| end(e) <= r);
    &list[i.min(list.len() - 1)]
}

#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub status: u16,
    pub strip_query: bool,
    pub matched_prefix: Option<String>,
}

#[derive(Debug)]
enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    SeparatedPrefix(String),
}

#[derive(Debug)]
struct RouteMatch {
    path: PathMatch,
    case_sensitive: bool,
    headers: Vec<HeaderMatch>,
    query: Vec<QueryMatch>,
    grpc: bool,
    /// `runtime_fraction`'s default value as (numerator, denominator);
    /// with no runtime overrides that is the share of requests matched.
    fraction: Option<(u32, u32)>,
}

#[derive(Debug)]
struct QueryMatch {
    name: String,
    test: HeaderTest,
}

impl RouteTable {
    /// `previous`: the table this one replaces; its virtual hosts
    /// compiled from the very same configuration (shared with the new
    /// table when their bytes did not change) are kept, not compiled
    /// again — a route table of thousands of hosts where one changed
    /// costs one host's compile.
    pub fn compile(
        rc: &cfg::RouteConfiguration,
        store: &crate::stats::Store,
        previous: Option<&RouteTable>,
    ) -> Result<Self, String> {
        let kept: std::collections::HashMap<*const cfg::VirtualHost, &std::sync::Arc<VirtualHost>> =
            previous
                .map(|p| {
                    p.hosts
                        .iter()
                        .map(|h| (std::sync::Arc::as_ptr(&h.source), h))
                        .collect()
                })
                .unwrap_or_default();
        let domains = domains::Domains::index(
            &rc.virtual_hosts,
            previous.map(|p| {
                let before = p.hosts.iter().map(|h| &*h.source).collect();
                (&p.domains, before)
            }),
        )?;
        let mut table = RouteTable {
            domains,
            hosts: Vec::new(),
            headers: HeaderOps::compile(
                &rc.request_headers_to_add,
                &rc.request_headers_to_remove,
                &rc.response_headers_to_add,
                &rc.response_headers_to_remove,
            )?,
            filters: PerFilter::compile(&rc.typed_per_filter_config, store)?,
        };
        for (i, vh) in rc.virtual_hosts.iter().enumerate() {
            if let Some(h) = kept.get(&std::sync::Arc::as_ptr(vh)) {
                table.hosts.push(std::sync::Arc::clone(h));
                continue;
            }
            let vh_retry = vh
                .retry_policy
                .as_ref()
                .map(|p| crate::retry::RetryPolicy::compile(p).map(std::sync::Arc::new))
                .transpose()
                .map_err(|e| format!("virtual_hosts[{i}].retry_policy: {e}"))?;
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    Route::compile(r, vh_retry.as_ref(), store)
                        .map_err(|e| format!("virtual_hosts[{i}].routes[{j}]: {e}"))
                })
                .collect::<Result<_, _>>()?;
            table.hosts.push(std::sync::Arc::new(VirtualHost {
                source: std::sync::Arc::clone(vh),
                name: vh.name.clone(),
                routes,
                headers: HeaderOps::compile(
                    &vh.request_headers_to_add,
                    &vh.request_headers_to_remove,
                    &vh.response_headers_to_add,
                    &vh.response_headers_to_remove,
                )?,
                filters: PerFilter::compile(&vh.typed_per_filter_config, store)
                    .map_err(|e| format!("virtual_hosts[{i}].{e}"))?,
                attempt_count_upstream: vh.include_request_attempt_count,
                attempt_count_downstream: vh.include_attempt_count_in_response,
                require_tls: vh.require_tls,
            }));
        }
        Ok(table)
    }

    /// The virtual host for a Host/:authority value: exact, then the
    /// longest suffix wildcard, then the longest prefix wildcard, then `*`.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let i = self.domains.find(host)?;
        self.hosts.get(i).map(|h| &**h)
    }
}

impl VirtualHost {
    /// Whether a request must be redirected to https: the host requires
    /// TLS of it (all requests, or those not marked internal) and the
    /// connection is plaintext.
    pub fn redirects_to_tls(&self, tls: bool, internal: bool) -> bool {
        !tls && match self.require_tls {
            cfg::TlsRequirement::NONE => false,
            cfg::TlsRequirement::EXTERNAL_ONLY => !internal,
            cfg::TlsRequirement::ALL => true,
        }
    }

    /// The first route that matches, in order.
    pub fn route(&self, req: &RequestView) -> Option<&Route> {
        let (path, query) = req
            .path_and_query
            .split_once('?')
            .unwrap_or((req.path_and_query, ""));
        self.routes
            .iter()
            .find(|r| r.matcher.matches(path, query, req))
    }
}

impl Route {
    fn compile(
        r: &cfg::Route,
        vh_retry: Option<&std::sync::Arc<crate::retry::RetryPolicy>>,
        store: &crate::stats::Store,
    ) -> Result<Self, String> {
        let m = &r.match_;
        let path = if let Some(p) = &m.prefix {
            PathMatch::Prefix(p.clone())
        } else if let Some(p) = &m.path {
            PathMatch::Exact(p.clone())
        } else if let Some(re) = &m.safe_regex {
            PathMatch::Regex(full_regex(&re.regex)?)
        } else if let Some(p) = &m.path_separated_prefix {
            PathMatch::SeparatedPrefix(p.clone())
        } else {
            return Err(
                "a route match needs prefix, path, safe_regex or path_separated_prefix".into(),
            );
        };
        let matched_prefix = m
            .prefix
            .clone()
            .or_else(|| m.path_separated_prefix.clone())
            .or_else(|| m.path.clone());
        let headers = m
            .headers
            .iter()
            .map(HeaderMatch::compile)
            .collect::<Result<_, _>>()?;
        let query = m
            .query_parameters
            .iter()
            .map(|q| {
                let test = match (&q.string_match, q.present_match) {
                    (Some(s), _) => HeaderTest::Value(StringMatcher::compile(s)?),
                    (None, Some(p)) => HeaderTest::Present(p),
                    (None, None) => HeaderTest::Present(true),
                };
                Ok::<_, String>(QueryMatch {
                    name: q.name.clone(),
                    test,
                })
            })
            .collect::<Result<_, _>>()?;
        let action = if let Some(a) = &r.route {
            Action::Forward(Forward {
                targets: match (&a.cluster, &a.weighted_clusters) {
                    (Some(c), _) => Targets::One(c.clone()),
                    (None, Some(w)) => {
                        let mut end = 0u64;
                        let mut list = Vec::new();
                        for c in &w.clusters {
                            end += u64::from(c.weight.unwrap_or(0));
                            let ops = HeaderOps::compile(
                                &c.request_headers_to_add,
                                &c.request_headers_to_remove,
                                &c.response_headers_to_add,
                                &c.response_headers_to_remove,
                            )?;
                            list.push((c.name.clone(), end, ops));
                        }
                        Targets::Weighted(list, end)
                    }
                    (None, None) => {
                        return Err("a route action needs cluster or weighted_clusters".into())
                    }
                },
                prefix_rewrite: a.prefix_rewrite.clone(),
                regex_rewrite: a.regex_rewrite.as_ref().map(compile_rewrite).transpose()?,
                host_rewrite: a.host_rewrite_literal.clone(),
                auto_host_rewrite: a.auto_host_rewrite.unwrap_or(false),
                // A route with max_stream_duration uses Envoy's "new"
                // timeouts: its `timeout` (and the 15 s default) no longer
                // applies, nor is it announced upstream (measured against
                // Envoy 1.40).
                timeout: match (&a.max_stream_duration, a.timeout) {
                    (Some(_), _) => std::time::Duration::ZERO,
                    (None, Some(d)) => d.0,
                    (None, None) => std::time::Duration::from_secs(15),
                },
                matched_prefix: matched_prefix.clone(),
                websocket: a
                    .upgrade_configs
                    .iter()
                    .find(|u| u.upgrade_type.eq_ignore_ascii_case("websocket"))
                    .map(|u| u.enabled.unwrap_or(true)),
                hash: crate::hashing::HashPolicy::compile(&a.hash_policy)?,
                mirrors: a
                    .request_mirror_policies
                    .iter()
                    .map(|m| Mirror {
                        cluster: m.cluster.clone(),
                        share: m.runtime_fraction.as_ref().map_or((1, 1), |f| {
                            (
                                f.default_value.numerator,
                                f.default_value.denominator.value(),
                            )
                        }),
                        shadow_suffix: !m.disable_shadow_host_suffix_append,
                    })
                    .collect(),
                idle_timeout: a.idle_timeout.map(|d| d.0),
                max_stream: a.max_stream_duration.as_ref().map(|m| {
                    crate::stream_timers::MaxStream {
                        duration: m.max_stream_duration.map(|d| d.0),
                        grpc_header_max: m.grpc_timeout_header_max.map(|d| d.0),
                        grpc_header_offset: m
                            .grpc_timeout_header_offset
                            .map(|d| d.0)
                            .unwrap_or_default(),
                    }
                }),
                retry: match &a.retry_policy {
                    Some(p) => Some(std::sync::Arc::new(
                        crate::retry::RetryPolicy::compile(p)
                            .map_err(|e| format!("route.retry_policy: {e}"))?,
                    )),
                    None => vh_retry.cloned(),
                },
            })
        } else if let Some(rd) = &r.redirect {
            Action::Redirect(Redirect {
                scheme: if rd.https_redirect {
                    Some("https".into())
                } else {
                    rd.scheme_redirect.clone()
                },
                host: rd.host_redirect.clone(),
                port: match rd.port_redirect {
                    Some(p) => Some(
                        u16::try_from(p)
                            .map_err(|_| format!("port_redirect {p} is out of range"))?,
                    ),
                    None => None,
                },
                path: rd.path_redirect.clone(),
                prefix_rewrite: rd.prefix_rewrite.clone(),
                regex_rewrite: rd.regex_rewrite.as_ref().map(compile_rewrite).transpose()?,
                status: rd.response_code.status(),
                strip_query: rd.strip_query,
                matched_prefix,
            })
        } else if let Some(d) = &r.direct_response {
            Action::Direct {
                status: u16::try_from(d.status).map_err(|_| "status out of range".to_string())?,
                body: d
                    .body
                    .as_ref()
                    .and_then(|b| b.inline_string.clone().or_else(|| b.inline_bytes.clone())),
            }
        } else {
            return Err("a route needs route, redirect or direct_response".into());
        };
        Ok(Route {
            filters: PerFilter::compile(&r.typed_per_filter_config, store)?,
            name: r.name.clone(),
            matcher: RouteMatch {
                path,
                case_sensitive: m.case_sensitive.unwrap_or(true),
                headers,
                query,
                grpc: m.grpc.is_some(),
                fraction: m.runtime_fraction.as_ref().map(|f| {
                    (
                        f.default_value.numerator,
                        f.default_value.denominator.value(),
                    )
                }),
            },
            action,
            headers: HeaderOps::compile(
                &r.request_headers_to_add,
                &r.request_headers_to_remove,
                &r.response_headers_to_add,
                &r.response_headers_to_remove,
            )?,
        })
    }
}

impl RouteMatch {
    fn matches(&self, path: &str, query: &str, req: &RequestView) -> bool {
        let headers = req.headers;
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    path.starts_with(p.as_str())
                } else {
                    path.len() >= p.len()
                        && path.is_char_boundary(p.len())
                        && path[..p.len()].eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(r) => r.is_match(path),
            PathMatch::SeparatedPrefix(p) => {
                path == p || (path.starts_with(p.as_str()) && path[p.len()..].starts_with('/'))
            }
        };
        if !path_ok {
            return false;
        }
        if self.grpc {
            let grpc = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/grpc"));
            if !grpc {
                return false;
            }
        }
        if let Some((num, den)) = self.fraction {
            if fastrand::u32(..den) >= num {
                return false;
            }
        }
        if !self.headers.iter().all(|h| h.matches(req)) {
            return false;
        }
        self.query.iter().all(|q| {
            let value = query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == q.name).then_some(v)
            });
            match (&q.test, value) {
                (HeaderTest::Present(p), v) => v.is_some() == *p,
                (HeaderTest::Value(m), Some(v)) => m.matches(v),
                (HeaderTest::Value(_), None) => false,
            }
        })
    }
}

mod domains;
#[cfg(test)]
mod tests;
