//! Plaintext HTTP/1.1 load into the client-side proxy (or the backend,
//! for the floor): a closed loop for the maximum rate (the shared one in
//! weft-bench-support) and an open loop at a fixed rate for latency, as
//! bench/proxy's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_bench_support::h1::{self, connect, get, MaxRate, H1};
use weft_bench_support::procs::Proxy;

async fn conns(port: u16, n: usize) -> Vec<H1> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect(port).await.expect("connect"));
    }
    out
}

/// Closed loop with 64 requests in flight on 64 keep-alive connections
/// for `secs`; CPU of `proxies` over the same interval.
pub async fn max_rps(port: u16, proxies: &[&Proxy], secs: f64) -> MaxRate {
    h1::max_rps(port, proxies, secs, || h1::request("/bench")).await
}

/// Open loop at `rate` requests per second: each request's latency counts
/// from when it was due, so a stall is not hidden (no coordinated
/// omission). Returns p50, p99 in milliseconds, and the error count.
pub async fn latency_at(port: u16, rate: f64, secs: f64) -> ([f64; 2], u64) {
    let workers = 64;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let lat = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut conn in conns(port, workers).await {
        let (rx, lat, errors) = (Arc::clone(&rx), Arc::clone(&lat), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            loop {
                let due = { rx.lock().await.recv().await };
                let Some(due) = due else { break };
                if get(&mut conn, "/latency").await {
                    lat.lock()
                        .unwrap()
                        .push(due.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(c) = connect(port).await {
                        conn = c;
                    }
                }
            }
        }));
    }
    // Paced by an OS thread: tokio's timer wheel rounds to whole
    // milliseconds, which would count up to 1 ms of the generator's own
    // lateness against the proxies.
    let total = (rate * secs) as u64;
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send(due).is_err() {
                break;
            }
        }
    });
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    for t in tasks {
        let _ = t.await;
    }
    let mut v = lat.lock().unwrap().clone();
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| {
        v.get(((v.len() as f64 * f) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    ([q(0.50), q(0.99)], errors.load(Ordering::Relaxed))
}
