//! Route tables (RDS): a virtual host per service on the table's port,
//! answering to every name a client may use, with the VirtualService's
//! `http` rules translated to Envoy routes in order — or Istio's default
//! route (the service's cluster, default retries, no timeout) when no
//! VirtualService routes the host — and a last `allow_any` / `block_all`
//! host for names the mesh does not know. What a route does besides
//! choosing its destination (retries, hashing, faults, CORS, header
//! operations) is in `policy`.

use std::collections::HashSet;

use weft_api::common::StringMatch;
use weft_api::sidecar::OutboundMode;
use weft_api::virtual_service::{HttpMatchRequest, HttpRoute};

use super::pb::{self, core, matcher, route as rt};
use super::policy;
use super::{cluster_name, Proxy};
use crate::context::{bound_to, resolve_host, Context, Named};
use crate::model::{Service, DOMAIN};

use rt::route::Action;
use rt::route_action::ClusterSpecifier;

/// The route table `name` for `port`, over `services`: each service's
/// virtual host, less the names an earlier one took, then the fallback.
pub(crate) fn outbound_table(
    ctx: &Context,
    proxy: &Proxy,
    name: &str,
    port: u32,
    services: &[&Service],
    mode: OutboundMode,
) -> rt::RouteConfiguration {
    let mut seen = HashSet::new();
    let mut hosts = Vec::new();
    for s in services {
        let Some(mut host) = virtual_host(ctx, proxy, s, port) else {
            continue;
        };
        host.domains.retain(|d| seen.insert(d.clone()));
        if host.domains.is_empty() {
            continue;
        }
        hosts.push(host);
    }
    hosts.push(fallback_host(mode));
    rt::RouteConfiguration {
        virtual_hosts: hosts,
        ..table_without_hosts(name)
    }
}

/// A route table with no virtual hosts yet.
pub(crate) fn table_without_hosts(name: &str) -> rt::RouteConfiguration {
    rt::RouteConfiguration {
        name: name.to_string(),
        validate_clusters: pb::bool_value(false),
        ..Default::default()
    }
}

