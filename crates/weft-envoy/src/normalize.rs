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

pub(crate) fn snake_case_keys(mut v: Value) -> Value {
    snake_case_in_place(&mut v);
    v
}

/// Renames only the keys that need it, so already snake_case input (all
/// of what xDS delivers) is walked without being rebuilt.
fn snake_case_in_place(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let camel: Vec<String> = map
                .keys()
                .filter(|k| is_field_name(k) && k.bytes().any(|b| b.is_ascii_uppercase()))
                .cloned()
                .collect();
            for k in camel {
                // Both spellings of one field: the snake_case one stands,
                // as it did when the map was rebuilt in key order.
                if let Some(value) = map.remove(&k) {
                    map.entry(to_snake(&k)).or_insert(value);
                }
            }
            map.values_mut().for_each(snake_case_in_place);
        }
        Value::Array(items) => items.iter_mut().for_each(snake_case_in_place),
        _ => {}
    }
}
