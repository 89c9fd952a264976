//! PeerAuthentication, AuthorizationPolicy, RequestAuthentication and
//! Telemetry rules.

use weft_api::common::{LabelSelector, PolicyTargetReference};
use weft_api::security::{
    AuthorizationAction, AuthorizationPolicy, PeerAuthentication, RequestAuthentication,
};
use weft_api::telemetry::{TagOperation, Telemetry};

use super::common::*;
use super::Report;

fn targets(
    r: &mut Report,
    sel: &Option<LabelSelector>,
    one: &Option<PolicyTargetReference>,
    many: &[PolicyTargetReference],
) {
    let n = [sel.is_some(), one.is_some(), !many.is_empty()]
        .iter()
        .filter(|x| **x)
        .count();
    if n > 1 {
        r.err(
            "spec",
            "only one of selector, targetRef or targetRefs can be set",
        );
    }
    if let Some(s) = sel {
        selector(r, "spec.selector.matchLabels", &s.match_labels);
    }
    let refs = one.iter().map(|t| ("spec.targetRef".to_string(), t)).chain(
        many.iter()
            .enumerate()
            .map(|(i, t)| (format!("spec.targetRefs[{i}]"), t)),
    );
    for (f, t) in refs {
        if t.kind.is_empty() {
            r.err(format!("{f}.kind"), "kind is required");
        }
        if t.name.is_empty() {
            r.err(format!("{f}.name"), "name is required");
        }
        if t.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
            r.err(
                format!("{f}.namespace"),
                "cross namespace referencing is not currently supported",
            );
        }
    }
}

pub(super) fn peer_authentication(r: &mut Report, pa: &PeerAuthentication) {
    if let Some(s) = &pa.selector {
        selector(r, "spec.selector.matchLabels", &s.match_labels);
    }
    if !pa.port_level_mtls.is_empty()
        && pa
            .selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty())
    {
        r.err(
            "spec.portLevelMtls",
            "portLevelMtls requires a selector with matchLabels",
        );
    }
    for key in pa.port_level_mtls.keys() {
        if !key.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)) {
            r.err(
                format!("spec.portLevelMtls[{key:?}]"),
                format!("port {key:?} must be between 1 and 65535"),
            );
        }
    }
}

/// Condition keys an AuthorizationPolicy `when` may use.
const WHEN_KEYS: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "remote.ip",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];
const WHEN_PREFIXES: &[&str] = &[
    "request.headers[",
    "request.experimental.inline.headers[",
    "request.auth.claims[",
    "experimental.envoy.filters.",
];

pub(super) fn authorization_policy(r: &mut Report, ap: &AuthorizationPolicy) {
    targets(r, &ap.selector, &ap.target_ref, &ap.target_refs);
    let action = ap.action.unwrap_or(AuthorizationAction::ALLOW);
    if action == AuthorizationAction::CUSTOM
        && ap.provider.as_ref().and_then(|p| p.name.as_ref()).is_none()
    {
        r.err("spec.provider", "CUSTOM action requires provider.name");
    }
    if action != AuthorizationAction::CUSTOM && ap.provider.is_some() {
        r.err(
            "spec.provider",
            "provider can only be used with the CUSTOM action",
        );
    }
    if action == AuthorizationAction::DENY && ap.rules.is_empty() {
        r.warn("spec.rules", "a DENY policy without rules matches nothing");
    }
    for (i, rule) in ap.rules.iter().enumerate() {
        let f = format!("spec.rules[{i}]");
        for (j, from) in rule.from.iter().enumerate() {
            let ff = format!("{f}.from[{j}].source");
            let Some(s) = &from.source else {
                r.err(ff, "source is required");
                continue;
            };
            if (!s.service_accounts.is_empty() || !s.not_service_accounts.is_empty())
                && (!s.principals.is_empty()
                    || !s.not_principals.is_empty()
                    || !s.namespaces.is_empty()
                    || !s.not_namespaces.is_empty())
            {
                r.err(
                    &ff,
                    "cannot set serviceAccounts with namespaces or principals",
                );
            }
            let empty = [
                &s.principals,
                &s.not_principals,
                &s.request_principals,
                &s.not_request_principals,
                &s.namespaces,
                &s.not_namespaces,
                &s.service_accounts,
                &s.not_service_accounts,
                &s.ip_blocks,
                &s.not_ip_blocks,
                &s.remote_ip_blocks,
                &s.not_remote_ip_blocks,
            ]
            .iter()
            .all(|v| v.is_empty());
            if empty {
                r.err(&ff, "source must set at least one field");
            }
            for (name, list) in [
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                for (k, v) in list.iter().enumerate() {
                    ip_or_cidr(r, &format!("{ff}.{name}[{k}]"), v);
                }
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tf = format!("{f}.to[{j}].operation");
            let Some(op) = &to.operation else {
                r.err(tf, "operation is required");
                continue;
            };
            let empty = [
                &op.hosts,
                &op.not_hosts,
                &op.ports,
                &op.not_ports,
                &op.methods,
                &op.not_methods,
                &op.paths,
                &op.not_paths,
            ]
            .iter()
            .all(|v| v.is_empty());
            if empty {
                r.err(&tf, "operation must set at least one field");
            }
            for (name, list) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
                for (k, p) in list.iter().enumerate() {
                    if !p.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)) {
                        r.err(format!("{tf}.{name}[{k}]"), format!("invalid port {p:?}"));
                    }
                }
            }
            for (name, list) in [("paths", &op.paths), ("notPaths", &op.not_paths)] {
                for (k, p) in list.iter().enumerate() {
                    if !(p.starts_with('/') || p.starts_with('*') || p.is_empty()) {
                        r.warn(
                            format!("{tf}.{name}[{k}]"),
                            format!("path {p:?} does not start with '/' and will never match"),
                        );
                    }
                }
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let cf = format!("{f}.when[{j}]");
            if c.key.is_empty() {
                r.err(format!("{cf}.key"), "key is required");
            } else if !WHEN_KEYS.contains(&c.key.as_str())
                && !WHEN_PREFIXES.iter().any(|p| c.key.starts_with(p))
            {
                r.err(
                    format!("{cf}.key"),
                    format!("unknown attribute {:?}", c.key),
                );
            }
            if c.values.is_empty() && c.not_values.is_empty() {
                r.err(&cf, "values or notValues is required");
            }
        }
    }
}

