//! Which mutual-TLS mode a workload's port accepts, from the
//! PeerAuthentication policies that apply to it — Istio's precedence,
//! in one place for the control plane (inbound listeners, and the auto
//! mTLS choice of clients) and for `weft analyze`.
//!
//! The rules, as Istio documents them:
//! - A policy in the root namespace without a selector is mesh-wide; one
//!   without a selector (or with empty `matchLabels`) in the workload's
//!   namespace is namespace-wide; one whose selector picks the workload
//!   is workload-specific. A policy with a selector applies only in its
//!   own namespace, the root namespace included.
//! - The most specific level wins: workload over namespace over mesh.
//!   Several policies at one level: the oldest wins (creation time, then
//!   namespace and name — the caller gives them in that order).
//! - `UNSET` (or no `mtls`) inherits from the level above; with nothing
//!   above, the mode is `PERMISSIVE`.
//! - `portLevelMtls` (workload-specific policies only) overrides the
//!   mode for one workload port; `UNSET` there inherits the workload's.

use std::collections::BTreeMap;

use weft_api::security::{MtlsMode, MutualTls, PeerAuthentication};

use super::selector::{Labels, Selector};

/// The workload label that says a sidecar (or ambient's ztunnel) runs
/// beside it and takes mutual TLS (`istio`), as injection sets it; a
/// client's auto mTLS reads it off each endpoint.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`: the identity a workload's
/// certificate carries, and what a client of it expects to see.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// Whether an instance takes Istio's mutual TLS (its TLS mode is
/// `istio`), as Istio reads it: the [`TLS_MODE_LABEL`] when present
/// (injection sets it on pods); otherwise a WorkloadEntry that names a
/// service account does (a VM onboarded with an identity runs a
/// sidecar), and anything else does not. `service_account` is the
/// WorkloadEntry's own field as written (`None` for pods, inline
/// ServiceEntry endpoints without one, and Kubernetes endpoints).
pub fn takes_istio_mtls(labels: &impl Labels, service_account: Option<&str>) -> bool {
    match labels.label(TLS_MODE_LABEL) {
        Some(mode) => mode == "istio",
        None => service_account.is_some_and(|sa| !sa.is_empty()),
    }
}

/// What a workload port accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Plaintext only.
    Disable,
    /// Mutual TLS and plaintext, on the same port.
    Permissive,
    /// Mutual TLS only.
    Strict,
}

impl Mode {
    fn of(m: Option<&MutualTls>) -> Option<Mode> {
        match m?.mode? {
            MtlsMode::UNSET => None,
            MtlsMode::DISABLE => Some(Mode::Disable),
            MtlsMode::PERMISSIVE => Some(Mode::Permissive),
            MtlsMode::STRICT => Some(Mode::Strict),
        }
    }

    /// Whether mesh peers reach it with mutual TLS (what a client's auto
    /// mTLS chooses): anything but `Disable`.
    pub fn accepts_mtls(self) -> bool {
        self != Mode::Disable
    }

    /// Whether plaintext connections are served.
    pub fn accepts_plaintext(self) -> bool {
        self != Mode::Strict
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disable => "DISABLE",
            Mode::Permissive => "PERMISSIVE",
            Mode::Strict => "STRICT",
        }
    }
}

/// A PeerAuthentication as the rules read it.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a PeerAuthentication,
}

impl Policy<'_> {
    /// Whether it names workloads (a selector with labels): only those
    /// are workload-specific and may set port-level modes.
    fn selects(&self) -> bool {
        self.spec
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    }
}

/// The modes of one workload: one for the workload, and the ports a
/// workload-specific policy overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub mode: Mode,
    pub ports: BTreeMap<u32, Mode>,
    /// The policy that decided `mode` (`namespace/name`), for messages
    /// and `weft explain`; none when nothing applies.
    pub from: Option<String>,
}

