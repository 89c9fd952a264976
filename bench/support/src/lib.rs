//! What weft's benchmarks against Envoy share (bench/mtls, bench/authz;
//! bench/proxy reads CPU and RSS through it):
//!
//! - [`procs`]: a proxy (Envoy or weft, one worker, pinned to core 0)
//!   started on a bootstrap file, its CPU seconds and RSS from /proc,
//!   the backend process whose CPU counts with the generator's;
//! - [`backend`]: the plaintext HTTP backend, run as a process of its
//!   own;
//! - [`h1`]: keep-alive HTTP/1.1 connections, one request, and the
//!   closed loop that measures the maximum rate and the proxies' CPU
//!   per request;
//! - [`runtime`], [`arg`], [`arg_or`] and [`median`].

pub mod backend;
pub mod h1;
pub mod procs;

/// The generator's runtime: one worker thread (the bench scripts pin
/// the generator's process to one core).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Argument `i` parsed; panics with `usage` (the program's name and
/// its sub-command's arguments) when it is missing or does not parse.
pub fn arg<T: std::str::FromStr>(args: &[String], i: usize, usage: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("usage: {usage}"))
}

/// Argument `i` parsed, or `default` when it is missing or does not
/// parse.
pub fn arg_or<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// The middle value (the upper one of an even count); `NaN` for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
