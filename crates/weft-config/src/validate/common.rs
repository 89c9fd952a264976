//! Rules shared by several kinds: names, hosts, labels, ports, regexes,
//! percentages, durations, header names.

use std::time::Duration as StdDuration;

use weft_api::common::{Headers, Percent, StringMatch};
use weft_api::{Duration, Object};

use super::Report;

/// Names must be DNS-1123 subdomains, as Kubernetes requires.
pub(super) fn metadata(r: &mut Report, o: &Object) {
    match o.meta.name.as_deref() {
        None | Some("") => {
            if o.meta.generate_name().is_none() {
                r.err("metadata.name", "name is required")
            }
        }
        Some(name) => {
            if !is_dns1123_subdomain(name) {
                r.err(
                    "metadata.name",
                    format!("{name:?} is not a valid name: expected lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"),
                );
            }
        }
    }
    if let Some(ns) = o.meta.namespace.as_deref() {
        if !ns.is_empty() && !is_dns1123_label(ns) {
            r.err(
                "metadata.namespace",
                format!("{ns:?} is not a valid namespace: expected a DNS-1123 label"),
            );
        }
    }
    labels(r, "metadata.labels", o.labels());
    for key in o.annotations().keys() {
        if let Err(why) = qualified_name(key) {
            r.err(
                format!("metadata.annotations[{key:?}]"),
                format!("invalid annotation key: {why}"),
            );
        }
    }
}

pub(super) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A Kubernetes qualified name: optional DNS prefix and `/`, then a name of
/// at most 63 alphanumerics, `-`, `_`, `.`.
pub(super) fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            return Err(format!("prefix {p:?} must be a DNS subdomain"));
        }
    }
    if name.is_empty() || name.len() > 63 {
        return Err("name part must be 1–63 characters".to_string());
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err("name part must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric".to_string())
    }
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty() || qualified_name(v).is_ok() && !v.contains('/')
}

/// Label maps come as a `BTreeMap` (Kubernetes metadata) or a
/// `weft_api::Map` (Istio specs): any map that iterates as pairs.
pub(super) fn labels<'a>(
    r: &mut Report,
    field: &str,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    for (k, v) in labels {
        if let Err(why) = qualified_name(k) {
            r.err(
                format!("{field}[{k:?}]"),
                format!("invalid label key: {why}"),
            );
        }
        if !label_value_ok(v) {
            r.err(
                format!("{field}[{k:?}]"),
                format!("invalid label value {v:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"),
            );
        }
    }
}

/// Selector labels additionally may not use wildcards (CRD CEL rule).
pub(super) fn selector(r: &mut Report, field: &str, sel: &weft_api::Map<String, String>) {
    labels(r, field, sel);
    for (k, v) in sel {
        if k.contains('*') || v.contains('*') {
            r.err(
                format!("{field}[{k:?}]"),
                "wildcard not allowed in label selector",
            );
        }
    }
}

