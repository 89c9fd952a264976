//! Label selectors as Istio and Kubernetes read them. Every selector is
//! "these labels, all present with these values", but what an *empty*
//! one picks depends on the field it came from, and so does an *absent*
//! one:
//!
//! - a Kubernetes Service's `spec.selector`, absent or empty, selects no
//!   pods ("If empty or not present, the service is assumed to have an
//!   external process managing its endpoints");
//! - Istio's selectors are label subsets (`labels.Instance.SubsetOf`, an
//!   empty set being a subset of every set): a Gateway's `selector`
//!   ("If selector is nil, the Gateway will be applied to all
//!   workloads"), a `workloadSelector`'s `labels` (Sidecar, ServiceEntry,
//!   DestinationRule), a policy's `selector.matchLabels`
//!   (AuthorizationPolicy, PeerAuthentication, RequestAuthentication,
//!   Telemetry), and the conditions `sourceLabels` and subset `labels`;
//! - an absent `workloadSelector`/`selector` on a Sidecar, DestinationRule
//!   or policy makes the object apply to its whole namespace — the whole
//!   mesh from the root namespace ([`Scope`]); on a ServiceEntry it means
//!   the instances are its `endpoints` instead.
//!
//! A [`Selector`] is only made by a constructor named after the field it
//! reads, which fixes the reading, so two callers reading one field
//! cannot disagree about it.

use std::collections::BTreeMap;

use weft_api::common::{LabelSelector, WorkloadSelector};
use weft_api::Map;

/// Something with labels a selector is compared with: a pod, a
/// WorkloadEntry, an endpoint, a proxy.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for Map<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

impl<T: Labels + ?Sized> Labels for std::sync::Arc<T> {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// What a selector without labels picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenEmpty {
    /// Nothing (Kubernetes Service selectors).
    Nothing,
    /// Everything in its scope (Istio's label subsets).
    Everything,
}

/// The labels of a selector, in either map type the API uses.
#[derive(Clone, Copy, Debug)]
enum Set<'a> {
    Istio(&'a Map<String, String>),
    Kubernetes(&'a BTreeMap<String, String>),
    Absent,
}

/// A selector's labels with the reading of the field they came from.
#[derive(Clone, Copy, Debug)]
pub struct Selector<'a> {
    set: Set<'a>,
    empty: WhenEmpty,
}

