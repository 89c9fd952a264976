//! `VirtualService` (networking.istio.io): how requests for a host are routed.

use crate::Map;

use crate::common::{Destination, Headers, Percent, StringMatch};
use crate::Duration;

model! {
    pub struct VirtualService {
        pub hosts: Vec<String>,
        pub gateways: Vec<String>,
        pub http: Vec<HttpRoute>,
        pub tls: Vec<TlsRoute>,
        pub tcp: Vec<TcpRoute>,
        pub export_to: Vec<String>,
    }
}

model! {
    /// The optional parts are boxed: a route is ~1 KB with them inline,
    /// and most routes set none of them.
    pub struct HttpRoute {
        pub name: Option<String>,
        #[serde(rename = "match")]
        pub matches: Vec<HttpMatchRequest>,
        pub route: Vec<HttpRouteDestination>,
        pub redirect: Option<Box<HttpRedirect>>,
        pub direct_response: Option<Box<HttpDirectResponse>>,
        pub delegate: Option<Box<Delegate>>,
        pub rewrite: Option<Box<HttpRewrite>>,
        pub timeout: Option<Duration>,
        pub retries: Option<Box<HttpRetry>>,
        pub fault: Option<Box<HttpFaultInjection>>,
        pub mirror: Option<Box<Destination>>,
        pub mirrors: Vec<HttpMirrorPolicy>,
        /// Deprecated: use `mirrorPercentage`.
        pub mirror_percent: Option<u32>,
        /// Deprecated spelling of `mirrorPercent` the schema still accepts.
        #[serde(rename = "mirror_percent")]
        pub mirror_percent_snake: Option<u32>,
        pub mirror_percentage: Option<Percent>,
        pub cors_policy: Option<Box<CorsPolicy>>,
        pub headers: Option<Box<Headers>>,
    }
}

model! {
    pub struct HttpMatchRequest {
        pub name: Option<String>,
        pub uri: Option<StringMatch>,
        pub scheme: Option<StringMatch>,
        pub method: Option<StringMatch>,
        pub authority: Option<StringMatch>,
        pub headers: Map<String, StringMatch>,
        pub port: Option<u32>,
        pub source_labels: Map<String, String>,
        pub gateways: Vec<String>,
        pub query_params: Map<String, StringMatch>,
        pub ignore_uri_case: Option<bool>,
        pub without_headers: Map<String, StringMatch>,
        pub source_namespace: Option<String>,
        pub stat_prefix: Option<String>,
    }
}

impl HttpMatchRequest {
    /// True when the match sets no condition at all (it matches everything).
    pub fn is_catch_all(&self) -> bool {
        let empty_uri = self.uri.as_ref().is_none_or(|u| {
            u.set_count() == 0
                || u.prefix.as_deref() == Some("/")
                || u.regex.as_deref() == Some(".*")
        });
        empty_uri
            && self.scheme.is_none()
            && self.method.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.port.is_none()
            && self.source_labels.is_empty()
            && self.gateways.is_empty()
            && self.query_params.is_empty()
            && self.without_headers.is_empty()
            && self.source_namespace.is_none()
    }
}

model! {
    pub struct HttpRouteDestination {
        pub destination: Destination,
        pub weight: Option<i32>,
        pub headers: Option<Headers>,
    }
}

model! {
    pub struct RouteDestination {
        pub destination: Destination,
        pub weight: Option<i32>,
    }
}

model! {
    pub struct HttpRedirect {
        pub uri: Option<String>,
        pub authority: Option<String>,
        pub port: Option<u32>,
        pub derive_port: Option<RedirectPortSelection>,
        pub scheme: Option<String>,
        pub redirect_code: Option<u32>,
        pub prefix_rewrite: Option<String>,
    }
}

proto_enum! {
    pub enum RedirectPortSelection { FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT }
}

model! {
    pub struct HttpDirectResponse {
        pub status: u32,
        pub body: Option<HttpBody>,
    }
}

model! {
    /// Body of a direct response: a string, or base64 bytes.
    pub struct HttpBody {
        pub string: Option<String>,
        pub bytes: Option<String>,
    }
}

model! {
    pub struct Delegate {
        pub name: String,
        pub namespace: Option<String>,
    }
}

model! {
    pub struct HttpRewrite {
        pub uri: Option<String>,
        pub authority: Option<String>,
        pub uri_regex_rewrite: Option<RegexRewrite>,
    }
}

model! {
    pub struct RegexRewrite {
        #[serde(rename = "match")]
        pub pattern: String,
        pub rewrite: String,
    }
}

model! {
    pub struct HttpRetry {
        pub attempts: Option<i32>,
        pub per_try_timeout: Option<Duration>,
        pub retry_on: Option<String>,
        pub retry_remote_localities: Option<bool>,
        pub retry_ignore_previous_hosts: Option<bool>,
        pub backoff: Option<Duration>,
    }
}

/// gRPC status names as `fault.abort.grpcStatus` spells them, in code
/// order (the position is the numeric code).
pub const GRPC_CODES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

model! {
    pub struct HttpFaultInjection {
        pub delay: Option<FaultDelay>,
        pub abort: Option<FaultAbort>,
    }
}

model! {
    pub struct FaultDelay {
        pub fixed_delay: Option<Duration>,
        pub exponential_delay: Option<Duration>,
        pub percentage: Option<Percent>,
        /// Deprecated integer percentage; use `percentage`.
        pub percent: Option<i32>,
    }
}

model! {
    pub struct FaultAbort {
        pub http_status: Option<i32>,
        pub grpc_status: Option<String>,
        pub http2_error: Option<String>,
        pub percentage: Option<Percent>,
    }
}

model! {
    pub struct HttpMirrorPolicy {
        pub destination: Destination,
        pub percentage: Option<Percent>,
    }
}

model! {
    pub struct CorsPolicy {
        /// Deprecated: use `allowOrigins`.
        pub allow_origin: Vec<String>,
        pub allow_origins: Vec<StringMatch>,
        pub allow_methods: Vec<String>,
        pub allow_headers: Vec<String>,
        pub expose_headers: Vec<String>,
        pub max_age: Option<Duration>,
        pub allow_credentials: Option<bool>,
        pub unmatched_preflights: Option<UnmatchedPreflights>,
    }
}

proto_enum! {
    pub enum UnmatchedPreflights { UNSPECIFIED, FORWARD, IGNORE }
}

model! {
    pub struct TlsRoute {
        #[serde(rename = "match")]
        pub matches: Vec<TlsMatchAttributes>,
        pub route: Vec<RouteDestination>,
    }
}

model! {
    pub struct TlsMatchAttributes {
        pub sni_hosts: Vec<String>,
        pub destination_subnets: Vec<String>,
        pub port: Option<u32>,
        pub source_labels: Map<String, String>,
        pub gateways: Vec<String>,
        pub source_namespace: Option<String>,
    }
}

model! {
    pub struct TcpRoute {
        #[serde(rename = "match")]
        pub matches: Vec<L4MatchAttributes>,
        pub route: Vec<RouteDestination>,
    }
}

model! {
    pub struct L4MatchAttributes {
        pub destination_subnets: Vec<String>,
        pub port: Option<u32>,
        pub source_subnet: Option<String>,
        pub source_labels: Map<String, String>,
        pub gateways: Vec<String>,
        pub source_namespace: Option<String>,
    }
}