/// A host in a VirtualService, DestinationRule or ServiceEntry: a DNS name,
/// optionally starting with `*.`, or `*` alone when `allow_star`.
pub(super) fn host(r: &mut Report, field: &str, host: &str, allow_star: bool) {
    if host.is_empty() {
        r.err(field, "host must not be empty");
        return;
    }
    if host == "*" {
        if !allow_star {
            r.err(field, "wildcard host \"*\" is not allowed here");
        }
        return;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name = name.strip_prefix('*').unwrap_or(name); // `*foo.com` is legal in Istio
    if name.contains('*') {
        r.err(field, format!("invalid host {host:?}: a wildcard is only allowed as the first label (\"*.example.com\")"));
        return;
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return;
    }
    if host.len() > 255 || name.split('.').any(|l| !is_dns_label_any_case(l)) {
        r.err(field, format!("invalid host {host:?}: expected a DNS name such as \"reviews\", \"reviews.default.svc.cluster.local\" or \"*.example.com\""));
    }
}

fn is_dns_label_any_case(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

pub(super) fn port(r: &mut Report, field: &str, port: u32) {
    if port == 0 || port > 65535 {
        r.err(
            field,
            format!("port {port} is out of range: expected 1–65535"),
        );
    }
}

pub(super) fn regex(r: &mut Report, field: &str, re: &str) {
    // Rust's regex crate implements the same linear-time subset as RE2
    // (no backreferences or lookaround), so what compiles here is what
    // Envoy's RE2 accepts, give or take rare syntax.
    if let Err(e) = regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
        let detail = e.to_string();
        let detail = detail.lines().last().unwrap_or(&detail);
        r.err(
            field,
            format!("invalid RE2 regex {re:?}: {}", detail.trim()),
        );
    }
}

pub(super) fn string_match(r: &mut Report, field: &str, m: &StringMatch) {
    if m.set_count() > 1 {
        r.err(field, "only one of exact, prefix or regex may be set");
    }
    if let Some(re) = &m.regex {
        regex(r, &format!("{field}.regex"), re);
    }
}

pub(super) fn percent(r: &mut Report, field: &str, p: &Percent) {
    if !(0.0..=100.0).contains(&p.value) || p.value.is_nan() {
        r.err(
            format!("{field}.value"),
            format!("percentage {} is out of range: expected 0–100", p.value),
        );
    }
}

pub(super) fn int_percent(r: &mut Report, field: &str, p: i32) {
    if !(0..=100).contains(&p) {
        r.err(
            field,
            format!("percentage {p} is out of range: expected 0–100"),
        );
    }
}

/// Durations in Istio's CRDs must be at least 1ms (CEL rule).
pub(super) fn duration(r: &mut Report, field: &str, d: &Duration) {
    if d.as_std() < StdDuration::from_millis(1) {
        r.err(
            field,
            format!("duration {d} is too short: must be at least 1ms"),
        );
    }
}

pub(super) fn opt_duration(r: &mut Report, field: &str, d: &Option<Duration>) {
    if let Some(d) = d {
        duration(r, field, d);
    }
}

pub(super) fn non_negative(r: &mut Report, field: &str, v: Option<i32>) {
    if let Some(v) = v {
        if v < 0 {
            r.err(field, format!("{v} must not be negative"));
        }
    }
}

/// An HTTP header name as Envoy accepts it (RFC 7230 token), lowercase
/// where Istio requires it.
pub(super) fn header_name(r: &mut Report, field: &str, name: &str) {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        r.err(field, format!("invalid header name {name:?}"));
    }
}

pub(super) fn headers(r: &mut Report, field: &str, h: &Headers) {
    for (part, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        for (op, names) in [
            ("set", ops.set.keys().collect::<Vec<_>>()),
            ("add", ops.add.keys().collect()),
            ("remove", ops.remove.iter().collect()),
        ] {
            for name in names {
                let f = format!("{field}.{part}.{op}[{name:?}]");
                header_name(r, &f, name);
                if name.starts_with(':') || name.eq_ignore_ascii_case("host") && op == "remove" {
                    r.err(f, format!("header {name:?} cannot be modified"));
                }
            }
        }
    }
}

/// `exportTo`: `.`, `*`, `~` or namespace names; `*` and `~` alone.
pub(super) fn export_to(r: &mut Report, field: &str, values: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for (i, v) in values.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if !seen.insert(v) {
            r.err(&f, format!("duplicate entry {v:?}"));
        }
        match v.as_str() {
            "." => {}
            "*" | "~" if values.len() > 1 => {
                r.err(&f, format!("{v:?} cannot be combined with other entries"))
            }
            "*" | "~" => {}
            ns if is_dns1123_label(ns) => {}
            ns => r.err(
                &f,
                format!("invalid namespace {ns:?}: expected \".\", \"*\" or a namespace name"),
            ),
        }
    }
}

/// A gateway reference in a VirtualService: `mesh`, `name` or `namespace/name`.
pub(super) fn gateway_name(r: &mut Report, field: &str, gw: &str) {
    if gw == "mesh" {
        return;
    }
    let (ns, name) = gw.split_once('/').unwrap_or(("", gw));
    let name_ok = is_dns1123_subdomain(name);
    let ns_ok = ns.is_empty() || is_dns1123_label(ns);
    if !name_ok || !ns_ok {
        r.err(field, format!("invalid gateway reference {gw:?}: expected \"mesh\", \"name\" or \"namespace/name\""));
    }
}

/// An IP address or CIDR block.
pub(super) fn ip_or_cidr(r: &mut Report, field: &str, v: &str) {
    let ok = v.parse::<std::net::IpAddr>().is_ok() || v.parse::<ipnet::IpNet>().is_ok();
    if !ok {
        r.err(field, format!("invalid IP address or CIDR {v:?}"));
    }
}
