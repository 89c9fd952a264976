//! AuthorizationPolicy → Envoy's RBAC filters, as istiod translates them
//! (its published builder golden files are the reference for shape):
//!
//! - one filter per action, evaluated CUSTOM → DENY → ALLOW → AUDIT (LOG);
//!   no ALLOW filter when no ALLOW policy applies (everything allowed),
//!   an ALLOW filter with no policies when the ALLOW policies have no
//!   rules (an empty spec: allow nothing);
//! - a policy named `ns[NS]-policy[NAME]-rule[I]` per rule; a rule is
//!   `from` (any source) AND `to` (any operation) AND every `when`;
//!   within a source or operation every field must match, a field's
//!   values are alternatives, `notValues` negate;
//! - `istio.io/dry-run: "true"` policies go into `shadow_rules`
//!   (evaluated, logged, counted, never enforced);
//! - on TCP (network filter) HTTP-only fields cannot be evaluated: an
//!   ALLOW rule using them never matches, a DENY rule drops them and
//!   denies on what remains (the stricter reading), as Istio specifies.
//!
//! Values: `*` is "present", `x*` a prefix, `*x` a suffix, else exact;
//! principals are SPIFFE ids written without `spiffe://`, namespaces
//! match the `/ns/NS/` segment of the peer's identity.

// Istio writes the deprecated forms (`safe_regex_match`, `metadata`);
// so do we, so the output reads like istiod's.
#![allow(deprecated)]

pub(crate) use super::selection::{applied, selects, Applied};
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use weft_api::security::{AuthorizationAction, AuthorizationPolicy, Condition, Operation, Source};

use super::pb::{self, core, matcher, route as rt};
use crate::context::Named;

/// Which protocol the filter guards: HTTP (the HTTP RBAC filter) or a
/// TCP port (the network RBAC filter, where request fields are unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layer {
    Http,
    Tcp,
}

/// A rule field this translation cannot express on this layer.
struct HttpOnly;

/// How a value written in a policy matches: Istio's `*` forms.
enum Pattern<'a> {
    Present,
    Prefix(&'a str),
    Suffix(&'a str),
    Exact(&'a str),
}

fn pattern(v: &str) -> Pattern<'_> {
    if v == "*" {
        Pattern::Present
    } else if let Some(p) = v.strip_suffix('*') {
        Pattern::Prefix(p)
    } else if let Some(s) = v.strip_prefix('*') {
        Pattern::Suffix(s)
    } else {
        Pattern::Exact(v)
    }
}

fn string_matcher(p: matcher::string_matcher::MatchPattern) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(p),
        ..Default::default()
    }
}

fn regex(r: String) -> matcher::string_matcher::MatchPattern {
    matcher::string_matcher::MatchPattern::SafeRegex(matcher::RegexMatcher {
        regex: r,
        ..Default::default()
    })
}

/// A plain value as a StringMatcher: `*` is any non-empty value.
fn value_matcher(v: &str) -> matcher::StringMatcher {
    use matcher::string_matcher::MatchPattern as M;
    string_matcher(match pattern(v) {
        Pattern::Present => regex(".+".into()),
        Pattern::Prefix(p) => M::Prefix(p.into()),
        Pattern::Suffix(s) => M::Suffix(s.into()),
        Pattern::Exact(e) => M::Exact(e.into()),
    })
}

/// A principal (`cluster.local/ns/x/sa/y`, `*`, `prefix*`, `*suffix`)
/// against the peer's SPIFFE id.
fn principal_matcher(v: &str) -> matcher::StringMatcher {
    use matcher::string_matcher::MatchPattern as M;
    string_matcher(match pattern(v) {
        Pattern::Present => regex(".+".into()),
        Pattern::Prefix(p) => M::Prefix(format!("spiffe://{p}")),
        Pattern::Suffix(s) => regex(format!("spiffe://.*{}", regex_escape(s))),
        Pattern::Exact(e) => M::Exact(format!("spiffe://{e}")),
    })
}

