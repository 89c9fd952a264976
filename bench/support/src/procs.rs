//! The processes measured: a proxy (Envoy or weft, one worker, pinned
//! to core 0) started on a bootstrap file, its CPU seconds and RSS read
//! from /proc, and the wait for its admin `/ready`; and the backend, a
//! process of its own on the generator's core, whose CPU counts with the
//! generator's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioExecutor;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Envoy,
    Weft,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Envoy => "envoy",
            Kind::Weft => "weft",
        }
    }

    fn command(self) -> (String, Vec<&'static str>) {
        match self {
            Kind::Envoy => (
                std::env::var("WEFT_ENVOY").unwrap_or_else(|_| "envoy".into()),
                // Two Envoys may run at once (bench/mtls's client and
                // server side).
                vec!["--concurrency", "1", "--use-dynamic-base-id", "-l", "error"],
            ),
            Kind::Weft => (
                std::env::var("WEFT_BIN").unwrap_or_else(|_| "target/release/weft".into()),
                vec!["proxy", "--concurrency", "1"],
            ),
        }
    }
}

pub struct Proxy {
    child: Child,
    pub label: String,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in seconds (0 once it is gone).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces and ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0 // USER_HZ is 100 on Linux
}

/// VmRSS of a process, in MiB.
pub fn rss_mib_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl Proxy {
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }

    pub fn rss_mib(&self) -> f64 {
        rss_mib_of(self.child.id())
    }

    /// The end of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Starts `kind` on `bootstrap` pinned to core 0 and waits until its
/// admin port (`admin`) answers `/ready` with 200.
pub async fn start(kind: Kind, side: &str, bootstrap: &Path, admin: u16, dir: &Path) -> Proxy {
    let (program, args) = kind.command();
    let label = format!("{} {side}", kind.name());
    let log = dir.join(format!("{}-{side}.log", kind.name()));
    let child = Command::new("taskset")
        .args(["-c", "0", &program])
        .args(&args)
        .arg("-c")
        .arg(bootstrap)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut proxy = Proxy { child, label, log };
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://127.0.0.1:{admin}/ready").parse().unwrap();
    for _ in 0..200 {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!(
                "{} exited ({status}) on {}:\n{}",
                proxy.label,
                bootstrap.display(),
                proxy.log_tail()
            );
        }
        if let Ok(r) = client.get(uri.clone()).await {
            if r.status() == 200 {
                return proxy;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} did not become ready:\n{}",
        proxy.label,
        proxy.log_tail()
    );
}

/// The backend's process, whose CPU counts with the generator's.
static BACKEND_PID: AtomicU32 = AtomicU32::new(0);

/// CPU seconds used so far on the generator's core: this process and the
/// backend started by [`spawn_backend`].
pub fn generator_core_seconds() -> f64 {
    cpu_seconds_of(std::process::id()) + cpu_seconds_of(BACKEND_PID.load(Ordering::Relaxed))
}

/// The backend's process, ended when this is dropped (also when the
/// bench stops on a panic).
pub struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this program again with `args` (its backend sub-command), on
/// the generator's core as this process is, and remembers its pid for
/// [`generator_core_seconds`].
pub fn spawn_backend(args: &[String]) -> Backend {
    let child = Command::new(std::env::current_exe().expect("this program's path"))
        .args(args)
        .spawn()
        .expect("the backend process");
    BACKEND_PID.store(child.id(), Ordering::Relaxed);
    Backend(child)
}

/// A port free on 127.0.0.1 now (the OS's pick).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
