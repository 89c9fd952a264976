//! Types shared across the API: addresses, durations, header options,
//! matchers.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

/// `envoy.config.core.v3.TransportSocket`: what carries a connection's
/// bytes — `raw_buffer` (as they are) or TLS, whose context sits in
/// `typed_config`. The proxy decides what it can carry (weft-proxy's
/// `transport` module) and refuses the rest by name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSocket {
    pub name: String,
    pub typed_config: Option<crate::TypedConfig>,
}

/// A protobuf Duration in its JSON form: `"5s"`, `"0.250s"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Duration)
            .map_err(serde::de::Error::custom)
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad =
        || format!("invalid duration {s:?}: expected seconds with an `s` suffix, e.g. \"1.5s\"");
    let num = s.strip_suffix('s').ok_or_else(bad)?;
    if num.starts_with('-') || num.is_empty() {
        return Err(bad());
    }
    let (secs, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(std::time::Duration::new(secs, nanos))
}

/// A protobuf int64: proto3 JSON writes it as a string (`"5"`), YAML
/// bootstraps usually as a number; both are accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .map(Int64)
        .ok_or_else(|| serde::de::Error::custom("expected a 64-bit integer"))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Address {
    pub socket_address: Option<SocketAddress>,
    /// A Unix domain socket; weft dials one only for a gRPC config
    /// source (SDS from a local agent, as Istio's bootstrap has it).
    pub pipe: Option<Pipe>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipe {
    pub path: String,
    pub mode: u32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketAddress {
    pub address: String,
    pub port_value: u32,
    pub protocol: Option<String>,
}

impl Address {
    /// The IP socket address, when the address is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let sa = self.socket_address.as_ref()?;
        let port = u16::try_from(sa.port_value).ok()?;
        let ip = sa.address.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.socket_address, &self.pipe) {
            (Some(sa), _) => write!(f, "{}:{}", sa.address, sa.port_value),
            (None, Some(p)) => write!(f, "unix://{}", p.path),
            (None, None) => f.write_str("<none>"),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderValue {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum AppendAction {
    #[default]
    APPEND_IF_EXISTS_OR_ADD,
    ADD_IF_ABSENT,
    OVERWRITE_IF_EXISTS_OR_ADD,
    OVERWRITE_IF_EXISTS,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderValueOption {
    pub header: HeaderValue,
    /// Deprecated `append` (a BoolValue); `append_action` wins when set.
    pub append: Option<bool>,
    pub append_action: Option<AppendAction>,
    pub keep_empty_value: bool,
}

impl HeaderValueOption {
    pub fn action(&self) -> AppendAction {
        match (self.append_action, self.append) {
            (Some(a), _) => a,
            (None, Some(false)) => AppendAction::OVERWRITE_IF_EXISTS_OR_ADD,
            _ => AppendAction::APPEND_IF_EXISTS_OR_ADD,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegexMatcher {
    pub regex: String,
    /// `google_re2: {}` is the only engine; accepted and ignored.
    pub google_re2: Option<serde_json::Value>,
}

/// `envoy.type.matcher.v3.StringMatcher`: exactly one of the patterns.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StringMatcher {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub contains: Option<String>,
    pub safe_regex: Option<RegexMatcher>,
    pub ignore_case: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Percent {
    pub value: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum DenominatorType {
    #[default]
    HUNDRED,
    TEN_THOUSAND,
    MILLION,
}

impl DenominatorType {
    pub fn value(self) -> u32 {
        match self {
            DenominatorType::HUNDRED => 100,
            DenominatorType::TEN_THOUSAND => 10_000,
            DenominatorType::MILLION => 1_000_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FractionalPercent {
    pub numerator: u32,
    pub denominator: DenominatorType,
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        for bad in ["5", "s", "-1s", "1.5ms", "1.0000000001s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