/// A namespace against the `/ns/NS/` segment of the peer's SPIFFE id.
fn namespace_matcher(v: &str) -> matcher::StringMatcher {
    let ns = match pattern(v) {
        Pattern::Present => ".*".to_string(),
        Pattern::Prefix(p) => format!("{}.*", regex_escape(p)),
        Pattern::Suffix(s) => format!(".*{}", regex_escape(s)),
        Pattern::Exact(e) => regex_escape(e),
    };
    string_matcher(regex(format!(".*/ns/{ns}/.*")))
}

/// RE2-escapes the characters a Kubernetes name or SPIFFE segment may
/// carry that mean something in a regex.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ".+*?()|[]{}^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn cidr(v: &str) -> Option<core::CidrRange> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok()?)),
        None => (v, None),
    };
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let len = len.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
    Some(core::CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: pb::u32_value(len),
    })
}

fn header(name: &str, m: rt::header_matcher::HeaderMatchSpecifier) -> rt::HeaderMatcher {
    rt::HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(m),
        ..Default::default()
    }
}

/// `request.headers[NAME]` against one value, as istiod writes it now:
/// the header's (joined) value matched as a whole.
fn header_value(name: &str, v: &str) -> rt::HeaderMatcher {
    use rt::header_matcher::HeaderMatchSpecifier as H;
    match pattern(v) {
        Pattern::Present => header(name, H::PresentMatch(true)),
        _ => header(name, H::StringMatch(value_matcher(v))),
    }
}

/// `request.experimental.inline.headers[NAME]` against one value: a
/// header carrying several comma-separated values matches when any of
/// them does (a regular expression over the joined header).
fn inline_header_value(name: &str, v: &str) -> rt::HeaderMatcher {
    use rt::header_matcher::HeaderMatchSpecifier as H;
    let one = match pattern(v) {
        Pattern::Present => return header(name, H::PresentMatch(true)),
        Pattern::Prefix(p) => format!("{}.*", regex_escape(p)),
        Pattern::Suffix(s) => format!(".*{}", regex_escape(s)),
        Pattern::Exact(e) => regex_escape(e),
    };
    let r = format!("^{one}$|^{one},.*|.*,{one},.*|.*,{one}$");
    header(
        name,
        H::SafeRegexMatch(matcher::RegexMatcher {
            regex: r,
            ..Default::default()
        }),
    )
}

/// `:method` against one method.
#[allow(deprecated)]
fn method(v: &str) -> rt::HeaderMatcher {
    use rt::header_matcher::HeaderMatchSpecifier as H;
    header(
        ":method",
        match pattern(v) {
            Pattern::Present => H::PresentMatch(true),
            Pattern::Prefix(p) => H::PrefixMatch(p.into()),
            Pattern::Suffix(s) => H::SuffixMatch(s.into()),
            Pattern::Exact(e) => H::ExactMatch(e.into()),
        },
    )
}

/// `:authority` against one host, case-insensitively.
fn host(v: &str) -> rt::HeaderMatcher {
    use rt::header_matcher::HeaderMatchSpecifier as H;
    if v == "*" {
        return header(":authority", H::PresentMatch(true));
    }
    let mut m = value_matcher(v);
    m.ignore_case = true;
    header(":authority", H::StringMatch(m))
}

fn path(v: &str) -> rbac::permission::Rule {
    let m = if v.contains("{*}") || v.contains("{**}") {
        string_matcher(regex(path_template(v)))
    } else {
        value_matcher(v)
    };
    rbac::permission::Rule::UrlPath(matcher::PathMatcher {
        rule: Some(matcher::path_matcher::Rule::Path(m)),
    })
}

