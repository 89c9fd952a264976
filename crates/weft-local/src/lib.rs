//! The local mesh, `weft up DIR`: everything a mesh needs on one machine
//! without Kubernetes, from a directory of Istio YAML.
//!
//! What runs is read from Istio's own resources (no weft-specific kind):
//! - the control plane on DIR (`weft control`);
//! - a gateway proxy for every WorkloadEntry a Gateway's selector picks;
//! - a sidecar proxy for every other WorkloadEntry whose Sidecar resource
//!   has `captureMode: NONE` listeners (the way Istio runs a proxy
//!   without iptables);
//! - the demo application of every WorkloadEntry annotated
//!   `weft.dev/demo: bookinfo` (by its `app` and `version` labels),
//!   listening at its Sidecar ingress `defaultEndpoint` and calling other
//!   services through its Sidecar egress `bind:port`.
//!
//! Proxies are weft proxies in this process, connected to the control
//! plane over ADS like any other; `Gateway::None` leaves the gateway to
//! an outside proxy (`weft bootstrap --role gateway` prints its Envoy
//! bootstrap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use weft_api::Map;

use weft_api::Spec;
use weft_config::Resource;
use weft_control::bootstrap::Identity;
use weft_control::context::Context;
use weft_control::registry::namespace_of;
use weft_control::ProxyKind;
use weft_demo::App;

mod certs;
mod live;
pub mod prometheus;
pub use certs::CertsError;
use live::{Live, Starter};

/// The annotation that asks `weft up` to run a demo application for a
/// WorkloadEntry.
pub const DEMO_ANNOTATION: &str = "weft.dev/demo";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayMode {
    /// A weft proxy in this process.
    Weft,
    /// Left to a proxy started by the user.
    None,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub control: weft_control::run::Options,
    pub gateway: GatewayMode,
}

