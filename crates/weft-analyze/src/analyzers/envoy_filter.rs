//! EnvoyFilter patches that Istio would apply out of order or ignore.
//! EnvoyFilter is kept as raw JSON (weft does not apply it), so these
//! checks read the fields they need by name.

use serde_json::Value;
use weft_api::{Kind, Spec};

use crate::messages::*;
use crate::{Context, Diagnostic};

/// Operations whose effect depends on what earlier patches left behind.
const RELATIVE: &[&str] = &[
    "INVALID",
    "MERGE",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "REPLACE",
];

pub(super) fn patches(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for r in ctx.of_kind(Kind::EnvoyFilter) {
        let Spec::Unmodelled(spec) = &r.object.spec else {
            continue;
        };
        let has_priority = spec
            .get("priority")
            .and_then(Value::as_i64)
            .is_some_and(|p| p != 0);
        let patches = spec.get("configPatches").and_then(Value::as_array);
        for (i, p) in patches.into_iter().flatten().enumerate() {
            let field = format!("spec.configPatches[{i}]");
            let apply_to = p.get("applyTo").and_then(Value::as_str).unwrap_or("");
            let op = p
                .pointer("/patch/operation")
                .and_then(Value::as_str)
                .unwrap_or("INVALID");
            let proxy_version = p.pointer("/match/proxy/proxyVersion").is_some();
            let route_level = matches!(apply_to, "ROUTE_CONFIGURATION" | "HTTP_ROUTE");
            let message = match op {
                "REPLACE" if !matches!(apply_to, "HTTP_FILTER" | "NETWORK_FILTER") => {
                    Some(&ENVOY_FILTER_REPLACE_INCORRECTLY)
                }
                "ADD" if route_level => Some(&ENVOY_FILTER_ADD_INCORRECTLY),
                "REMOVE" if route_level => Some(&ENVOY_FILTER_REMOVE_INCORRECTLY),
                _ => None,
            };
            if let Some(m) = message {
                out.push(Diagnostic::new(m, r, Some(&field), vec![]));
            }
            if !has_priority && RELATIVE.contains(&op) {
                let m = if proxy_version {
                    &ENVOY_FILTER_RELATIVE_WITH_PROXY_VERSION
                } else {
                    &ENVOY_FILTER_RELATIVE_OPERATION
                };
                out.push(Diagnostic::new(m, r, Some(&field), vec![]));
            }
        }
    }
}