/// Istio's path templates as a regular expression: `{*}` is exactly one
/// path segment, `{**}` one or more. (istiod writes Envoy's
/// `uri_template` matcher, an extension weft proxy does not load; the
/// regex matches the same paths.)
fn path_template(v: &str) -> String {
    let mut out = String::from("^");
    let mut rest = v;
    while let Some(i) = rest.find('{') {
        out.push_str(&regex_escape(&rest[..i]));
        let tail = &rest[i..];
        if let Some(r) = tail.strip_prefix("{**}") {
            out.push_str(".+");
            rest = r;
        } else if let Some(r) = tail.strip_prefix("{*}") {
            out.push_str("[^/]+");
            rest = r;
        } else {
            out.push_str("\\{");
            rest = &tail[1..];
        }
    }
    out.push_str(&regex_escape(rest));
    out.push('$');
    out
}

fn metadata(filter: &str, keys: &[&str], v: &str) -> matcher::MetadataMatcher {
    matcher::MetadataMatcher {
        filter: filter.into(),
        path: keys
            .iter()
            .map(|k| matcher::metadata_matcher::PathSegment {
                segment: Some(matcher::metadata_matcher::path_segment::Segment::Key(
                    (*k).into(),
                )),
            })
            .collect(),
        value: Some(matcher::ValueMatcher {
            match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(
                value_matcher(v),
            )),
        }),
        ..Default::default()
    }
}

// ---- sets of permissions and principals ----

fn perm(rule: rbac::permission::Rule) -> rbac::Permission {
    rbac::Permission { rule: Some(rule) }
}

fn id(identifier: rbac::principal::Identifier) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(identifier),
    }
}

/// The values of a field (any of them) and its `not` values (none of
/// them), appended to `out` as Istio lays them out.
fn perm_field<F: Fn(&str) -> Option<rbac::permission::Rule>>(
    out: &mut Vec<rbac::Permission>,
    values: &[String],
    not_values: &[String],
    f: F,
) {
    use rbac::permission::Rule as R;
    let or = |vs: &[String]| {
        perm(R::OrRules(rbac::permission::Set {
            rules: vs.iter().filter_map(|v| f(v)).map(perm).collect(),
        }))
    };
    if !values.is_empty() {
        out.push(or(values));
    }
    if !not_values.is_empty() {
        out.push(perm(R::NotRule(Box::new(or(not_values)))));
    }
}

fn id_field<F: Fn(&str) -> Option<rbac::principal::Identifier>>(
    out: &mut Vec<rbac::Principal>,
    values: &[String],
    not_values: &[String],
    f: F,
) {
    use rbac::principal::Identifier as I;
    let or = |vs: &[String]| {
        id(I::OrIds(rbac::principal::Set {
            ids: vs.iter().filter_map(|v| f(v)).map(id).collect(),
        }))
    };
    if !values.is_empty() {
        out.push(or(values));
    }
    if !not_values.is_empty() {
        out.push(id(I::NotId(Box::new(or(not_values)))));
    }
}

/// An operation's fields as permissions; `Err` when one is HTTP-only on
/// a TCP layer.
fn operation(
    op: &Operation,
    layer: Layer,
    out: &mut Vec<rbac::Permission>,
) -> Result<(), HttpOnly> {
    use rbac::permission::Rule as R;
    let http_only = !op.hosts.is_empty()
        || !op.not_hosts.is_empty()
        || !op.methods.is_empty()
        || !op.not_methods.is_empty()
        || !op.paths.is_empty()
        || !op.not_paths.is_empty();
    if http_only && layer == Layer::Tcp {
        return Err(HttpOnly);
    }
    perm_field(out, &op.hosts, &op.not_hosts, |v| Some(R::Header(host(v))));
    perm_field(out, &op.methods, &op.not_methods, |v| {
        Some(R::Header(method(v)))
    });
    perm_field(out, &op.paths, &op.not_paths, |v| Some(path(v)));
    perm_field(out, &op.ports, &op.not_ports, |v| {
        v.parse().ok().map(R::DestinationPort)
    });
    Ok(())
}

/// Whose rule it is: the policy's namespace (a bare service account is
/// of it) and the mesh's trust domain (service accounts are SPIFFE ids
/// in it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner<'a> {
    pub namespace: &'a str,
}

