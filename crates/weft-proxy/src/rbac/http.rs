//! The RBAC HTTP filter (`envoy.filters.http.rbac`) as Envoy runs it:
//! shadow rules first (counted, recorded in dynamic metadata, never
//! enforced), then the enforced rules; a denied request gets a 403
//! `RBAC: access denied` (no response flag, as Envoy sets none). A
//! route's `RBACPerRoute` replaces both rule sets, and one without
//! `rbac` turns the filter off for that route.
//!
//! Statistics and metadata keys as Envoy 1.40 names them (checked
//! against its /stats by the parity tests):
//!
//! - `http.<hcm prefix>.rbac.<rules prefix.>allowed` / `denied`, and
//!   `<shadow prefix.>shadow_allowed` / `shadow_denied`: a configured
//!   prefix gets a `.` after it when it has none;
//! - with `track_per_rule_stats`,
//!   `<rules prefix.>policy.<name>.allowed` / `denied` and
//!   `<shadow prefix.>policy.<name>.shadow_allowed` / `shadow_denied`;
//! - metadata under `envoy.filters.http.rbac`:
//!   `<rules prefix>enforced_engine_result`,
//!   `<rules prefix>enforced_effective_policy_id`,
//!   `<shadow prefix>shadow_engine_result` and
//!   `<shadow prefix>shadow_effective_policy_id` (the prefix as written,
//!   no dot added); LOG rules set `envoy.common` `access_log_hint`.
//!
//! The statistics and keys are the filter's own, whichever rules (its
//! own or a route's) decided, as in Envoy.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use serde_json::Value;
use weft_envoy::rbac::{HttpRbac as HttpRbacConfig, HttpRbacPerRoute, RbacAction};

use super::{Engine, Input, RbacError};
use crate::matchers::RequestView;
use crate::metadata::DynamicMetadata;
use crate::stats::{Counter, Store};
use crate::transport::ConnectionInfo;

/// The filter's metadata namespace (its canonical name, whatever name
/// the filter has in the connection manager).
static NAMESPACE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("envoy.filters.http.rbac"));
/// The namespace filters share for hints to access loggers.
static COMMON: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("envoy.common"));
static LOG_HINT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("access_log_hint"));

/// The body of Envoy's 403.
pub(crate) const DENIED_BODY: &str = "RBAC: access denied";

/// Enforced and shadow rules: the filter's own, or a route's.
#[derive(Debug, Default)]
pub struct Engines {
    enforced: Option<Engine>,
    shadow: Option<Engine>,
}

impl Engines {
    fn compile(at: &str, c: &HttpRbacConfig) -> Result<Self, RbacError> {
        Ok(Engines {
            enforced: c
                .rules
                .as_ref()
                .map(|r| Engine::compile(&format!("{at}rules"), r))
                .transpose()?,
            shadow: c
                .shadow_rules
                .as_ref()
                .map(|r| Engine::compile(&format!("{at}shadow_rules"), r))
                .transpose()?,
        })
    }

    fn reads_remote(&self) -> bool {
        self.enforced.as_ref().is_some_and(Engine::reads_remote)
            || self.shadow.as_ref().is_some_and(Engine::reads_remote)
    }
}

/// `RBACPerRoute`, compiled: the rules a route uses instead of the
/// filter's (none at all when it has no `rbac`).
#[derive(Debug)]
pub struct RbacPerRoute(Engines);

impl RbacPerRoute {
    pub(crate) fn compile(c: &HttpRbacPerRoute) -> Result<Self, RbacError> {
        match &c.rbac {
            Some(r) => Ok(RbacPerRoute(Engines::compile("rbac.", r)?)),
            None => Ok(RbacPerRoute(Engines::default())),
        }
    }
}

/// `prefix` joined to what follows by a dot, as Envoy joins stat
/// prefixes (`rp` and `rp.` both give `rp.`; empty stays empty).
pub(super) fn dotted(prefix: &str) -> String {
    match prefix {
        "" => String::new(),
        p if p.ends_with('.') => p.to_string(),
        p => format!("{p}."),
    }
}

/// A policy's pair of counters (allowed, denied).
type PolicyCounters = (Counter, Counter);

#[derive(Debug)]
struct Stats {
    allowed: Counter,
    denied: Counter,
    shadow_allowed: Counter,
    shadow_denied: Counter,
    /// With `track_per_rule_stats`: per policy name, registered when the
    /// configuration compiles (so counting takes no lock). A route's
    /// rules from RDS name policies not known then; those are counted
    /// only in the totals.
    rules: BTreeMap<String, PolicyCounters>,
    shadow: BTreeMap<String, PolicyCounters>,
}

