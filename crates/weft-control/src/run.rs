//! `weft control` assembled: a configuration source (the watched
//! directory) followed, its changes debounced into snapshots, the ADS
//! server, the debug endpoint (`/ready`, `/debug/syncz` — what
//! `weft proxy-status` reads —, `/metrics` and
//! `/debug/prometheus-targets`, `crate::metrics`), and, when asked, the
//! CA with its secure port (`crate::ca`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use weft_config::Resource;

use crate::context::Context;
use crate::debounce::Debounce;
use crate::metrics::{targets, Pilot, Trigger};
use crate::server::{AdsServer, ServeError, Snapshot};
use crate::source::{mesh_config, Source, Tally, WatchedDir};

#[derive(Clone, Debug)]
pub struct Options {
    pub config_dir: PathBuf,
    /// ADS (Istio: 15010).
    pub xds: SocketAddr,
    /// Readiness and debug (Istio: 15014).
    pub debug: SocketAddr,
    /// How long changes must be quiet before a push (Istio's
    /// PILOT_DEBOUNCE_AFTER, 100 ms).
    pub debounce: Duration,
    /// How often the directory is rescanned with no change notified:
    /// a safety net when the kernel's notifications work, the only way
    /// to see changes when they do not (then at most every 50 ms).
    pub poll: Duration,
    /// The CA and the secure port (Istio: 15012); off when `None`.
    pub ca: Option<crate::ca::SecureOptions>,
}

impl Options {
    pub fn new(config_dir: impl Into<PathBuf>) -> Options {
        Options {
            config_dir: config_dir.into(),
            xds: ([127, 0, 0, 1], 15010).into(),
            debug: ([127, 0, 0, 1], 15014).into(),
            debounce: Duration::from_millis(100),
            poll: Duration::from_secs(1),
            ca: None,
        }
    }
}

