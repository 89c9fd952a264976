//! The typed layer the generators write Envoy's v3 messages with: short
//! paths to the `envoy-types` (prost) modules, named as Envoy's API
//! packages are, so a generator reads next to Envoy's docs; nested
//! extensions packed into `Any` with each message's own type URL; and
//! proto3's wrapper and duration types from Istio's values.
//!
//! A field a generator misspells, or gives a value of the wrong type, is
//! a compile error here, where it used to be a resource dropped when its
//! JSON was turned into protobuf at run time.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::LazyLock;

pub(crate) use envoy_types::pb::envoy::config::accesslog::v3 as accesslog;
pub(crate) use envoy_types::pb::envoy::config::cluster::v3 as cluster;
pub(crate) use envoy_types::pb::envoy::config::core::v3 as core;
pub(crate) use envoy_types::pb::envoy::config::endpoint::v3 as endpoint;
pub(crate) use envoy_types::pb::envoy::config::listener::v3 as listener;
pub(crate) use envoy_types::pb::envoy::config::route::v3 as route;
pub(crate) use envoy_types::pb::envoy::extensions::access_loggers::file::v3 as file_log;
pub(crate) use envoy_types::pb::envoy::extensions::access_loggers::stream::v3 as stream_log;
pub(crate) use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
pub(crate) use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors;
pub(crate) use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
pub(crate) use envoy_types::pb::envoy::extensions::filters::http::router::v3 as router;
pub(crate) use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3 as tls_inspector;
pub(crate) use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
pub(crate) use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_proxy;
pub(crate) use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3 as previous_hosts;
pub(crate) use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3 as raw_buffer;
pub(crate) use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
pub(crate) use envoy_types::pb::envoy::extensions::upstreams::http::v3 as upstream_http;
pub(crate) use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
pub(crate) use envoy_types::pb::envoy::r#type::v3 as types;
pub(crate) use envoy_types::pb::google::protobuf::{
    Any, BoolValue, Duration, Struct, UInt32Value, UInt64Value,
};

/// A protobuf `Struct` of string values (metadata, match criteria).
pub(crate) fn strings<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Struct {
    use envoy_types::pb::google::protobuf::{value::Kind, Value};
    Struct {
        fields: map(entries.into_iter().map(|(k, v)| {
            (
                k.to_string(),
                Value {
                    kind: Some(Kind::StringValue(v.to_string())),
                },
            )
        })),
    }
}

/// `message` packed into an `Any` under its own type URL
/// (`type.googleapis.com/` and its full name, from `prost::Name`).
pub(crate) fn any<M: prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

pub(crate) fn u32_value(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

pub(crate) fn u64_value(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

pub(crate) fn bool_value(value: bool) -> Option<BoolValue> {
    Some(BoolValue { value })
}

/// A non-negative count from Istio's signed fields (negative is 0, as
/// Istio reads them).
pub(crate) fn count(v: i32) -> u32 {
    v.max(0).unsigned_abs()
}

pub(crate) fn seconds(seconds: i64) -> Option<Duration> {
    Some(Duration { seconds, nanos: 0 })
}

/// An Istio duration (`1m`, `100ms`, ...) as protobuf's.
pub(crate) fn duration_of(d: &weft_api::Duration) -> Duration {
    let d = d.as_std();
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Below 10^9: fits.
        nanos: d.subsec_nanos() as i32,
    }
}

/// [`duration_of`], for an optional field.
pub(crate) fn duration(d: &weft_api::Duration) -> Option<Duration> {
    Some(duration_of(d))
}

/// A duration in proto3 JSON's text form (`10s`, `0.250s`: what
/// `gen::dur` writes for mesh-wide settings); `None` if it is not one.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = whole.parse().ok()?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    Some(Duration { seconds, nanos })
}

/// `address:port` as an Envoy `Address`.
pub(crate) fn socket_address(address: &str, port: u32) -> Option<core::Address> {
    use core::socket_address::PortSpecifier;
    Some(core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    })
}

/// Resources of another type from the same ADS stream, v3, without
/// waiting for them before the resource that names them is used.
pub(crate) fn ads() -> Option<core::ConfigSource> {
    Some(core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        initial_fetch_timeout: seconds(0),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    })
}

/// One hasher for every map a generator fills: prost writes a map's
/// entries in the order the `HashMap` iterates them, and two maps with
/// the same hasher and the same entries inserted in the same order
/// iterate alike. So a resource encodes to the same bytes each time it
/// is generated, which is what tells the server it did not change.
static MAP_HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A protobuf map field's value from `entries`, in a fixed order (see
/// [`MAP_HASHER`]).
pub(crate) fn map<V>(entries: impl IntoIterator<Item = (String, V)>) -> HashMap<String, V> {
    let mut out = HashMap::with_hasher(MAP_HASHER.clone());
    out.extend(entries);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_proto3_json_writes_them() {
        let d = |seconds, nanos| Some(Duration { seconds, nanos });
        assert_eq!(parse_duration("10s"), d(10, 0));
        assert_eq!(parse_duration("0s"), d(0, 0));
        assert_eq!(parse_duration("0.250s"), d(0, 250_000_000));
        assert_eq!(parse_duration("1.000000001s"), d(1, 1));
        for bad in ["", "s", "10", "1m", "-1s", ".5s", "1.s5", "1.0000000001s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        let gen = |text: &str| {
            let d = weft_api::Duration::parse(text).expect("a duration");
            (super::super::dur(&d), duration(&d))
        };
        for text in ["1m", "100ms", "1.5s", "2h"] {
            let (text, d) = gen(text);
            assert_eq!(parse_duration(&text), d, "{text}");
        }
    }

    #[test]
    fn maps_encode_in_one_order() {
        use prost::Message;
        let entries = || (0..20).map(|i| (format!("key{i}"), UInt32Value { value: i }));
        let route = |m| route::Route {
            typed_per_filter_config: m,
            ..Default::default()
        };
        let first = route(map(entries().map(|(k, v)| (k, any(&v))))).encode_to_vec();
        for _ in 0..10 {
            let again = route(map(entries().map(|(k, v)| (k, any(&v))))).encode_to_vec();
            assert_eq!(again, first);
        }
    }
}
