//! VirtualService rules.

use weft_api::common::Destination;
use weft_api::virtual_service::{HttpRoute, VirtualService};

use super::common::*;
use super::Report;

/// `retryOn` policies Envoy understands (HTTP and gRPC); numeric status
/// codes are also allowed.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

use weft_api::virtual_service::GRPC_CODES;

pub(super) fn validate(r: &mut Report, vs: &VirtualService) {
    // A VirtualService without hosts can only be a delegate.
    let delegate = vs.hosts.is_empty();
    if delegate && !vs.gateways.is_empty() {
        r.err(
            "spec.gateways",
            "a delegate VirtualService (one without hosts) cannot set gateways",
        );
    }
    for (i, h) in vs.hosts.iter().enumerate() {
        host(r, &format!("spec.hosts[{i}]"), h, true);
    }
    let mut seen = std::collections::HashSet::new();
    for (i, h) in vs.hosts.iter().enumerate() {
        if !seen.insert(h) {
            r.err(format!("spec.hosts[{i}]"), format!("duplicate host {h:?}"));
        }
    }
    for (i, g) in vs.gateways.iter().enumerate() {
        gateway_name(r, &format!("spec.gateways[{i}]"), g);
    }
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        r.err(
            "spec",
            "http, tcp or tls must be provided in a VirtualService",
        );
    }
    export_to(r, "spec.exportTo", &vs.export_to);
    let mut names = std::collections::HashSet::new();
    for (i, route) in vs.http.iter().enumerate() {
        let f = format!("spec.http[{i}]");
        if let Some(name) = &route.name {
            if !names.insert(name.clone()) {
                r.err(
                    format!("{f}.name"),
                    format!("route name {name:?} is used twice"),
                );
            }
        }
        http_route(r, &f, route, delegate);
    }
    for (i, tcp) in vs.tcp.iter().enumerate() {
        let f = format!("spec.tcp[{i}]");
        if tcp.route.is_empty() {
            r.err(
                format!("{f}.route"),
                "a TCP route needs at least one destination",
            );
        }
        for (j, m) in tcp.matches.iter().enumerate() {
            let mf = format!("{f}.match[{j}]");
            for (k, s) in m.destination_subnets.iter().enumerate() {
                ip_or_cidr(r, &format!("{mf}.destinationSubnets[{k}]"), s);
            }
            if let Some(s) = &m.source_subnet {
                ip_or_cidr(r, &format!("{mf}.sourceSubnet"), s);
            }
            if let Some(p) = m.port {
                port(r, &format!("{mf}.port"), p);
            }
            selector(r, &format!("{mf}.sourceLabels"), &m.source_labels);
            for (k, g) in m.gateways.iter().enumerate() {
                gateway_name(r, &format!("{mf}.gateways[{k}]"), g);
            }
        }
        weights(r, &f, tcp.route.iter().map(|d| (&d.destination, d.weight)));
    }
    for (i, tls) in vs.tls.iter().enumerate() {
        let f = format!("spec.tls[{i}]");
        if tls.matches.is_empty() {
            r.err(format!("{f}.match"), "a TLS route needs at least one match");
        }
        if tls.route.is_empty() {
            r.err(
                format!("{f}.route"),
                "a TLS route needs at least one destination",
            );
        }
        for (j, m) in tls.matches.iter().enumerate() {
            let mf = format!("{f}.match[{j}]");
            if m.sni_hosts.is_empty() {
                r.err(format!("{mf}.sniHosts"), "sniHosts is required");
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                let sf = format!("{mf}.sniHosts[{k}]");
                host(r, &sf, sni, true);
                if !vs.hosts.is_empty() && !vs.hosts.iter().any(|h| crate::host::overlap(h, sni)) {
                    r.err(sf, format!("the SNI host {sni:?} is not a match for any of the VirtualService hosts"));
                }
            }
            for (k, s) in m.destination_subnets.iter().enumerate() {
                ip_or_cidr(r, &format!("{mf}.destinationSubnets[{k}]"), s);
            }
            if let Some(p) = m.port {
                port(r, &format!("{mf}.port"), p);
            }
        }
        weights(r, &f, tls.route.iter().map(|d| (&d.destination, d.weight)));
    }
}