/// A virtual host as every one of weft's is: the request's attempt count
/// goes upstream (`x-envoy-attempt-count`), as Istio sets it.
pub(crate) fn host(name: String, domains: Vec<String>, routes: Vec<rt::Route>) -> rt::VirtualHost {
    rt::VirtualHost {
        name,
        domains,
        routes,
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// The virtual host of service `s` in a table on `port` (none unless
/// `s` speaks HTTP there), answering to every name a client may use.
pub(crate) fn virtual_host(
    ctx: &Context,
    proxy: &Proxy,
    s: &Service,
    port: u32,
) -> Option<rt::VirtualHost> {
    if !s.port(port).is_some_and(|p| p.protocol.is_http()) {
        return None;
    }
    let routes = match ctx.virtual_service_for(&s.hostname, &proxy.namespace, "mesh") {
        Some(vs) => vs_routes(ctx, proxy, vs, port, "mesh"),
        None => vec![default_route(ctx, proxy, s, port)],
    };
    Some(host(
        format!("{}:{port}", s.hostname),
        domains(s, port, &proxy.namespace),
        routes,
    ))
}

/// The last virtual host of every outbound table: what names the mesh
/// does not know get.
pub(crate) fn fallback_host(mode: OutboundMode) -> rt::VirtualHost {
    let (name, action) = match mode {
        OutboundMode::ALLOW_ANY => (
            "allow_any",
            Action::Route(to_cluster("PassthroughCluster".into())),
        ),
        OutboundMode::REGISTRY_ONLY => (
            "block_all",
            Action::DirectResponse(rt::DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
    };
    host(
        name.into(),
        vec!["*".into()],
        vec![route(name.into(), prefix("/"), action)],
    )
}

/// A route named `name` matching `m` that does `action`.
pub(crate) fn route(name: String, m: rt::RouteMatch, action: Action) -> rt::Route {
    rt::Route {
        name,
        r#match: Some(m),
        action: Some(action),
        ..Default::default()
    }
}

/// Requests whose path starts with `p`.
pub(crate) fn prefix(p: &str) -> rt::RouteMatch {
    rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::Prefix(p.to_string())),
        ..Default::default()
    }
}

/// To `cluster`, with no timeout (Istio's default).
pub(crate) fn to_cluster(cluster: String) -> rt::RouteAction {
    rt::RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
        timeout: pb::seconds(0),
        ..Default::default()
    }
}

/// Every name a client in `namespace` may use for `s` on `port`: the
/// hostname; for a name under the cluster domain
/// (`name.ns.svc.cluster.local`, whatever registry it came from) its
/// shorter forms, the bare name only from its own namespace; the VIP;
/// each also with `:port`.
fn domains(s: &Service, port: u32, namespace: &str) -> Vec<String> {
    let mut names = vec![s.hostname.clone()];
    if let Some(prefix) = s.hostname.strip_suffix(&format!(".{DOMAIN}")) {
        if let Some((short, ns)) = prefix.split_once('.') {
            if !ns.contains('.') {
                names.push(format!("{prefix}.svc.cluster"));
                names.push(format!("{prefix}.svc"));
                names.push(prefix.to_string());
                if ns == namespace {
                    names.push(short.to_string());
                }
            }
        }
    }
    if let Some(vip) = &s.address {
        names.push(vip.clone());
    }
    let mut out = Vec::new();
    for n in names {
        out.push(n.clone());
        out.push(format!("{n}:{port}"));
    }
    out
}

fn default_route(ctx: &Context, proxy: &Proxy, s: &Service, port: u32) -> rt::Route {
    let action = rt::RouteAction {
        retry_policy: policy::retry(None),
        hash_policy: policy::hash(ctx, proxy, s, port),
        ..to_cluster(cluster_name("outbound", port, "", &s.hostname))
    };
    route("default".into(), prefix("/"), Action::Route(action))
}

/// A VirtualService's `http` rules as Envoy routes, for a table on
/// `port` of `gateway` (`mesh` for sidecars, else `namespace/name`).
pub(crate) fn vs_routes(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<weft_api::virtual_service::VirtualService>,
    port: u32,
    gateway: &str,
) -> Vec<rt::Route> {
    let mut out = Vec::new();
    for rule in &vs.spec.http {
        let catch_all = [HttpMatchRequest::default()];
        let matches: &[HttpMatchRequest] = if rule.matches.is_empty() {
            &catch_all
        } else {
            &rule.matches
        };
        for m in matches {
            if m.port.is_some_and(|p| p != port)
                || !weft_config::mesh::Selector::condition(&m.source_labels).matches(&proxy.labels)
                || (!m.gateways.is_empty() && !bound_to(&m.gateways, &vs.namespace, gateway))
                || m.source_namespace
                    .as_ref()
                    .is_some_and(|ns| ns != &proxy.namespace)
            {
                continue;
            }
            out.push(http_route(ctx, proxy, vs, rule, m, port));
        }
    }
    out
}

/// An Istio `StringMatch` as Envoy's; none when it sets nothing.
pub(crate) fn string_match(m: &StringMatch) -> Option<matcher::StringMatcher> {
    use matcher::string_matcher::MatchPattern;
    let pattern = if let Some(v) = &m.exact {
        MatchPattern::Exact(v.clone())
    } else if let Some(v) = &m.prefix {
        MatchPattern::Prefix(v.clone())
    } else {
        MatchPattern::SafeRegex(regex(m.regex.as_ref()?))
    };
    Some(matcher::StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

pub(crate) fn regex(r: &str) -> matcher::RegexMatcher {
    matcher::RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

/// A header that matches `m` (is present, when `m` sets nothing).
fn header_matcher(name: &str, m: &StringMatch, invert: bool) -> rt::HeaderMatcher {
    use rt::header_matcher::HeaderMatchSpecifier;
    rt::HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(match string_match(m) {
            Some(sm) => HeaderMatchSpecifier::StringMatch(sm),
            None => HeaderMatchSpecifier::PresentMatch(true),
        }),
        invert_match: invert,
        ..Default::default()
    }
}

fn route_match(m: &HttpMatchRequest) -> rt::RouteMatch {
    use rt::route_match::PathSpecifier;
    let path = match m.uri.as_ref() {
        Some(StringMatch { exact: Some(p), .. }) => PathSpecifier::Path(p.clone()),
        Some(StringMatch {
            prefix: Some(p), ..
        }) => PathSpecifier::Prefix(p.clone()),
        Some(StringMatch { regex: Some(r), .. }) => PathSpecifier::SafeRegex(regex(r)),
        _ => PathSpecifier::Prefix("/".into()),
    };
    let mut headers = Vec::new();
    for (name, sm) in [
        (":authority", &m.authority),
        (":method", &m.method),
        (":scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            headers.push(header_matcher(name, sm, false));
        }
    }
    for (name, sm) in &m.headers {
        headers.push(header_matcher(&name.to_ascii_lowercase(), sm, false));
    }
    for (name, sm) in &m.without_headers {
        headers.push(header_matcher(&name.to_ascii_lowercase(), sm, true));
    }
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, sm)| {
            use rt::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
            rt::QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(match string_match(sm) {
                    Some(s) => Q::StringMatch(s),
                    None => Q::PresentMatch(true),
                }),
            }
        })
        .collect();
    rt::RouteMatch {
        path_specifier: Some(path),
        case_sensitive: (m.ignore_uri_case == Some(true)).then_some(pb::BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// The cluster a VirtualService destination names, seen from a table on
/// `port`: the destination's port, else the service's only port, else
/// the table's.
pub(crate) fn destination_cluster(
    ctx: &Context,
    vs_ns: &str,
    d: &weft_api::common::Destination,
    port: u32,
) -> String {
    let host = resolve_host(&d.host, vs_ns);
    let service = ctx.service(&host);
    let p = d.port.as_ref().map(|p| p.number).unwrap_or_else(|| {
        match service.map(|s| s.ports.as_slice()) {
            Some([only]) => only.number,
            _ => port,
        }
    });
    cluster_name("outbound", p, d.subset.as_deref().unwrap_or(""), &host)
}

fn http_route(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<weft_api::virtual_service::VirtualService>,
    rule: &HttpRoute,
    m: &HttpMatchRequest,
    port: u32,
) -> rt::Route {
    let action = if let Some(red) = &rule.redirect {
        Action::Redirect(redirect(red))
    } else if let Some(dr) = &rule.direct_response {
        Action::DirectResponse(rt::DirectResponseAction {
            status: dr.status,
            body: dr.body.as_ref().and_then(body),
            ..Default::default()
        })
    } else {
        Action::Route(route_action(ctx, proxy, vs, rule, port))
    };
    let mut r = route(
        rule.name.clone().unwrap_or_default(),
        route_match(m),
        action,
    );
    let mut headers = policy::HeaderOps::default();
    if let Some(h) = &rule.headers {
        headers.add(h);
    }
    // A single destination's header operations are the route's.
    if let [only] = rule.route.as_slice() {
        if let Some(h) = &only.headers {
            headers.add(h);
        }
    }
    r.request_headers_to_add = headers.request_add;
    r.request_headers_to_remove = headers.request_remove;
    r.response_headers_to_add = headers.response_add;
    r.response_headers_to_remove = headers.response_remove;
    let mut per_filter = Vec::new();
    if let Some(f) = &rule.fault {
        per_filter.push(("envoy.filters.http.fault".to_string(), policy::fault(f)));
    }
    if let Some(c) = &rule.cors_policy {
        per_filter.push(("envoy.filters.http.cors".to_string(), policy::cors(c)));
    }
    r.typed_per_filter_config = pb::map(per_filter);
    r
}

fn redirect(red: &weft_api::virtual_service::HttpRedirect) -> rt::RedirectAction {
    use rt::redirect_action::SchemeRewriteSpecifier;
    use rt::redirect_action::{PathRewriteSpecifier, RedirectResponseCode as Code};
    let code = match red.redirect_code.unwrap_or(301) {
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => Code::MovedPermanently,
    };
    rt::RedirectAction {
        path_rewrite_specifier: red.uri.clone().map(PathRewriteSpecifier::PathRedirect),
        host_redirect: red.authority.clone().unwrap_or_default(),
        scheme_rewrite_specifier: red
            .scheme
            .clone()
            .map(SchemeRewriteSpecifier::SchemeRedirect),
        port_redirect: red.port.unwrap_or(0),
        response_code: code as i32,
        ..Default::default()
    }
}

/// A direct response's body: its text, or its bytes (base64 in Istio's
/// YAML, which validation checked; bytes that do not decode leave the
/// response without a body).
fn body(b: &weft_api::virtual_service::HttpBody) -> Option<core::DataSource> {
    use base64::Engine;
    use core::data_source::Specifier;
    let specifier = if let Some(s) = &b.string {
        Specifier::InlineString(s.clone())
    } else {
        let text = b.bytes.as_ref()?;
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) => Specifier::InlineBytes(bytes),
            Err(e) => {
                tracing::warn!("directResponse body bytes {text:?} are not base64 ({e}): no body");
                return None;
            }
        }
    };
    Some(core::DataSource {
        specifier: Some(specifier),
        ..Default::default()
    })
}

fn route_action(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<weft_api::virtual_service::VirtualService>,
    rule: &HttpRoute,
    port: u32,
) -> rt::RouteAction {
    let dests: Vec<_> = rule.route.iter().collect();
    let live: Vec<_> = if dests.len() > 1 {
        dests
            .iter()
            .filter(|d| d.weight.unwrap_or(0) > 0)
            .copied()
            .collect()
    } else {
        dests.clone()
    };
    let cluster = if let [only] = live.as_slice() {
        ClusterSpecifier::Cluster(destination_cluster(
            ctx,
            &vs.namespace,
            &only.destination,
            port,
        ))
    } else {
        let clusters = live
            .iter()
            .map(|d| {
                let mut headers = policy::HeaderOps::default();
                if let Some(h) = &d.headers {
                    headers.add(h);
                }
                rt::weighted_cluster::ClusterWeight {
                    name: destination_cluster(ctx, &vs.namespace, &d.destination, port),
                    weight: pb::u32_value(pb::count(d.weight.unwrap_or(0))),
                    request_headers_to_add: headers.request_add,
                    request_headers_to_remove: headers.request_remove,
                    response_headers_to_add: headers.response_add,
                    response_headers_to_remove: headers.response_remove,
                    ..Default::default()
                }
            })
            .collect();
        ClusterSpecifier::WeightedClusters(rt::WeightedCluster {
            clusters,
            ..Default::default()
        })
    };
    let mut a = rt::RouteAction {
        cluster_specifier: Some(cluster),
        timeout: rule
            .timeout
            .as_ref()
            .map_or_else(|| pb::seconds(0), pb::duration),
        retry_policy: policy::retry(rule.retries.as_deref()),
        ..Default::default()
    };
    if let Some(rw) = &rule.rewrite {
        if let Some(u) = &rw.uri {
            a.prefix_rewrite = u.clone();
        }
        if let Some(h) = &rw.authority {
            a.host_rewrite_specifier = Some(
                rt::route_action::HostRewriteSpecifier::HostRewriteLiteral(h.clone()),
            );
        }
        if let Some(re) = &rw.uri_regex_rewrite {
            a.regex_rewrite = Some(matcher::RegexMatchAndSubstitute {
                pattern: Some(regex(&re.pattern)),
                substitution: re.rewrite.clone(),
            });
        }
    }
    let mut mirrors = Vec::new();
    if let Some(m) = rule.mirror.as_deref() {
        let pct = rule.mirror_percentage.as_ref().map(|p| p.value).or(rule
            .mirror_percent
            .or(rule.mirror_percent_snake)
            .map(f64::from));
        mirrors.push((m, pct));
    }
    for m in &rule.mirrors {
        mirrors.push((&m.destination, m.percentage.as_ref().map(|p| p.value)));
    }
    a.request_mirror_policies = mirrors
        .into_iter()
        .map(|(d, pct)| rt::route_action::RequestMirrorPolicy {
            cluster: destination_cluster(ctx, &vs.namespace, d, port),
            runtime_fraction: pct.map(|pct| core::RuntimeFractionalPercent {
                default_value: Some(policy::million(pct)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    if let Some(first) = live.first() {
        let host = resolve_host(&first.destination.host, &vs.namespace);
        if let Some(s) = ctx.service(&host) {
            let p = first.destination.port.as_ref().map_or(port, |p| p.number);
            a.hash_policy = policy::hash(ctx, proxy, s, p);
        }
    }
    a
}
