//! Host names as Istio reads and compares them: short names completed
//! with the namespace and the cluster domain, and patterns (exact names,
//! `*` and `*.suffix` wildcards) compared. Validation, analysis and the
//! control plane all ask these questions, so the answers live here once.

/// The cluster's DNS domain Istio assumes (`--domain`, `cluster.local`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What a Kubernetes Service's name and namespace are completed with:
/// `name.namespace.svc.cluster.local`.
pub const SERVICE_DOMAIN: &str = "svc.cluster.local";

/// A Kubernetes Service's hostname: `name.namespace.svc.cluster.local`.
pub fn service_hostname(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.{SERVICE_DOMAIN}")
}

/// A host as written in a VirtualService, DestinationRule, Sidecar or
/// Gateway of namespace `namespace`, as Istio reads it
/// (`ResolveShortnameToFQDN`): a name without dots is a Kubernetes
/// Service of that namespace (`reviews` → `reviews.ns.svc.cluster.local`);
/// anything else — a name with dots, `*`, a wildcard, an IP address —
/// is taken as written. Istio's documentation: "Istio will interpret the
/// short name based on the namespace of the rule"; `reviews.bookinfo` is
/// not a short name and does not name the Service `reviews` of
/// `bookinfo` (use the full name).
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.contains('*') || host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        service_hostname(host, namespace)
    }
}

/// The name and namespace of a Kubernetes Service's hostname
/// (`name.namespace.svc.cluster.local`), whatever registry it came from.
pub fn split_service_hostname(host: &str) -> Option<(&str, &str)> {
    let prefix = host.strip_suffix(SERVICE_DOMAIN)?.strip_suffix('.')?;
    let (name, ns) = prefix.split_once('.')?;
    (!name.is_empty() && !ns.is_empty() && !ns.contains('.')).then_some((name, ns))
}

/// Whether `pattern` covers every name `host` can stand for: `*` covers
/// everything, `*.a.com` covers `b.a.com` and the narrower wildcard
/// `*.b.a.com` (and itself), an exact name covers only itself.
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        // `host.len() > suffix.len()` keeps `*.a.com` from covering `.a.com`;
        // a wildcard `host` ends with the suffix only when it is narrower.
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => false,
    }
}

/// Whether two patterns can match a common name (Istio's `Name.Matches`).
pub fn overlap(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_completed_with_the_rule_namespace_only() {
        // "Istio will interpret the short name based on the namespace of
        // the rule, not the service."
        assert_eq!(fqdn("reviews", "shop"), "reviews.shop.svc.cluster.local");
        for as_written in [
            "reviews.shop.svc.cluster.local",
            "reviews.shop",
            "reviews.shop.svc",
            "api.example.com",
            "*",
            "*.example.com",
            "10.0.0.1",
            "::1",
        ] {
            assert_eq!(fqdn(as_written, "default"), as_written);
        }
        assert_eq!(service_hostname("a", "b"), "a.b.svc.cluster.local");
    }

    #[test]
    fn service_hostnames_split_into_name_and_namespace() {
        assert_eq!(
            split_service_hostname("reviews.shop.svc.cluster.local"),
            Some(("reviews", "shop"))
        );
        for not in [
            "reviews.svc.cluster.local",
            "a.b.c.svc.cluster.local",
            "reviews.shop.svc.cluster.localx",
            "api.example.com",
            "svc.cluster.local",
        ] {
            assert_eq!(split_service_hostname(not), None, "{not}");
        }
    }

    #[test]
    fn covers_table() {
        let cases = [
            ("*", "anything.example", true),
            ("*", "*.example", true),
            ("a.com", "a.com", true),
            ("a.com", "b.com", false),
            ("*.a.com", "b.a.com", true),
            ("*.a.com", "c.b.a.com", true),
            ("*.a.com", "*.b.a.com", true),
            ("*.a.com", "*.a.com", true),
            ("*.a.com", "a.com", false),
            ("*.a.com", ".a.com", false),
            ("*.b.a.com", "*.a.com", false),
            ("b.a.com", "*.a.com", false),
            ("*.com", "*", false),
        ];
        for (p, h, want) in cases {
            assert_eq!(covers(p, h), want, "covers({p:?}, {h:?})");
        }
    }

    #[test]
    fn overlap_is_symmetric() {
        for (a, b, want) in [
            ("*.a.com", "b.a.com", true),
            ("foo.com", "*.com", true),
            ("*.a.com", "*.b.com", false),
            ("a.com", "b.com", false),
        ] {
            assert_eq!(overlap(a, b), want, "overlap({a:?}, {b:?})");
            assert_eq!(overlap(b, a), want, "overlap({b:?}, {a:?})");
        }
    }
}
