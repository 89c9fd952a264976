//! The RBAC network filter (`envoy.filters.network.rbac`) as Envoy runs
//! it: nothing happens when a connection opens (a TCP proxy connects
//! upstream at once, and the upstream may speak first); the decision is
//! made when data (or the end of the stream) first arrives from
//! downstream — and again on every read with `CONTINUOUS` — and a
//! denied connection is closed, after `delay_deny` when set.
//!
//! The filter sees no HTTP request: header and path permissions are
//! matched against an empty request, as Envoy's network filter matches
//! them against empty headers. Statistics:
//! `<stat_prefix>.rbac.allowed` / `denied` and
//! `<stat_prefix>.rbac.<shadow prefix.>shadow_allowed` /
//! `shadow_denied`. The connection's dynamic metadata (Envoy's
//! `shadow_engine_result` and friends) is not kept: nothing in weft
//! reads connection metadata yet.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use weft_envoy::rbac::{EnforcementType, NetworkRbac as NetworkRbacConfig};

use super::{Engine, Input, RbacError};
use crate::io::{ReadGate, Verdict};
use crate::matchers::RequestView;
use crate::metadata::DynamicMetadata;
use crate::stats::{Counter, Store};
use crate::transport::ConnectionInfo;

/// One network RBAC filter of a chain.
#[derive(Debug)]
struct NetworkRbac {
    enforced: Option<Engine>,
    shadow: Option<Engine>,
    continuous: bool,
    delay_deny: Option<Duration>,
    allowed: Counter,
    denied: Counter,
    shadow_allowed: Counter,
    shadow_denied: Counter,
}

/// The network RBAC filters of a filter chain, in order (they run
/// before its terminal filter).
#[derive(Debug)]
pub(crate) struct NetworkRbacs(Vec<NetworkRbac>);

/// A gate keeps one bit per filter.
const MAX_FILTERS: usize = 64;

impl NetworkRbacs {
    /// `filters`: each filter's settings with the path errors name.
    pub(crate) fn compile<'a>(
        filters: impl Iterator<Item = (String, &'a NetworkRbacConfig)>,
        store: &Store,
    ) -> Result<Self, RbacError> {
        let mut out = Vec::new();
        for (at, c) in filters {
            if out.len() == MAX_FILTERS {
                return Err(RbacError::Invalid {
                    field: at,
                    message: format!("more than {MAX_FILTERS} RBAC filters in one chain"),
                });
            }
            let engine = |field: &str, r: &Option<weft_envoy::rbac::Rbac>| {
                r.as_ref()
                    .map(|r| Engine::compile(&format!("{at}.{field}"), r))
                    .transpose()
            };
            let scope = store.scope(
                &format!("{}.rbac.", c.stat_prefix),
                "envoy_rbac_",
                vec![("envoy_rbac_prefix", c.stat_prefix.clone())],
            );
            // Envoy joins the shadow prefix with a dot, and its
            // Prometheus form keeps the prefix in the name.
            let sp = super::http::dotted(&c.shadow_rules_stat_prefix);
            let shadow_counter = |name: &str| {
                let prom = format!("{}{name}", sp.replace('.', "_"));
                scope.counter_as(&format!("{sp}{name}"), &prom)
            };
            out.push(NetworkRbac {
                enforced: engine("rules", &c.rules)?,
                shadow: engine("shadow_rules", &c.shadow_rules)?,
                continuous: c.enforcement_type == EnforcementType::CONTINUOUS,
                delay_deny: c.delay_deny.map(|d| d.0).filter(|d| !d.is_zero()),
                allowed: scope.counter("allowed"),
                denied: scope.counter("denied"),
                shadow_allowed: shadow_counter("shadow_allowed"),
                shadow_denied: shadow_counter("shadow_denied"),
            });
        }
        Ok(NetworkRbacs(out))
    }
}

static NO_HEADERS: LazyLock<http::HeaderMap> = LazyLock::new(http::HeaderMap::new);

/// One connection's passage through its chain's network RBAC filters.
#[derive(Debug)]
pub(crate) struct Gate {
    filters: Arc<NetworkRbacs>,
    conn: Arc<ConnectionInfo>,
    /// Per filter (bit i): shadow rules evaluated; enforced rules
    /// decided for good (ONE_TIME_ON_FIRST_BYTE).
    shadow_done: u64,
    enforced_done: u64,
}

impl Gate {
    pub(crate) fn new(filters: Arc<NetworkRbacs>, conn: Arc<ConnectionInfo>) -> Self {
        Gate {
            filters,
            conn,
            shadow_done: 0,
            enforced_done: 0,
        }
    }

    /// Called when a read from downstream completes (with data, or at
    /// the end of the stream): each filter in order, shadow rules once,
    /// enforced rules once or (CONTINUOUS) every time. The first denial
    /// stops the chain.
    pub(crate) fn on_data(&mut self) -> Verdict {
        let metadata = DynamicMetadata::default();
        let input = Input {
            conn: &self.conn,
            request: RequestView {
                method: "",
                authority: "",
                scheme: "",
                path_and_query: "",
                headers: &NO_HEADERS,
            },
            remote: self.conn.peer.ip(),
            metadata: &metadata,
        };
        let mut again = false;
        for (i, f) in self.filters.0.iter().enumerate() {
            let bit = 1u64 << i;
            if self.shadow_done & bit == 0 {
                self.shadow_done |= bit;
                if let Some(s) = &f.shadow {
                    if s.decide(&input).allowed {
                        f.shadow_allowed.inc();
                    } else {
                        f.shadow_denied.inc();
                    }
                }
            }
            let Some(e) = &f.enforced else { continue };
            if self.enforced_done & bit != 0 && !f.continuous {
                continue;
            }
            if !e.decide(&input).allowed {
                f.denied.inc();
                return Verdict::Refuse(f.delay_deny);
            }
            f.allowed.inc();
            self.enforced_done |= bit;
            again |= f.continuous;
        }
        if again {
            Verdict::Pass
        } else {
            Verdict::Done
        }
    }
}

impl ReadGate for Gate {
    fn on_read(&mut self) -> Verdict {
        self.on_data()
    }
}
