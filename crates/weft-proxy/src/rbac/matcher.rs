//! Permissions and principals compiled into matchers, and how each one
//! reads a request or a connection ([`Input`]), with Envoy's semantics:
//! CIDR ranges of one address family, destination port ranges that
//! exclude their end, URL paths without query or fragment, the peer
//! certificate's URI SANs then DNS SANs then subject for
//! `authenticated`, and metadata values matched by Envoy's
//! `ValueMatcher`. Matching allocates nothing.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use weft_envoy::rbac as cfg;

use super::{Input, RbacError};
use crate::matchers::{HeaderMatch, StringMatcher};

/// What a request or connection does.
#[derive(Debug)]
pub(crate) enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderMatch),
    UrlPath(StringMatcher),
    DestinationIp(Cidr),
    DestinationPort(u16),
    /// `[start, end)`.
    DestinationPorts(u32, u32),
    Metadata(MetadataMatch),
    RequestedServerName(StringMatcher),
}

/// Who the downstream is.
#[derive(Debug)]
pub(crate) enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// `None`: any authenticated peer.
    Authenticated(Option<StringMatcher>),
    /// The connection's peer (`direct_remote_ip`, and the deprecated
    /// `source_ip`: weft reads no PROXY protocol, so they are one).
    DirectRemoteIp(Cidr),
    /// The client as the connection manager trusts it (X-Forwarded-For).
    RemoteIp(Cidr),
    Header(HeaderMatch),
    UrlPath(StringMatcher),
    Metadata(MetadataMatch),
}

fn invalid(field: &str, message: impl Into<String>) -> RbacError {
    RbacError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

fn string(at: &str, m: &weft_envoy::StringMatcher) -> Result<StringMatcher, RbacError> {
    StringMatcher::compile(m).map_err(|e| invalid(at, e))
}

fn header(at: &str, h: &weft_envoy::route::HeaderMatcher) -> Result<HeaderMatch, RbacError> {
    HeaderMatch::compile(h).map_err(|e| invalid(at, e))
}

fn url_path(at: &str, p: &cfg::PathMatcher) -> Result<StringMatcher, RbacError> {
    match &p.path {
        Some(m) => string(&format!("{at}.path"), m),
        None => Err(invalid(&format!("{at}.path"), "required")),
    }
}

/// The field of a oneof that names a feature weft refuses.
fn refused(at: &str, field: &str) -> RbacError {
    invalid(
        &format!("{at}.{field}"),
        "not implemented by weft (refused when the configuration was read)",
    )
}

impl Permission {
    pub(crate) fn compile(at: &str, p: &cfg::Permission) -> Result<Self, RbacError> {
        let sub = |field: &str| format!("{at}.{field}");
        let set = |field: &str, rules: &[cfg::Permission]| {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| Permission::compile(&format!("{at}.{field}.rules[{i}]"), r))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(if let Some(s) = &p.and_rules {
            Permission::And(set("and_rules", &s.rules)?)
        } else if let Some(s) = &p.or_rules {
            Permission::Or(set("or_rules", &s.rules)?)
        } else if p.any.is_some() {
            Permission::Any
        } else if let Some(h) = &p.header {
            Permission::Header(header(&sub("header"), h)?)
        } else if let Some(u) = &p.url_path {
            Permission::UrlPath(url_path(&sub("url_path"), u)?)
        } else if let Some(c) = &p.destination_ip {
            Permission::DestinationIp(Cidr::compile(&sub("destination_ip"), c)?)
        } else if let Some(port) = p.destination_port {
            Permission::DestinationPort(
                u16::try_from(port)
                    .map_err(|_| invalid(&sub("destination_port"), "out of range"))?,
            )
        } else if let Some(r) = &p.destination_port_range {
            let (start, end) = (u32::try_from(r.start), u32::try_from(r.end));
            match (start, end) {
                (Ok(s), Ok(e)) if s < e => Permission::DestinationPorts(s, e),
                _ => {
                    return Err(invalid(
                        &sub("destination_port_range"),
                        "expected 0 <= start < end",
                    ))
                }
            }
        } else if let Some(m) = &p.metadata {
            Permission::Metadata(MetadataMatch::compile(&sub("metadata"), m)?)
        } else if let Some(n) = &p.not_rule {
            Permission::Not(Box::new(Permission::compile(&sub("not_rule"), n)?))
        } else if let Some(s) = &p.requested_server_name {
            Permission::RequestedServerName(string(&sub("requested_server_name"), s)?)
        } else if let Some(s) = &p.sourced_metadata {
            Permission::Metadata(MetadataMatch::sourced(&sub("sourced_metadata"), s)?)
        } else if p.matcher.is_some() {
            return Err(refused(at, "matcher"));
        } else if p.uri_template.is_some() {
            return Err(refused(at, "uri_template"));
        } else {
            return Err(invalid(at, "a permission needs one rule"));
        })
    }

    pub(crate) fn matches(&self, input: &Input) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(all) => all.iter().all(|p| p.matches(input)),
            Permission::Or(any) => any.iter().any(|p| p.matches(input)),
            Permission::Not(p) => !p.matches(input),
            Permission::Header(h) => h.matches(&input.request),
            Permission::UrlPath(m) => url_path_matches(m, input),
            Permission::DestinationIp(c) => input.conn.local.is_some_and(|a| c.contains(a.ip())),
            Permission::DestinationPort(p) => input.conn.local.is_some_and(|a| a.port() == *p),
            Permission::DestinationPorts(start, end) => input
                .conn
                .local
                .is_some_and(|a| (*start..*end).contains(&u32::from(a.port()))),
            Permission::Metadata(m) => m.matches(input.metadata),
            Permission::RequestedServerName(m) => {
                // A connection without SNI has an empty server name.
                m.matches(input.conn.requested_server_name.as_deref().unwrap_or(""))
            }
        }
    }
}

