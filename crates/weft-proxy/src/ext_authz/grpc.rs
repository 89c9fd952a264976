//! The gRPC authorization service: `envoy.service.auth.v3.Authorization/Check`
//! over HTTP/2 to the service's cluster, a `CheckRequest` with the
//! connection's peers and the request's attributes. An OK status allows
//! (the `ok_response`'s header changes apply); any other status denies
//! (the `denied_response`'s status, 403 by default, headers and body);
//! no answer or a gRPC error is a failure.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, check_response::HttpResponse, AttributeContext, CheckRequest, CheckResponse,
};
use http::{HeaderName, HeaderValue};
use prost::Message;

use super::{Checked, Denial, Request};
use crate::body::full;
use crate::transport::ConnectionInfo;

const PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

#[derive(Debug)]
pub(super) struct GrpcService {
    cluster: String,
    authority: String,
    timeout: Duration,
}

type Header = (HeaderName, HeaderValue);

impl GrpcService {
    pub(super) fn compile(g: &weft_envoy::xds::GrpcService) -> Result<Self, (String, String)> {
        let e = g
            .envoy_grpc
            .as_ref()
            .ok_or_else(|| ("envoy_grpc".to_string(), "required".to_string()))?;
        Ok(GrpcService {
            cluster: e.cluster_name.clone(),
            authority: e
                .authority
                .clone()
                .unwrap_or_else(|| e.cluster_name.clone()),
            // Envoy's default for a gRPC service.
            timeout: g.timeout.map_or(Duration::from_millis(200), |d| d.0),
        })
    }

    pub(super) async fn check(
        &self,
        caller: &impl super::Caller,
        conn: &ConnectionInfo,
        req: &Request<'_>,
        context_extensions: Option<&BTreeMap<String, String>>,
    ) -> Checked {
        let message = check_request(conn, req, context_extensions).encode_to_vec();
        let mut framed = BytesMut::with_capacity(5 + message.len());
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.put_slice(&message);
        let mut call = http::Request::new(full(framed.freeze()));
        *call.method_mut() = http::Method::POST;
        let h = call.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        if let Ok(v) = HeaderValue::from_str(&format!("{}m", self.timeout.as_millis())) {
            h.insert(HeaderName::from_static("grpc-timeout"), v);
        }
        let Some((parts, body, trailers)) = caller
            .call(&self.cluster, call, &self.authority, PATH, self.timeout)
            .await
        else {
            return Checked::Failed;
        };
        let grpc_status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
        if parts.status != http::StatusCode::OK || grpc_status != Some(0) || body.len() < 5 {
            return Checked::Failed;
        }
        let Ok(resp) = CheckResponse::decode(&body[5..]) else {
            return Checked::Failed;
        };
        decide(resp)
    }
}

/// The check's request attributes, as Envoy fills them.
fn check_request(
    conn: &ConnectionInfo,
    req: &Request<'_>,
    context_extensions: Option<&BTreeMap<String, String>>,
) -> CheckRequest {
    let address = |a: std::net::SocketAddr| core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..Default::default()
        })),
    };
    let source = attribute_context::Peer {
        address: Some(address(conn.peer)),
        principal: conn
            .tls
            .as_ref()
            .and_then(|t| {
                t.peer_identities
                    .first()
                    .cloned()
                    .or_else(|| (!t.peer_subject.is_empty()).then(|| t.peer_subject.clone()))
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    let destination = attribute_context::Peer {
        address: conn.local.map(address),
        ..Default::default()
    };
    let mut headers = std::collections::HashMap::new();
    headers.insert(":authority".to_string(), req.authority.to_string());
    headers.insert(":method".to_string(), req.method.to_string());
    headers.insert(":path".to_string(), req.path_and_query.to_string());
    for name in req.headers.keys() {
        if name == http::header::HOST {
            continue;
        }
        let values: Vec<&str> = req
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        headers.insert(name.as_str().to_string(), values.join(","));
    }
    let (path, query) = req
        .path_and_query
        .split_once('?')
        .unwrap_or((req.path_and_query, ""));
    let size = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
        .unwrap_or(0);
    let http = attribute_context::HttpRequest {
        id: req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        method: req.method.to_string(),
        headers,
        path: req.path_and_query.to_string(),
        host: req.authority.to_string(),
        scheme: req.scheme.to_string(),
        query: query.to_string(),
        size,
        protocol: req.protocol.to_string(),
        ..Default::default()
    };
    let _ = path;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            destination: Some(destination),
            request: Some(attribute_context::Request {
                time: Some(envoy_types::pb::google::protobuf::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: now.subsec_nanos() as i32,
                }),
                http: Some(http),
            }),
            context_extensions: context_extensions
                .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            ..Default::default()
        }),
    }
}

fn header(o: &core::HeaderValueOption) -> Option<Header> {
    let h = o.header.as_ref()?;
    let v = if h.raw_value.is_empty() {
        HeaderValue::from_str(&h.value).ok()?
    } else {
        HeaderValue::from_bytes(&h.raw_value).ok()?
    };
    Some((HeaderName::from_bytes(h.key.as_bytes()).ok()?, v))
}

/// Whether a header option appends (its deprecated `append`, false when
/// unset in ext_authz's responses).
#[allow(deprecated)]
fn appends(o: &core::HeaderValueOption) -> bool {
    o.append.as_ref().is_some_and(|b| b.value)
}

fn decide(resp: CheckResponse) -> Checked {
    let ok = resp.status.as_ref().is_none_or(|s| s.code == 0);
    match (ok, resp.http_response) {
        (true, r) => {
            let (mut set, mut append, mut response) = (Vec::new(), Vec::new(), Vec::new());
            let mut remove = Vec::new();
            if let Some(HttpResponse::OkResponse(ok)) = r {
                for o in &ok.headers {
                    if let Some(h) = header(o) {
                        if appends(o) {
                            append.push(h);
                        } else {
                            set.push(h);
                        }
                    }
                }
                for o in &ok.response_headers_to_add {
                    if let Some(h) = header(o) {
                        response.push(h);
                    }
                }
                remove = ok
                    .headers_to_remove
                    .iter()
                    .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                    .collect();
            }
            Checked::Allowed {
                set,
                append,
                response,
                remove,
            }
        }
        (false, r) => {
            let (status, headers, body) = match r {
                Some(HttpResponse::DeniedResponse(d)) => (
                    d.status
                        .as_ref()
                        .map(|s| s.code as u16)
                        .filter(|c| *c >= 100)
                        .unwrap_or(403),
                    d.headers.iter().filter_map(header).collect(),
                    Bytes::from(d.body),
                ),
                _ => (403, Vec::new(), Bytes::new()),
            };
            Checked::Denied(Denial {
                status,
                headers,
                body,
            })
        }
    }
}
