//! Role based access control, as Envoy's RBAC filters do it: policies of
//! permissions (what is asked) and principals (who asks), compiled once
//! when the configuration arrives into an [`Engine`] that decides
//! ALLOW / DENY / LOG for a request or a connection without locking
//! (and, up to 1,024 policies, without allocating).
//!
//! - [`matcher`]: permissions and principals, and what they read.
//! - [`index`]: which policies a request could match, looked up by its
//!   path, method, port, peer and headers, so that large policy sets
//!   cost little more than small ones.
//! - [`http`]: the HTTP filter (`envoy.filters.http.rbac`): enforced and
//!   shadow rules, per-route overrides, statistics, dynamic metadata,
//!   the 403.
//! - [`network`]: the network filter (`envoy.filters.network.rbac`): a
//!   decision when the first bytes arrive from downstream (or on every
//!   read), and the connection closed when denied.
//!
//! The xDS matcher-tree form (`matcher`, `shadow_matcher`) is refused by
//! name when the configuration is read (weft-envoy's checks), as are CEL
//! conditions, extension matchers and principals, and filter state.

pub(crate) mod http;
mod index;
pub(crate) mod matcher;
pub(crate) mod network;

use std::net::IpAddr;

use weft_envoy::rbac::{Rbac, RbacAction};

use crate::matchers::RequestView;
use crate::metadata::DynamicMetadata;
use crate::transport::ConnectionInfo;
use matcher::{Permission, Principal};

pub(crate) use http::{HttpRbac, RbacPerRoute, DENIED_BODY};
pub(crate) use network::{Gate, NetworkRbacs};

/// Why an RBAC configuration could not be compiled (configuration; the
/// same input fails the same way). `field` is relative to the filter's
/// settings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RbacError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// What a decision reads: the connection, the request (empty for the
/// network filter, as Envoy's network filter matches against no
/// headers), the trusted remote address and the dynamic metadata.
pub(crate) struct Input<'a> {
    pub conn: &'a ConnectionInfo,
    pub request: RequestView<'a>,
    /// The client's address as the connection manager trusts it (from
    /// X-Forwarded-For when it does not use the peer's); the peer's for
    /// the network filter.
    pub remote: IpAddr,
    pub metadata: &'a DynamicMetadata,
}

/// One policy: one of its permissions and one of its principals.
#[derive(Debug)]
struct Policy {
    name: String,
    permissions: Vec<Permission>,
    principals: Vec<Principal>,
}

impl Policy {
    fn matches(&self, input: &Input) -> bool {
        self.permissions.iter().any(|p| p.matches(input))
            && self.principals.iter().any(|p| p.matches(input))
    }
}

/// A compiled `envoy.config.rbac.v3.RBAC`.
#[derive(Debug)]
pub(crate) struct Engine {
    action: RbacAction,
    /// In the names' lexicographic order: the first that matches is the
    /// effective policy.
    policies: Vec<Policy>,
    /// The candidates for a request, when there are many policies.
    index: Option<index::Index>,
    /// Some principal reads the remote address.
    reads_remote: bool,
}

/// An engine's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision<'e> {
    pub allowed: bool,
    /// The policy that decided (for ALLOW and LOG: the one that
    /// matched; for DENY: the one that denied).
    pub policy: Option<&'e str>,
}

impl Engine {
    /// `at` is where errors point, e.g. `rules`.
    pub(crate) fn compile(at: &str, r: &Rbac) -> Result<Self, RbacError> {
        let mut policies = Vec::with_capacity(r.policies.len());
        for (name, p) in &r.policies {
            let pat = format!("{at}.policies.{name}");
            policies.push(Policy {
                name: name.clone(),
                permissions: p
                    .permissions
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Permission::compile(&format!("{pat}.permissions[{i}]"), x))
                    .collect::<Result<_, _>>()?,
                principals: p
                    .principals
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Principal::compile(&format!("{pat}.principals[{i}]"), x))
                    .collect::<Result<_, _>>()?,
            });
            if p.condition.is_some() || p.checked_condition.is_some() {
                return Err(RbacError::Invalid {
                    field: format!("{pat}.condition"),
                    message: "CEL conditions are not implemented by weft".into(),
                });
            }
        }
        let reads_remote = policies
            .iter()
            .any(|p| p.principals.iter().any(Principal::reads_remote));
        Ok(Engine {
            action: r.action,
            index: index::Index::build(&policies),
            policies,
            reads_remote,
        })
    }

    pub(crate) fn action(&self) -> RbacAction {
        self.action
    }

    pub(crate) fn reads_remote(&self) -> bool {
        self.reads_remote
    }

    /// The decision of the plain scan, to check the index against.
    #[cfg(test)]
    fn decide_linear(&self, input: &Input) -> Option<&str> {
        self.policies
            .iter()
            .find(|p| p.matches(input))
            .map(|p| p.name.as_str())
    }

    /// The policy names, in evaluation order.
    pub(crate) fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// ALLOW allows when a policy matches, DENY when none does, LOG
    /// always (the matched policy is still reported).
    pub(crate) fn decide(&self, input: &Input) -> Decision<'_> {
        let matched = match &self.index {
            Some(ix) => ix
                .candidates(input)
                .map(|i| &self.policies[i])
                .find(|p| p.matches(input)),
            None => self.policies.iter().find(|p| p.matches(input)),
        }
        .map(|p| p.name.as_str());
        let allowed = match self.action {
            RbacAction::ALLOW => matched.is_some(),
            RbacAction::DENY => matched.is_none(),
            RbacAction::LOG => true,
        };
        Decision {
            allowed,
            policy: matched,
        }
    }
}

#[cfg(test)]
mod tests;