/// A running control plane; stops when dropped.
pub struct Running {
    pub server: AdsServer,
    pub xds: SocketAddr,
    pub debug: SocketAddr,
    /// The CA and where its secure port listens, when it runs.
    pub ca: Option<crate::ca::MeshCa>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Loads the directory, starts serving, and keeps watching it.
pub async fn start(opts: Options) -> Result<Running, ServeError> {
    let source = WatchedDir::new(&opts.config_dir);
    start_with(source, &opts).await
}

/// Starts serving what `source` holds, and keeps following it: each
/// change is let settle ([`Debounce`]: quiet for `opts.debounce`, at most
/// ten times that), then built and published.
pub async fn start_with<S: Source + 'static>(
    mut source: S,
    opts: &Options,
) -> Result<Running, ServeError> {
    let metrics = Arc::new(Pilot::new());
    let mut tally = Tally::default();
    let first = source.read();
    for p in &first.problems {
        tracing::warn!("{p}");
    }
    tally.record(&first, &metrics);
    drop(first);
    let mut version = 1;
    let jwks = crate::jwks::Resolver::new();
    let snapshot = build(&source.objects(), version, None, &jwks, &metrics).await;
    let server = AdsServer::with_metrics(snapshot, Arc::clone(&metrics));
    // Loading freed the files' text and parse trees.
    crate::memory::release_now();
    let (xds, ads_task) = server.clone().serve(opts.xds).await?;
    let mut tasks = vec![ads_task];
    let stop = |tasks: &[tokio::task::JoinHandle<()>]| tasks.iter().for_each(|t| t.abort());
    // The CA before the debug endpoint: once `/ready` answers, agents
    // can get certificates.
    let ca = match &opts.ca {
        Some(secure) => match crate::ca::start(secure, &opts.config_dir, server.clone()).await {
            Ok((ca, task)) => {
                tasks.push(task);
                Some(ca)
            }
            Err(e) => {
                stop(&tasks);
                return Err(e);
            }
        },
        None => None,
    };
    let debug = match serve_debug(opts.debug, server.clone()).await {
        Ok((debug, task)) => {
            tasks.push(task);
            debug
        }
        Err(e) => {
            stop(&tasks);
            return Err(e);
        }
    };
    // Key sets fetched by URL are fetched again now and then; a change
    // rebuilds the snapshot with them.
    tasks.push(tokio::spawn(jwks.clone().refresh(crate::jwks::REFRESH, {
        let server = server.clone();
        move || {
            server
                .snapshot()
                .ctx
                .jwks_sources()
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        }
    })));
    let debounce = Debounce::new(opts.debounce);
    // Without notifications, only looking finds changes: often.
    let poll = if source.notifies() {
        opts.poll
    } else {
        opts.poll.min(Duration::from_millis(50))
    };
    let follow = {
        let server = server.clone();
        tokio::spawn(async move {
            loop {
                // Told of a change, or the poll's rescan (a safety net);
                // or refreshed keys: the same objects built again.
                let woken = tokio::select! {
                    told = source.wait(poll) => Some(told),
                    () = jwks.changed() => None,
                };
                let Some(told) = woken else {
                    version += 1;
                    let previous = server.snapshot();
                    let unchanged = crate::context::Changes::default();
                    let since = Some((&*previous.ctx, &unchanged));
                    let snapshot = build(&source.objects(), version, since, &jwks, &metrics).await;
                    tracing::info!(version, "RequestAuthentication keys changed; pushing");
                    metrics.trigger(Trigger::Unknown);
                    server.publish(snapshot);
                    continue;
                };
                let noticed = std::time::Instant::now();
                if told {
                    // Read once the burst has settled: a file being
                    // rewritten is not read truncated (an empty file is
                    // valid, and would become the last good version of a
                    // rewrite that turns out broken).
                    debounce.settle(&mut source).await;
                }
                let mut batch = source.read();
                for p in &batch.problems {
                    tracing::warn!("{p}");
                }
                if batch.is_empty() {
                    // Objects read (and checked) that changed nothing.
                    tally.record(&batch, &metrics);
                    continue;
                }
                // Found by looking: let it settle, and look again.
                if !told && (debounce.settle(&mut source).await > 0 || !source.notifies()) {
                    let again = source.read();
                    for p in &again.problems {
                        tracing::warn!("{p}");
                    }
                    batch.extend(again);
                }
                tally.record(&batch, &metrics);
                metrics.debounce.since(noticed);
                version += 1;
                let t = std::time::Instant::now();
                let previous = server.snapshot();
                let changes = batch.changes();
                let since = changes.as_ref().map(|c| (&*previous.ctx, c));
                let snapshot = build(&source.objects(), version, since, &jwks, &metrics).await;
                drop(batch);
                tracing::info!(
                    version,
                    build_ms = t.elapsed().as_secs_f64() * 1e3,
                    since_noticed_ms = noticed.elapsed().as_secs_f64() * 1e3,
                    "configuration changed; pushing"
                );
                server.publish_noticed(snapshot, noticed);
                drop(previous);
                // The old snapshot goes once every stream has moved on;
                // the streams call this too as they answer.
                crate::memory::release_soon();
            }
        })
    };
    tasks.push(follow);
    Ok(Running {
        server,
        xds,
        debug,
        ca,
        tasks,
    })
}

/// Snapshot `version` of `resources`; with the previous context and
/// what changed since, what did not change is kept. The key sets its
/// RequestAuthentications name by URL are resolved (fetched when not
/// cached) before it is compiled: compiling does no I/O. Its time is
/// istiod's `pilot_pushcontext_init_seconds`.
async fn build(
    resources: &[&Resource],
    version: u64,
    previous: Option<(&Context, &crate::context::Changes)>,
    jwks: &crate::jwks::Resolver,
    metrics: &Pilot,
) -> Snapshot {
    let started = std::time::Instant::now();
    let mut problems = Vec::new();
    let mesh = mesh_config(resources, &mut problems);
    for p in problems {
        tracing::warn!("{p}");
    }
    let mut ctx = match previous {
        Some((prev, changes)) => Context::rebuild(prev, resources, mesh, changes),
        None => Context::build(resources, mesh),
    };
    let needed = ctx.jwks_sources();
    if !needed.is_empty() {
        ctx.jwks = Arc::new(jwks.resolve(&needed).await);
    }
    metrics.pushcontext_init.since(started);
    metrics.services.set(ctx.registry.services().count() as i64);
    metrics.virt_services.set(ctx.virtual_services.len() as i64);
    Snapshot {
        ctx: Arc::new(ctx),
        version,
    }
}