/// `ns/sa` or `sa` (in the policy's namespace) as istiod matches it: a
/// SPIFFE id of any trust domain (peers of other clusters and federated
/// domains included) with that namespace and service account, extra
/// path segments allowed before `sa` and after the account.
fn service_account(owner: Owner, v: &str) -> matcher::StringMatcher {
    let (ns, sa) = v.split_once('/').unwrap_or((owner.namespace, v));
    string_matcher(regex(format!(
        "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
        regex_escape(ns),
        regex_escape(sa)
    )))
}

/// A source's fields as principals.
fn source(
    src: &Source,
    layer: Layer,
    owner: Owner,
    out: &mut Vec<rbac::Principal>,
) -> Result<(), HttpOnly> {
    use rbac::principal::Identifier as I;
    let http_only = !src.request_principals.is_empty() || !src.not_request_principals.is_empty();
    if http_only && layer == Layer::Tcp {
        return Err(HttpOnly);
    }
    let authenticated = |m: matcher::StringMatcher| {
        I::Authenticated(rbac::principal::Authenticated {
            principal_name: Some(m),
        })
    };
    id_field(out, &src.service_accounts, &src.not_service_accounts, |v| {
        Some(authenticated(service_account(owner, v)))
    });
    id_field(out, &src.principals, &src.not_principals, |v| {
        Some(authenticated(principal_matcher(v)))
    });
    id_field(
        out,
        &src.request_principals,
        &src.not_request_principals,
        |v| Some(request_principal(v)),
    );
    id_field(out, &src.namespaces, &src.not_namespaces, |v| {
        Some(authenticated(namespace_matcher(v)))
    });
    id_field(out, &src.remote_ip_blocks, &src.not_remote_ip_blocks, |v| {
        cidr(v).map(I::RemoteIp)
    });
    id_field(out, &src.ip_blocks, &src.not_ip_blocks, |v| {
        cidr(v).map(I::DirectRemoteIp)
    });
    Ok(())
}

/// A request principal: the verified payload's `iss` and `sub` both
/// match (see [`super::authn::request_principal`]).
fn request_principal(v: &str) -> rbac::principal::Identifier {
    use rbac::principal::Identifier as I;
    I::AndIds(rbac::principal::Set {
        ids: super::authn::request_principal(v)
            .into_iter()
            .map(|m| id(I::Metadata(m)))
            .collect(),
    })
}

/// Where a `when` key goes: a permission (about the destination) or a
/// principal (about the source or the request's identity).
enum Key {
    Permission(fn(&str, &str) -> Option<rbac::permission::Rule>),
    Principal(fn(&str, &str) -> Option<rbac::principal::Identifier>),
}