impl Effective {
    /// The mode on a workload (target) port.
    pub fn at(&self, port: u32) -> Mode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

/// The modes for a workload in `namespace` with `labels`, from
/// `policies` in age order (oldest first); `root` is the mesh's root
/// namespace.
pub fn effective(
    policies: &[Policy<'_>],
    root: &str,
    namespace: &str,
    labels: &impl Labels,
) -> Effective {
    let mesh = policies
        .iter()
        .find(|p| p.namespace == root && !p.selects());
    let ns = policies
        .iter()
        .find(|p| p.namespace == namespace && namespace != root && !p.selects());
    let workload = policies.iter().find(|p| {
        p.namespace == namespace
            && p.selects()
            && p.spec
                .selector
                .as_ref()
                .is_some_and(|s| Selector::policy(s).matches(labels))
    });
    let mut mode = Mode::Permissive;
    let mut from = None;
    for p in [mesh, ns, workload].into_iter().flatten() {
        if let Some(m) = Mode::of(p.spec.mtls.as_ref()) {
            mode = m;
            from = Some(format!("{}/{}", p.namespace, p.name));
        }
    }
    let ports = workload
        .map(|p| {
            p.spec
                .port_level_mtls
                .iter()
                .filter_map(|(port, m)| {
                    let port = port.parse::<u32>().ok()?;
                    Some((port, Mode::of(Some(m)).unwrap_or(mode)))
                })
                .collect()
        })
        .unwrap_or_default();
    Effective { mode, ports, from }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::Map;

    #[test]
    fn tls_mode_label_wins_then_a_workload_entry_service_account() {
        let labels = |pairs: &[(&str, &str)]| -> Map<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let istio = labels(&[(TLS_MODE_LABEL, "istio")]);
        let disabled = labels(&[(TLS_MODE_LABEL, "disabled")]);
        let none = labels(&[("app", "x")]);
        assert!(takes_istio_mtls(&istio, None));
        assert!(!takes_istio_mtls(&disabled, Some("sa")));
        assert!(takes_istio_mtls(&none, Some("sa")));
        assert!(!takes_istio_mtls(&none, Some("")));
        assert!(!takes_istio_mtls(&none, None));
    }

    fn pa(yaml: &str) -> PeerAuthentication {
        let doc = weft_yaml::parse_document(yaml, &Default::default())
            .unwrap()
            .unwrap()
            .to_json();
        serde_json::from_value(doc).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Map<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(
        policies: &[(&str, &str, PeerAuthentication)],
        ns: &str,
        l: &[(&str, &str)],
    ) -> Effective {
        let ps: Vec<Policy> = policies
            .iter()
            .map(|(namespace, name, spec)| Policy {
                namespace,
                name,
                spec,
            })
            .collect();
        effective(&ps, "istio-system", ns, &labels(l))
    }

    #[test]
    fn nothing_applies_permissive() {
        let e = run(&[], "default", &[("app", "a")]);
        assert_eq!(e.mode, Mode::Permissive);
        assert_eq!(e.from, None);
        assert_eq!(e.at(9080), Mode::Permissive);
    }

    #[test]
    fn workload_over_namespace_over_mesh() {
        let policies = [
            ("istio-system", "mesh", pa("mtls: {mode: STRICT}")),
            ("default", "ns", pa("mtls: {mode: DISABLE}")),
            (
                "default",
                "wl",
                pa("selector: {matchLabels: {app: a}}\nmtls: {mode: PERMISSIVE}"),
            ),
        ];
        assert_eq!(
            run(&policies, "default", &[("app", "a")]).mode,
            Mode::Permissive
        );
        assert_eq!(
            run(&policies, "default", &[("app", "b")]).mode,
            Mode::Disable
        );
        assert_eq!(run(&policies, "other", &[("app", "a")]).mode, Mode::Strict);
        let e = run(&policies, "default", &[("app", "a")]);
        assert_eq!(e.from.as_deref(), Some("default/wl"));
    }

    #[test]
    fn unset_inherits_from_the_level_above() {
        let policies = [
            ("istio-system", "mesh", pa("mtls: {mode: STRICT}")),
            ("default", "ns", pa("mtls: {mode: UNSET}")),
            ("default", "wl", pa("selector: {matchLabels: {app: a}}")),
        ];
        let e = run(&policies, "default", &[("app", "a")]);
        assert_eq!(e.mode, Mode::Strict);
        assert_eq!(e.from.as_deref(), Some("istio-system/mesh"));
    }

    #[test]
    fn a_selector_applies_only_in_its_namespace_even_the_root() {
        let policies = [(
            "istio-system",
            "sel",
            pa("selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}"),
        )];
        assert_eq!(
            run(&policies, "default", &[("app", "a")]).mode,
            Mode::Permissive
        );
        assert_eq!(
            run(&policies, "istio-system", &[("app", "a")]).mode,
            Mode::Strict
        );
    }

    #[test]
    fn the_oldest_policy_of_a_level_wins() {
        // Given oldest first, as the caller orders them.
        let policies = [
            ("default", "old", pa("mtls: {mode: STRICT}")),
            ("default", "new", pa("mtls: {mode: DISABLE}")),
        ];
        assert_eq!(run(&policies, "default", &[]).mode, Mode::Strict);
    }

    #[test]
    fn port_level_overrides_and_inherits() {
        let policies = [
            ("istio-system", "mesh", pa("mtls: {mode: STRICT}")),
            (
                "default",
                "wl",
                pa("selector: {matchLabels: {app: a}}\nportLevelMtls:\n  \"8080\": {mode: DISABLE}\n  \"9090\": {mode: UNSET}"),
            ),
        ];
        let e = run(&policies, "default", &[("app", "a")]);
        assert_eq!(e.mode, Mode::Strict);
        assert_eq!(e.at(8080), Mode::Disable);
        assert_eq!(e.at(9090), Mode::Strict);
        assert_eq!(e.at(9080), Mode::Strict);
    }

    #[test]
    fn empty_match_labels_is_namespace_wide() {
        let policies = [
            (
                "default",
                "ns",
                pa("selector: {matchLabels: {}}\nmtls: {mode: STRICT}"),
            ),
            (
                "default",
                "wl",
                pa("selector: {matchLabels: {app: a}}\nmtls: {mode: DISABLE}"),
            ),
        ];
        assert_eq!(
            run(&policies, "default", &[("app", "b")]).mode,
            Mode::Strict
        );
        assert_eq!(
            run(&policies, "default", &[("app", "a")]).mode,
            Mode::Disable
        );
    }
}
