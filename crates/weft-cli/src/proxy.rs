//! `weft proxy`: load a bootstrap, compile it, serve until SIGTERM or
//! `/quitquitquit`, then drain.

use std::path::Path;
use std::time::Duration;

/// Exit codes: 0 after a clean shutdown, 1 for a bootstrap that cannot
/// be loaded or compiled (the error names the field), 2 when a port
/// cannot be bound.
pub fn run(
    config: &Path,
    concurrency: usize,
    drain_seconds: u64,
    validate: bool,
) -> anyhow::Result<u8> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
        running.wait(Duration::from_secs(drain_seconds)).await;
        Ok(0)
    })
}