async fn serve_debug(
    addr: SocketAddr,
    server: AdsServer,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let (listener, local) = crate::server::bind("the debug endpoint", addr).await?;
    let host: Arc<str> = targets::hostname().into();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            let host = Arc::clone(&host);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    let me = Me {
                        debug: local,
                        host: Arc::clone(&host),
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(debug_response(&server, &me, req.uri()))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

/// The debug endpoint as Prometheus finds it: its address and the host
/// it runs on.
struct Me {
    debug: SocketAddr,
    host: Arc<str>,
}

fn debug_response(server: &AdsServer, me: &Me, uri: &hyper::Uri) -> hyper::Response<Full<Bytes>> {
    let path = uri.path();
    let (status, body) = match path {
        "/metrics" => (200, server.metrics().render()),
        "/debug/prometheus-targets" => {
            let proxies: Vec<_> = server
                .status()
                .into_iter()
                .filter_map(|p| p.scrape)
                .collect();
            let groups = targets::groups(me.debug, &me.host, &proxies);
            match serde_json::to_string_pretty(&groups) {
                Ok(json) => (200, json + "\n"),
                Err(e) => (500, format!("{e}\n")),
            }
        }
        "/debug/config_dump" => {
            let id = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("proxyID="))
                .map(|v| v.replace("%7E", "~").replace("%7e", "~"))
                .unwrap_or_default();
            match server.config_of(&id) {
                Some((node, output)) => {
                    let section = |k: weft_xds::Kind| {
                        output
                            .get(&k)
                            .map(|m| m.values().cloned().collect::<Vec<_>>())
                            .unwrap_or_default()
                    };
                    let body = json!({
                        "proxy": node,
                        "clusters": section(weft_xds::Kind::Cluster),
                        "endpoints": section(weft_xds::Kind::ClusterLoadAssignment),
                        "listeners": section(weft_xds::Kind::Listener),
                        "routes": section(weft_xds::Kind::RouteConfiguration),
                    });
                    (200, format!("{body:#}\n"))
                }
                None => (
                    404,
                    format!("no connected proxy {id:?} (see /debug/syncz)\n"),
                ),
            }
        }
        "/ready" => (200, "ready\n".to_string()),
        // Whether each key set RequestAuthentication names by URL could
        // be fetched: a rule whose keys could not is failing closed.
        "/debug/jwksz" => {
            let sets: Vec<_> = server
                .snapshot()
                .ctx
                .jwks
                .entries()
                .map(|(source, result)| match result {
                    Ok(_) => json!({"source": source.to_string(), "ok": true}),
                    Err(e) => json!({"source": source.to_string(), "ok": false, "error": e}),
                })
                .collect();
            (200, format!("{:#}\n", json!(sets)))
        }
        "/debug/syncz" => {
            let proxies: Vec<_> = server
                .status()
                .into_iter()
                .map(|p| {
                    let types: serde_json::Map<String, serde_json::Value> = p
                        .types
                        .iter()
                        .map(|(k, t)| {
                            (
                                k.xds().to_string(),
                                json!({"sent": t.sent, "acked": t.acked, "nack": t.nack}),
                            )
                        })
                        .collect();
                    json!({"proxy": p.id, "snapshot": p.snapshot, "types": types, "admin_port": p.admin_port})
                })
                .collect();
            let body = json!({"version": server.snapshot().version, "proxies": proxies});
            (200, format!("{body:#}\n"))
        }
        _ => (404, "not found\n".to_string()),
    };
    hyper::Response::builder()
        .status(status)
        .header(
            "content-type",
            match path {
                "/metrics" if status == 200 => crate::metrics::CONTENT_TYPE,
                "/ready" => "text/plain",
                _ if status == 200 => "application/json",
                _ => "text/plain",
            },
        )
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}