/// The documented `when` keys; `Err` names an unknown one, `Ok(None)`
/// an HTTP-only key on a TCP layer.
fn when_key(key: &str, layer: Layer) -> Result<Option<(Key, String)>, String> {
    use rbac::permission::Rule as R;
    use rbac::principal::Identifier as I;
    let http = |k: Key, arg: String| {
        if layer == Layer::Tcp {
            Ok(None)
        } else {
            Ok(Some((k, arg)))
        }
    };
    if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|r| r.strip_suffix(']'))
    {
        return http(
            Key::Principal(|name, v| Some(I::Header(header_value(name, v)))),
            name.to_string(),
        );
    }
    if let Some(name) = key
        .strip_prefix("request.experimental.inline.headers[")
        .and_then(|r| r.strip_suffix(']'))
    {
        return http(
            Key::Principal(|name, v| Some(I::Header(inline_header_value(name, v)))),
            name.to_string(),
        );
    }
    if let Some(claims) = key.strip_prefix("request.auth.claims") {
        // `[a][b]` → the nested claim a.b.
        let path: Vec<&str> = claims
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split("][")
            .collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "{key}: expected request.auth.claims[NAME]([NESTED]...)"
            ));
        }
        return http(
            Key::Principal(|path, v| {
                let keys: Vec<&str> = path.split('\u{1f}').collect();
                Some(I::Metadata(super::authn::claim(&keys, value_matcher(v))))
            }),
            path.join("\u{1f}"),
        );
    }
    if let Some(rest) = key.strip_prefix("experimental.envoy.filters.") {
        let (filter, field) = rest
            .split_once('[')
            .and_then(|(f, r)| Some((f, r.strip_suffix(']')?)))
            .ok_or_else(|| format!("{key}: expected experimental.envoy.filters.NAME[KEY]"))?;
        return Ok(Some((
            Key::Permission(|arg, v| {
                let (filter, field) = arg.split_once('\u{1f}')?;
                Some(R::Metadata(metadata(filter, &[field], v)))
            }),
            format!("envoy.filters.{filter}\u{1f}{field}"),
        )));
    }
    let simple = |k| Ok(Some((k, String::new())));
    match key {
        "source.ip" => simple(Key::Principal(|_, v| cidr(v).map(I::DirectRemoteIp))),
        "remote.ip" => simple(Key::Principal(|_, v| cidr(v).map(I::RemoteIp))),
        "source.namespace" => simple(Key::Principal(|_, v| {
            Some(I::Authenticated(rbac::principal::Authenticated {
                principal_name: Some(namespace_matcher(v)),
            }))
        })),
        "source.principal" => simple(Key::Principal(|_, v| {
            Some(I::Authenticated(rbac::principal::Authenticated {
                principal_name: Some(principal_matcher(v)),
            }))
        })),
        "request.auth.principal" => http(
            Key::Principal(|_, v| Some(request_principal(v))),
            String::new(),
        ),
        // The verified payload's `aud` and `azp` claims.
        "request.auth.audiences" => http(
            Key::Principal(|_, v| {
                Some(I::Metadata(super::authn::claim(&["aud"], value_matcher(v))))
            }),
            String::new(),
        ),
        "request.auth.presenter" => http(
            Key::Principal(|_, v| {
                Some(I::Metadata(super::authn::claim(&["azp"], value_matcher(v))))
            }),
            String::new(),
        ),
        "destination.ip" => simple(Key::Permission(|_, v| cidr(v).map(R::DestinationIp))),
        "destination.port" => simple(Key::Permission(|_, v| {
            v.parse().ok().map(R::DestinationPort)
        })),
        "connection.sni" => simple(Key::Permission(|_, v| {
            Some(R::RequestedServerName(value_matcher(v)))
        })),
        other => Err(format!("{other}: not a key Istio documents for `when`")),
    }
}

