//! weft proxy against Envoy, same bootstrap, same machine, same run.
//!
//! `proxy-bench [SECONDS] [ROUNDS] [h1,h2,tcp]` — run by `bench/proxy.sh`, which pins this
//! process (load generator and backend) to core 1; each proxy runs with
//! one worker pinned to core 0 (`taskset -c 0`). For HTTP/1.1, HTTP/2
//! (h2c) and TCP (tcp_proxy to an echo backend; a request is one 64-byte
//! round trip, as in Fortio's `tcp://` load) it reports maximum
//! requests per second, proxy CPU seconds per 100k requests, latency
//! percentiles at a fixed 1,000 rps and at 80% of Envoy's maximum, and
//! proxy RSS idle and under load, with weft/Envoy ratios; and the latency
//! at 1,000 rps with no proxy, the floor both proxies add to.
//!
//! `proxy-bench backend HTTP_PORT ECHO_PORT` runs the backends alone
//! (used internally).

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_bench_support::median;
use weft_bench_support::procs::{
    cpu_seconds_of, free_port, generator_core_seconds, rss_mib_of, spawn_backend,
};

const BODY: &[u8] = b"hello from the bench backend\n";

/// The TCP row's message: one round trip is the client writing it and
/// reading as many bytes back from the echo backend.
const TCP_MSG: &[u8; 64] = b"weft proxy bench: one TCP round trip is these 64 bytes echoed!!\n";

/// Accepts on 127.0.0.1:`port` forever, each connection (no Nagle) in a
/// task of its own.
async fn serve<F, Fut>(port: u16, conn: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(conn(s));
    }
}

/// Echoes bytes back on every connection (the TCP row's backend: raw
/// sockets, so the generator's side costs little next to the proxy's).
async fn echo_backend(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    serve(port, |mut s| async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    })
    .await
}

async fn backend(port: u16) {
    serve(port, |s| async move {
        let svc = service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(BODY))))
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(s), svc)
            .await;
    })
    .await
}

/// A STATIC cluster with one endpoint on 127.0.0.1, as a YAML list item.
fn static_cluster(name: &str, port: u16) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"#
    )
}

fn bootstrap(admin: u16, http: u16, tcp: u16, backend: u16, echo: u16) -> String {
    let clusters = static_cluster("backend", backend) + &static_cluster("echo", echo);
    format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: {http}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, route: {{cluster: backend}}}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {tcp}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
{clusters}"#
    )
}

struct Proxy {
    child: Child,
    http: u16,
    tcp: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// utime + stime of the proxy, in seconds.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }
    fn rss_mib(&self) -> f64 {
        rss_mib_of(self.child.id())
    }
}

async fn start(
    name: &'static str,
    program: &str,
    args: &[&str],
    dir: &std::path::Path,
    backend: u16,
    echo: u16,
) -> Proxy {
    let (admin, http, tcp) = (free_port(), free_port(), free_port());
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, bootstrap(admin, http, tcp, backend, echo)).unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0", program])
        .args(args)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let proxy = Proxy { child, http, tcp };
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    for _ in 0..200 {
        let uri: http::Uri = format!("http://127.0.0.1:{admin}/ready").parse().unwrap();
        if let Ok(r) = client.get(uri).await {
            if r.status() == 200 {
                return proxy;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not become ready");
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    H1,
    H2,
    Tcp,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
            Proto::Tcp => "TCP",
        }
    }
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

enum Conn {
    H1(H1),
    H2(H2),
    Tcp(tokio::net::TcpStream),
}

async fn connect(port: u16, proto: Proto) -> Conn {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    if proto == Proto::Tcp {
        return Conn::Tcp(s);
    }
    let io = TokioIo::new(s);
    if proto == Proto::H2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Conn::H1(send)
    }
}

fn req() -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri("/bench")
        .header("host", "bench.test")
        .body(Empty::new())
        .unwrap()
}

async fn send(conn: &mut Conn) -> bool {
    let resp = match conn {
        Conn::H1(s) => {
            if s.ready().await.is_err() {
                return false;
            }
            s.send_request(req()).await
        }
        Conn::H2(s) => {
            let mut r = req();
            *r.uri_mut() = "http://bench.test/bench".parse().unwrap();
            s.send_request(r).await
        }
        Conn::Tcp(s) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut back = [0u8; 64];
            return s.write_all(TCP_MSG).await.is_ok()
                && s.read_exact(&mut back).await.is_ok()
                && &back == TCP_MSG;
        }
    };
    match resp {
        Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

async fn task_conns(port: u16, proto: Proto, n: usize) -> Vec<Conn> {
    let mut out = Vec::new();
    if proto == Proto::H2 {
        // A few HTTP/2 connections, many streams on each.
        let mut shared = Vec::new();
        for _ in 0..4 {
            if let Conn::H2(s) = connect(port, proto).await {
                shared.push(s);
            }
        }
        for i in 0..n {
            out.push(Conn::H2(shared[i % shared.len()].clone()));
        }
    } else {
        for _ in 0..n {
            out.push(connect(port, proto).await);
        }
    }
    out
}

/// Closed loop with 64 requests in flight; returns rps, proxy CPU seconds
/// per 100k requests, and the proxy's RSS under that load.
async fn max_rps(p: &Proxy, proto: Proto, secs: f64) -> (f64, f64, f64) {
    let port = if proto == Proto::Tcp { p.tcp } else { p.http };
    let conns = task_conns(port, proto, 64).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = p.cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if send(&mut conn).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs / 2.0)).await;
    let rss = p.rss_mib();
    tokio::time::sleep(Duration::from_secs_f64(secs / 2.0)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed) as f64;
    let cpu = p.cpu_seconds() - cpu0;
    for t in tasks {
        let _ = t.await;
    }
    (n / elapsed, cpu / n.max(1.0) * 100_000.0, rss)
}

