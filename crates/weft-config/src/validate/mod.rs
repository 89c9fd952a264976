//! Per-object validation with the rules Istio's admission webhook applies
//! (and the CEL rules in Istio's CRD schemas), beyond what the typed decode
//! already checked (field names, types, enums).
//!
//! Every [`Violation`] names the field by its display path, so callers can
//! turn it into a line with [`crate::Resource::origin_of`].

mod common;
mod gateway;
mod k8s;
mod registry;
mod security;
mod traffic;
mod virtual_service;

use weft_api::{Object, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Istio would accept the object but it is likely a mistake, or uses a
    /// deprecated field.
    Warning,
    /// Istio would reject the object.
    Error,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub severity: Severity,
    /// Display path of the field, e.g. `spec.http[0].route[1].weight`.
    pub field: String,
    pub message: String,
}

/// Collects violations while walking an object.
#[derive(Default)]
pub(crate) struct Report {
    out: Vec<Violation>,
}

impl Report {
    pub(crate) fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.out.push(Violation {
            severity: Severity::Error,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.out.push(Violation {
            severity: Severity::Warning,
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates one object. An empty result means Istio would accept it
/// without warnings.
pub fn validate(object: &Object) -> Vec<Violation> {
    let mut r = Report::default();
    common::metadata(&mut r, object);
    match &object.spec {
        Spec::VirtualService(vs) => virtual_service::validate(&mut r, vs),
        Spec::DestinationRule(dr) => traffic::destination_rule(&mut r, dr),
        Spec::Gateway(gw) => gateway::gateway(&mut r, gw),
        Spec::Sidecar(sc) => gateway::sidecar(&mut r, sc),
        Spec::ServiceEntry(se) => registry::service_entry(&mut r, se),
        Spec::WorkloadEntry(we) => registry::workload_entry(&mut r, we, "spec"),
        Spec::WorkloadGroup(wg) => registry::workload_group(&mut r, wg),
        Spec::PeerAuthentication(pa) => security::peer_authentication(&mut r, pa),
        Spec::AuthorizationPolicy(ap) => security::authorization_policy(&mut r, ap),
        Spec::RequestAuthentication(ra) => security::request_authentication(&mut r, ra),
        Spec::Telemetry(t) => security::telemetry(&mut r, t),
        Spec::Service(svc) => k8s::service(&mut r, svc),
        Spec::Deployment(d) => k8s::deployment(&mut r, d),
        _ => {}
    }
    r.out
}

#[cfg(test)]
mod tests;
