//! What a local reply is (a response the proxy makes itself, not one
//! from upstream) and how a gRPC client gets it: Envoy answers gRPC
//! requests with a trailers-only gRPC response instead of the HTTP error.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::body::{full, Body};

/// Marks a response as a local reply: what a gRPC client gets instead
/// is built from it (see [`grpc_reply`]).
#[derive(Clone, Debug)]
pub(crate) struct LocalReply {
    pub message: String,
    /// The gRPC status when it is not derived from the HTTP status.
    pub grpc_status: Option<u8>,
}

/// `application/grpc`, with or without a `+format` suffix (gRPC-Web is
/// another protocol and keeps HTTP errors).
pub(crate) fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v == "application/grpc"
                || v.strip_prefix("application/grpc+").is_some()
                || v.starts_with("application/grpc;")
        })
}

/// Turns a local reply to a gRPC request into what a gRPC client reads:
/// a trailers-only 200 with `grpc-status` (mapped from the HTTP status as
/// gRPC's HTTP-to-gRPC table says, unless the reply named one) and the
/// reply's text as `grpc-message`.
pub(crate) fn grpc_reply(resp: &mut Response<Body>) {
    let Some(local) = resp.extensions_mut().remove::<LocalReply>() else {
        return;
    };
    let code = local.grpc_status.unwrap_or(match resp.status().as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    });
    *resp.status_mut() = StatusCode::OK;
    *resp.body_mut() = full(Bytes::new());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        HeaderName::from_static("grpc-status"),
        HeaderValue::from(u16::from(code)),
    );
    if !local.message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&local.message)) {
            h.insert(HeaderName::from_static("grpc-message"), v);
        }
    }
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is,
/// everything else percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(status: u16, message: &str) -> Response<Body> {
        let mut r = Response::new(full(message.to_string()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.extensions_mut().insert(LocalReply {
            message: message.into(),
            grpc_status: None,
        });
        r
    }

    #[test]
    fn http_statuses_map_to_grpc_as_grpc_documents() {
        for (http, grpc) in [
            (400, "13"),
            (401, "16"),
            (403, "7"),
            (404, "12"),
            (429, "14"),
            (503, "14"),
            (500, "2"),
            (302, "2"),
        ] {
            let mut r = local(http, "");
            grpc_reply(&mut r);
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["grpc-status"], grpc, "HTTP {http}");
            assert!(!r.headers().contains_key("grpc-message"));
        }
    }

    #[test]
    fn the_message_is_percent_encoded_and_upstream_answers_are_left_alone() {
        let mut r = local(503, "50% busy\nsoon");
        grpc_reply(&mut r);
        assert_eq!(r.headers()["grpc-message"], "50%25 busy%0Asoon");
        let mut upstream = Response::new(full("x"));
        *upstream.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        grpc_reply(&mut upstream);
        assert_eq!(upstream.status(), 503);
    }

    #[test]
    fn grpc_web_is_not_grpc() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
            is_grpc(&m)
        };
        assert!(h("application/grpc"));
        assert!(h("application/grpc+proto"));
        assert!(!h("application/grpc-web"));
        assert!(!h("application/json"));
    }
}
