//! `weft proxy`: load a bootstrap, compile it, serve until SIGTERM or
//! `/quitquitquit`, then drain.

use std::path::Path;
use std::time::Duration;

/// Exit codes: 0 after a clean shutdown, 1 for a bootstrap that cannot
/// be loaded or compiled (the error names the field), 2 when a port
/// cannot be bound.
/// How long connections may go on: after SIGTERM, and after their
/// listener was replaced or removed.
pub struct Drain {
    pub shutdown: Duration,
    pub listener: Duration,
}

pub fn run(config: &Path, concurrency: usize, drain: Drain, validate: bool) -> anyhow::Result<u8> {
    init_logging();
    let bootstrap = match weft_envoy::load_bootstrap(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(concurrency.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let snapshot = match weft_proxy::Snapshot::compile(&bootstrap).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {}: {e}", config.display());
                return Ok(1);
            }
        };
        if validate {
            println!("configuration '{}' OK", config.display());
            return Ok(0);
        }
        let running = match weft_proxy::start(snapshot).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(2);
            }
        };
        running.shared.set_drain_time(drain.listener);
        let xds = match weft_proxy::xds::client(&running.shared, &bootstrap) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {}: {e}", config.display());
                return Ok(1);
            }
        };
        for (name, addr) in &running.listeners {
            tracing::info!(listener = %name, %addr, "listening");
        }
        if let Some(addr) = running.admin {
            tracing::info!(%addr, "admin listening");
        }
        let shared = running.shared.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down: draining connections");
            shared.shutdown();
        });
        // The ADS client runs here, on the main thread (block_on), not
        // on a worker; it ends when the proxy stops, and the drain goes on.
        let main_thread = async {
            if let Some(xds) = xds {
                xds.await;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = running.wait(drain.shutdown) => {}
            _ = main_thread => {}
        }
        Ok(0)
    })
}

/// Logs to stderr at `WEFT_LOG` (default info); the admin endpoint's
/// `POST /logging?level=` changes the level while running.
pub(crate) fn init_logging() {
    init_logging_at("info");
}

/// Logging at `default` unless `WEFT_LOG` says otherwise.
pub(crate) fn init_logging_at(default: &str) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{reload, EnvFilter};
    let start = std::env::var("WEFT_LOG").unwrap_or_else(|_| default.into());
    let filter = EnvFilter::try_new(&start).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    weft_proxy::admin::set_log_level_hook(
        &start,
        Box::new(move |level| {
            // Envoy's names; tracing has no "critical".
            let level = match level {
                "warning" => "warn",
                "critical" => "error",
                "trace" | "debug" | "info" | "warn" | "error" | "off" => level,
                other => {
                    return Err(format!(
                        "unknown level {other:?}; expected trace, debug, info, warning, error, critical or off"
                    ))
                }
            };
            handle
                .reload(EnvFilter::new(level))
                .map_err(|e| e.to_string())?;
            Ok(level.to_string())
        }),
    );
}