/// One rule as an RBAC policy; `None` when it can never match on this
/// layer (an ALLOW or AUDIT rule using HTTP-only fields on TCP).
/// `Err` names a field that cannot be translated.
pub(crate) fn rule_policy(
    rule: &weft_api::security::Rule,
    action: AuthorizationAction,
    layer: Layer,
    owner: Owner,
) -> Result<Option<rbac::Policy>, String> {
    use rbac::permission::Rule as R;
    use rbac::principal::Identifier as I;
    // A DENY rule with HTTP-only parts still denies on TCP, on what is left.
    let lenient = matches!(
        action,
        AuthorizationAction::DENY | AuthorizationAction::CUSTOM
    );
    let mut permissions = Vec::new();
    let tos: Vec<Option<&Operation>> = if rule.to.is_empty() {
        vec![None]
    } else {
        rule.to.iter().map(|t| t.operation.as_ref()).collect()
    };
    let mut extra_perms = Vec::new();
    let mut extra_ids = Vec::new();
    for (i, c) in rule.when.iter().enumerate() {
        match when_key(&c.key, layer).map_err(|e| format!("when[{i}].key: {e}"))? {
            Some((key, arg)) => condition(c, key, &arg, &mut extra_perms, &mut extra_ids),
            None if lenient => {}
            None => return Ok(None),
        }
    }
    for op in tos {
        let mut rules = Vec::new();
        if let Some(op) = op {
            if operation(op, layer, &mut rules).is_err() {
                if !lenient {
                    continue;
                }
                // Keep what a TCP filter can check: the ports.
                rules.clear();
                let ports_only = Operation {
                    ports: op.ports.clone(),
                    not_ports: op.not_ports.clone(),
                    ..Default::default()
                };
                let _ = operation(&ports_only, layer, &mut rules);
            }
        }
        rules.extend(extra_perms.iter().cloned());
        if rules.is_empty() {
            rules.push(perm(R::Any(true)));
        }
        permissions.push(perm(R::AndRules(rbac::permission::Set { rules })));
    }
    if permissions.is_empty() {
        // Every operation was HTTP-only on TCP: this ALLOW rule never matches.
        return Ok(None);
    }
    let mut principals = Vec::new();
    let froms: Vec<Option<&Source>> = if rule.from.is_empty() {
        vec![None]
    } else {
        rule.from.iter().map(|f| f.source.as_ref()).collect()
    };
    for src in froms {
        let mut ids = Vec::new();
        if let Some(src) = src {
            if !src.trust_domains.is_empty() || !src.not_trust_domains.is_empty() {
                return Err("from.source.trustDomains: not implemented by weft yet".into());
            }
            if source(src, layer, owner, &mut ids).is_err() {
                if !lenient {
                    continue;
                }
                ids.clear();
                let mut tcp = src.clone();
                tcp.request_principals.clear();
                tcp.not_request_principals.clear();
                let _ = source(&tcp, layer, owner, &mut ids);
            }
        }
        ids.extend(extra_ids.iter().cloned());
        if ids.is_empty() {
            ids.push(id(I::Any(true)));
        }
        principals.push(id(I::AndIds(rbac::principal::Set { ids })));
    }
    if principals.is_empty() {
        return Ok(None);
    }
    Ok(Some(rbac::Policy {
        permissions,
        principals,
        ..Default::default()
    }))
}

fn condition(
    c: &Condition,
    key: Key,
    arg: &str,
    perms: &mut Vec<rbac::Permission>,
    ids: &mut Vec<rbac::Principal>,
) {
    match key {
        Key::Permission(f) => perm_field(perms, &c.values, &c.not_values, |v| f(arg, v)),
        Key::Principal(f) => id_field(ids, &c.values, &c.not_values, |v| f(arg, v)),
    }
}

/// A policy matching every request.
pub(crate) fn deny_all() -> rbac::Policy {
    rbac::Policy {
        permissions: vec![perm(rbac::permission::Rule::Any(true))],
        principals: vec![id(rbac::principal::Identifier::Any(true))],
        ..Default::default()
    }
}

/// Istio's name for rule `i` of a policy.
pub(crate) fn policy_name(p: &Named<AuthorizationPolicy>, i: usize) -> String {
    format!("ns[{}]-policy[{}]-rule[{}]", p.namespace, p.name, i)
}

/// The RBAC engines of one action: enforced rules, and the dry-run ones
/// as shadow rules; `None` when no policy of that action applies.
pub(crate) struct Engines {
    pub rules: Option<rbac::Rbac>,
    pub shadow: Option<rbac::Rbac>,
    /// Istio's shadow stat prefix: `istio_dry_run_allow_` or
    /// `istio_dry_run_deny_`, by the shadow rules' action (ALLOW when
    /// there are none, as Istio leaves it).
    pub shadow_prefix: &'static str,
}

fn rbac_action(a: AuthorizationAction) -> rbac::rbac::Action {
    match a {
        // On HTTP, CUSTOM goes to `gen::custom`; on TCP its authorizer is
        // not implemented: what it would
        // be asked about is denied, the fail-closed reading.
        AuthorizationAction::DENY | AuthorizationAction::CUSTOM => rbac::rbac::Action::Deny,
        AuthorizationAction::AUDIT => rbac::rbac::Action::Log,
        _ => rbac::rbac::Action::Allow,
    }
}

