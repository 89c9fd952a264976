//! Keep-alive HTTP/1.1 from the generator: a connection, one request
//! (its status and whole body), and the closed loop that measures the
//! maximum rate through a proxy and the proxies' CPU per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::procs::Proxy;

/// The sending half of an HTTP/1.1 client connection (plaintext or TLS:
/// the type does not say which).
pub type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// What the closed loop sends: a request made anew for each send.
pub type Request = http::Request<Empty<Bytes>>;

/// A keep-alive HTTP/1.1 connection to 127.0.0.1:`port` (no Nagle).
pub async fn connect(port: u16) -> std::io::Result<H1> {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// `GET path` with `host: server.bench` and nothing else.
pub fn request(path: &str) -> Request {
    http::Request::builder()
        .uri(path)
        .header("host", "server.bench")
        .body(Empty::new())
        .unwrap()
}

/// Sends `req` on `conn`; its status once the whole body is read, or
/// `None` when the connection failed.
pub async fn send(conn: &mut H1, req: Request) -> Option<u16> {
    conn.ready().await.ok()?;
    let r = conn.send_request(req).await.ok()?;
    let status = r.status().as_u16();
    r.into_body().collect().await.ok()?;
    Some(status)
}

/// [`send`] with [`request`]`(path)`; whether it got a 200 and all of
/// its body.
pub async fn get(conn: &mut H1, path: &str) -> bool {
    send(conn, request(path)).await == Some(200)
}

/// What a closed-loop run measured.
pub struct MaxRate {
    /// 200s per second.
    pub rps: f64,
    /// CPU seconds per 100k 200s of each proxy given, in order.
    pub cpu_per_100k: Vec<f64>,
    /// Responses by status (200s included).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests with no response (the connection failed).
    pub failed: u64,
}

impl MaxRate {
    /// Responses other than 200, and requests with none.
    pub fn errors(&self) -> u64 {
        let not_ok: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, n)| n)
            .sum();
        not_ok + self.failed
    }
}

/// Keep-alive connections and requests in flight in the closed loop.
pub const CLOSED_LOOP_CONNS: usize = 64;

/// Closed loop with 64 requests in flight on 64 keep-alive connections
/// to 127.0.0.1:`port` for `secs`, each request made by `make`; CPU of
/// `proxies` over the same interval. Each connection first sends one
/// request of its own (not counted), so each hop's pool fills before
/// the clock starts.
pub async fn max_rps<F>(port: u16, proxies: &[&Proxy], secs: f64, make: F) -> MaxRate
where
    F: Fn() -> Request + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let mut warm = Vec::new();
    for _ in 0..CLOSED_LOOP_CONNS {
        let mut c = connect(port).await.expect("connect");
        let make = Arc::clone(&make);
        warm.push(tokio::spawn(async move {
            send(&mut c, make()).await;
            c
        }));
    }
    let mut conns = Vec::new();
    for w in warm {
        conns.push(w.await.expect("warm-up"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Mutex::new((BTreeMap::<u16, u64>::new(), 0u64)));
    let cpu0: Vec<f64> = proxies.iter().map(|p| p.cpu_seconds()).collect();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (stop, totals, make) = (Arc::clone(&stop), Arc::clone(&totals), Arc::clone(&make));
        tasks.push(tokio::spawn(async move {
            // Counted per task, added up once at the end: no shared
            // counter on the hot path.
            let (mut statuses, mut failed) = (BTreeMap::<u16, u64>::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                match send(&mut conn, make()).await {
                    Some(s) => *statuses.entry(s).or_default() += 1,
                    None => {
                        failed += 1;
                        match connect(port).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            let mut t = totals.lock().unwrap();
            for (s, n) in statuses {
                *t.0.entry(s).or_default() += n;
            }
            t.1 += failed;
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (statuses, failed) = std::mem::take(&mut *totals.lock().unwrap());
    let n = statuses.get(&200).copied().unwrap_or(0) as f64;
    MaxRate {
        rps: n / elapsed,
        cpu_per_100k: proxies
            .iter()
            .zip(cpu0)
            .map(|(p, c0)| (p.cpu_seconds() - c0) / n.max(1.0) * 100_000.0)
            .collect(),
        statuses,
        failed,
    }
}
