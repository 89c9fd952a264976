//! Memory per idle connection: RSS of a freshly started proxy before and
//! after `n` connections are opened, used for one request each, and left
//! open and idle; the delta over `n`.
//!
//! - Direct: the bench's mTLS client to the server-side proxy (the
//!   connections' requests a few at a time, so the proxy's upstream pool
//!   to the backend stays small): one idle downstream mTLS connection.
//! - Through the client side: `n` plaintext connections to the
//!   client-side proxy, each with a request the backend holds until all
//!   `n` have arrived, so each hop opens `n` connections (HTTP/1.1 has
//!   one request per connection at a time); then all are answered and
//!   left idle. The client side then holds per connection a plaintext
//!   downstream and a pooled mTLS upstream one; the server side an mTLS
//!   downstream and a plaintext upstream one.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use weft_bench_support::h1::{connect, get, H1};
use weft_bench_support::procs::Proxy;

use crate::tls::Client;

/// The requests of the direct case in flight at once.
const OPEN_AT_ONCE: usize = 8;

/// RSS settles (allocator, kernel accounting) before it is read.
async fn settled_rss(p: &Proxy) -> f64 {
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.rss_mib()
}

fn kib_per(before: f64, after: f64, n: usize) -> f64 {
    (after - before) * 1024.0 / n as f64
}

/// Per idle downstream mTLS connection to the server side, KiB, and how
/// many of the `n` connections were opened and answered.
pub async fn direct(client: &Client, inbound: u16, server: &Proxy, n: usize) -> (f64, usize) {
    // First use (lazy initialisation, the backend pool) before "before".
    for _ in 0..4 {
        if let Ok(mut c) = client.connect(inbound, &client.verifying).await {
            get(&mut c, "/warm").await;
        }
    }
    let before = settled_rss(server).await;
    let mut held: Vec<H1> = Vec::with_capacity(n);
    while held.len() < n {
        let batch = OPEN_AT_ONCE.min(n - held.len());
        let mut tasks = Vec::new();
        for _ in 0..batch {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = client.connect(inbound, &client.verifying).await.ok()?;
                get(&mut c, "/idle").await.then_some(c)
            }));
        }
        let mut opened = 0;
        for t in tasks {
            if let Ok(Some(c)) = t.await {
                held.push(c);
                opened += 1;
            }
        }
        if opened == 0 {
            eprintln!(
                "mtls-bench: {}: no connection opened after {}",
                server.label,
                held.len()
            );
            break;
        }
    }
    let after = settled_rss(server).await;
    let opened = held.len();
    drop(held);
    (kib_per(before, after, opened.max(1)), opened)
}

/// The body of a request straight to the backend (not through a proxy).
async fn backend_says(backend: u16, path: &str) -> String {
    let Ok(mut c) = connect(backend).await else {
        return String::new();
    };
    let req = http::Request::builder()
        .uri(path)
        .header("host", "backend")
        .body(http_body_util::Empty::new())
        .unwrap();
    match c.send_request(req).await {
        Ok(r) => r
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// What the run through the client side measured.
pub struct Chain {
    /// KiB per connection on each side.
    pub client_kib: f64,
    pub server_kib: f64,
    /// How many requests the backend held at once: the connections each
    /// hop had open together (`n` when every request got its own).
    pub held: usize,
    /// Requests that did not get a 200 once released.
    pub failed: usize,
}

pub async fn chain(outbound: u16, backend: u16, client: &Proxy, server: &Proxy, n: usize) -> Chain {
    for _ in 0..4 {
        if let Ok(mut c) = connect(outbound).await {
            get(&mut c, "/warm").await;
        }
    }
    let (c0, s0) = (settled_rss(client).await, server.rss_mib());
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(mut c) = connect(outbound).await else {
            break;
        };
        tasks.push(tokio::spawn(async move {
            let ok = get(&mut c, "/hold").await;
            (c, ok)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = 0;
    while Instant::now() < deadline {
        held = backend_says(backend, "/held")
            .await
            .trim()
            .parse()
            .unwrap_or(0);
        if held >= tasks.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Released until every request is answered: one that a proxy
    // queued (a connection limit) reaches the backend after the first
    // release and would otherwise wait for ever.
    let releaser = tokio::spawn(async move {
        loop {
            backend_says(backend, "/release").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut idle = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok((c, true)) => idle.push(c),
            _ => failed += 1,
        }
    }
    releaser.abort();
    let (c1, s1) = (settled_rss(client).await, server.rss_mib());
    let opened = idle.len().max(1);
    drop(idle);
    Chain {
        client_kib: kib_per(c0, c1, opened),
        server_kib: kib_per(s0, s1, opened),
        held,
        failed,
    }
}