pub(super) fn request_authentication(r: &mut Report, ra: &RequestAuthentication) {
    targets(r, &ra.selector, &ra.target_ref, &ra.target_refs);
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        let f = format!("spec.jwtRules[{i}]");
        if rule.issuer.is_empty() {
            r.err(format!("{f}.issuer"), "issuer is required");
        }
        let uris = [&rule.jwks_uri, &rule.jwks_uri_snake];
        if uris.iter().filter(|u| u.is_some()).count() + usize::from(rule.jwks.is_some()) > 1 {
            r.err(&f, "only one of jwks or jwksUri can be set");
        }
        if let Some(jwks) = &rule.jwks {
            if let Err(e) = crate::mesh::jwks::check(jwks) {
                r.err(format!("{f}.jwks"), e);
            }
        }
        for uri in uris.into_iter().flatten() {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                r.err(
                    format!("{f}.jwksUri"),
                    format!("jwksUri {uri:?} must be an http:// or https:// URL"),
                );
            }
        }
        for (j, h) in rule.from_headers.iter().enumerate() {
            if h.name.is_empty() {
                r.err(
                    format!("{f}.fromHeaders[{j}].name"),
                    "header name is required",
                );
            }
        }
        for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
            header_name(
                r,
                &format!("{f}.outputClaimToHeaders[{j}].header"),
                &c.header,
            );
            if c.claim.is_empty() {
                r.err(
                    format!("{f}.outputClaimToHeaders[{j}].claim"),
                    "claim is required",
                );
            }
        }
        opt_duration(r, &format!("{f}.timeout"), &rule.timeout);
    }
}

pub(super) fn telemetry(r: &mut Report, t: &Telemetry) {
    targets(r, &t.selector, &t.target_ref, &t.target_refs);
    for (i, tr) in t.tracing.iter().enumerate() {
        if let Some(p) = tr.random_sampling_percentage {
            if !(0.0..=100.0).contains(&p) {
                r.err(
                    format!("spec.tracing[{i}].randomSamplingPercentage"),
                    format!("percentage {p} is out of range: expected 0–100"),
                );
            }
        }
        for (name, tag) in &tr.custom_tags {
            let n = [
                tag.literal.is_some(),
                tag.environment.is_some(),
                tag.header.is_some(),
                tag.formatter.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if n != 1 {
                r.err(format!("spec.tracing[{i}].customTags[{name:?}]"), "a custom tag must set exactly one of literal, environment, header or formatter");
            }
        }
    }
    for (i, m) in t.metrics.iter().enumerate() {
        opt_duration(
            r,
            &format!("spec.metrics[{i}].reportingInterval"),
            &m.reporting_interval,
        );
        for (j, o) in m.overrides.iter().enumerate() {
            let f = format!("spec.metrics[{i}].overrides[{j}]");
            if let Some(sel) = &o.selector {
                if sel.metric.is_some() && sel.custom_metric.is_some() {
                    r.err(
                        format!("{f}.match"),
                        "only one of metric or customMetric can be set",
                    );
                }
            }
            for (tag, ov) in &o.tag_overrides {
                let tf = format!("{f}.tagOverrides[{tag:?}]");
                match ov.operation.unwrap_or(TagOperation::UPSERT) {
                    TagOperation::UPSERT if ov.value.as_deref().unwrap_or("").is_empty() => {
                        r.err(&tf, "value must be set when operation is UPSERT")
                    }
                    TagOperation::REMOVE if ov.value.is_some() => {
                        r.err(&tf, "value must not be set when operation is REMOVE")
                    }
                    _ => {}
                }
            }
        }
    }
    for (i, a) in t.access_logging.iter().enumerate() {
        for (j, p) in a.providers.iter().enumerate() {
            if p.name.is_empty() {
                r.err(
                    format!("spec.accessLogging[{i}].providers[{j}].name"),
                    "provider name is required",
                );
            }
        }
    }
}
