//! The RBAC filters' settings, by Envoy's rules (its proto validation:
//! one field of each oneof, non-empty lists, ranges), and what weft does
//! not implement, refused by name: CEL conditions, the xDS matcher-tree
//! form (`matcher`, `shadow_matcher`), extension matchers and
//! principals, filter state, route metadata and audit logging.

use super::routes::{header_matcher, string_matcher};
use super::{exactly_one, At};
use crate::rbac::{
    HttpRbac, MetadataMatcher, MetadataSource, NetworkRbac, Permission, Policy, Principal, Rbac,
    SourcedMetadata, ValueMatcher,
};
use crate::FieldError;

const NOT_IMPLEMENTED: &str = "not implemented by weft";

/// Refuses the first field in `set` that is in use.
fn refuse(at: &At, set: &[(&str, bool, &str)]) -> Result<(), FieldError> {
    match set.iter().find(|(_, used, _)| *used) {
        Some((name, _, why)) => Err(at.key(name).err(format!("{NOT_IMPLEMENTED}: {why}"))),
        None => Ok(()),
    }
}

/// The HTTP filter's settings (on the connection manager, or inside a
/// route's `RBACPerRoute`).
pub(super) fn http_rbac(at: &At, r: &HttpRbac) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            (
                "matcher",
                r.matcher.is_some(),
                "the matcher-tree form; use rules",
            ),
            (
                "shadow_matcher",
                r.shadow_matcher.is_some(),
                "the matcher-tree form; use shadow_rules",
            ),
        ],
    )?;
    if let Some(rules) = &r.rules {
        rbac(&at.key("rules"), rules)?;
    }
    if let Some(rules) = &r.shadow_rules {
        rbac(&at.key("shadow_rules"), rules)?;
    }
    Ok(())
}

/// The network filter's settings.
pub(super) fn network_rbac(at: &At, r: &NetworkRbac) -> Result<(), FieldError> {
    if r.stat_prefix.is_empty() {
        return Err(at.key("stat_prefix").err("required"));
    }
    refuse(
        at,
        &[
            (
                "matcher",
                r.matcher.is_some(),
                "the matcher-tree form; use rules",
            ),
            (
                "shadow_matcher",
                r.shadow_matcher.is_some(),
                "the matcher-tree form; use shadow_rules",
            ),
        ],
    )?;
    for (field, rules) in [("rules", &r.rules), ("shadow_rules", &r.shadow_rules)] {
        if let Some(rules) = rules {
            let rat = at.key(field);
            rbac(&rat, rules)?;
            for (name, p) in &rules.policies {
                let pat = rat.key("policies").key(name);
                for (i, perm) in p.permissions.iter().enumerate() {
                    no_header_permission(&pat.key("permissions").idx(i), perm)?;
                }
                for (i, id) in p.principals.iter().enumerate() {
                    no_header_principal(&pat.key("principals").idx(i), id)?;
                }
            }
        }
    }
    Ok(())
}

/// Envoy refuses a header rule anywhere in a network filter's policies
/// (a connection has no headers); paths and metadata it accepts.
fn header_refused(at: &At) -> FieldError {
    at.key("header")
        .err("not supported by the RBAC network filter: a connection has no headers")
}

fn no_header_permission(at: &At, p: &Permission) -> Result<(), FieldError> {
    if p.header.is_some() {
        return Err(header_refused(at));
    }
    for (field, set) in [("and_rules", &p.and_rules), ("or_rules", &p.or_rules)] {
        for (i, r) in set.iter().flat_map(|s| s.rules.iter()).enumerate() {
            no_header_permission(&at.key(field).key("rules").idx(i), r)?;
        }
    }
    match &p.not_rule {
        Some(n) => no_header_permission(&at.key("not_rule"), n),
        None => Ok(()),
    }
}

fn no_header_principal(at: &At, p: &Principal) -> Result<(), FieldError> {
    if p.header.is_some() {
        return Err(header_refused(at));
    }
    for (field, set) in [("and_ids", &p.and_ids), ("or_ids", &p.or_ids)] {
        for (i, id) in set.iter().flat_map(|s| s.ids.iter()).enumerate() {
            no_header_principal(&at.key(field).key("ids").idx(i), id)?;
        }
    }
    match &p.not_id {
        Some(n) => no_header_principal(&at.key("not_id"), n),
        None => Ok(()),
    }
}

fn rbac(at: &At, r: &Rbac) -> Result<(), FieldError> {
    refuse(
        at,
        &[(
            "audit_logging_options",
            r.audit_logging_options.is_some(),
            "RBAC audit loggers",
        )],
    )?;
    for (name, p) in &r.policies {
        policy(&at.key("policies").key(name), p)?;
    }
    Ok(())
}