impl Principal {
    pub(crate) fn compile(at: &str, p: &cfg::Principal) -> Result<Self, RbacError> {
        let sub = |field: &str| format!("{at}.{field}");
        let set = |field: &str, ids: &[cfg::Principal]| {
            ids.iter()
                .enumerate()
                .map(|(i, id)| Principal::compile(&format!("{at}.{field}.ids[{i}]"), id))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(if let Some(s) = &p.and_ids {
            Principal::And(set("and_ids", &s.ids)?)
        } else if let Some(s) = &p.or_ids {
            Principal::Or(set("or_ids", &s.ids)?)
        } else if p.any.is_some() {
            Principal::Any
        } else if let Some(a) = &p.authenticated {
            let name = a
                .principal_name
                .as_ref()
                .map(|m| string(&sub("authenticated.principal_name"), m))
                .transpose()?;
            Principal::Authenticated(name)
        } else if let Some(c) = &p.source_ip {
            Principal::DirectRemoteIp(Cidr::compile(&sub("source_ip"), c)?)
        } else if let Some(c) = &p.direct_remote_ip {
            Principal::DirectRemoteIp(Cidr::compile(&sub("direct_remote_ip"), c)?)
        } else if let Some(c) = &p.remote_ip {
            Principal::RemoteIp(Cidr::compile(&sub("remote_ip"), c)?)
        } else if let Some(h) = &p.header {
            Principal::Header(header(&sub("header"), h)?)
        } else if let Some(u) = &p.url_path {
            Principal::UrlPath(url_path(&sub("url_path"), u)?)
        } else if let Some(m) = &p.metadata {
            Principal::Metadata(MetadataMatch::compile(&sub("metadata"), m)?)
        } else if let Some(n) = &p.not_id {
            Principal::Not(Box::new(Principal::compile(&sub("not_id"), n)?))
        } else if let Some(s) = &p.sourced_metadata {
            Principal::Metadata(MetadataMatch::sourced(&sub("sourced_metadata"), s)?)
        } else if p.filter_state.is_some() {
            return Err(refused(at, "filter_state"));
        } else if p.custom.is_some() {
            return Err(refused(at, "custom"));
        } else {
            return Err(invalid(at, "a principal needs one identifier"));
        })
    }

    pub(crate) fn matches(&self, input: &Input) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(all) => all.iter().all(|p| p.matches(input)),
            Principal::Or(any) => any.iter().any(|p| p.matches(input)),
            Principal::Not(p) => !p.matches(input),
            Principal::Authenticated(name) => authenticated(name.as_ref(), input),
            Principal::DirectRemoteIp(c) => c.contains(input.conn.peer.ip()),
            Principal::RemoteIp(c) => c.contains(input.remote),
            Principal::Header(h) => h.matches(&input.request),
            Principal::UrlPath(m) => url_path_matches(m, input),
            Principal::Metadata(m) => m.matches(input.metadata),
        }
    }

    /// Whether matching reads the remote address (which the HTTP filter
    /// then works out from X-Forwarded-For).
    pub(crate) fn reads_remote(&self) -> bool {
        match self {
            Principal::RemoteIp(_) => true,
            Principal::And(ps) | Principal::Or(ps) => ps.iter().any(Principal::reads_remote),
            Principal::Not(p) => p.reads_remote(),
            _ => false,
        }
    }
}