/// The metadata keys, prefixed once.
#[derive(Debug)]
struct Keys {
    enforced_result: Arc<str>,
    enforced_policy: Arc<str>,
    shadow_result: Arc<str>,
    shadow_policy: Arc<str>,
}

/// The filter, compiled with its connection manager.
#[derive(Debug)]
pub struct HttpRbac {
    engines: Engines,
    stats: Stats,
    keys: Keys,
}

/// What the filter reads of a request beyond the view routes read.
pub(crate) struct Request<'a> {
    pub conn: &'a ConnectionInfo,
    pub view: RequestView<'a>,
    /// The connection manager's `use_remote_address` and
    /// `xff_num_trusted_hops`, for the remote address.
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
}

impl HttpRbac {
    /// `route_policies` are policy names a route's rules use (for the
    /// per-policy counters).
    pub(crate) fn compile<'a>(
        c: &HttpRbacConfig,
        store: &Store,
        hcm_prefix: &str,
        route_policies: impl Iterator<Item = (bool, &'a str)>,
    ) -> Result<Self, RbacError> {
        let engines = Engines::compile("", c)?;
        let (rp, sp) = (
            dotted(&c.rules_stat_prefix),
            dotted(&c.shadow_rules_stat_prefix),
        );
        let family = |prefix: &str| {
            let mut tags = Vec::new();
            if !prefix.is_empty() {
                let tag = prefix.trim_end_matches('.').to_string();
                tags.push(("envoy_rbac_http_prefix", tag));
            }
            tags.push(("envoy_http_conn_manager_prefix", hcm_prefix.to_string()));
            tags
        };
        let rules = store.scope(
            &format!("http.{hcm_prefix}.rbac.{rp}"),
            "envoy_http_rbac_",
            family(&rp),
        );
        let shadow = store.scope(
            &format!("http.{hcm_prefix}.rbac.{sp}"),
            "envoy_http_rbac_",
            family(&sp),
        );
        let mut stats = Stats {
            allowed: rules.counter("allowed"),
            denied: rules.counter("denied"),
            shadow_allowed: shadow.counter("shadow_allowed"),
            shadow_denied: shadow.counter("shadow_denied"),
            rules: BTreeMap::new(),
            shadow: BTreeMap::new(),
        };
        if c.track_per_rule_stats {
            let mut names: Vec<(bool, String)> = Vec::new();
            for (is_shadow, e) in [(false, &engines.enforced), (true, &engines.shadow)] {
                let own = e.iter().flat_map(|e| e.policy_names());
                names.extend(own.map(|n| (is_shadow, n.to_string())));
            }
            names.extend(route_policies.map(|(shadow, n)| (shadow, n.to_string())));
            for (is_shadow, name) in &names {
                let (is_shadow, name) = (*is_shadow, name.as_str());
                let prefix = if is_shadow { &sp } else { &rp };
                let mut tags = vec![("envoy_rbac_policy_name", name.to_string())];
                tags.extend(family(prefix));
                let scope = store.scope(
                    &format!("http.{hcm_prefix}.rbac.{prefix}policy.{name}."),
                    "envoy_http_rbac_policy_",
                    tags,
                );
                let (map, names) = if is_shadow {
                    (&mut stats.shadow, ["shadow_allowed", "shadow_denied"])
                } else {
                    (&mut stats.rules, ["allowed", "denied"])
                };
                map.entry(name.to_string()).or_insert_with(|| {
                    (scope.lazy_counter(names[0]), scope.lazy_counter(names[1]))
                });
            }
        }
        let key = |prefix: &str, name: &str| Arc::from(format!("{prefix}{name}"));
        let keys = Keys {
            enforced_result: key(&c.rules_stat_prefix, "enforced_engine_result"),
            enforced_policy: key(&c.rules_stat_prefix, "enforced_effective_policy_id"),
            shadow_result: key(&c.shadow_rules_stat_prefix, "shadow_engine_result"),
            shadow_policy: key(&c.shadow_rules_stat_prefix, "shadow_effective_policy_id"),
        };
        Ok(HttpRbac {
            engines,
            stats,
            keys,
        })
    }