fn policy(at: &At, p: &Policy) -> Result<(), FieldError> {
    refuse(
        at,
        &[
            ("condition", p.condition.is_some(), "CEL conditions"),
            (
                "checked_condition",
                p.checked_condition.is_some(),
                "CEL conditions",
            ),
            ("cel_config", p.cel_config.is_some(), "CEL conditions"),
        ],
    )?;
    if p.permissions.is_empty() {
        return Err(at
            .key("permissions")
            .err("a policy needs at least one permission (`any: true` for all)"));
    }
    if p.principals.is_empty() {
        return Err(at
            .key("principals")
            .err("a policy needs at least one principal (`any: true` for all)"));
    }
    for (i, perm) in p.permissions.iter().enumerate() {
        permission(&at.key("permissions").idx(i), perm)?;
    }
    for (i, id) in p.principals.iter().enumerate() {
        principal(&at.key("principals").idx(i), id)?;
    }
    Ok(())
}

fn permission(at: &At, p: &Permission) -> Result<(), FieldError> {
    exactly_one(
        at,
        "a permission",
        &[
            ("and_rules", p.and_rules.is_some()),
            ("or_rules", p.or_rules.is_some()),
            ("any", p.any.is_some()),
            ("header", p.header.is_some()),
            ("url_path", p.url_path.is_some()),
            ("destination_ip", p.destination_ip.is_some()),
            ("destination_port", p.destination_port.is_some()),
            ("destination_port_range", p.destination_port_range.is_some()),
            ("metadata", p.metadata.is_some()),
            ("not_rule", p.not_rule.is_some()),
            ("requested_server_name", p.requested_server_name.is_some()),
            ("matcher", p.matcher.is_some()),
            ("uri_template", p.uri_template.is_some()),
            ("sourced_metadata", p.sourced_metadata.is_some()),
        ],
    )?;
    refuse(
        at,
        &[
            ("matcher", p.matcher.is_some(), "RBAC matcher extensions"),
            (
                "uri_template",
                p.uri_template.is_some(),
                "path template matching",
            ),
        ],
    )?;
    for (field, set) in [("and_rules", &p.and_rules), ("or_rules", &p.or_rules)] {
        if let Some(set) = set {
            let sat = at.key(field).key("rules");
            if set.rules.is_empty() {
                return Err(sat.err("needs at least one rule"));
            }
            for (i, r) in set.rules.iter().enumerate() {
                permission(&sat.idx(i), r)?;
            }
        }
    }
    if p.any == Some(false) {
        return Err(at.key("any").err("must be true when set"));
    }
    if let Some(h) = &p.header {
        header_matcher(&at.key("header"), h)?;
    }
    if let Some(u) = &p.url_path {
        path_matcher(&at.key("url_path"), u)?;
    }
    if let Some(c) = &p.destination_ip {
        cidr(&at.key("destination_ip"), c)?;
    }
    if let Some(port) = p.destination_port {
        if port > 65535 {
            return Err(at
                .key("destination_port")
                .err(format!("{port} is out of range: expected 0–65535")));
        }
    }
    if let Some(r) = &p.destination_port_range {
        let rat = at.key("destination_port_range");
        if !(0..=65535).contains(&r.start) {
            return Err(rat
                .key("start")
                .err(format!("{} is out of range: expected 0–65535", r.start)));
        }
        if !(0..=65536).contains(&r.end) {
            return Err(rat
                .key("end")
                .err(format!("{} is out of range: expected 0–65536", r.end)));
        }
        if r.start >= r.end {
            return Err(rat.err(format!(
                "start {} must be less than end {} (the end is excluded)",
                r.start, r.end
            )));
        }
    }
    if let Some(m) = &p.metadata {
        metadata_matcher(&at.key("metadata"), m)?;
    }
    if let Some(n) = &p.not_rule {
        permission(&at.key("not_rule"), n)?;
    }
    if let Some(s) = &p.requested_server_name {
        string_matcher(&at.key("requested_server_name"), s)?;
    }
    if let Some(s) = &p.sourced_metadata {
        sourced_metadata(&at.key("sourced_metadata"), s)?;
    }
    Ok(())
}

