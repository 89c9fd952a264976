//! What `weft up` runs, kept in step with the directory. After every
//! push of the control plane the plan is read again: proxies and demo
//! applications of workloads that appeared are started, those of
//! workloads that went away are stopped, and one whose identity (node
//! id) or application (what, where it listens, where it calls out)
//! changed is restarted. Routing changes need none of this: they reach
//! the running proxies over xDS.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use weft_control::bootstrap::{self, Identity};
use weft_control::ProxyKind;

use crate::certs::{Issuer, WorkloadCerts};
use crate::{AppPlan, GatewayMode, Plan, UpError};

/// A proxy running now, with its certificates when the mesh has a CA.
pub(crate) struct Proxy {
    pub who: Identity,
    pub running: weft_proxy::Running,
    _certs: Option<WorkloadCerts>,
}

/// How proxies are started: where the control plane is, who serves the
/// gateway, and where certificates come from (none: no mesh mTLS).
pub(crate) struct Starter {
    pub xds: SocketAddr,
    pub gateway: GatewayMode,
    pub issuer: Option<Issuer>,
}

/// The proxies and applications running now.
#[derive(Default)]
pub(crate) struct Live {
    /// By node id.
    pub proxies: BTreeMap<String, Proxy>,
    /// By workload name.
    apps: BTreeMap<String, (AppPlan, tokio::task::JoinHandle<()>)>,
}

fn same_app(a: &AppPlan, b: &AppPlan) -> bool {
    a.app == b.app && a.listen == b.listen && a.egress == b.egress
}

impl Live {
    /// Starts and stops what it takes to run `plan`; every proxy or
    /// application that could not be started is an error, the rest runs.
    pub async fn apply(&mut self, plan: &Plan, starter: &Starter) -> Vec<UpError> {
        let mut errors = Vec::new();
        let wanted: BTreeMap<String, &AppPlan> =
            plan.apps.iter().map(|a| (a.workload.clone(), a)).collect();
        let stale: Vec<String> = self
            .apps
            .iter()
            .filter(|(w, (a, _))| !wanted.get(*w).is_some_and(|n| same_app(a, n)))
            .map(|(w, _)| w.clone())
            .collect();
        for w in stale {
            if let Some((_, task)) = self.apps.remove(&w) {
                task.abort();
                // The listener goes with the task; wait for it so a
                // restarted app can bind the same address.
                let _ = task.await;
            }
        }
        for (w, a) in wanted {
            if self.apps.contains_key(&w) {
                continue;
            }
            match weft_demo::serve(a.app.clone(), &a.workload, a.listen, a.egress).await {
                Ok((_, task)) => {
                    self.apps.insert(w, (a.clone(), task));
                }
                Err(source) => errors.push(UpError::Demo {
                    workload: a.workload.clone(),
                    source,
                }),
            }
        }

        let wanted: BTreeMap<String, &Identity> = plan
            .proxies
            .iter()
            .filter(|w| !(w.kind == ProxyKind::Router && starter.gateway == GatewayMode::None))
            .map(|w| (w.node_id(), w))
            .collect();
        // A proxy whose service account changed needs a new certificate:
        // restarted like one that went away.
        let stale: Vec<String> = self
            .proxies
            .iter()
            .filter(|(id, p)| wanted.get(*id).is_none_or(|w| **w != p.who))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(p) = self.proxies.remove(&id) {
                p.running.shared.shutdown();
            }
        }
        for (id, who) in wanted {
            if self.proxies.contains_key(&id) {
                continue;
            }
            match start_proxy(who, starter).await {
                Ok(p) => {
                    self.proxies.insert(id, p);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    fn stop(&mut self) {
        for (_, p) in std::mem::take(&mut self.proxies) {
            p.running.shared.shutdown();
        }
        for (_, (_, task)) in std::mem::take(&mut self.apps) {
            task.abort();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A weft proxy in this process with the bootstrap pilot-agent would
/// give it, connected to the control plane, with its certificates over
/// SDS when the mesh has a CA.
async fn start_proxy(who: &Identity, starter: &Starter) -> Result<Proxy, UpError> {
    let fail = |message: String| UpError::Proxy {
        node: who.node_id(),
        message,
    };
    let certs = match &starter.issuer {
        Some(issuer) => Some(issuer.start(who).map_err(|e| fail(e.to_string()))?),
        None => None,
    };
    let text = bootstrap::envoy(
        who,
        &bootstrap::Options {
            xds: starter.xds,
            admin: free_admin_port().map_err(|e| fail(format!("no free admin port: {e}")))?,
            sds_socket: certs.as_ref().map(|c| c.socket().to_path_buf()),
            // Many proxies share the host's addresses: their metrics are
            // on their admin ports, as the discovery lists them.
            prometheus: 0,
        },
    )
    .to_string();
    let boot = weft_envoy::parse_bootstrap("bootstrap", &text).map_err(|e| fail(e.to_string()))?;
    let snapshot = weft_proxy::Snapshot::compile(&boot)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let running = weft_proxy::start(snapshot)
        .await
        .map_err(|e| fail(e.to_string()))?;
    weft_proxy::xds::spawn(&running.shared, &boot).map_err(fail)?;
    Ok(Proxy {
        who: who.clone(),
        running,
        _certs: certs,
    })
}

/// A port free on 127.0.0.1 now, for a proxy's admin endpoint: known
/// before the proxy starts, so its bootstrap can tell the control plane
/// (`PROXY_CONFIG.proxyAdminPort`) and `weft proxy-config secret` finds
/// it. Another process could take it first; the proxy then fails to
/// start with the address named.
fn free_admin_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}
