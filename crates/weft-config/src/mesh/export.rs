//! `exportTo`: which namespaces may see a service, VirtualService or
//! DestinationRule.

/// Istio's exportTo rule, shared by services, VirtualServices and
/// DestinationRules: empty or `*` is everywhere, `.` the owner's own
/// namespace, `~` nowhere, anything else that namespace.
pub fn exported_to(export_to: &[String], owner: &str, namespace: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || (e == "." && owner == namespace) || e == namespace)
}

#[cfg(test)]
mod tests {
    use super::exported_to;

    #[test]
    fn export_to_values() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&v(&["*"]), "a", "b"));
        assert!(exported_to(&v(&["."]), "a", "a"));
        assert!(!exported_to(&v(&["."]), "a", "b"));
        assert!(!exported_to(&v(&["~"]), "a", "a"));
        assert!(exported_to(&v(&["~", "b"]), "a", "b"));
        assert!(exported_to(&v(&["b"]), "a", "b"));
    }
}