/// Envoy's `authenticated`: only a TLS connection has a principal; the
/// name is each URI SAN, then each DNS SAN, then the subject.
fn authenticated(name: Option<&StringMatcher>, input: &Input) -> bool {
    let Some(tls) = &input.conn.tls else {
        return false;
    };
    let Some(m) = name else {
        return true;
    };
    tls.peer_identities.iter().any(|u| m.matches(u))
        || tls.peer_dns_sans.iter().any(|d| m.matches(d))
        || m.matches(&tls.peer_subject)
}

/// The path without query and fragment; a request without a path (a
/// connection, for the network filter) never matches.
fn url_path_matches(m: &StringMatcher, input: &Input) -> bool {
    let full = input.request.path_and_query;
    if full.is_empty() {
        return false;
    }
    let end = full.find(['?', '#']).unwrap_or(full.len());
    m.matches(&full[..end])
}

/// A CIDR range: an address of its family within the prefix.
#[derive(Debug)]
pub(crate) struct Cidr(IpNet);

impl Cidr {
    fn compile(at: &str, c: &weft_envoy::listener::CidrRange) -> Result<Self, RbacError> {
        let ip: IpAddr = c.address_prefix.parse().map_err(|_| {
            invalid(
                &format!("{at}.address_prefix"),
                format!("{:?} is not an IP address", c.address_prefix),
            )
        })?;
        // Unset, the prefix length is 0: the whole family.
        let len = u8::try_from(c.prefix_len.unwrap_or(0)).unwrap_or(u8::MAX);
        IpNet::new(ip, len)
            .map(|n| Cidr(n.trunc()))
            .map_err(|e| invalid(&format!("{at}.prefix_len"), e.to_string()))
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

/// A value in the dynamic metadata.
#[derive(Debug)]
pub(crate) struct MetadataMatch {
    filter: String,
    path: Vec<String>,
    value: ValueMatch,
    invert: bool,
}

impl MetadataMatch {
    pub(crate) fn compile(at: &str, m: &cfg::MetadataMatcher) -> Result<Self, RbacError> {
        let value = m
            .value
            .as_ref()
            .ok_or_else(|| invalid(&format!("{at}.value"), "required"))?;
        Ok(MetadataMatch {
            filter: m.filter.clone(),
            path: m.path.iter().filter_map(|s| s.key.clone()).collect(),
            value: ValueMatch::compile(&format!("{at}.value"), value)?,
            invert: m.invert,
        })
    }

    fn sourced(at: &str, s: &cfg::SourcedMetadata) -> Result<Self, RbacError> {
        if s.metadata_source != cfg::MetadataSource::DYNAMIC {
            return Err(refused(at, "metadata_source"));
        }
        match &s.metadata_matcher {
            Some(m) => MetadataMatch::compile(&format!("{at}.metadata_matcher"), m),
            None => Err(invalid(&format!("{at}.metadata_matcher"), "required")),
        }
    }

    pub(crate) fn matches(&self, metadata: &crate::metadata::DynamicMetadata) -> bool {
        let v = metadata.lookup(&self.filter, &self.path);
        self.value.matches(v) != self.invert
    }
}

/// `envoy.type.matcher.v3.ValueMatcher` on a metadata value (`None`:
/// the path leads nowhere).
#[derive(Debug)]
enum ValueMatch {
    Null,
    Double(DoubleMatch),
    String(StringMatcher),
    Bool(bool),
    Present(bool),
    List(Box<ValueMatch>),
    Or(Vec<ValueMatch>),
}

#[derive(Debug)]
enum DoubleMatch {
    /// `[start, end)`.
    Range(f64, f64),
    Exact(f64),
}

impl ValueMatch {
    fn compile(at: &str, v: &cfg::ValueMatcher) -> Result<Self, RbacError> {
        Ok(if v.null_match.is_some() {
            ValueMatch::Null
        } else if let Some(d) = &v.double_match {
            match (&d.range, d.exact) {
                (Some(r), _) => ValueMatch::Double(DoubleMatch::Range(r.start, r.end)),
                (None, Some(x)) => ValueMatch::Double(DoubleMatch::Exact(x)),
                (None, None) => {
                    return Err(invalid(
                        &format!("{at}.double_match"),
                        "needs range or exact",
                    ))
                }
            }
        } else if let Some(s) = &v.string_match {
            ValueMatch::String(string(&format!("{at}.string_match"), s)?)
        } else if let Some(b) = v.bool_match {
            ValueMatch::Bool(b)
        } else if let Some(p) = v.present_match {
            ValueMatch::Present(p)
        } else if let Some(l) = &v.list_match {
            let inner = l
                .one_of
                .as_ref()
                .ok_or_else(|| invalid(&format!("{at}.list_match.one_of"), "required"))?;
            ValueMatch::List(Box::new(ValueMatch::compile(
                &format!("{at}.list_match.one_of"),
                inner,
            )?))
        } else if let Some(o) = &v.or_match {
            ValueMatch::Or(
                o.value_matchers
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        ValueMatch::compile(&format!("{at}.or_match.value_matchers[{i}]"), m)
                    })
                    .collect::<Result<_, _>>()?,
            )
        } else {
            return Err(invalid(at, "a value matcher needs one pattern"));
        })
    }

