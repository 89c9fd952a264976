//! Route tables (RDS): a virtual host per service on the table's port,
//! answering to every name a client may use, with the VirtualService's
//! `http` rules translated to Envoy routes in order — or Istio's default
//! route (the service's cluster, default retries, no timeout) when no
//! VirtualService routes the host — and a last `allow_any` / `block_all`
//! host for names the mesh does not know.

use std::collections::HashSet;

use serde_json::{json, Map, Value};
use weft_api::common::{HeaderOperations, Headers, Percent, StringMatch};
use weft_api::sidecar::OutboundMode;
use weft_api::virtual_service::{HttpMatchRequest, HttpRetry, HttpRoute};

use super::cluster::Policy;
use super::{cluster_name, dur, Proxy};
use crate::context::{bound_to, resolve_host, Context, Named};
use crate::model::{Service, DOMAIN};

const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// The route table `name` for `port`, over `services`: each service's
/// virtual host, less the names an earlier one took, then the fallback.
pub(crate) fn outbound_table(
    ctx: &Context,
    proxy: &Proxy,
    name: &str,
    port: u32,
    services: &[&Service],
    mode: OutboundMode,
) -> Value {
    let mut seen = HashSet::new();
    let mut hosts = Vec::new();
    for s in services {
        let Some(mut host) = virtual_host(ctx, proxy, s, port) else {
            continue;
        };
        let domains: Vec<Value> = host["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| seen.insert(d.as_str().unwrap_or_default().to_string()))
            .cloned()
            .collect();
        if domains.is_empty() {
            continue;
        }
        host["domains"] = Value::Array(domains);
        hosts.push(host);
    }
    hosts.push(fallback_host(mode));
    let mut table = table_without_hosts(name);
    table["virtual_hosts"] = Value::Array(hosts);
    table
}

/// A route table with no virtual hosts yet.
pub(crate) fn table_without_hosts(name: &str) -> Value {
    json!({"name": name, "virtual_hosts": [], "validate_clusters": false})
}

/// The virtual host of service `s` in a table on `port` (none unless
/// `s` speaks HTTP there), answering to every name a client may use.
pub(crate) fn virtual_host(ctx: &Context, proxy: &Proxy, s: &Service, port: u32) -> Option<Value> {
    if !s.port(port).is_some_and(|p| p.protocol.is_http()) {
        return None;
    }
    let routes = match ctx.virtual_service_for(&s.hostname, &proxy.namespace, "mesh") {
        Some(vs) => vs_routes(ctx, proxy, vs, port, "mesh"),
        None => vec![default_route(ctx, proxy, s, port)],
    };
    Some(json!({
        "name": format!("{}:{port}", s.hostname),
        "domains": domains(s, port, &proxy.namespace),
        "routes": routes,
        "include_request_attempt_count": true,
    }))
}

/// The last virtual host of every outbound table: what names the mesh
/// does not know get.
pub(crate) fn fallback_host(mode: OutboundMode) -> Value {
    match mode {
        OutboundMode::ALLOW_ANY => json!({
            "name": "allow_any",
            "domains": ["*"],
            "routes": [{"name": "allow_any", "match": {"prefix": "/"},
                        "route": {"cluster": "PassthroughCluster", "timeout": "0s"}}],
            "include_request_attempt_count": true,
        }),
        OutboundMode::REGISTRY_ONLY => json!({
            "name": "block_all",
            "domains": ["*"],
            "routes": [{"name": "block_all", "match": {"prefix": "/"},
                        "direct_response": {"status": 502}}],
            "include_request_attempt_count": true,
        }),
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

fn default_route(ctx: &Context, proxy: &Proxy, s: &Service, port: u32) -> Value {
    let mut action = json!({
        "cluster": cluster_name("outbound", port, "", &s.hostname),
        "timeout": "0s",
    });
    if let Some(r) = retry_policy(None) {
        action["retry_policy"] = r;
    }
    if let Some(h) = hash_policy(ctx, proxy, s, port) {
        action["hash_policy"] = h;
    }
    json!({"name": "default", "match": {"prefix": "/"}, "route": action})
}

/// A VirtualService's `http` rules as Envoy routes, for a table on
/// `port` of `gateway` (`mesh` for sidecars, else `namespace/name`).
pub(crate) fn vs_routes(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<weft_api::virtual_service::VirtualService>,
    port: u32,
    gateway: &str,
) -> Vec<Value> {
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
            out.push(route(ctx, proxy, vs, rule, m, port));
        }
    }
    out
}

fn string_match(m: &StringMatch) -> Option<Value> {
    if let Some(v) = &m.exact {
        Some(json!({"exact": v}))
    } else if let Some(v) = &m.prefix {
        Some(json!({"prefix": v}))
    } else {
        m.regex
            .as_ref()
            .map(|v| json!({"safe_regex": {"regex": v}}))
    }
}

fn header_matcher(name: &str, m: &StringMatch, invert: bool) -> Value {
    let mut h = json!({"name": name});
    match string_match(m) {
        Some(sm) => h["string_match"] = sm,
        None => h["present_match"] = json!(true),
    }
    if invert {
        h["invert_match"] = json!(true);
    }
    h
}

fn route_match(m: &HttpMatchRequest) -> Value {
    let mut out = Map::new();
    match m.uri.as_ref() {
        Some(StringMatch { exact: Some(p), .. }) => out.insert("path".into(), json!(p)),
        Some(StringMatch {
            prefix: Some(p), ..
        }) => out.insert("prefix".into(), json!(p)),
        Some(StringMatch { regex: Some(r), .. }) => {
            out.insert("safe_regex".into(), json!({"regex": r}))
        }
        _ => out.insert("prefix".into(), json!("/")),
    };
    if m.ignore_uri_case == Some(true) {
        out.insert("case_sensitive".into(), json!(false));
    }
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
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    let params: Vec<Value> = m
        .query_params
        .iter()
        .map(|(name, sm)| match string_match(sm) {
            Some(s) => json!({"name": name, "string_match": s}),
            None => json!({"name": name, "present_match": true}),
        })
        .collect();
    if !params.is_empty() {
        out.insert("query_parameters".into(), Value::Array(params));
    }
    Value::Object(out)
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

fn route(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<weft_api::virtual_service::VirtualService>,
    rule: &HttpRoute,
    m: &HttpMatchRequest,
    port: u32,
) -> Value {
    let mut r = Map::new();
    if let Some(name) = &rule.name {
        r.insert("name".into(), json!(name));
    }
    r.insert("match".into(), route_match(m));
    if let Some(red) = &rule.redirect {
        let mut o = Map::new();
        if let Some(u) = &red.uri {
            o.insert("path_redirect".into(), json!(u));
        }
        if let Some(a) = &red.authority {
            o.insert("host_redirect".into(), json!(a));
        }
        if let Some(s) = &red.scheme {
            o.insert("scheme_redirect".into(), json!(s));
        }
        if let Some(p) = red.port {
            o.insert("port_redirect".into(), json!(p));
        }
        let code = match red.redirect_code.unwrap_or(301) {
            302 => "FOUND",
            303 => "SEE_OTHER",
            307 => "TEMPORARY_REDIRECT",
            308 => "PERMANENT_REDIRECT",
            _ => "MOVED_PERMANENTLY",
        };
        o.insert("response_code".into(), json!(code));
        r.insert("redirect".into(), Value::Object(o));
    } else if let Some(dr) = &rule.direct_response {
        let mut o = json!({"status": dr.status});
        if let Some(body) = &dr.body {
            if let Some(s) = &body.string {
                o["body"] = json!({"inline_string": s});
            } else if let Some(b) = &body.bytes {
                o["body"] = json!({"inline_bytes": b});
            }
        }
        r.insert("direct_response".into(), o);
    } else {
        r.insert("route".into(), route_action(ctx, proxy, vs, rule, port));
    }
    if let Some(h) = &rule.headers {
        header_ops(&mut r, h);
    }
    // A single destination's header operations are the route's.
    if let [only] = rule.route.as_slice() {
        if let Some(h) = &only.headers {
            header_ops(&mut r, h);
        }
    }
    let mut per_filter = Map::new();
    if let Some(f) = &rule.fault {
        per_filter.insert("envoy.filters.http.fault".into(), fault(f));
    }
    if let Some(c) = &rule.cors_policy {
        per_filter.insert("envoy.filters.http.cors".into(), cors(c));
    }
    if !per_filter.is_empty() {
        r.insert("typed_per_filter_config".into(), Value::Object(per_filter));
    }
    Value::Object(r)
}

fn route_action(
    ctx: &Context,
    proxy: &Proxy,
    vs: &Named<weft_api::virtual_service::VirtualService>,
    rule: &HttpRoute,
    port: u32,
) -> Value {
    let mut a = Map::new();
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
    if let [only] = live.as_slice() {
        let cluster = destination_cluster(ctx, &vs.namespace, &only.destination, port);
        a.insert("cluster".into(), json!(cluster));
    } else {
        let clusters: Vec<Value> = live
            .iter()
            .map(|d| {
                let cluster = destination_cluster(ctx, &vs.namespace, &d.destination, port);
                let mut c = json!({"name": cluster, "weight": d.weight.unwrap_or(0).max(0)});
                if let Some(h) = &d.headers {
                    let mut ops = Map::new();
                    header_ops(&mut ops, h);
                    for (k, v) in ops {
                        c[k] = v;
                    }
                }
                c
            })
            .collect();
        a.insert("weighted_clusters".into(), json!({"clusters": clusters}));
    }
    let timeout = rule.timeout.as_ref().map_or("0s".to_string(), dur);
    a.insert("timeout".into(), json!(timeout));
    if let Some(p) = retry_policy(rule.retries.as_deref()) {
        a.insert("retry_policy".into(), p);
    }
    if let Some(rw) = &rule.rewrite {
        if let Some(u) = &rw.uri {
            a.insert("prefix_rewrite".into(), json!(u));
        }
        if let Some(h) = &rw.authority {
            a.insert("host_rewrite_literal".into(), json!(h));
        }
        if let Some(re) = &rw.uri_regex_rewrite {
            a.insert(
                "regex_rewrite".into(),
                json!({"pattern": {"regex": re.pattern}, "substitution": re.rewrite}),
            );
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
    if !mirrors.is_empty() {
        let policies: Vec<Value> = mirrors
            .into_iter()
            .map(|(d, pct)| {
                let cluster = destination_cluster(ctx, &vs.namespace, d, port);
                let mut p = json!({"cluster": cluster});
                if let Some(pct) = pct {
                    p["runtime_fraction"] = json!({"default_value": million(pct)});
                }
                p
            })
            .collect();
        a.insert("request_mirror_policies".into(), Value::Array(policies));
    }
    if let Some(first) = live.first() {
        let host = resolve_host(&first.destination.host, &vs.namespace);
        if let Some(s) = ctx.service(&host) {
            let p = first.destination.port.as_ref().map_or(port, |p| p.number);
            if let Some(h) = hash_policy(ctx, proxy, s, p) {
                a.insert("hash_policy".into(), h);
            }
        }
    }
    Value::Object(a)
}

/// A percentage as Envoy's FractionalPercent per million, as Istio
/// writes it.
fn million(pct: f64) -> Value {
    let n = (pct.clamp(0.0, 100.0) * 10_000.0).round() as u64;
    json!({"numerator": n, "denominator": "MILLION"})
}

fn percentage(p: Option<&Percent>, legacy: Option<i32>) -> Value {
    match (p, legacy) {
        (Some(p), _) => million(p.value),
        (None, Some(v)) => json!({"numerator": v.clamp(0, 100), "denominator": "HUNDRED"}),
        (None, None) => million(100.0),
    }
}

fn fault(f: &weft_api::virtual_service::HttpFaultInjection) -> Value {
    let mut o =
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"});
    if let Some(d) = &f.delay {
        if let Some(fixed) = &d.fixed_delay {
            o["delay"] = json!({
                "fixed_delay": dur(fixed),
                "percentage": percentage(d.percentage.as_ref(), d.percent),
            });
        }
    }
    if let Some(a) = &f.abort {
        let mut abort = json!({"percentage": percentage(a.percentage.as_ref(), None)});
        if let Some(s) = a.http_status {
            abort["http_status"] = json!(s);
        } else if let Some(g) = &a.grpc_status {
            abort["grpc_status"] = json!(grpc_code(g));
        }
        o["abort"] = abort;
    }
    o
}

/// `corsPolicy` as the CORS filter's per-route policy.
fn cors(c: &weft_api::virtual_service::CorsPolicy) -> Value {
    use weft_api::virtual_service::UnmatchedPreflights;
    let mut origins: Vec<Value> = c.allow_origins.iter().filter_map(string_match).collect();
    origins.extend(c.allow_origin.iter().map(|o| json!({"exact": o})));
    let mut p = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": origins,
        "forward_not_matching_preflights": c.unmatched_preflights != Some(UnmatchedPreflights::IGNORE),
    });
    for (key, list) in [
        ("allow_methods", &c.allow_methods),
        ("allow_headers", &c.allow_headers),
        ("expose_headers", &c.expose_headers),
    ] {
        if !list.is_empty() {
            p[key] = json!(list.join(","));
        }
    }
    if let Some(age) = &c.max_age {
        p["max_age"] = json!(age.as_std().as_secs().to_string());
    }
    if let Some(creds) = c.allow_credentials {
        p["allow_credentials"] = json!(creds);
    }
    p
}

/// A `grpcStatus` name (or number) as its code.
fn grpc_code(name: &str) -> u32 {
    weft_api::virtual_service::GRPC_CODES
        .iter()
        .position(|n| *n == name)
        .map_or_else(|| name.parse().unwrap_or(2), |i| i as u32)
}

/// Istio's retry policy: its default when the rule sets none, none when
/// `attempts` is 0.
fn retry_policy(r: Option<&HttpRetry>) -> Option<Value> {
    let mut p = json!({
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
        }],
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": [503],
    });
    let Some(r) = r else { return Some(p) };
    let attempts = r.attempts.unwrap_or(0);
    if attempts <= 0 {
        return None;
    }
    p["num_retries"] = json!(attempts);
    if let Some(on) = &r.retry_on {
        let mut conditions = Vec::new();
        let mut codes = Vec::new();
        for c in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match c.parse::<u32>() {
                Ok(code) => codes.push(code),
                Err(_) => conditions.push(c.to_string()),
            }
        }
        if !codes.is_empty() && !conditions.iter().any(|c| c == "retriable-status-codes") {
            conditions.push("retriable-status-codes".into());
        }
        p["retry_on"] = json!(conditions.join(","));
        if codes.is_empty() {
            if let Some(o) = p.as_object_mut() {
                o.remove("retriable_status_codes");
            }
        } else {
            p["retriable_status_codes"] = json!(codes);
        }
    }
    if let Some(t) = &r.per_try_timeout {
        p["per_try_timeout"] = json!(dur(t));
    }
    if let Some(b) = &r.backoff {
        p["retry_back_off"] = json!({"base_interval": dur(b)});
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        let o = p.as_object_mut().expect("object");
        o.remove("retry_host_predicate");
        o.remove("host_selection_retry_max_attempts");
    }
    Some(p)
}

