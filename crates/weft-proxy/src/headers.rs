//! Header additions and removals configured at route-config, virtual-host,
//! route and weighted-cluster level, applied as Envoy applies them; the
//! hop-by-hop headers that never cross the proxy, upgrade requests, and
//! the request methods Envoy's HTTP/1 codec knows.

use http::{HeaderMap, HeaderName, HeaderValue};
use weft_envoy::{AppendAction, HeaderValueOption};

/// The request methods Envoy's HTTP/1 parser accepts (measured against
/// Envoy 1.40: `PURGE` passes, `purge` is a 400).
pub(crate) const HTTP1_METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "ACL",
    "BIND",
    "CHECKOUT",
    "COPY",
    "LINK",
    "LOCK",
    "M-SEARCH",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "NOTIFY",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

/// Hop-by-hop headers never cross the proxy.
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The protocol an HTTP/1.1 request asks to upgrade to, if any.
pub(crate) fn upgrade_kind(h: &HeaderMap) -> Option<&str> {
    let wants = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    h.get(http::header::UPGRADE).and_then(|v| v.to_str().ok())
}

#[derive(Debug, Default)]
pub struct HeaderOps {
    pub request: Ops,
    pub response: Ops,
}

#[derive(Debug, Default)]
pub struct Ops {
    add: Vec<(HeaderName, HeaderValue, AppendAction, bool)>,
    remove: Vec<HeaderName>,
}

fn name(n: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("invalid header name {n:?}"))
}

fn compile_ops(add: &[HeaderValueOption], remove: &[String]) -> Result<Ops, String> {
    let mut ops = Ops::default();
    for a in add {
        let v = &a.header.value;
        // Envoy expands %COMMAND% in values; weft does not yet, and a value
        // sent out literally would be wrong, so say so.
        if v.replace("%%", "").contains('%') {
            return Err(format!(
                "header {:?}: value substitution ({v:?}) is not implemented by weft yet",
                a.header.key
            ));
        }
        let value = HeaderValue::from_str(&v.replace("%%", "%"))
            .map_err(|_| format!("invalid value for header {:?}", a.header.key))?;
        ops.add
            .push((name(&a.header.key)?, value, a.action(), a.keep_empty_value));
    }
    for r in remove {
        ops.remove.push(name(r)?);
    }
    Ok(ops)
}

impl HeaderOps {
    pub fn compile(
        req_add: &[HeaderValueOption],
        req_remove: &[String],
        resp_add: &[HeaderValueOption],
        resp_remove: &[String],
    ) -> Result<Self, String> {
        Ok(HeaderOps {
            request: compile_ops(req_add, req_remove)?,
            response: compile_ops(resp_add, resp_remove)?,
        })
    }
}

impl Ops {
    /// Removals first, then additions, as Envoy does.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v, action, keep_empty) in &self.add {
            if v.is_empty() && !keep_empty {
                continue;
            }
            match action {
                AppendAction::APPEND_IF_EXISTS_OR_ADD => {
                    headers.append(n.clone(), v.clone());
                }
                AppendAction::ADD_IF_ABSENT => {
                    if !headers.contains_key(n) {
                        headers.insert(n.clone(), v.clone());
                    }
                }
                AppendAction::OVERWRITE_IF_EXISTS_OR_ADD => {
                    headers.insert(n.clone(), v.clone());
                }
                AppendAction::OVERWRITE_IF_EXISTS => {
                    if headers.contains_key(n) {
                        headers.insert(n.clone(), v.clone());
                    }
                }
            }
        }
    }
}
