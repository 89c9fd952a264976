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
    snake_case_in_place(&mut v, None);
    v
}

/// Whether the value of field `key` (inside field `parent`) is data whose
/// keys are the user's, not field names: a `google.protobuf.Struct`
/// (metadata, the match of a transport socket match, a node's metadata)
/// or a map of them. Their keys are kept as written — Istio's
/// `tlsMode` must stay `tlsMode`.
fn is_struct_field(parent: Option<&str>, key: &str) -> bool {
    match key {
        "filter_metadata" => true,
        "match" => parent == Some("transport_socket_matches"),
        "metadata" => parent == Some("node"),
        _ => false,
    }
}

/// Whether field `key` is a protobuf map from names the user chose to
/// messages: RBAC's `policies` (`allowGet` must stay `allowGet`: it is
/// reported in statistics and metadata).
fn is_named_map(key: &str) -> bool {
    key == "policies"
}

const STRUCT_TYPE: &str = "type.googleapis.com/google.protobuf.Struct";

/// Renames only the keys that need it, so already snake_case input (all
/// of what xDS delivers) is walked without being rebuilt. `parent` is
/// the field this value is (or, for an array's items, is an item of).
fn snake_case_in_place(v: &mut Value, parent: Option<&str>) {
    match v {
        Value::Object(map) => {
            let type_url = map.get("@type").and_then(Value::as_str);
            if type_url == Some(STRUCT_TYPE) {
                return;
            }
            // A TypedStruct's `value` is a Struct.
            let typed_struct = type_url.is_some_and(|t| t.ends_with(".TypedStruct"));
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
            for (k, value) in map.iter_mut() {
                if is_struct_field(parent, k) || (typed_struct && k == "value") {
                    continue;
                }
                if let (Some(entries), true) = (value.as_object_mut(), is_named_map(k)) {
                    // The names are the user's; only the entries are
                    // messages with field names.
                    entries
                        .values_mut()
                        .for_each(|e| snake_case_in_place(e, Some(k)));
                    continue;
                }
                snake_case_in_place(value, Some(k));
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| snake_case_in_place(i, parent)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_change_struct_keys_do_not() {
        let v = snake_case_keys(json!({
            "node": {"metadata": {"proxyAdminPort": 1, "LABELS": {"tlsMode": "x"}}},
            "connectTimeout": "1s",
            "transportSocketMatches": [{"name": "m", "match": {"tlsMode": "istio"},
                "transportSocket": {"typedConfig": {"commonTlsContext": {}}}}],
            "metadata": {"filterMetadata": {"istio": {"someKey": 1}}},
            "routes": [{"match": {"caseSensitive": false}}],
            "typedConfig": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "typeUrl": "t", "value": {"keepMe": 1}},
            "plain": {"@type": STRUCT_TYPE, "keepMe": 2},
            "rules": {"policies": {"allowGet": {"permissions": [{"notRule": {"any": true}}]}}},
        }));
        assert_eq!(
            v,
            json!({
                "node": {"metadata": {"proxyAdminPort": 1, "LABELS": {"tlsMode": "x"}}},
                "connect_timeout": "1s",
                "transport_socket_matches": [{"name": "m", "match": {"tlsMode": "istio"},
                    "transport_socket": {"typed_config": {"common_tls_context": {}}}}],
                "metadata": {"filter_metadata": {"istio": {"someKey": 1}}},
                "routes": [{"match": {"case_sensitive": false}}],
                "typed_config": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                    "type_url": "t", "value": {"keepMe": 1}},
                "plain": {"@type": STRUCT_TYPE, "keepMe": 2},
                "rules": {"policies": {"allowGet": {"permissions": [{"not_rule": {"any": true}}]}}},
            })
        );
    }
}
