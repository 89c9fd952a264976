//! The HTTP authorization service: the check is the request's method,
//! `path_prefix` + its path, its Host and selected headers, with no body,
//! sent to the service's cluster as Envoy's async client sends it
//! (`x-envoy-internal: true`, `x-envoy-expected-rq-timeout-ms`).

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use weft_envoy::ext_authz as cfg;

use super::{Checked, Denial, Names, Request};
use crate::body::full;
use crate::headers::HOP_BY_HOP;

#[derive(Debug)]
pub(super) struct HttpService {
    cluster: String,
    timeout: Duration,
    path_prefix: String,
    /// The request's headers the check carries (`authorization` among
    /// them; method, path and Host always go).
    request: Names,
    headers_to_add: Vec<(HeaderName, HeaderValue)>,
    upstream: Names,
    upstream_append: Names,
    /// `None`: every header but Host.
    client: Option<Names>,
    client_on_success: Names,
}

type Field = (String, String);

impl HttpService {
    /// `allowed` is the filter-level `allowed_headers`, which stands for
    /// `authorization_request.allowed_headers` when given.
    pub(super) fn compile(
        h: &cfg::HttpService,
        allowed: &Option<cfg::ListStringMatcher>,
    ) -> Result<Self, Field> {
        let uri = h
            .server_uri
            .as_ref()
            .ok_or_else(|| ("server_uri".to_string(), "required".to_string()))?;
        let names = |at: &str, l: &Option<cfg::ListStringMatcher>| {
            Names::compile(at, l).map_err(|m| (at.to_string(), m))
        };
        let req = h.authorization_request.clone().unwrap_or_default();
        let resp = h.authorization_response.clone().unwrap_or_default();
        let mut headers_to_add = Vec::new();
        for (i, hv) in req.headers_to_add.iter().enumerate() {
            let at = format!("authorization_request.headers_to_add[{i}]");
            let k = HeaderName::from_bytes(hv.key.as_bytes())
                .map_err(|_| (format!("{at}.key"), "not a header name".to_string()))?;
            let v = HeaderValue::from_str(&hv.value)
                .map_err(|_| (format!("{at}.value"), "not a header value".to_string()))?;
            headers_to_add.push((k, v));
        }
        let client = names(
            "authorization_response.allowed_client_headers",
            &resp.allowed_client_headers,
        )?;
        Ok(HttpService {
            cluster: uri.cluster.clone(),
            timeout: uri.timeout.map_or(Duration::from_millis(200), |d| d.0),
            path_prefix: h.path_prefix.clone(),
            request: match allowed {
                Some(_) => Names::compile("allowed_headers", allowed)
                    .map_err(|m| ("allowed_headers".to_string(), m))?,
                None => names(
                    "authorization_request.allowed_headers",
                    &req.allowed_headers,
                )?,
            }
            .exact(&["authorization"]),
            headers_to_add,
            upstream: names(
                "authorization_response.allowed_upstream_headers",
                &resp.allowed_upstream_headers,
            )?,
            upstream_append: names(
                "authorization_response.allowed_upstream_headers_to_append",
                &resp.allowed_upstream_headers_to_append,
            )?,
            client: (!client.is_empty())
                .then(|| client.exact(&["www-authenticate", "location", "content-length"])),
            client_on_success: names(
                "authorization_response.allowed_client_headers_on_success",
                &resp.allowed_client_headers_on_success,
            )?,
        })
    }

    pub(super) async fn check(&self, caller: &impl super::Caller, req: &Request<'_>) -> Checked {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        for name in req.headers.keys() {
            if name == HOST || name == CONTENT_LENGTH || !self.request.matches(name.as_str()) {
                continue;
            }
            // Envoy's check carries one value per header, repeated ones
            // joined by commas.
            let values: Vec<&[u8]> = req
                .headers
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            if let Ok(v) = HeaderValue::from_bytes(&values.join(&b","[..])) {
                headers.insert(name.clone(), v);
            }
        }
        debug_assert!(self.request.matches(AUTHORIZATION.as_str()));
        for (k, v) in &self.headers_to_add {
            headers.insert(k.clone(), v.clone());
        }
        headers.insert(
            HeaderName::from_static("x-envoy-internal"),
            HeaderValue::from_static("true"),
        );
        headers.insert(
            HeaderName::from_static("x-envoy-expected-rq-timeout-ms"),
            HeaderValue::from(self.timeout.as_millis() as u64),
        );
        let mut check = http::Request::new(full(Bytes::new()));
        *check.method_mut() = req.method.clone();
        *check.headers_mut() = headers;
        let path = format!("{}{}", self.path_prefix, req.path_and_query);
        let Some((parts, body, _)) = caller
            .call(&self.cluster, check, req.authority, &path, self.timeout)
            .await
        else {
            return Checked::Failed;
        };
        let status = parts.status.as_u16();
        let pick = |names: &Names| -> Vec<(HeaderName, HeaderValue)> {
            parts
                .headers
                .iter()
                .filter(|(k, _)| names.matches(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if status == 200 {
            return Checked::Allowed {
                set: pick(&self.upstream),
                append: pick(&self.upstream_append),
                response: pick(&self.client_on_success),
                remove: Vec::new(),
            };
        }
        if parts.status.is_server_error() {
            return Checked::Failed;
        }
        let headers = match &self.client {
            Some(names) => pick(names),
            None => parts
                .headers
                .iter()
                .filter(|(k, _)| *k != HOST && !HOP_BY_HOP.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        Checked::Denied(Denial {
            status,
            headers,
            body,
        })
    }
}
