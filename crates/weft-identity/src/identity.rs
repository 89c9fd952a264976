//! A workload's identity as Istio names it: the SPIFFE id
//! `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, which
//! the CA writes as the URI SAN of every workload certificate and peers
//! read back to authorize.

use std::fmt;
use std::str::FromStr;

/// Istio's default trust domain (MeshConfig `trustDomain`).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

const SCHEME: &str = "spiffe://";

/// Why a SPIFFE id or one of its parts was refused. Never retryable: the
/// text itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0:?} is not a SPIFFE id (expected spiffe://<trust domain>/ns/<namespace>/sa/<service account>)")]
    NotSpiffe(String),
    #[error("{id:?}: the path must be /ns/<namespace>/sa/<service account>")]
    BadPath { id: String },
    #[error("{what} {value:?}: {why}")]
    BadPart {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

/// A SPIFFE id of Istio's shape. Parts are checked when built, so a
/// value always displays as a valid URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

impl Identity {
    /// The identity of `service_account` in `namespace` under
    /// `trust_domain`.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Identity, IdentityError> {
        let id = Identity {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        check_trust_domain(&id.trust_domain)?;
        check_segment("namespace", &id.namespace)?;
        check_segment("service account", &id.service_account)?;
        Ok(id)
    }

    /// Under [`DEFAULT_TRUST_DOMAIN`].
    pub fn in_cluster_local(
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Identity, IdentityError> {
        Identity::new(DEFAULT_TRUST_DOMAIN, namespace, service_account)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The URI form, as in a certificate's SAN.
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Identity, IdentityError> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityError::NotSpiffe(s.to_string()))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::BadPath { id: s.to_string() })?;
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["ns", ns, "sa", sa] => Identity::new(domain, *ns, *sa),
            _ => Err(IdentityError::BadPath { id: s.to_string() }),
        }
    }
}

/// A trust domain is a DNS-like name: lower-case letters, digits, `-`,
/// `.` and `_` (SPIFFE's rule), not empty.
fn check_trust_domain(td: &str) -> Result<(), IdentityError> {
    let bad = |why| IdentityError::BadPart {
        what: "trust domain",
        value: td.to_string(),
        why,
    };
    if td.is_empty() {
        return Err(bad("empty"));
    }
    if td.len() > 255 {
        return Err(bad("longer than 255 characters"));
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(bad(
            "only lower-case letters, digits, '-', '.' and '_' are allowed",
        ));
    }
    Ok(())
}

/// A path segment: not empty, not `.` or `..`, SPIFFE's characters
/// (letters, digits, `-`, `.`, `_`).
fn check_segment(what: &'static str, value: &str) -> Result<(), IdentityError> {
    let bad = |why| IdentityError::BadPart {
        what,
        value: value.to_string(),
        why,
    };
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value == "." || value == ".." {
        return Err(bad("'.' and '..' are not allowed"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(bad("only letters, digits, '-', '.' and '_' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_istio_ids() {
        let id: Identity = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
        assert_eq!(
            Identity::in_cluster_local("istio-system", "istiod").unwrap(),
            "spiffe://cluster.local/ns/istio-system/sa/istiod"
                .parse()
                .unwrap()
        );
    }

    #[test]
    fn refuses_what_is_not_istio_shaped() {
        for bad in [
            "",
            "http://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/c",
            "spiffe://cluster.local/sa/b/ns/a",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/a/sa/",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://Cluster.Local/ns/a/sa/b",
            "spiffe:///ns/a/sa/b",
            "spiffe://cluster.local/ns/a b/sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = "spiffe://cluster.local/ns/a/sa/b%20"
            .parse::<Identity>()
            .unwrap_err();
        assert!(e.to_string().contains("service account"), "{e}");
        let e = "spiffe://EXAMPLE/ns/a/sa/b"
            .parse::<Identity>()
            .unwrap_err();
        assert!(e.to_string().contains("trust domain"), "{e}");
    }
}
