//! Which security policies apply to a workload, as istiod selects them
//! (AuthorizationPolicy and RequestAuthentication alike): one rule for
//! both, so the JWT filter and the RBAC filters of a workload can never
//! disagree about which objects are in force.

use weft_api::security::AuthorizationPolicy;

use crate::context::{Context, Named};

/// The policies that apply to a workload in `namespace` with `labels`,
/// in age order, as Istio selects them: a policy without a selector (or
/// with empty `matchLabels`) applies to every workload of its namespace,
/// and of the mesh when that is the root namespace; one with a selector
/// to the workloads it matches in its namespace (any namespace, from the
/// root namespace). Policies with `targetRef(s)` attach to gateways and
/// waypoints by Gateway API reference, not to sidecars: not here.
pub(crate) fn applied<'a>(
    ctx: &'a Context,
    namespace: &str,
    labels: &weft_api::Map<String, String>,
) -> Vec<Applied<'a>> {
    ctx.authorization_policies
        .iter()
        .filter(|a| {
            let p = &a.policy;
            selects(
                ctx,
                &p.namespace,
                p.spec.selector.as_ref(),
                p.spec.target_ref.is_some() || !p.spec.target_refs.is_empty(),
                namespace,
                labels,
            )
        })
        .map(|a| Applied {
            policy: &a.policy,
            dry_run: a.dry_run,
        })
        .collect()
}

/// Whether a security policy (AuthorizationPolicy, RequestAuthentication)
/// of `policy_namespace` applies to a workload in `namespace` with
/// `labels`, as istiod selects them: from the workload's namespace or the
/// root namespace, a policy without a selector (or with empty
/// `matchLabels`) applies, one with a selector when its labels are a
/// subset of the workload's. A policy with `targetRef(s)` attaches to
/// gateways and waypoints by Gateway API reference instead: not here.
pub(crate) fn selects(
    ctx: &Context,
    policy_namespace: &str,
    selector: Option<&weft_api::common::LabelSelector>,
    targets: bool,
    namespace: &str,
    labels: &weft_api::Map<String, String>,
) -> bool {
    if targets {
        return false;
    }
    let in_scope = policy_namespace == namespace || policy_namespace == ctx.mesh.root_namespace;
    in_scope && selector.is_none_or(|s| weft_config::mesh::Selector::policy(s).matches(labels))
}

/// A policy that applies to the workload, as the filters read it.
pub(crate) struct Applied<'a> {
    pub policy: &'a Named<AuthorizationPolicy>,
    pub dry_run: bool,
}