impl Options {
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            control: weft_control::run::Options::new(dir),
            gateway: GatewayMode::Weft,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{0}")]
    Control(#[from] weft_control::server::ServeError),
    #[error("{workload}: {source}")]
    Demo {
        workload: String,
        source: weft_demo::DemoError,
    },
    #[error("{workload}: the demo application needs a Sidecar ingress defaultEndpoint (127.0.0.1:PORT), found {found:?}")]
    NoEndpoint {
        workload: String,
        found: Option<String>,
    },
    #[error("proxy {node}: {message}")]
    Proxy { node: String, message: String },
    #[error("workload certificates: {0}")]
    Certs(#[from] CertsError),
}

#[derive(Clone, Debug)]
pub struct AppPlan {
    pub workload: String,
    pub app: App,
    pub listen: SocketAddr,
    pub egress: Option<SocketAddr>,
}

/// What `weft up` will run for a directory.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub proxies: Vec<Identity>,
    pub apps: Vec<AppPlan>,
    /// Gateway ports clients can use (`http://127.0.0.1:PORT/`).
    pub gateway_ports: Vec<u32>,
    /// Of those, the ones whose server terminates TLS, with the first
    /// host it answers (`https://HOST:PORT/`).
    pub https: Vec<(u32, String)>,
}

/// Whether a Gateway makes the workload with `labels` a gateway proxy.
/// Its selector (the mesh model's reading) applies it to the gateway
/// workloads it matches, and to every one when empty — but an empty one
/// names none, so only a Gateway with labels can make a workload one.
fn selects(selector: &Map<String, String>, labels: &Map<String, String>) -> bool {
    !selector.is_empty() && weft_config::mesh::Selector::gateway(selector).matches(labels)
}

/// Reads the plan from the directory's objects.
pub fn plan<R: AsRef<Resource>>(resources: &[R]) -> Result<Plan, UpError> {
    use weft_api::sidecar::CaptureMode;
    let ctx = Context::build(resources, Default::default());
    let mut plan = Plan::default();
    for r in resources.iter().map(AsRef::as_ref) {
        let Spec::WorkloadEntry(we) = &r.object.spec else {
            continue;
        };
        let name = r.object.name().to_string();
        let namespace = namespace_of(&r.object).to_string();
        let ip = we.address.clone().unwrap_or_else(|| "127.0.0.1".into());
        let gateways: Vec<_> = ctx
            .gateways
            .iter()
            .filter(|g| selects(&g.spec.selector, &we.labels))
            .collect();
        if !gateways.is_empty() {
            for g in gateways {
                for s in &g.spec.servers {
                    if !plan.gateway_ports.contains(&s.port.number) {
                        plan.gateway_ports.push(s.port.number);
                    }
                    let terminated = s.tls.as_ref().is_some_and(weft_control::gen::terminates);
                    let host = s.hosts.first().map(|h| h.rsplit('/').next().unwrap_or(h));
                    if let (true, Some(host)) = (terminated, host) {
                        plan.https.push((s.port.number, host.to_string()));
                    }
                }
            }
            plan.proxies.push(Identity {
                kind: ProxyKind::Router,
                name,
                namespace,
                ip,
                service_account: we.service_account.clone(),
                labels: we
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
            continue;
        }
        let sidecar = ctx.sidecar_for(&namespace, &we.labels);
        let none = |m: Option<CaptureMode>| m == Some(CaptureMode::NONE);
        let Some(sc) = sidecar.filter(|s| {
            s.spec.ingress.iter().any(|i| none(i.capture_mode))
                || s.spec.egress.iter().any(|e| none(e.capture_mode))
        }) else {
            continue;
        };
        let demo = r
            .object
            .meta
            .annotations()
            .and_then(|a| a.get(DEMO_ANNOTATION));
        if demo.map(String::as_str) == Some("bookinfo") {
            let label = |k: &str| we.labels.get(k).cloned().unwrap_or_default();
            let app = App::from_labels(&label("app"), &label("version")).map_err(|source| {
                UpError::Demo {
                    workload: name.clone(),
                    source,
                }
            })?;
            let endpoint = sc
                .spec
                .ingress
                .first()
                .and_then(|i| i.default_endpoint.clone());
            let listen = endpoint
                .as_deref()
                .and_then(|e| e.parse::<SocketAddr>().ok())
                .ok_or_else(|| UpError::NoEndpoint {
                    workload: name.clone(),
                    found: endpoint.clone(),
                })?;
            let egress = sc.spec.egress.iter().find_map(|e| {
                let ip = e.bind.as_deref()?.parse().ok()?;
                Some(SocketAddr::new(
                    ip,
                    u16::try_from(e.port.as_ref()?.number).ok()?,
                ))
            });
            plan.apps.push(AppPlan {
                workload: name.clone(),
                app,
                listen,
                egress,
            });
        }
        plan.proxies.push(Identity {
            kind: ProxyKind::Sidecar,
            name,
            namespace,
            ip,
            service_account: we.service_account.clone(),
            labels: we
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
    }
    Ok(plan)
}

/// A running local mesh; everything stops when it is dropped.
pub struct Running {
    pub control: weft_control::run::Running,
    /// The plan at start (what runs follows the directory since).
    pub plan: Plan,
    /// Each proxy started at start, and its admin address.
    pub proxies: Vec<(Identity, Option<SocketAddr>)>,
    live: Arc<tokio::sync::Mutex<Live>>,
    follow: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.follow.abort();
        // The proxies and apps stop when `Live` goes, with the last of
        // this and the aborted task.
    }
}

pub async fn start(opts: Options) -> Result<Running, UpError> {
    let mut dir = weft_control::source::ConfigDir::new(&opts.control.config_dir);
    dir.scan();
    let plan = plan(&dir.resources())?;
    let control = weft_control::run::start(opts.control.clone()).await?;
    let issuer = match &control.ca {
        Some(ca) => Some(certs::Issuer::new(Arc::clone(&ca.ca), certs::socket_dir())?),
        None => None,
    };
    let starter = Starter {
        xds: control.xds,
        gateway: opts.gateway,
        issuer,
    };
    let mut live = Live::default();
    if let Some(e) = live.apply(&plan, &starter).await.into_iter().next() {
        return Err(e);
    }
    let proxies = live
        .proxies
        .values()
        .map(|p| (p.who.clone(), p.running.admin))
        .collect();
    let live = Arc::new(tokio::sync::Mutex::new(live));
    let follow = tokio::spawn(follow(
        dir,
        control.server.clone(),
        Arc::clone(&live),
        starter,
    ));
    Ok(Running {
        control,
        plan,
        proxies,
        live,
        follow,
    })
}

/// Keeps what runs in step with the directory: after each push, the
/// plan is read again and applied.
async fn follow(
    mut dir: weft_control::source::ConfigDir,
    server: weft_control::server::AdsServer,
    live: Arc<tokio::sync::Mutex<Live>>,
    starter: Starter,
) {
    let mut pushes = server.subscribe();
    while pushes.changed().await.is_ok() {
        if !dir.scan().changed {
            continue;
        }
        match plan(&dir.resources()) {
            Ok(plan) => {
                for e in live.lock().await.apply(&plan, &starter).await {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => tracing::warn!("{e}; what runs is left as it is"),
        }
    }
}

impl Running {
    /// The proxies running now.
    pub async fn running_proxies(&self) -> Vec<Identity> {
        let live = self.live.lock().await;
        live.proxies.values().map(|p| p.who.clone()).collect()
    }

    /// Waits until every started proxy has accepted its configuration;
    /// the NACKs and proxies still unsynced after `within`.
    pub async fn settle(&self, within: std::time::Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self.control.server.status();
            let mut problems = Vec::new();
            for node in self
                .live
                .lock()
                .await
                .proxies
                .keys()
                .cloned()
                .collect::<Vec<_>>()
            {
                match status.iter().find(|p| p.id == node) {
                    None => problems.push(format!("{node}: not connected")),
                    Some(p) => {
                        for (kind, t) in &p.types {
                            if let Some(n) = &t.nack {
                                problems.push(format!("{node}: {} rejected: {n}", kind.xds()));
                            } else if t.sent != t.acked {
                                problems
                                    .push(format!("{node}: {} not acknowledged yet", kind.xds()));
                            }
                        }
                        if p.types.len() < 4 {
                            problems.push(format!("{node}: still subscribing"));
                        }
                    }
                }
            }
            if problems.is_empty() || tokio::time::Instant::now() >= deadline {
                return problems;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}