/// Open loop at `rate` requests per second: each request's latency counts
/// from when it was due, so a stall is not hidden (no coordinated
/// omission). Returns p50, p90, p99 in milliseconds, the error count, and
/// how busy the generator's core was (1.0 = saturated: then the latency
/// is the generator's queue, not the proxy's).
async fn latency_at(port: u16, proto: Proto, rate: f64, secs: f64) -> ([f64; 3], u64, f64) {
    let workers = 64;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let lat = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut conn in task_conns(port, proto, workers).await {
        let (rx, lat, errors) = (Arc::clone(&rx), Arc::clone(&lat), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            loop {
                let due = { rx.lock().await.recv().await };
                let Some(due) = due else { break };
                if send(&mut conn).await {
                    lat.lock()
                        .unwrap()
                        .push(due.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Paced by an OS thread: tokio's timer wheel rounds to whole
    // milliseconds, and a request sent up to 1 ms late counts that delay
    // (from when it was due) against whichever proxy is measured,
    // drowning sub-millisecond differences. A thread sleep is accurate
    // to tens of microseconds.
    let total = (rate * secs) as u64;
    let (core0, t0) = (generator_core_seconds(), Instant::now());
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
    let busy = (generator_core_seconds() - core0) / t0.elapsed().as_secs_f64();
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
    (
        [q(0.50), q(0.90), q(0.99)],
        errors.load(Ordering::Relaxed),
        busy,
    )
}

/// One protocol in one round: Envoy's idle RSS and row, weft's, and the
/// latency at 1,000 rps with no proxy at all.
type Measured = (Proto, f64, Row, f64, Row, [f64; 3]);

struct Row {
    rps: f64,
    cpu_per_100k: f64,
    lat_1000: [f64; 3],
    lat_80: [f64; 3],
    rss_load: f64,
    errors: u64,
    /// Share of the generator's core in use during the 80% measurement.
    generator_busy: f64,
}

async fn measure(p: &Proxy, proto: Proto, secs: f64, envoy_max: Option<f64>) -> Row {
    let (rps, cpu_per_100k, rss_load) = max_rps(p, proto, secs).await;
    let port = if proto == Proto::Tcp { p.tcp } else { p.http };
    let (lat_1000, e1, _) = latency_at(port, proto, 1000.0, secs).await;
    let rate80 = 0.8 * envoy_max.unwrap_or(rps);
    let (lat_80, e2, generator_busy) = latency_at(port, proto, rate80, secs).await;
    Row {
        rps,
        cpu_per_100k,
        lat_1000,
        lat_80,
        rss_load,
        errors: e1 + e2,
        generator_busy,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("backend") {
        let port = |i: usize| -> u16 {
            args.get(i)
                .and_then(|p| p.parse().ok())
                .expect("backend HTTP_PORT ECHO_PORT")
        };
        let (http, echo) = (port(1), port(2));
        rt.block_on(async move { tokio::join!(backend(http), echo_backend(echo)) });
        return;
    }
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    // Optional third argument: which protocols, e.g. `tcp` or `h1,h2`.
    let protos: Vec<Proto> = match args.get(2) {
        None => vec![Proto::H1, Proto::H2, Proto::Tcp],
        Some(list) => list
            .split(',')
            .map(|p| match p {
                "h1" => Proto::H1,
                "h2" => Proto::H2,
                "tcp" => Proto::Tcp,
                other => panic!("unknown protocol {other:?}: expected h1, h2 or tcp"),
            })
            .collect(),
    };
    let weft = std::env::var("WEFT_BIN").unwrap_or_else(|_| "target/release/weft".into());
    let envoy = std::env::var("WEFT_ENVOY").unwrap_or_else(|_| "envoy".into());
    rt.block_on(async move {
        let (backend_port, echo_port) = (free_port(), free_port());
        let backend = spawn_backend(&[
            "backend".into(),
            backend_port.to_string(),
            echo_port.to_string(),
        ]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let dir = std::env::temp_dir().join(format!("weft-proxy-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Each round measures Envoy then weft for every protocol; the
        // table reports each figure's median over the rounds.
        let mut rounds: Vec<Vec<Measured>> = Vec::new();
        for round in 0..runs {
            eprintln!("proxy-bench: round {} of {runs}", round + 1);
            let mut rows = Vec::new();
            for &proto in &protos {
                // The floor both proxies stand on: generator to backend
                // directly, through the same sockets and wake-ups.
                let direct_port = if proto == Proto::Tcp { echo_port } else { backend_port };
                let (direct, _, _) = latency_at(direct_port, proto, 1000.0, secs).await;
                let e = start("envoy", &envoy, &["--concurrency", "1", "--use-dynamic-base-id", "-l", "error"], &dir, backend_port, echo_port).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let e_idle = e.rss_mib();
                let er = measure(&e, proto, secs, None).await;
                drop(e);
                let w = start("weft", &weft, &["proxy", "--concurrency", "1"], &dir, backend_port, echo_port).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let w_idle = w.rss_mib();
                let wr = measure(&w, proto, secs, Some(er.rps)).await;
                drop(w);
                rows.push((proto, e_idle, er, w_idle, wr, direct));
            }
            rounds.push(rows);
        }
        let rows: Vec<_> = (0..protos.len())
            .map(|i| {
                let pick = |f: &dyn Fn(&Measured) -> f64| {
                    median(rounds.iter().map(|r| f(&r[i])).collect())
                };
                let row = |which: usize| {
                    fn get(r: &Measured, which: usize) -> &Row {
                        if which == 0 {
                            &r.2
                        } else {
                            &r.4
                        }
                    }
                    Row {
                        rps: pick(&|r| get(r, which).rps),
                        cpu_per_100k: pick(&|r| get(r, which).cpu_per_100k),
                        lat_1000: [0, 1, 2].map(|k| pick(&|r| get(r, which).lat_1000[k])),
                        lat_80: [0, 1, 2].map(|k| pick(&|r| get(r, which).lat_80[k])),
                        rss_load: pick(&|r| get(r, which).rss_load),
                        errors: rounds.iter().map(|r| get(&r[i], which).errors).sum(),
                        generator_busy: pick(&|r| get(r, which).generator_busy),
                    }
                };
                let direct = [0, 1, 2].map(|k| pick(&|r| r.5[k]));
                (rounds[0][i].0, pick(&|r| r.1), row(0), pick(&|r| r.3), row(1), direct)
            })
            .collect();
        drop(backend);
        let _ = std::fs::remove_dir_all(&dir);
        println!("proxy-bench: {secs} s per measurement, median of {runs} rounds (errors: total); each proxy one worker on core 0; load generator and backend on core 1");
        println!();
        println!("| protocol | proxy | max rps | CPU s / 100k req | p50 / p90 / p99 ms @1000 rps | p50 / p90 / p99 ms @80% of Envoy max | RSS idle MiB | RSS load MiB | errors | generator core busy @80% |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let f = |l: [f64; 3]| format!("{:.2} / {:.2} / {:.2}", l[0], l[1], l[2]);
        for (proto, e_idle, er, w_idle, wr, direct) in &rows {
            println!(
                "| {} | no proxy (floor) | | | {} | | | | | |",
                proto.label(),
                f(*direct)
            );
            for (name, idle, r) in [("envoy", e_idle, er), ("weft", w_idle, wr)] {
                println!(
                    "| {} | {name} | {:.0} | {:.2} | {} | {} | {:.1} | {:.1} | {} | {:.0}% |",
                    proto.label(), r.rps, r.cpu_per_100k, f(r.lat_1000), f(r.lat_80), idle, r.rss_load, r.errors, r.generator_busy * 100.0
                );
            }
            println!(
                "| {} | **weft/envoy** | {:.2}× | {:.2}× | p99 {:.2}× | p99 {:.2}× | {:.2}× | {:.2}× | | |",
                proto.label(),
                wr.rps / er.rps,
                wr.cpu_per_100k / er.cpu_per_100k,
                wr.lat_1000[2] / er.lat_1000[2],
                wr.lat_80[2] / er.lat_80[2],
                w_idle / e_idle,
                wr.rss_load / er.rss_load,
            );
            // What each proxy adds to the floor at 1,000 rps.
            let added = |r: &Row, k: usize| r.lat_1000[k] - direct[k];
            println!(
                "| {} | added by the proxy @1000 rps, weft/envoy | | | p50 {:.2}× ({:.3} / {:.3} ms), p99 {:.2}× ({:.3} / {:.3} ms) | | | | | |",
                proto.label(),
                added(wr, 0) / added(er, 0),
                added(wr, 0),
                added(er, 0),
                added(wr, 2) / added(er, 2),
                added(wr, 2),
                added(er, 2),
            );
        }
        println!();
        println!("Targets (issue 3): rps ≥ 1.5×, p99 ≤ 0.7× at equal load, RSS ≤ 0.25×.");
        println!("\"no proxy\" is the generator talking to the backend directly at 1,000 rps; \"added\" is a proxy's percentile minus that floor's (an approximation: percentiles do not subtract exactly).");
        println!("The load generator shares core 1 with the backend; if a proxy saturates it, max rps is the generator's limit, not the proxy's (compare CPU s / 100k, which does not depend on it).");
    });
}
