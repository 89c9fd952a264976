//! Delegate VirtualServices: an `http` rule of a root VirtualService may
//! hand its traffic to another VirtualService (one without hosts) by
//! name. Istio merges the delegate's rules into the root in place of the
//! delegating rule, and so does this module, once per snapshot, so that
//! every generator sees plain rules.
//!
//! Istio's rules, as its API reference and behaviour document them:
//! - a delegate is a VirtualService without hosts, found by name in the
//!   namespace the rule gives (the root's by default), and it must be
//!   exported to the root's namespace; otherwise the rule is dropped;
//! - one level only: a delegate's own delegating rules are dropped;
//! - each delegate match must fall inside one of the root rule's matches
//!   (a narrower URI, no clashing header, port, gateway...); the merged
//!   match keeps the delegate's conditions and adds the root's. A
//!   delegate rule none of whose matches fits is dropped;
//! - a field the delegate rule leaves unset (timeout, retries, fault,
//!   rewrite, mirror, CORS, headers) comes from the root rule;
//! - the delegate's short host names and gateway names are its own
//!   namespace's, not the root's.

use weft_api::Map;

use weft_api::common::StringMatch;
use weft_api::virtual_service::{HttpMatchRequest, HttpRoute, VirtualService};

use crate::context::{resolve_host, Named};
use crate::model::exported_to;

/// Replaces each delegating rule of every root VirtualService with the
/// delegate's rules merged into it. A root's digest then also covers
/// its delegates, so that what is generated from it is remade when one
/// of them changes.
pub(crate) fn merge_all(vss: &mut [Named<VirtualService>]) {
    let mut merged = Vec::new();
    for (i, root) in vss.iter().enumerate() {
        if root.spec.hosts.is_empty() || root.spec.http.iter().all(|r| r.delegate.is_none()) {
            continue;
        }
        let mut http = Vec::new();
        let mut digests = vec![root.digest];
        for rule in &root.spec.http {
            let Some(d) = &rule.delegate else {
                http.push(rule.clone());
                continue;
            };
            let ns = d.namespace.as_deref().unwrap_or(&root.namespace);
            let found = vss.iter().find(|v| {
                v.spec.hosts.is_empty()
                    && v.name == d.name
                    && v.namespace == ns
                    && exported_to(&v.spec.export_to, &v.namespace, &root.namespace)
            });
            let Some(delegate) = found else {
                tracing::warn!(
                    virtual_service = %format!("{}/{}", root.namespace, root.name),
                    delegate = %format!("{ns}/{}", d.name),
                    "delegate VirtualService not found (or not exported to the root's namespace): its rule is dropped"
                );
                continue;
            };
            digests.push(delegate.digest);
            let rule = qualified(rule, &root.namespace);
            for child in &delegate.spec.http {
                if child.delegate.is_some() {
                    continue;
                }
                match merge_rule(&rule, qualified(child, &delegate.namespace)) {
                    Some(r) => http.push(r),
                    None => tracing::warn!(
                        virtual_service = %format!("{}/{}", root.namespace, root.name),
                        delegate = %format!("{}/{}", delegate.namespace, delegate.name),
                        "a delegate rule's matches are not within the root rule's: the rule is dropped"
                    ),
                }
            }
        }
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&digests, &mut h);
        merged.push((i, http, std::hash::Hasher::finish(&h)));
    }
    for (i, http, digest) in merged {
        std::sync::Arc::make_mut(&mut vss[i].spec).http = http;
        vss[i].digest = digest;
    }
}

/// A rule with its short names made absolute in namespace `ns` (its
/// VirtualService's), so that a delegate's mean the same once merged
/// into a root of another namespace, and gateway names compare.
fn qualified(rule: &HttpRoute, ns: &str) -> HttpRoute {
    let mut r = rule.clone();
    for d in &mut r.route {
        d.destination.host = resolve_host(&d.destination.host, ns);
    }
    if let Some(m) = &mut r.mirror {
        m.host = resolve_host(&m.host, ns);
    }
    for m in &mut r.mirrors {
        m.destination.host = resolve_host(&m.destination.host, ns);
    }
    for m in &mut r.matches {
        for g in &mut m.gateways {
            if g != "mesh" && !g.contains('/') {
                *g = format!("{ns}/{g}");
            }
        }
    }
    r
}