fn principal(at: &At, p: &Principal) -> Result<(), FieldError> {
    exactly_one(
        at,
        "a principal",
        &[
            ("and_ids", p.and_ids.is_some()),
            ("or_ids", p.or_ids.is_some()),
            ("any", p.any.is_some()),
            ("authenticated", p.authenticated.is_some()),
            ("source_ip", p.source_ip.is_some()),
            ("direct_remote_ip", p.direct_remote_ip.is_some()),
            ("remote_ip", p.remote_ip.is_some()),
            ("header", p.header.is_some()),
            ("url_path", p.url_path.is_some()),
            ("metadata", p.metadata.is_some()),
            ("filter_state", p.filter_state.is_some()),
            ("not_id", p.not_id.is_some()),
            ("sourced_metadata", p.sourced_metadata.is_some()),
            ("custom", p.custom.is_some()),
        ],
    )?;
    refuse(
        at,
        &[
            (
                "filter_state",
                p.filter_state.is_some(),
                "weft keeps no filter state objects",
            ),
            ("custom", p.custom.is_some(), "RBAC principal extensions"),
        ],
    )?;
    for (field, set) in [("and_ids", &p.and_ids), ("or_ids", &p.or_ids)] {
        if let Some(set) = set {
            let sat = at.key(field).key("ids");
            if set.ids.is_empty() {
                return Err(sat.err("needs at least one principal"));
            }
            for (i, id) in set.ids.iter().enumerate() {
                principal(&sat.idx(i), id)?;
            }
        }
    }
    if p.any == Some(false) {
        return Err(at.key("any").err("must be true when set"));
    }
    if let Some(name) = p
        .authenticated
        .as_ref()
        .and_then(|a| a.principal_name.as_ref())
    {
        string_matcher(&at.key("authenticated").key("principal_name"), name)?;
    }
    for (field, c) in [
        ("source_ip", &p.source_ip),
        ("direct_remote_ip", &p.direct_remote_ip),
        ("remote_ip", &p.remote_ip),
    ] {
        if let Some(c) = c {
            cidr(&at.key(field), c)?;
        }
    }
    if let Some(h) = &p.header {
        header_matcher(&at.key("header"), h)?;
    }
    if let Some(u) = &p.url_path {
        path_matcher(&at.key("url_path"), u)?;
    }
    if let Some(m) = &p.metadata {
        metadata_matcher(&at.key("metadata"), m)?;
    }
    if let Some(n) = &p.not_id {
        principal(&at.key("not_id"), n)?;
    }
    if let Some(s) = &p.sourced_metadata {
        sourced_metadata(&at.key("sourced_metadata"), s)?;
    }
    Ok(())
}

fn path_matcher(at: &At, p: &crate::rbac::PathMatcher) -> Result<(), FieldError> {
    match &p.path {
        Some(s) => string_matcher(&at.key("path"), s),
        None => Err(at.key("path").err("required")),
    }
}

/// An address and a prefix length that fits it.
pub(super) fn cidr(at: &At, c: &crate::listener::CidrRange) -> Result<(), FieldError> {
    let ip: std::net::IpAddr = c.address_prefix.parse().map_err(|_| {
        at.key("address_prefix")
            .err(format!("{:?} is not an IP address", c.address_prefix))
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match c.prefix_len {
        Some(n) if n > max => Err(at
            .key("prefix_len")
            .err(format!("{n} is out of range for {ip}: expected 0–{max}"))),
        _ => Ok(()),
    }
}

fn sourced_metadata(at: &At, s: &SourcedMetadata) -> Result<(), FieldError> {
    if s.metadata_source == MetadataSource::ROUTE {
        return Err(at.key("metadata_source").err(format!(
            "{NOT_IMPLEMENTED}: ROUTE (weft's routes carry no metadata); use DYNAMIC"
        )));
    }
    match &s.metadata_matcher {
        Some(m) => metadata_matcher(&at.key("metadata_matcher"), m),
        None => Err(at.key("metadata_matcher").err("required")),
    }
}

pub(super) fn metadata_matcher(at: &At, m: &MetadataMatcher) -> Result<(), FieldError> {
    if m.filter.is_empty() {
        return Err(at.key("filter").err("required"));
    }
    if m.path.is_empty() {
        return Err(at.key("path").err("needs at least one segment"));
    }
    for (i, seg) in m.path.iter().enumerate() {
        if seg.key.as_deref().is_none_or(str::is_empty) {
            return Err(at.key("path").idx(i).key("key").err("required"));
        }
    }
    match &m.value {
        Some(v) => value_matcher(&at.key("value"), v),
        None => Err(at.key("value").err("required")),
    }
}

fn value_matcher(at: &At, v: &ValueMatcher) -> Result<(), FieldError> {
    exactly_one(
        at,
        "a value matcher",
        &[
            ("null_match", v.null_match.is_some()),
            ("double_match", v.double_match.is_some()),
            ("string_match", v.string_match.is_some()),
            ("bool_match", v.bool_match.is_some()),
            ("present_match", v.present_match.is_some()),
            ("list_match", v.list_match.is_some()),
            ("or_match", v.or_match.is_some()),
        ],
    )?;
    if let Some(d) = &v.double_match {
        exactly_one(
            &at.key("double_match"),
            "a double matcher",
            &[("range", d.range.is_some()), ("exact", d.exact.is_some())],
        )?;
    }
    if let Some(s) = &v.string_match {
        string_matcher(&at.key("string_match"), s)?;
    }
    if let Some(l) = &v.list_match {
        match &l.one_of {
            Some(inner) => value_matcher(&at.key("list_match").key("one_of"), inner)?,
            None => return Err(at.key("list_match").key("one_of").err("required")),
        }
    }
    if let Some(o) = &v.or_match {
        let oat = at.key("or_match").key("value_matchers");
        if o.value_matchers.len() < 2 {
            return Err(oat.err("needs at least two matchers"));
        }
        for (i, m) in o.value_matchers.iter().enumerate() {
            value_matcher(&oat.idx(i), m)?;
        }
    }
    Ok(())
}