fn header_ops(r: &mut Map<String, Value>, h: &Headers) {
    let side = |ops: &HeaderOperations,
                add_key: &str,
                remove_key: &str,
                r: &mut Map<String, Value>| {
        let mut add = Vec::new();
        for (k, v) in &ops.set {
            add.push(json!({"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}));
        }
        for (k, v) in &ops.add {
            add.push(json!({"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}));
        }
        let mut extend = |key: &str, items: Vec<Value>| {
            if let Value::Array(a) = r.entry(key).or_insert_with(|| json!([])) {
                a.extend(items);
            }
        };
        if !add.is_empty() {
            extend(add_key, add);
        }
        if !ops.remove.is_empty() {
            extend(remove_key, ops.remove.iter().map(|s| json!(s)).collect());
        }
    };
    if let Some(req) = &h.request {
        side(
            req,
            "request_headers_to_add",
            "request_headers_to_remove",
            r,
        );
    }
    if let Some(resp) = &h.response {
        side(
            resp,
            "response_headers_to_add",
            "response_headers_to_remove",
            r,
        );
    }
}

/// The route's hash policy from the destination's DestinationRule
/// `consistentHash`.
fn hash_policy(ctx: &Context, proxy: &Proxy, s: &Service, port: u32) -> Option<Value> {
    let policy = Policy::of(ctx, s, port, None, &proxy.namespace);
    let ch = policy.load_balancer?.consistent_hash?;
    let h = if let Some(name) = &ch.http_header_name {
        json!({"header": {"header_name": name}})
    } else if let Some(c) = &ch.http_cookie {
        let mut cookie = json!({"name": c.name});
        if let Some(p) = &c.path {
            cookie["path"] = json!(p);
        }
        if let Some(t) = &c.ttl {
            cookie["ttl"] = json!(dur(t));
        }
        json!({"cookie": cookie})
    } else if ch.use_source_ip == Some(true) {
        json!({"connection_properties": {"source_ip": true}})
    } else if let Some(q) = &ch.http_query_parameter_name {
        json!({"query_parameter": {"name": q}})
    } else {
        return None;
    };
    Some(json!([h]))
}
