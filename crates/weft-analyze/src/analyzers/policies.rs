//! Security and telemetry policies: selectors that select nothing, several
//! policies where only one can apply, providers that are empty.

use std::collections::HashMap;

use weft_api::Spec;
use weft_config::Resource;

use super::labels_text;
use crate::messages::*;
use crate::{Context, Diagnostic};

pub(super) fn policy_selectors(ctx: &Context, out: &mut Vec<Diagnostic>) {
    let mut telemetry_without: HashMap<&str, Vec<&Resource>> = HashMap::new();
    // (namespace, workload) → Telemetries selecting it
    let mut telemetry_per_workload: HashMap<(&str, &str), Vec<&Resource>> = HashMap::new();
    for r in ctx.resources {
        let ns = r.object.namespace();
        let selector = match &r.object.spec {
            Spec::AuthorizationPolicy(p) => p.selector.as_ref(),
            Spec::PeerAuthentication(p) => p.selector.as_ref(),
            Spec::RequestAuthentication(p) => p.selector.as_ref(),
            Spec::Telemetry(t) => {
                if t.selector.is_none() && t.target_ref.is_none() && t.target_refs.is_empty() {
                    telemetry_without.entry(ns).or_default().push(r);
                }
                let empty = t
                    .tracing
                    .iter()
                    .flat_map(|x| &x.providers)
                    .chain(t.metrics.iter().flat_map(|x| &x.providers))
                    .chain(t.access_logging.iter().flat_map(|x| &x.providers))
                    .any(|p| p.name.is_empty());
                if empty {
                    out.push(Diagnostic::new(
                        &INVALID_TELEMETRY_PROVIDER,
                        r,
                        None,
                        vec![r.object.name().to_string(), ns.to_string()],
                    ));
                }
                t.selector.as_ref()
            }
            _ => continue,
        };
        let Some(sel) = selector else { continue };
        if sel.match_labels.is_empty() || !ctx.has_workloads() {
            continue;
        }
        let mut matched = false;
        for w in ctx.workloads_matching(ns, weft_config::mesh::Selector::policy(sel)) {
            matched = true;
            if matches!(r.object.spec, Spec::Telemetry(_)) {
                telemetry_per_workload
                    .entry((ns, w.resource.object.name()))
                    .or_default()
                    .push(r);
            }
        }
        if !matched {
            out.push(Diagnostic::new(
                &NO_MATCHING_WORKLOADS,
                r,
                Some("spec.selector"),
                vec![labels_text(&sel.match_labels)],
            ));
        }
    }
    for (ns, list) in telemetry_without {
        // One mesh-wide (root namespace) or namespace-wide Telemetry is fine.
        if list.len() > 1 {
            let names: Vec<&str> = list.iter().map(|r| r.object.name()).collect();
            for r in list {
                out.push(Diagnostic::new(
                    &MULTIPLE_TELEMETRIES_WITHOUT_SELECTORS,
                    r,
                    None,
                    vec![format!("[{}]", names.join(" ")), ns.to_string()],
                ));
            }
        }
    }
    for ((ns, workload), list) in telemetry_per_workload {
        if list.len() > 1 {
            let names: Vec<&str> = list.iter().map(|r| r.object.name()).collect();
            for r in list {
                out.push(Diagnostic::new(
                    &CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
                    r,
                    Some("spec.selector"),
                    vec![
                        format!("[{}]", names.join(" ")),
                        ns.to_string(),
                        workload.to_string(),
                    ],
                ));
            }
        }
    }
}
