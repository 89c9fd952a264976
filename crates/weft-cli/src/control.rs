//! `weft control` (the control plane on a configuration directory) and
//! `weft proxy-status` (what each connected proxy has accepted).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

pub struct Args {
    pub config: PathBuf,
    pub xds: SocketAddr,
    pub debug: SocketAddr,
    pub debounce: Duration,
    /// The CA and secure port; off when `None`.
    pub ca: Option<weft_control::ca::SecureOptions>,
}

/// Exit codes: 0 after Ctrl-C / SIGTERM, 1 when the directory or the
/// CA's files cannot be read, 2 when a port cannot be bound.
pub fn run(args: Args) -> anyhow::Result<u8> {
    crate::proxy::init_logging();
    if !args.config.is_dir() {
        eprintln!("error: {}: not a directory", args.config.display());
        return Ok(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut opts = weft_control::run::Options::new(&args.config);
        opts.xds = args.xds;
        opts.debug = args.debug;
        opts.debounce = args.debounce;
        opts.ca = args.ca;
        let running = match weft_control::run::start(opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                let bind = matches!(e, weft_control::server::ServeError::Bind { .. });
                return Ok(if bind { 2 } else { 1 });
            }
        };
        if let Some(ca) = &running.ca {
            eprintln!(
                "CA: secure port {} (CA and xDS over TLS); root certificate {}; agents authenticate with the join token in {}",
                ca.address,
                ca.root_cert_path().display(),
                ca.join_token_path().display()
            );
        }
        tracing::info!(
            xds = %running.xds,
            debug = %running.debug,
            config = %args.config.display(),
            "control plane serving"
        );
        shutdown_signal().await;
        tracing::info!("stopping");
        drop(running);
        Ok(0)
    })
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A plain HTTP/1.0 GET; the debug endpoint is local and tiny.
pub(crate) fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
        format!("cannot reach the control plane at {addr} (is `weft control` running?)")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed answer from the control plane")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        anyhow::bail!(
            "{addr}{path}: {} {}",
            head.lines().next().unwrap_or_default(),
            body.trim()
        );
    }
    Ok(body.to_string())
}

/// istioctl's proxy-status: one row per proxy, each type SYNCED (the
/// proxy accepted what it was last sent), STALE (a response is not
/// acknowledged yet), NACK (the proxy rejected it) or NOT SENT.
pub fn proxy_status(control: SocketAddr, json: bool) -> anyhow::Result<u8> {
    let body = get(control, "/debug/syncz")?;
    if json {
        print!("{body}");
        return Ok(0);
    }
    let doc: serde_json::Value =
        serde_json::from_str(&body).context("control plane sent bad JSON")?;
    let mut rows = vec![vec![
        "NAME".to_string(),
        "CDS".into(),
        "LDS".into(),
        "EDS".into(),
        "RDS".into(),
        "VERSION".into(),
    ]];
    let mut nacks = Vec::new();
    for p in doc["proxies"].as_array().into_iter().flatten() {
        let id = p["proxy"].as_str().unwrap_or_default();
        let mut row = vec![id.to_string()];
        for t in ["CDS", "LDS", "EDS", "RDS"] {
            let s = &p["types"][t];
            let cell = if s.is_null() || s["sent"] == "" {
                "NOT SENT"
            } else if !s["nack"].is_null() {
                nacks.push(format!(
                    "{id} {t}: {}",
                    s["nack"].as_str().unwrap_or_default()
                ));
                "NACK"
            } else if s["sent"] == s["acked"] {
                "SYNCED"
            } else {
                "STALE"
            };
            row.push(cell.into());
        }
        row.push(doc["version"].to_string());
        rows.push(row);
    }
    crate::proxy_config::table(rows, "   ");
    for n in nacks {
        println!("\n{n}");
    }
    Ok(0)
}
