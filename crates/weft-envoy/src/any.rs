//! `typed_config` (a protobuf `Any` in JSON: `{"@type": ..., fields}`),
//! decoded into the type its `@type` names. An `@type` weft does not
//! implement is an error naming it.

use std::cell::RefCell;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::filters::{HttpConnectionManager, HttpProtocolOptions, Router, TcpProxy};
use crate::FieldError;

#[derive(Clone, Debug)]
pub enum TypedConfig {
    HttpConnectionManager(Box<HttpConnectionManager>),
    TcpProxy(Box<TcpProxy>),
    Router(Router),
    OriginalDst,
    TlsInspector,
    HttpInspector,
    HttpProtocolOptions(Box<HttpProtocolOptions>),
    /// The retry host predicate that avoids hosts already tried.
    PreviousHosts,
    Fault(Box<crate::filters::HttpFault>),
    LocalRateLimit(Box<crate::filters::LocalRateLimit>),
    /// The CORS filter (configured only by route).
    Cors,
    CorsPolicy(Box<crate::filters::CorsPolicy>),
    /// The `raw_buffer` transport socket (plaintext).
    RawBuffer,
    /// A TLS transport socket's context (a cluster's, a filter chain's).
    UpstreamTlsContext(Box<crate::tls::UpstreamTlsContext>),
    DownstreamTlsContext(Box<crate::tls::DownstreamTlsContext>),
    /// The RBAC HTTP filter.
    Rbac(Box<crate::rbac::HttpRbac>),
    /// The RBAC HTTP filter's settings for a route.
    RbacPerRoute(Box<crate::rbac::HttpRbacPerRoute>),
    /// The RBAC network filter.
    NetworkRbac(Box<crate::rbac::NetworkRbac>),
    /// The JWT authentication HTTP filter.
    JwtAuthn(Box<crate::jwt::JwtAuthentication>),
    /// The JWT authentication filter's settings for a route.
    JwtAuthnPerRoute(Box<crate::jwt::PerRouteConfig>),
    /// The external authorization HTTP filter.
    ExtAuthz(Box<crate::ext_authz::ExtAuthz>),
    /// The external authorization filter's settings for a route.
    ExtAuthzPerRoute(Box<crate::ext_authz::ExtAuthzPerRoute>),
    /// Istio's standard metrics (`istio.stats`).
    IstioStats(Box<crate::istio::StatsConfig>),
    /// Istio's HTTP metadata exchange (`istio.metadata_exchange`).
    PeerMetadata(Box<crate::istio::PeerMetadataConfig>),
    /// The file access logger.
    FileAccessLog(Box<crate::access_log::FileAccessLog>),
    /// The stdout access logger.
    StdoutAccessLog(Box<crate::access_log::StreamAccessLog>),
    /// The stderr access logger.
    StderrAccessLog(Box<crate::access_log::StreamAccessLog>),
    /// The access log formatter of `%REQ_WITHOUT_QUERY(...)%`.
    ReqWithoutQuery,
}

const PREFIX: &str = "type.googleapis.com/";

impl TypedConfig {
    fn from_json(mut v: Value) -> Result<Self, FieldError> {
        let at_type = match v.as_object_mut().and_then(|m| m.remove("@type")) {
            Some(Value::String(s)) => s,
            _ => return Err(FieldError::new(vec![], "typed_config needs an \"@type\"")),
        };
        let name = at_type.strip_prefix(PREFIX).unwrap_or(&at_type);
        let empty = |v: &Value| v.as_object().is_none_or(|m| m.is_empty());
        Ok(match name {
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" => {
                TypedConfig::HttpConnectionManager(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy" => {
                TypedConfig::TcpProxy(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.router.v3.Router" => TypedConfig::Router(crate::decode(v)?),
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit" => {
                TypedConfig::LocalRateLimit(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.cors.v3.Cors" if empty(&v) => TypedConfig::Cors,
            "envoy.extensions.filters.http.cors.v3.CorsPolicy" => {
                TypedConfig::CorsPolicy(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.rbac.v3.RBAC" => {
                TypedConfig::Rbac(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.rbac.v3.RBACPerRoute" => {
                TypedConfig::RbacPerRoute(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.network.rbac.v3.RBAC" => {
                TypedConfig::NetworkRbac(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication" => {
                TypedConfig::JwtAuthn(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig" => {
                TypedConfig::JwtAuthnPerRoute(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz" => {
                TypedConfig::ExtAuthz(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute" => {
                TypedConfig::ExtAuthzPerRoute(Box::new(crate::decode(v)?))
            }
            "stats.PluginConfig" => TypedConfig::IstioStats(Box::new(crate::decode(v)?)),
            "io.istio.http.peer_metadata.Config" => {
                TypedConfig::PeerMetadata(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.access_loggers.file.v3.FileAccessLog" => {
                TypedConfig::FileAccessLog(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog" => {
                TypedConfig::StdoutAccessLog(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.access_loggers.stream.v3.StderrAccessLog" => {
                TypedConfig::StderrAccessLog(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery" if empty(&v) => {
                TypedConfig::ReqWithoutQuery
            }
            "envoy.extensions.filters.http.fault.v3.HTTPFault" => {
                TypedConfig::Fault(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" => {
                TypedConfig::HttpProtocolOptions(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.filters.listener.original_dst.v3.OriginalDst" if empty(&v) => {
                TypedConfig::OriginalDst
            }
            "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" if empty(&v) => {
                TypedConfig::TlsInspector
            }
            "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector" if empty(&v) => {
                TypedConfig::HttpInspector
            }
            "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" if empty(&v) => {
                TypedConfig::RawBuffer
            }
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" => {
                TypedConfig::UpstreamTlsContext(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext" => {
                TypedConfig::DownstreamTlsContext(Box::new(crate::decode(v)?))
            }
            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                if empty(&v) =>
            {
                TypedConfig::PreviousHosts
            }
            n if n.contains(".listener.") || n.contains(".retry.") => {
                return Err(FieldError::new(
                    vec![],
                    format!("{at_type}: not implemented by weft (or set with fields weft does not implement)"),
                ))
            }
            _ => {
                return Err(FieldError::new(
                    vec![],
                    format!("{at_type}: not implemented by weft"),
                ))
            }
        })
    }
}

thread_local! {
    /// The full error of a typed_config that failed inside a larger decode;
    /// serde only carries a message across, so the path travels here.
    static NESTED: RefCell<Option<FieldError>> = const { RefCell::new(None) };
}

pub(crate) fn take_nested_error() -> Option<FieldError> {
    NESTED.with(|n| n.borrow_mut().take())
}

impl<'de> Deserialize<'de> for TypedConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        TypedConfig::from_json(v).map_err(|e| {
            let message = e.message.clone();
            NESTED.with(|n| *n.borrow_mut() = Some(e));
            serde::de::Error::custom(message)
        })
    }
}