/// The delegate rule `child` (already [`qualified`]) inside `root`, or
/// none when none of its matches fits in the root's.
fn merge_rule(root: &HttpRoute, mut child: HttpRoute) -> Option<HttpRoute> {
    child.matches = merge_matches(&root.matches, &child.matches)?;
    child.name = joined(&root.name, &child.name);
    macro_rules! inherit {
        ($($f:ident),*) => {$(
            if child.$f.is_none() {
                child.$f = root.$f.clone();
            }
        )*};
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percent_snake,
        mirror_percentage,
        cors_policy,
        headers
    );
    if child.mirrors.is_empty() {
        child.mirrors = root.mirrors.clone();
    }
    Some(child)
}

fn joined(root: &Option<String>, child: &Option<String>) -> Option<String> {
    match (root, child) {
        (Some(r), Some(c)) => Some(format!("{r}-{c}")),
        (r, None) => r.clone(),
        (None, c) => c.clone(),
    }
}

/// Every delegate match merged with each root match it fits in; none
/// when some delegate match fits in no root match.
fn merge_matches(
    root: &[HttpMatchRequest],
    child: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(child.to_vec());
    }
    if child.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for c in child {
        let before = out.len();
        out.extend(
            root.iter()
                .filter(|r| fits(r, c))
                .map(|r| merge_match(r, c)),
        );
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merge_match(root: &HttpMatchRequest, child: &HttpMatchRequest) -> HttpMatchRequest {
    let mut m = child.clone();
    m.name = joined(&root.name, &child.name);
    for (mine, theirs) in [
        (&mut m.uri, &root.uri),
        (&mut m.scheme, &root.scheme),
        (&mut m.method, &root.method),
        (&mut m.authority, &root.authority),
    ] {
        if mine.is_none() {
            mine.clone_from(theirs);
        }
    }
    fn union<V: Clone>(mine: &mut Map<String, V>, theirs: &Map<String, V>) {
        // The last of equal keys stays: the delegate's own.
        *mine = theirs
            .iter()
            .chain(mine.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    union(&mut m.headers, &root.headers);
    union(&mut m.without_headers, &root.without_headers);
    union(&mut m.query_params, &root.query_params);
    union(&mut m.source_labels, &root.source_labels);
    if m.port.is_none() {
        m.port = root.port;
    }
    if m.source_namespace.is_none() {
        m.source_namespace.clone_from(&root.source_namespace);
    }
    if m.gateways.is_empty() {
        m.gateways.clone_from(&root.gateways);
    }
    if m.stat_prefix.is_none() {
        m.stat_prefix.clone_from(&root.stat_prefix);
    }
    m
}

/// Whether the delegate match `child` asks for nothing `root` excludes.
fn fits(root: &HttpMatchRequest, child: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &child.uri),
        (&root.scheme, &child.scheme),
        (&root.method, &child.method),
        (&root.authority, &child.authority),
    ];
    if pairs
        .iter()
        .any(|(r, c)| !string_fits(r.as_ref(), c.as_ref()))
    {
        return false;
    }
    for (theirs, mine) in [
        (&root.headers, &child.headers),
        (&root.without_headers, &child.without_headers),
        (&root.query_params, &child.query_params),
    ] {
        if mine
            .iter()
            .any(|(k, c)| !string_fits(theirs.get(k), Some(c)))
        {
            return false;
        }
    }
    if root.ignore_uri_case.unwrap_or(false) != child.ignore_uri_case.unwrap_or(false) {
        return false;
    }
    if let (Some(r), Some(c)) = (root.port, child.port) {
        if r != c {
            return false;
        }
    }
    if let Some(ns) = &root.source_namespace {
        if child.source_namespace.as_ref() != Some(ns) {
            return false;
        }
    }
    if child
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|r| r != v))
    {
        return false;
    }
    if !root.gateways.is_empty() && !child.gateways.is_empty() {
        return child.gateways.iter().all(|g| root.gateways.contains(g));
    }
    true
}

/// Whether a delegate's string condition stays within the root's: a
/// regex only where the other side sets nothing, an exact value equal to
/// the root's, a prefix or exact value under the root's prefix.
fn string_fits(root: Option<&StringMatch>, child: Option<&StringMatch>) -> bool {
    let (Some(r), Some(c)) = (root, child) else {
        return true;
    };
    if r.regex.is_some() || c.regex.is_some() {
        return r.set_count() == 0 || c.set_count() == 0;
    }
    if let Some(exact) = &r.exact {
        return c.prefix.is_none() && c.exact.as_ref().is_none_or(|e| e == exact);
    }
    if let Some(prefix) = &r.prefix {
        return c
            .prefix
            .as_ref()
            .is_none_or(|p| p.starts_with(prefix.as_str()))
            && c.exact
                .as_ref()
                .is_none_or(|e| e.starts_with(prefix.as_str()));
    }
    true
}

#[cfg(test)]
mod tests;
