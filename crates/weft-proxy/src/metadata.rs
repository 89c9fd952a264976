//! Dynamic metadata: what HTTP filters learn about a request and leave
//! for the filters after them and for access logs, as Envoy's stream
//! info holds it — a struct per filter namespace
//! (`envoy.filters.http.jwt_authn`, `envoy.filters.http.rbac`,
//! `envoy.common`), each a set of fields with JSON values.
//!
//! The RBAC filter writes its results here and its `metadata` matchers
//! read from here (the JWT filter's verified payload, for one). A
//! request nobody writes metadata for pays nothing: the namespaces are
//! an empty `Vec`.

use std::sync::Arc;

use serde_json::Value;

/// The namespaces of one request's dynamic metadata, each with its
/// fields. Few namespaces and few fields: a vector searched in order
/// beats a map at that size, and allocates nothing until written.
#[derive(Debug, Default, Clone)]
pub struct DynamicMetadata {
    namespaces: Vec<(Arc<str>, Fields)>,
}

/// One namespace's fields.
type Fields = Vec<(Arc<str>, Value)>;

impl DynamicMetadata {
    /// Sets `key` in `namespace` (replacing its value), as Envoy's
    /// `setDynamicMetadata` merges one field into a filter's struct.
    pub fn set(&mut self, namespace: &Arc<str>, key: &Arc<str>, value: Value) {
        let fields = match self.namespaces.iter().position(|(n, _)| **n == **namespace) {
            Some(i) => &mut self.namespaces[i].1,
            None => {
                self.namespaces.push((Arc::clone(namespace), Vec::new()));
                &mut self.namespaces.last_mut().expect("just pushed").1
            }
        };
        match fields.iter_mut().find(|(k, _)| **k == **key) {
            Some((_, v)) => *v = value,
            None => fields.push((Arc::clone(key), value)),
        }
    }

    /// A field of a namespace.
    pub fn field(&self, namespace: &str, key: &str) -> Option<&Value> {
        self.namespaces
            .iter()
            .find(|(n, _)| &**n == namespace)?
            .1
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    /// The value at `path` in a namespace: the first key names a field,
    /// the others walk into nested objects (Envoy's metadata matcher
    /// path). `None` when any step is missing or not an object.
    pub fn lookup<'a, K: AsRef<str>>(&'a self, namespace: &str, path: &[K]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.field(namespace, first.as_ref())?;
        for k in rest {
            v = v.as_object()?.get(k.as_ref())?;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_replaces_a_field_and_lookup_walks_nested_objects() {
        let mut m = DynamicMetadata::default();
        let jwt: Arc<str> = Arc::from("envoy.filters.http.jwt_authn");
        let payload: Arc<str> = Arc::from("payload");
        m.set(
            &jwt,
            &payload,
            json!({"iss": "a", "groups": {"admin": true}}),
        );
        m.set(
            &jwt,
            &payload,
            json!({"iss": "b", "groups": {"admin": true}}),
        );
        assert_eq!(m.lookup(&jwt, &["payload", "iss"]), Some(&json!("b")));
        assert_eq!(
            m.lookup(&jwt, &["payload", "groups", "admin"]),
            Some(&json!(true))
        );
        assert_eq!(m.lookup(&jwt, &["payload", "iss", "x"]), None);
        assert_eq!(m.lookup(&jwt, &["other"]), None);
        assert_eq!(m.lookup("envoy.common", &["payload"]), None);
    }
}
