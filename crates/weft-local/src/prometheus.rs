//! A Prometheus for the local mesh: Debian's `prometheus` (when it is
//! installed) started with one scrape job whose targets come from
//! `weft control`'s HTTP service discovery (`/debug/prometheus-targets`:
//! the control plane as `app="istiod"` and every proxy with its
//! namespace, pod, app and version), scraping every second so a person
//! trying the mesh sees numbers at once. Stopped with the mesh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// Not retryable: the data directory cannot be written.
    #[error("prometheus: {path}: {source}")]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not retryable as is: the binary cannot be run.
    #[error("prometheus: cannot start {binary}: {source}")]
    Start {
        binary: PathBuf,
        source: std::io::Error,
    },
}

/// `WEFT_PROMETHEUS`, else `prometheus` on the PATH.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEFT_PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// The configuration: Prometheus's own settings, one job, its targets
/// from `discovery` (the control plane's debug address).
pub fn config(discovery: SocketAddr) -> String {
    format!(
        "# Written by weft up: the mesh's proxies and control plane, as weft control lists them.\n\
         global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n\
         - job_name: weft\n  \
           http_sd_configs: [{{url: 'http://{discovery}/debug/prometheus-targets', refresh_interval: 1s}}]\n"
    )
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    child: Child,
    pub address: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` listening on `listen`, keeping its configuration and
/// data under `dir`. Readiness is Prometheus's own (`/-/ready`); callers
/// that need it wait for it.
pub fn start(
    binary: &Path,
    listen: SocketAddr,
    discovery: SocketAddr,
    dir: &Path,
) -> Result<Prometheus, PrometheusError> {
    let files = |path: &Path, source| PrometheusError::Files {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| files(dir, e))?;
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config(discovery)).map_err(|e| files(&file, e))?;
    let child = Command::new(binary)
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| PrometheusError::Start {
            binary: binary.to_path_buf(),
            source,
        })?;
    Ok(Prometheus {
        child,
        address: listen,
    })
}
