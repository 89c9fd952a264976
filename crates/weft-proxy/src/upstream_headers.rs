//! The headers a forwarded request carries upstream: hop-by-hop and
//! client control headers removed, and what Envoy adds by default
//! (x-forwarded-*, x-envoy-original-*, the expected timeout).

use std::net::SocketAddr;

use http::header::{HeaderName, HeaderValue, HOST};
use http::HeaderMap;

use crate::chain::HttpSettings;
use crate::headers::HOP_BY_HOP;
use crate::routes::Forward;

/// Request headers that would steer the proxy (timeouts, retries,
/// tracing, stats); removed from what clients send.
const CLIENT_CONTROL_HEADERS: &[&str] = &[
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-original-url",
];

/// Also removed at the edge (`use_remote_address`), where nothing a
/// client says about the mesh is believed.
const EDGE_CLEANED_HEADERS: &[&str] = &[
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-original-path",
];

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
static X_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");
static X_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
static X_EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");

/// What shaping the upstream request's headers depends on.
pub(crate) struct Shaping<'a> {
    pub settings: &'a HttpSettings,
    pub fwd: &'a Forward,
    pub peer: SocketAddr,
    /// Host and path as the client sent them.
    pub host: &'a str,
    pub path: &'a str,
    /// The Host after any rewrite.
    pub new_host: &'a str,
    /// The protocol an HTTP/1.1 upgrade asked for.
    pub upgrade: Option<&'a HeaderValue>,
    pub http2_upstream: bool,
}

pub(crate) fn shape(h: &mut HeaderMap, s: &Shaping) {
    // TE is hop-by-hop, but `trailers` is what gRPC needs end to end;
    // Envoy forwards that one value and drops the rest.
    let te_trailers = h
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
    if te_trailers {
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    // No client is trusted to steer the proxy: Envoy (with no internal
    // address ranges configured) drops these from every request. All are
    // `x-envoy-*`, so one scan spares most requests the lookups.
    if h.keys().any(|k| k.as_str().starts_with("x-envoy-")) {
        for name in CLIENT_CONTROL_HEADERS {
            h.remove(*name);
        }
        if s.settings.use_remote_address {
            for name in EDGE_CLEANED_HEADERS {
                h.remove(*name);
            }
        }
    }
    // The proxy answers `100-continue` itself (hyper does when the body
    // is first read), so the expectation is not passed on.
    h.remove(http::header::EXPECT);
    // HTTP/2 clients may split cookies over several fields; one line
    // joined by "; " is what HTTP/1.1 servers expect.
    if h.get_all(http::header::COOKIE).iter().nth(1).is_some() {
        let joined: Vec<&str> = h
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if let Ok(v) = HeaderValue::from_str(&joined.join("; ")) {
            h.insert(http::header::COOKIE, v);
        }
    }
    if s.new_host != s.host {
        if let Ok(v) = HeaderValue::from_str(s.host) {
            h.insert(X_ORIGINAL_HOST.clone(), v);
        }
    }
    if s.fwd.prefix_rewrite.is_some() || s.fwd.regex_rewrite.is_some() {
        if let Ok(v) = HeaderValue::from_str(s.path) {
            h.insert(X_ORIGINAL_PATH.clone(), v);
        }
    }
    if let Some(u) = s.upgrade {
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        h.insert(http::header::UPGRADE, u.clone());
    }
    if s.http2_upstream {
        h.remove(HOST);
    } else if let Ok(v) = HeaderValue::from_str(s.new_host) {
        h.insert(HOST, v);
    }
    if s.settings.use_remote_address {
        // Every client is external at the edge: its address is recorded,
        // and appended to x-forwarded-for (a loopback peer as this host's
        // address, like Envoy).
        let ip = s.peer.ip();
        if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
            h.insert(X_EXTERNAL_ADDRESS.clone(), v);
        }
        if !s.settings.skip_xff_append {
            if let Some(v) = appended_xff(h, ip) {
                h.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
    // At the edge the connection says what the scheme was and a client's
    // claim is not trusted (no downstream TLS yet: always http);
    // elsewhere a client's value stands.
    if s.settings.use_remote_address || !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !s.fwd.timeout.is_zero() {
        h.insert(
            X_EXPECTED_TIMEOUT.clone(),
            HeaderValue::from(s.fwd.timeout.as_millis() as u64),
        );
    }
}

/// This host's first non-loopback address (what Envoy calls the local
/// address): the source address the kernel would pick for an outside
/// destination. Connecting a UDP socket sends nothing.
/// X-Forwarded-For with the peer `ip` appended, as the connection
/// manager sends (and logs) it with `use_remote_address` (a loopback peer
/// as this host's address, like Envoy).
pub(crate) fn appended_xff(h: &http::HeaderMap, ip: std::net::IpAddr) -> Option<HeaderValue> {
    let ip = if ip.is_loopback() {
        local_address()
    } else {
        ip
    };
    let v = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev},{ip}"),
        None => ip.to_string(),
    };
    HeaderValue::from_str(&v).ok()
}

fn local_address() -> std::net::IpAddr {
    static ADDR: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect("198.51.100.1:9")?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    })
}
