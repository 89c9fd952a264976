//! `weft control` assembled: the configuration directory watched and
//! debounced into snapshots, the ADS server, and the debug endpoint
//! (`/ready`, `/debug/syncz` — what `weft proxy-status` reads).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::context::Context;
use crate::server::{AdsServer, ServeError, Snapshot};
use crate::source::{mesh_config, ConfigDir};

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
}

impl Options {
    pub fn new(config_dir: impl Into<PathBuf>) -> Options {
        Options {
            config_dir: config_dir.into(),
            xds: ([127, 0, 0, 1], 15010).into(),
            debug: ([127, 0, 0, 1], 15014).into(),
            debounce: Duration::from_millis(100),
            poll: Duration::from_secs(1),
        }
    }
}

/// A running control plane; stops when dropped.
pub struct Running {
    pub server: AdsServer,
    pub xds: SocketAddr,
    pub debug: SocketAddr,
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
    let mut dir = ConfigDir::new(&opts.config_dir);
    let first = dir.scan();
    for p in &first.problems {
        tracing::warn!("{p}");
    }
    let mut version = 1;
    let server = AdsServer::new(build(&dir, version, None));
    // Loading freed the files' text and parse trees.
    crate::memory::release_now();
    let (xds, ads_task) = server.clone().serve(opts.xds).await?;
    let (debug, debug_task) = serve_debug(opts.debug, server.clone()).await?;
    let watcher = {
        let server = server.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            let (mut changes, _notify) = watch(&opts);
            loop {
                changes.next(opts.poll).await;
                let noticed = std::time::Instant::now();
                let scan = dir.scan();
                for p in &scan.problems {
                    tracing::warn!("{p}");
                }
                if !scan.changed {
                    continue;
                }
                // Debounce (Istio's PILOT_DEBOUNCE_AFTER / _MAX): push once
                // the directory has been quiet for `debounce`, or after
                // ten times that while it keeps changing.
                let started = tokio::time::Instant::now();
                let mut changed = scan.changes;
                // Without notifications, only a rescan can tell.
                let mut more = !changes.notifies();
                while started.elapsed() < opts.debounce * 10 && changes.within(opts.debounce).await
                {
                    more = true;
                }
                if more {
                    let again = dir.scan();
                    for p in &again.problems {
                        tracing::warn!("{p}");
                    }
                    changed.extend(again.changes);
                }
                version += 1;
                let t = std::time::Instant::now();
                let snapshot = build(&dir, version, Some((&server.snapshot().ctx, &changed)));
                tracing::info!(
                    version,
                    build_ms = t.elapsed().as_secs_f64() * 1e3,
                    since_noticed_ms = noticed.elapsed().as_secs_f64() * 1e3,
                    "configuration changed; pushing"
                );
                server.publish(snapshot);
                // The old snapshot goes once every stream has moved on;
                // the streams call this too as they answer.
                crate::memory::release_soon();
            }
        })
    };
    Ok(Running {
        server,
        xds,
        debug,
        tasks: vec![ads_task, debug_task, watcher],
    })
}

/// Change notifications for the configuration directory: the kernel's
/// (inotify) where it gives them, else nothing, and the caller polls.
struct Changes {
    rx: Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
}

impl Changes {
    /// Until something under the directory changed, or `poll` passed
    /// (a rescan then finds what notifications missed: a full inotify
    /// queue, a file system without them).
    async fn next(&mut self, poll: Duration) {
        match &mut self.rx {
            Some(rx) => {
                let _ = tokio::time::timeout(poll, rx.recv()).await;
                while rx.try_recv().is_ok() {}
            }
            None => tokio::time::sleep(poll.min(Duration::from_millis(50))).await,
        }
    }

    /// Whether changes are notified (else only a rescan finds them).
    fn notifies(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether anything changed within `d`.
    async fn within(&mut self, d: Duration) -> bool {
        match &mut self.rx {
            Some(rx) => {
                let changed = matches!(tokio::time::timeout(d, rx.recv()).await, Ok(Some(())));
                while rx.try_recv().is_ok() {}
                changed
            }
            None => {
                tokio::time::sleep(d).await;
                false
            }
        }
    }
}

/// Starts watching `opts.config_dir`; the watcher must be kept alive.
fn watch(opts: &Options) -> (Changes, Option<notify::RecommendedWatcher>) {
    use notify::Watcher;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if e.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })
    .and_then(|mut w| {
        w.watch(&opts.config_dir, notify::RecursiveMode::Recursive)
            .map(|()| w)
    });
    match watcher {
        Ok(w) => (Changes { rx: Some(rx) }, Some(w)),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); rescanning it every {:?}",
                opts.config_dir.display(),
                opts.poll.min(Duration::from_millis(50))
            );
            (Changes { rx: None }, None)
        }
    }
}

/// The directory's snapshot `version`; with the previous context and
/// what changed since, what did not change is kept.
fn build(
    dir: &ConfigDir,
    version: u64,
    previous: Option<(&Context, &crate::context::Changes)>,
) -> Snapshot {
    let resources = dir.resources();
    let mut problems = Vec::new();
    let mesh = mesh_config(&resources, &mut problems);
    for p in problems {
        tracing::warn!("{p}");
    }
    let ctx = match previous {
        Some((prev, changes)) => Context::rebuild(prev, &resources, mesh, changes),
        None => Context::build(&resources, mesh),
    };
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
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(debug_response(&server, req.uri())) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn debug_response(server: &AdsServer, uri: &hyper::Uri) -> hyper::Response<Full<Bytes>> {
    let path = uri.path();
    let (status, body) = match path {
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
                    json!({"proxy": p.id, "snapshot": p.snapshot, "types": types})
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
            if status == 200 && path != "/ready" {
                "application/json"
            } else {
                "text/plain"
            },
        )
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}