    fn matches(&self, v: Option<&Value>) -> bool {
        match (self, v) {
            // Only a value that is there can be present.
            (ValueMatch::Present(p), v) => *p && v.is_some(),
            (ValueMatch::Or(ms), v) => ms.iter().any(|m| m.matches(v)),
            (_, None) => false,
            (ValueMatch::Null, Some(v)) => v.is_null(),
            (ValueMatch::Double(d), Some(Value::Number(n))) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                match d {
                    DoubleMatch::Range(start, end) => *start <= x && x < *end,
                    DoubleMatch::Exact(e) => x == *e,
                }
            }
            (ValueMatch::String(m), Some(Value::String(s))) => m.matches(s),
            (ValueMatch::Bool(b), Some(Value::Bool(x))) => b == x,
            (ValueMatch::List(m), Some(Value::Array(items))) => {
                items.iter().any(|i| m.matches(Some(i)))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(v: Value) -> ValueMatch {
        let m: cfg::ValueMatcher = serde_json::from_value(v).unwrap();
        ValueMatch::compile("v", &m).unwrap()
    }

    #[test]
    fn value_matchers_read_metadata_values_as_envoy_does() {
        let s = value(json!({"string_match": {"prefix": "ad"}}));
        assert!(s.matches(Some(&json!("admin"))));
        assert!(!s.matches(Some(&json!(["admin"]))));
        assert!(!s.matches(None));
        let l = value(json!({"list_match": {"one_of": {"string_match": {"exact": "b"}}}}));
        assert!(l.matches(Some(&json!(["a", "b"]))));
        assert!(!l.matches(Some(&json!("b"))));
        let d = value(json!({"double_match": {"range": {"start": 1, "end": 2}}}));
        assert!(d.matches(Some(&json!(1))) && d.matches(Some(&json!(1.5))));
        assert!(!d.matches(Some(&json!(2))));
        assert!(value(json!({"null_match": {}})).matches(Some(&Value::Null)));
        assert!(!value(json!({"null_match": {}})).matches(None));
        assert!(value(json!({"present_match": true})).matches(Some(&json!(0))));
        assert!(!value(json!({"present_match": true})).matches(None));
        // present_match false never matches, present or not.
        assert!(!value(json!({"present_match": false})).matches(None));
        assert!(value(json!({"bool_match": true})).matches(Some(&json!(true))));
        let o = value(json!({"or_match": {"value_matchers": [
            {"bool_match": true}, {"string_match": {"exact": "yes"}}]}}));
        assert!(o.matches(Some(&json!("yes"))) && !o.matches(Some(&json!("no"))));
    }

    #[test]
    fn cidr_ranges_hold_one_family_and_truncate_host_bits() {
        let c = |a: &str, n: Option<u32>| {
            Cidr::compile(
                "c",
                &weft_envoy::listener::CidrRange {
                    address_prefix: a.into(),
                    prefix_len: n,
                },
            )
            .unwrap()
        };
        let ten = c("10.1.2.3", Some(8));
        assert!(ten.contains("10.200.0.1".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(!ten.contains("::ffff:10.0.0.1".parse().unwrap()));
        let all4 = c("0.0.0.0", None);
        assert!(all4.contains("192.0.2.1".parse().unwrap()));
        assert!(!all4.contains("::1".parse().unwrap()));
        assert!(c("::1", Some(128)).contains("::1".parse().unwrap()));
    }
}