/// The engines for `action` from `applied` (every applicable policy, in
/// Istio's order); `Err` names the policy and field that cannot be
/// translated.
pub(crate) fn engines(applied: &[Applied], action: AuthorizationAction, layer: Layer) -> Engines {
    let mut rules: Option<rbac::Rbac> = None;
    let mut shadow: Option<rbac::Rbac> = None;
    for a in applied {
        let p = a.policy;
        if p.spec.action.unwrap_or(AuthorizationAction::ALLOW) != action {
            continue;
        }
        let owner = Owner {
            namespace: &p.namespace,
        };
        let engine = if a.dry_run { &mut shadow } else { &mut rules };
        let engine = engine.get_or_insert_with(|| rbac::Rbac {
            action: rbac_action(action) as i32,
            policies: pb::map([]),
            ..Default::default()
        });
        for (i, rule) in p.spec.rules.iter().enumerate() {
            match rule_policy(rule, action, layer, owner) {
                Ok(Some(policy)) => {
                    engine.policies.insert(policy_name(p, i), policy);
                }
                Ok(None) => {}
                // Istio's fail-safe: a DENY rule it cannot translate denies
                // everything; an ALLOW (or AUDIT) rule is left out, so it
                // allows nothing more.
                Err(e) => {
                    tracing::error!(
                        "AuthorizationPolicy {}/{}: spec.rules[{i}].{e}; {}",
                        p.namespace,
                        p.name,
                        if rbac_action(action) == rbac::rbac::Action::Deny {
                            "the rule denies every request"
                        } else {
                            "the rule is left out"
                        }
                    );
                    if rbac_action(action) == rbac::rbac::Action::Deny {
                        engine.policies.insert(policy_name(p, i), deny_all());
                    }
                }
            }
        }
    }
    Engines {
        shadow_prefix: if action == AuthorizationAction::DENY && shadow.is_some() {
            "istio_dry_run_deny_"
        } else {
            "istio_dry_run_allow_"
        },
        rules,
        shadow,
    }
}

/// Istio's order of the actions' filters on a workload.
pub(crate) const ORDER: [AuthorizationAction; 4] = [
    AuthorizationAction::CUSTOM,
    AuthorizationAction::DENY,
    AuthorizationAction::ALLOW,
    AuthorizationAction::AUDIT,
];

/// The HTTP RBAC filters for `applied`'s DENY, ALLOW and AUDIT policies,
/// in that order (CUSTOM's are `gen::custom`'s, which go first).
pub(crate) fn http_filters(applied: &[Applied]) -> Vec<pb::hcm::HttpFilter> {
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
    let mut out = Vec::new();
    // CUSTOM goes to its external authorizer: `gen::custom`, before these.
    for action in ORDER
        .into_iter()
        .filter(|a| *a != AuthorizationAction::CUSTOM)
    {
        let e = engines(applied, action, Layer::Http);
        if e.rules.is_none() && e.shadow.is_none() {
            continue;
        }
        let config = http_rbac::Rbac {
            rules: e.rules,
            shadow_rules: e.shadow,
            shadow_rules_stat_prefix: e.shadow_prefix.into(),
            ..Default::default()
        };
        out.push(pb::hcm::HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            config_type: Some(pb::hcm::http_filter::ConfigType::TypedConfig(pb::any(
                &config,
            ))),
            ..Default::default()
        });
    }
    out
}

/// The network RBAC filters of a TCP port for `applied` (stat prefix
/// `tcp.`, as Istio's).
pub(crate) fn network_filters(applied: &[Applied]) -> Vec<pb::listener::Filter> {
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
    let mut out = Vec::new();
    for action in ORDER {
        let e = engines(applied, action, Layer::Tcp);
        if e.rules.is_none() && e.shadow.is_none() {
            continue;
        }
        let config = net_rbac::Rbac {
            rules: e.rules,
            shadow_rules: e.shadow,
            shadow_rules_stat_prefix: e.shadow_prefix.into(),
            stat_prefix: "tcp.".into(),
            ..Default::default()
        };
        out.push(pb::listener::Filter {
            name: "envoy.filters.network.rbac".into(),
            config_type: Some(pb::listener::filter::ConfigType::TypedConfig(pb::any(
                &config,
            ))),
        });
    }
    out
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