impl<'a> Selector<'a> {
    /// A Kubernetes Service's `spec.selector`: absent or empty selects no
    /// pods.
    pub fn service(selector: Option<&'a BTreeMap<String, String>>) -> Selector<'a> {
        Selector {
            set: selector.map_or(Set::Absent, Set::Kubernetes),
            empty: WhenEmpty::Nothing,
        }
    }

    /// A Gateway's `spec.selector`: the labels of the gateway workloads
    /// it applies to; empty applies it to every gateway workload.
    pub fn gateway(selector: &'a Map<String, String>) -> Selector<'a> {
        Selector {
            set: Set::Istio(selector),
            empty: WhenEmpty::Everything,
        }
    }

    /// A `workloadSelector` that is given (Sidecar, ServiceEntry,
    /// DestinationRule): empty `labels` select every workload of the
    /// namespace. Whether it is given at all is [`Scope::workload`]'s
    /// question.
    pub fn workload(selector: &'a WorkloadSelector) -> Selector<'a> {
        Selector {
            set: Set::Istio(&selector.labels),
            empty: WhenEmpty::Everything,
        }
    }

    /// A policy's `selector` that is given (AuthorizationPolicy,
    /// PeerAuthentication, RequestAuthentication, Telemetry): empty
    /// `matchLabels` select every workload of the namespace.
    pub fn policy(selector: &'a LabelSelector) -> Selector<'a> {
        Selector {
            set: Set::Istio(&selector.match_labels),
            empty: WhenEmpty::Everything,
        }
    }

    /// A condition that narrows a rule to workloads or instances with
    /// these labels — a route match's `sourceLabels`, a subset's
    /// `labels`: none narrows nothing.
    pub fn condition(labels: &'a Map<String, String>) -> Selector<'a> {
        Selector {
            set: Set::Istio(labels),
            empty: WhenEmpty::Everything,
        }
    }

    /// Whether a workload (endpoint, proxy) with `labels` is selected.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        match self.set {
            Set::Absent => self.empty == WhenEmpty::Everything,
            Set::Istio(m) if m.is_empty() => self.empty == WhenEmpty::Everything,
            Set::Kubernetes(m) if m.is_empty() => self.empty == WhenEmpty::Everything,
            Set::Istio(m) => m.iter().all(|(k, v)| labels.label(k) == Some(v.as_str())),
            Set::Kubernetes(m) => m.iter().all(|(k, v)| labels.label(k) == Some(v.as_str())),
        }
    }

    /// Whether it has no labels (absent or empty).
    pub fn is_empty(&self) -> bool {
        match self.set {
            Set::Istio(m) => m.is_empty(),
            Set::Kubernetes(m) => m.is_empty(),
            Set::Absent => true,
        }
    }

    /// Whether it can select nothing whatever the labels (an index can
    /// skip looking).
    pub fn selects_nothing(&self) -> bool {
        self.is_empty() && self.empty == WhenEmpty::Nothing
    }

    /// Its labels, for indexes (which still call [`Selector::matches`])
    /// and messages.
    pub fn labels(&self) -> Box<dyn Iterator<Item = (&'a String, &'a String)> + 'a> {
        match self.set {
            Set::Istio(m) => Box::new(m.iter()),
            Set::Kubernetes(m) => Box::new(m.iter()),
            Set::Absent => Box::new(std::iter::empty()),
        }
    }
}

/// Which workloads an object with an optional workload selector applies
/// to (Sidecar, DestinationRule, AuthorizationPolicy, PeerAuthentication,
/// RequestAuthentication, Telemetry).
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// No selector: every workload of the object's namespace, or of the
    /// mesh when that is the root namespace; a selecting object of the
    /// same kind takes precedence where both apply.
    Namespace,
    /// The workloads of the object's namespace the selector picks.
    Selected(Selector<'a>),
}

impl<'a> Scope<'a> {
    /// A Sidecar's or DestinationRule's `workloadSelector`.
    pub fn workload(selector: Option<&'a WorkloadSelector>) -> Scope<'a> {
        selector.map_or(Scope::Namespace, |s| Scope::Selected(Selector::workload(s)))
    }

    /// A policy's `selector`.
    pub fn policy(selector: Option<&'a LabelSelector>) -> Scope<'a> {
        selector.map_or(Scope::Namespace, |s| Scope::Selected(Selector::policy(s)))
    }

    /// Whether an object of `namespace` applies to a workload of
    /// `workload_namespace` with `labels`, `root` being the mesh's root
    /// namespace.
    pub fn applies_to(
        &self,
        namespace: &str,
        root: &str,
        workload_namespace: &str,
        labels: &impl Labels,
    ) -> bool {
        match self {
            Scope::Namespace => namespace == workload_namespace || namespace == root,
            Scope::Selected(s) => namespace == workload_namespace && s.matches(labels),
        }
    }

    pub fn is_namespace(&self) -> bool {
        matches!(self, Scope::Namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tree(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        map(pairs).into()
    }

    #[test]
    fn every_label_must_be_present_with_its_value() {
        let pod = map(&[("app", "reviews"), ("version", "v1")]);
        let app = tree(&[("app", "reviews")]);
        let v2 = tree(&[("app", "reviews"), ("version", "v2")]);
        let extra = tree(&[("app", "reviews"), ("tier", "web")]);
        assert!(Selector::service(Some(&app)).matches(&pod));
        assert!(!Selector::service(Some(&v2)).matches(&pod));
        assert!(!Selector::service(Some(&extra)).matches(&pod));
        let m: Map<String, String> = app.clone().into();
        assert!(Selector::gateway(&m).matches(&pod));
        assert!(Selector::condition(&m).matches(&tree(&[("app", "reviews")])));
    }

    #[test]
    fn a_service_without_selector_selects_no_pods() {
        // Kubernetes: "If empty or not present, the service is assumed to
        // have an external process managing its endpoints, which
        // Kubernetes will not modify."
        let pod = map(&[("app", "reviews")]);
        let empty = BTreeMap::new();
        for s in [Selector::service(None), Selector::service(Some(&empty))] {
            assert!(!s.matches(&pod));
            assert!(!s.matches(&Map::<String, String>::new()));
            assert!(s.selects_nothing());
        }
    }

    #[test]
    fn istio_selectors_are_label_subsets_so_empty_selects_all() {
        // Gateway: "If selector is nil, the Gateway will be applied to all
        // workloads"; workload selectors and policy selectors compare as
        // labels.Instance.SubsetOf, which holds for an empty set.
        let pod = map(&[("app", "reviews")]);
        let none = Map::new();
        let ws = WorkloadSelector {
            labels: none.clone(),
        };
        let ls = LabelSelector {
            match_labels: none.clone(),
        };
        for s in [
            Selector::gateway(&none),
            Selector::workload(&ws),
            Selector::policy(&ls),
            Selector::condition(&none),
        ] {
            assert!(s.matches(&pod) && s.matches(&none), "{s:?}");
            assert!(s.is_empty() && !s.selects_nothing());
        }
    }

    #[test]
    fn an_absent_workload_selector_applies_to_the_namespace_and_from_the_root_to_the_mesh() {
        // Sidecar: "If omitted, the Sidecar configuration will be applied
        // to all workload instances in the same namespace"; policies in
        // the root namespace apply mesh-wide.
        let pod = map(&[("app", "reviews")]);
        let ns = Scope::workload(None);
        assert!(ns.is_namespace());
        assert!(ns.applies_to("shop", "istio-system", "shop", &pod));
        assert!(!ns.applies_to("other", "istio-system", "shop", &pod));
        assert!(ns.applies_to("istio-system", "istio-system", "shop", &pod));
        assert!(Scope::policy(None).applies_to("istio-system", "istio-system", "x", &pod));

        // A selector picks workloads of its own namespace only, even from
        // the root namespace.
        let ws = WorkloadSelector {
            labels: map(&[("app", "reviews")]),
        };
        let sel = Scope::workload(Some(&ws));
        assert!(sel.applies_to("shop", "istio-system", "shop", &pod));
        assert!(!sel.applies_to("istio-system", "istio-system", "shop", &pod));
        assert!(!sel.applies_to("shop", "istio-system", "shop", &map(&[("app", "x")])));
        // Given with no labels: every workload of its namespace.
        let empty = WorkloadSelector { labels: Map::new() };
        let all = Scope::workload(Some(&empty));
        assert!(all.applies_to("shop", "istio-system", "shop", &Map::new()));
        assert!(!all.applies_to("shop", "istio-system", "other", &Map::new()));
    }

    #[test]
    fn labels_are_listed_for_indexes() {
        let m = map(&[("a", "1"), ("b", "2")]);
        let got: Vec<_> = Selector::gateway(&m).labels().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(Selector::service(None).labels().count(), 0);
    }
}