/// Whether `pattern` (a host, possibly `*` or `*.suffix`) covers `name`.
fn http_route(r: &mut Report, f: &str, route: &HttpRoute, in_delegate: bool) {
    let actions = [
        !route.route.is_empty(),
        route.redirect.is_some(),
        route.direct_response.is_some(),
        route.delegate.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if actions == 0 {
        r.err(
            f,
            "an HTTP route must set one of route, redirect, directResponse or delegate",
        );
    } else if actions > 1 {
        r.err(
            f,
            "route, redirect, directResponse and delegate are mutually exclusive",
        );
    }
    if route.rewrite.is_some() && route.redirect.is_some() {
        r.err(
            format!("{f}.rewrite"),
            "rewrite cannot be used with redirect",
        );
    }
    if let Some(d) = &route.delegate {
        if in_delegate {
            r.err(
                format!("{f}.delegate"),
                "a delegate VirtualService cannot delegate again",
            );
        }
        if d.name.is_empty() {
            r.err(format!("{f}.delegate.name"), "delegate name is required");
        }
    }
    for (i, m) in route.matches.iter().enumerate() {
        let mf = format!("{f}.match[{i}]");
        for (name, sm) in [
            ("uri", &m.uri),
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                string_match(r, &format!("{mf}.{name}"), sm);
            }
        }
        if let Some(uri) = &m.uri {
            for p in [&uri.exact, &uri.prefix].into_iter().flatten() {
                if !p.is_empty() && !p.starts_with('/') {
                    r.warn(
                        format!("{mf}.uri"),
                        format!("path {p:?} does not start with '/', so no request can match it"),
                    );
                }
            }
        }
        for (kind, map) in [
            ("headers", &m.headers),
            ("withoutHeaders", &m.without_headers),
        ] {
            for (name, sm) in map {
                let hf = format!("{mf}.{kind}[{name:?}]");
                header_name(r, &hf, name);
                if name.to_ascii_lowercase() != *name {
                    r.err(&hf, format!("header match name {name:?} must be lowercase"));
                }
                string_match(r, &hf, sm);
            }
        }
        for (name, sm) in &m.query_params {
            string_match(r, &format!("{mf}.queryParams[{name:?}]"), sm);
        }
        if let Some(p) = m.port {
            port(r, &format!("{mf}.port"), p);
        }
        selector(r, &format!("{mf}.sourceLabels"), &m.source_labels);
        for (k, g) in m.gateways.iter().enumerate() {
            gateway_name(r, &format!("{mf}.gateways[{k}]"), g);
        }
    }
    weights(r, f, route.route.iter().map(|d| (&d.destination, d.weight)));
    for (i, d) in route.route.iter().enumerate() {
        if let Some(h) = &d.headers {
            headers(r, &format!("{f}.route[{i}].headers"), h);
        }
    }
    if let Some(h) = &route.headers {
        headers(r, &format!("{f}.headers"), h);
    }
    if let Some(redirect) = &route.redirect {
        let rf = format!("{f}.redirect");
        if redirect.port.is_some() && redirect.derive_port.is_some() {
            r.err(&rf, "only one of port or derivePort may be set");
        }
        if let Some(p) = redirect.port {
            port(r, &format!("{rf}.port"), p);
        }
        if redirect.uri.is_some() && redirect.prefix_rewrite.is_some() {
            r.err(&rf, "only one of uri or prefixRewrite may be set");
        }
        if let Some(code) = redirect.redirect_code {
            if ![301, 302, 303, 307, 308].contains(&code) {
                r.err(
                    format!("{rf}.redirectCode"),
                    format!("redirect code {code} is not one of 301, 302, 303, 307, 308"),
                );
            }
        }
        if let Some(scheme) = &redirect.scheme {
            if scheme.is_empty() {
                r.err(format!("{rf}.scheme"), "scheme must not be empty when set");
            }
        }
    }
    if let Some(dr) = &route.direct_response {
        let df = format!("{f}.directResponse");
        if !(200..=599).contains(&dr.status) {
            r.err(
                format!("{df}.status"),
                format!("status {} is out of range: expected 200–599", dr.status),
            );
        }
        if let Some(body) = &dr.body {
            if body.string.is_some() && body.bytes.is_some() {
                r.err(
                    format!("{df}.body"),
                    "only one of string or bytes may be set",
                );
            }
            if let Some(b) = &body.bytes {
                use base64::Engine;
                if base64::engine::general_purpose::STANDARD.decode(b).is_err() {
                    r.err(format!("{df}.body.bytes"), "bytes must be base64");
                }
            }
        }
    }
    if let Some(rw) = &route.rewrite {
        let wf = format!("{f}.rewrite");
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            r.err(&wf, "only one of uri or uriRegexRewrite may be set");
        }
        if rw.uri.as_deref() == Some("") && rw.authority.is_none() {
            r.err(format!("{wf}.uri"), "rewrite uri must not be empty");
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            regex(r, &format!("{wf}.uriRegexRewrite.match"), &rr.pattern);
        }
        if route
            .matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.regex.is_some()))
            && rw.uri.is_some()
        {
            r.warn(&wf, "rewrite.uri replaces the matched prefix; with a regex uri match the whole path is replaced");
        }
    }
    opt_duration(r, &format!("{f}.timeout"), &route.timeout);
    if let Some(retry) = &route.retries {
        let rf = format!("{f}.retries");
        if let Some(a) = retry.attempts {
            if a < 0 {
                r.err(format!("{rf}.attempts"), "attempts must not be negative");
            }
        }
        opt_duration(r, &format!("{rf}.perTryTimeout"), &retry.per_try_timeout);
        opt_duration(r, &format!("{rf}.backoff"), &retry.backoff);
        if let Some(on) = &retry.retry_on {
            for policy in on.split(',').map(str::trim) {
                let numeric = policy.parse::<u16>().is_ok_and(|c| (100..600).contains(&c));
                if !numeric && !RETRY_ON.contains(&policy) {
                    r.err(format!("{rf}.retryOn"), format!("{policy:?} is not a retry policy: expected HTTP status codes or one of {}", RETRY_ON.join(", ")));
                }
            }
        }
        if let (Some(t), Some(pt)) = (&route.timeout, &retry.per_try_timeout) {
            if pt.as_std() > t.as_std() {
                r.warn(format!("{rf}.perTryTimeout"), format!("perTryTimeout {pt} is longer than the route timeout {t}, so only the first try can time out"));
            }
        }
    }
    if let Some(fault) = &route.fault {
        let ff = format!("{f}.fault");
        if fault.delay.is_none() && fault.abort.is_none() {
            r.err(&ff, "fault must set delay or abort");
        }
        if let Some(d) = &fault.delay {
            let df = format!("{ff}.delay");
            match (&d.fixed_delay, &d.exponential_delay) {
                (None, None) => r.err(&df, "delay must set fixedDelay"),
                (Some(_), Some(_)) => {
                    r.err(&df, "only one of fixedDelay or exponentialDelay may be set")
                }
                (Some(fd), None) => duration(r, &format!("{df}.fixedDelay"), fd),
                (None, Some(_)) => r.err(
                    format!("{df}.exponentialDelay"),
                    "exponentialDelay is not supported by Istio; use fixedDelay",
                ),
            }
            if let Some(p) = &d.percentage {
                percent(r, &format!("{df}.percentage"), p);
            }
            if let Some(p) = d.percent {
                int_percent(r, &format!("{df}.percent"), p);
                r.warn(
                    format!("{df}.percent"),
                    "percent is deprecated; use percentage",
                );
            }
        }
        if let Some(a) = &fault.abort {
            let af = format!("{ff}.abort");
            let kinds = [
                a.http_status.is_some(),
                a.grpc_status.is_some(),
                a.http2_error.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if kinds != 1 {
                r.err(
                    &af,
                    "abort must set exactly one of httpStatus, grpcStatus or http2Error",
                );
            }
            if let Some(s) = a.http_status {
                if !(200..=599).contains(&s) {
                    r.err(
                        format!("{af}.httpStatus"),
                        format!("HTTP status {s} is out of range: expected 200–599"),
                    );
                }
            }
            if let Some(g) = &a.grpc_status {
                if !GRPC_CODES.contains(&g.as_str()) {
                    r.err(
                        format!("{af}.grpcStatus"),
                        format!(
                            "{g:?} is not a gRPC status: expected one of {}",
                            GRPC_CODES.join(", ")
                        ),
                    );
                }
            }
            if a.http2_error.is_some() {
                r.err(
                    format!("{af}.http2Error"),
                    "http2Error is not supported by Istio; use httpStatus or grpcStatus",
                );
            }
            if let Some(p) = &a.percentage {
                percent(r, &format!("{af}.percentage"), p);
            }
        }
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        r.err(
            format!("{f}.mirrors"),
            "only one of mirror or mirrors may be set",
        );
    }
    if let Some(m) = &route.mirror {
        destination(r, &format!("{f}.mirror"), m);
    }
    for (i, m) in route.mirrors.iter().enumerate() {
        destination(r, &format!("{f}.mirrors[{i}].destination"), &m.destination);
        if let Some(p) = &m.percentage {
            percent(r, &format!("{f}.mirrors[{i}].percentage"), p);
        }
    }
    if let Some(p) = &route.mirror_percentage {
        percent(r, &format!("{f}.mirrorPercentage"), p);
    }
    for (field, v) in [
        ("mirrorPercent", route.mirror_percent),
        ("mirror_percent", route.mirror_percent_snake),
    ] {
        if let Some(v) = v {
            if v > 100 {
                r.err(
                    format!("{f}.{field}"),
                    format!("percentage {v} is out of range: expected 0–100"),
                );
            }
            r.warn(
                format!("{f}.{field}"),
                format!("{field} is deprecated; use mirrorPercentage"),
            );
        }
    }
    if let Some(cors) = &route.cors_policy {
        let cf = format!("{f}.corsPolicy");
        for (i, o) in cors.allow_origins.iter().enumerate() {
            string_match(r, &format!("{cf}.allowOrigins[{i}]"), o);
        }
        if !cors.allow_origin.is_empty() {
            r.warn(
                format!("{cf}.allowOrigin"),
                "allowOrigin is deprecated; use allowOrigins",
            );
        }
        for (i, m) in cors.allow_methods.iter().enumerate() {
            if !matches!(
                m.as_str(),
                "GET"
                    | "HEAD"
                    | "POST"
                    | "PUT"
                    | "DELETE"
                    | "CONNECT"
                    | "OPTIONS"
                    | "TRACE"
                    | "PATCH"
                    | "*"
            ) {
                r.err(
                    format!("{cf}.allowMethods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                );
            }
        }
        for (list, names) in [
            ("allowHeaders", &cors.allow_headers),
            ("exposeHeaders", &cors.expose_headers),
        ] {
            for (i, h) in names.iter().enumerate() {
                if h != "*" {
                    header_name(r, &format!("{cf}.{list}[{i}]"), h);
                }
            }
        }
        opt_duration(r, &format!("{cf}.maxAge"), &cors.max_age);
    }
}

fn destination(r: &mut Report, f: &str, d: &Destination) {
    if d.host.is_empty() {
        r.err(format!("{f}.host"), "destination host is required");
    } else {
        host(r, &format!("{f}.host"), &d.host, false);
    }
    if let Some(s) = &d.subset {
        if !is_dns1123_label(s) {
            r.err(
                format!("{f}.subset"),
                format!("invalid subset name {s:?}: expected a DNS-1123 label"),
            );
        }
    }
    if let Some(p) = &d.port {
        port(r, &format!("{f}.port.number"), p.number);
    }
}

/// Destination checks plus weights: none negative; with several
/// destinations they must not all be zero. Istio normalises weights that do
/// not add up to 100, which is worth a warning.
fn weights<'a>(
    r: &mut Report,
    f: &str,
    dests: impl Iterator<Item = (&'a Destination, Option<i32>)>,
) {
    let dests: Vec<_> = dests.collect();
    let mut total: i64 = 0;
    for (i, (d, w)) in dests.iter().enumerate() {
        destination(r, &format!("{f}.route[{i}].destination"), d);
        if let Some(w) = w {
            if *w < 0 {
                r.err(
                    format!("{f}.route[{i}].weight"),
                    format!("weight {w} must not be negative"),
                );
            }
            total += i64::from(*w);
        }
    }
    if dests.len() > 1 {
        let any_set = dests.iter().any(|(_, w)| w.is_some());
        if any_set && total == 0 {
            r.err(
                format!("{f}.route"),
                "total destination weight is 0: no destination would get traffic",
            );
        } else if any_set && total != 100 {
            r.warn(format!("{f}.route"), format!("destination weights add up to {total}, not 100; they will be scaled proportionally"));
        }
    }
}
