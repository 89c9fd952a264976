//! proto3 JSON accepts `lowerCamelCase` and the original `snake_case`
//! field names; the types here use `snake_case`, so keys are normalized
//! before decoding.

use serde_json::Value;

/// `perConnectionBufferLimitBytes` → `per_connection_buffer_limit_bytes`.
pub(crate) fn to_snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Field names are identifiers; map keys that are data (filter names such
/// as `envoy.filters.http.router`, header names) contain other characters
/// and are left alone. `@type` is kept as is.
fn is_field_name(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn snake_case_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = if is_field_name(&k) { to_snake(&k) } else { k };
                    (k, snake_case_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}