    /// Runs the filter on a request: true when it may go on. `per_route`
    /// is the most specific route setting under this filter's name.
    pub(crate) fn allows(
        &self,
        per_route: Option<&RbacPerRoute>,
        req: &Request<'_>,
        metadata: &mut DynamicMetadata,
    ) -> bool {
        let engines = per_route.map_or(&self.engines, |p| &p.0);
        if engines.enforced.is_none() && engines.shadow.is_none() {
            return true;
        }
        let remote = if engines.reads_remote() {
            trusted_remote(
                req.view.headers,
                req.conn.peer.ip(),
                req.use_remote_address,
                req.xff_num_trusted_hops,
            )
        } else {
            req.conn.peer.ip()
        };
        fn input<'a>(
            req: &Request<'a>,
            remote: IpAddr,
            metadata: &'a DynamicMetadata,
        ) -> Input<'a> {
            Input {
                conn: req.conn,
                request: req.view,
                remote,
                metadata,
            }
        }
        if let Some(shadow) = &engines.shadow {
            let d = shadow.decide(&input(req, remote, metadata));
            let (total, per_policy, result) = if d.allowed {
                (&self.stats.shadow_allowed, 0, "allowed")
            } else {
                (&self.stats.shadow_denied, 1, "denied")
            };
            total.inc();
            if let Some(p) = d.policy {
                if let Some(c) = self.stats.shadow.get(p) {
                    [&c.0, &c.1][per_policy].inc();
                }
                metadata.set(&NAMESPACE, &self.keys.shadow_policy, Value::from(p));
            }
            metadata.set(&NAMESPACE, &self.keys.shadow_result, Value::from(result));
        }
        let Some(enforced) = &engines.enforced else {
            return true;
        };
        let d = enforced.decide(&input(req, remote, metadata));
        let (total, per_policy, result) = if d.allowed {
            (&self.stats.allowed, 0, "allowed")
        } else {
            (&self.stats.denied, 1, "denied")
        };
        total.inc();
        if let Some(p) = d.policy {
            if let Some(c) = self.stats.rules.get(p) {
                [&c.0, &c.1][per_policy].inc();
            }
            metadata.set(&NAMESPACE, &self.keys.enforced_policy, Value::from(p));
        }
        metadata.set(&NAMESPACE, &self.keys.enforced_result, Value::from(result));
        if enforced.action() == RbacAction::LOG {
            metadata.set(&COMMON, &LOG_HINT, Value::from(d.policy.is_some()));
        }
        d.allowed
    }
}

/// The client's address as the connection manager trusts it, Envoy's
/// way: with `use_remote_address`, the peer; otherwise the address
/// `xff_num_trusted_hops` entries from the right end of
/// X-Forwarded-For (its last one with no trusted hops), falling back to
/// the peer when the header is missing, too short or not an address.
pub(crate) fn trusted_remote(
    headers: &http::HeaderMap,
    peer: IpAddr,
    use_remote_address: bool,
    trusted_hops: u32,
) -> IpAddr {
    if use_remote_address {
        return peer;
    }
    let mut values = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    // Several X-Forwarded-For lines read as one list, as Envoy joins
    // them; the common single line is read in place.
    let from_right = |v: &str| {
        v.rsplit(',')
            .nth(trusted_hops as usize)
            .and_then(|a| a.trim().parse().ok())
    };
    let found = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(one), None) => from_right(one),
        (Some(first), Some(second)) => {
            let mut all = format!("{first},{second}");
            for v in values {
                all.push(',');
                all.push_str(v);
            }
            from_right(&all)
        }
    };
    found.unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trusted_remote_comes_from_the_right_end_of_x_forwarded_for() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = http::HeaderMap::new();
        assert_eq!(trusted_remote(&h, peer, false, 0), peer);
        h.insert(
            "x-forwarded-for",
            "10.0.0.1, 10.0.0.2,10.0.0.3".parse().unwrap(),
        );
        let at = |h: &http::HeaderMap, hops| trusted_remote(h, peer, false, hops).to_string();
        assert_eq!(at(&h, 0), "10.0.0.3");
        assert_eq!(at(&h, 1), "10.0.0.2");
        assert_eq!(at(&h, 2), "10.0.0.1");
        assert_eq!(at(&h, 3), "127.0.0.1");
        assert_eq!(trusted_remote(&h, peer, true, 0), peer);
        h.append("x-forwarded-for", "10.0.0.4".parse().unwrap());
        assert_eq!(at(&h, 0), "10.0.0.4");
        assert_eq!(at(&h, 1), "10.0.0.3");
        h.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(at(&h, 0), "127.0.0.1");
    }

    #[test]
    fn prefixes_are_joined_with_one_dot() {
        assert_eq!(dotted(""), "");
        assert_eq!(dotted("rp"), "rp.");
        assert_eq!(dotted("rp."), "rp.");
    }
}
