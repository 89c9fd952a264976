//! weft proxy against Envoy as xDS clients: the same fake control plane
//! contents, the same machine, the same run.
//!
//! `xds-bench [SERVICES] [PUSHES] [ROUNDS]` — run by `bench/xds.sh`, which
//! pins this process (control plane, client, backend) to core 1; each
//! proxy runs with one worker pinned to core 0. Per proxy:
//!
//! 1. It starts on an empty state-of-the-world ADS stream; RSS idle.
//! 2. SERVICES (default 5,000) EDS clusters with their endpoints, one
//!    listener, and one route table holding a virtual host and route per
//!    service are pushed at once. *Apply* is the time from the push to
//!    the proxy ACKing the route table (the last type it asks for) and
//!    answering a request routed to the last service; the proxy's CPU
//!    seconds over that span are reported too. RSS loaded is read after.
//! 3. PUSHES times (default 200), the route table is changed (a probe
//!    route's direct response body) and pushed alone, as a control plane
//!    does when only routes change; *push → use* is the time from the
//!    push to the first request answered with the new body, polled on a
//!    keep-alive connection (p50 / p90 / p99).
//!
//! Resources are encoded to protobuf before each timed push, so the time
//! measured is the proxies', plus the fake control plane sending bytes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use weft_testkit::xds::FakeXds;
use weft_xds::Kind;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const WAIT: Duration = Duration::from_secs(300);

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn service(i: usize) -> String {
    format!("svc-{i}")
}

fn cluster(i: usize) -> Value {
    json!({
        "name": service(i),
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
    })
}

fn assignment(i: usize, backend: u16) -> Value {
    json!({"cluster_name": service(i), "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": socket(backend)}}
    ]}]})
}

fn listener(port: u16) -> Value {
    json!({
        "name": "http",
        "address": socket(port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": "http",
                "rds": {"route_config_name": "services", "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]
            }
        }]}]
    })
}

/// One virtual host and route per service, and the probe's host whose
/// direct response changes with every push.
fn table(services: usize, probe: &str) -> Value {
    let mut hosts: Vec<Value> = (0..services)
        .map(|i| {
            json!({
                "name": service(i),
                "domains": [format!("{}.bench", service(i))],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": service(i), "timeout": "5s"}}]
            })
        })
        .collect();
    hosts.push(json!({
        "name": "probe",
        "domains": ["probe.bench"],
        "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": probe}}}]
    }));
    json!({"name": "services", "virtual_hosts": hosts})
}

struct Proxy {
    child: Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// utime + stime, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (tick(11) + tick(12)) / 100.0
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(port: u16) -> Option<Sender> {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.set_nodelay(true).ok()?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// One GET with the given Host; None when the connection is gone.
async fn get(send: &mut Sender, host: &str) -> Option<(u16, Bytes)> {
    send.ready().await.ok()?;
    let req = http::Request::builder()
        .uri("/")
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

/// Polls `host` on `port` until the answer satisfies `done`; keeps one
/// connection while it lasts (the listener may not be bound yet).
async fn poll_until(port: u16, host: &str, done: impl Fn(u16, &[u8]) -> bool) {
    let deadline = Instant::now() + WAIT;
    let mut conn: Option<Sender> = None;
    while Instant::now() < deadline {
        if conn.is_none() {
            conn = connect(port).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        match get(conn.as_mut().unwrap(), host).await {
            Some((status, body)) if done(status, &body) => return,
            Some(_) => {}
            None => conn = None,
        }
        // Let the control plane's tasks (same thread) send meanwhile.
        tokio::task::yield_now().await;
    }
    panic!("no answer from {host} satisfied the check within {WAIT:?}");
}

struct Measured {
    idle_rss: f64,
    loaded_rss: f64,
    apply_ms: f64,
    apply_cpu: f64,
    push_use_ms: Vec<f64>,
    push_ack_ms: Vec<f64>,
}

async fn run(
    name: &str,
    program: &str,
    args: &[&str],
    services: usize,
    pushes: usize,
    backend: u16,
    dir: &std::path::Path,
) -> Measured {
    let xds = FakeXds::start().await;
    let (admin, port) = (free_port(), free_port());
    let v = xds.push();
    let path = dir.join(format!("{name}.json"));
    std::fs::write(
        &path,
        weft_testkit::xds::ads_bootstrap(name, admin, xds.addr),
    )
    .unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0", program])
        .args(args)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let proxy = Proxy { child };
    for kind in [Kind::Cluster, Kind::Listener] {
        xds.wait_ack(name, kind, &v, WAIT).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = proxy.rss_mib();

    eprintln!("xds-bench: {name}: encoding {services} services");
    for i in 0..services {
        xds.set(Kind::Cluster, cluster(i));
        xds.set(Kind::ClusterLoadAssignment, assignment(i, backend));
    }
    xds.set(Kind::Listener, listener(port));
    xds.set(Kind::RouteConfiguration, table(services, "v0"));
    let last = format!("{}.bench", service(services - 1));
    let cpu0 = proxy.cpu_seconds();
    let t0 = Instant::now();
    let v = xds.push();
    xds.wait_ack(name, Kind::RouteConfiguration, &v, WAIT)
        .await
        .unwrap();
    poll_until(port, &last, |status, _| status == 200).await;
    let apply_ms = t0.elapsed().as_secs_f64() * 1e3;
    let apply_cpu = proxy.cpu_seconds() - cpu0;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let loaded_rss = proxy.rss_mib();
    eprintln!("xds-bench: {name}: applied in {apply_ms:.0} ms; {pushes} route pushes");

    let mut push_use_ms = Vec::with_capacity(pushes);
    for i in 1..=pushes {
        let body = format!("v{i}");
        xds.set(Kind::RouteConfiguration, table(services, &body));
        let t0 = Instant::now();
        let v = xds.push_only(&[Kind::RouteConfiguration]);
        poll_until(port, "probe.bench", |status, b| {
            status == 200 && b == body.as_bytes()
        })
        .await;
        push_use_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        // Settle before the next push: the proxy has ACKed this one.
        xds.wait_ack(name, Kind::RouteConfiguration, &v, WAIT)
            .await
            .unwrap();
    }
    let mut push_ack_ms = Vec::with_capacity(pushes);
    for i in 1..=pushes {
        xds.set(Kind::RouteConfiguration, table(services, &format!("a{i}")));
        let t0 = Instant::now();
        let v = xds.push_only(&[Kind::RouteConfiguration]);
        xds.wait_ack(name, Kind::RouteConfiguration, &v, WAIT)
            .await
            .unwrap();
        push_ack_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    drop(proxy);
    xds.stop();
    Measured {
        idle_rss,
        loaded_rss,
        apply_ms,
        apply_cpu,
        push_use_ms,
        push_ack_ms,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 0.5)
}

async fn backend(port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"backend\n"),
                )))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| {
        args.get(i)
            .map(|a| a.parse().expect("arguments: [SERVICES] [PUSHES] [ROUNDS]"))
            .unwrap_or(default)
    };
    let (services, pushes, rounds) = (arg(1, 5000).max(1), arg(2, 200).max(1), arg(3, 1).max(1));
    let envoy = std::env::var("WEFT_ENVOY").unwrap_or_else(|_| "envoy".into());
    let weft = std::env::var("WEFT_BIN").unwrap_or_else(|_| "target/release/weft".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend_port = free_port();
        tokio::spawn(backend(backend_port));
        let dir = std::env::temp_dir().join(format!("weft-xds-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut results: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        // Profiling weft alone: XDS_BENCH_ONLY=weft skips Envoy (no ratios).
        let weft_only = std::env::var("XDS_BENCH_ONLY").is_ok_and(|v| v == "weft");
        let envoy_args = ["--concurrency", "1", "--use-dynamic-base-id", "-l", "error"];
        let weft_args = ["proxy", "--concurrency", "1"];
        for round in 0..rounds {
            eprintln!("xds-bench: round {} of {rounds}", round + 1);
            let mut proxies = vec![
                ("envoy", &envoy, &envoy_args[..]),
                ("weft", &weft, &weft_args[..]),
            ];
            if weft_only {
                proxies.remove(0);
            }
            for (name, program, args) in proxies {
                let m = run(name, program, args, services, pushes, backend_port, &dir).await;
                results[usize::from(name == "weft")].push(m);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        report(services, pushes, rounds, &results);
    });
}

/// Per proxy: idle RSS, loaded RSS, apply ms, apply CPU s, push→use
/// p50/p90/p99 — each the median over the rounds.
fn summarize(runs: &[Measured]) -> [f64; 10] {
    let pick = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let pct = |p: f64, ack: bool| {
        pick(&|m: &Measured| {
            let mut v = if ack {
                m.push_ack_ms.clone()
            } else {
                m.push_use_ms.clone()
            };
            v.sort_by(|a, b| a.total_cmp(b));
            percentile(&v, p)
        })
    };
    [
        pick(&|m| m.idle_rss),
        pick(&|m| m.loaded_rss),
        pick(&|m| m.apply_ms),
        pick(&|m| m.apply_cpu),
        pct(0.5, false),
        pct(0.9, false),
        pct(0.99, false),
        pct(0.5, true),
        pct(0.9, true),
        pct(0.99, true),
    ]
}

fn report(services: usize, pushes: usize, rounds: usize, results: &[Vec<Measured>; 2]) {
    let w = summarize(&results[1]);
    if results[0].is_empty() {
        println!("xds-bench: weft alone ({services} services, {pushes} pushes, {rounds} round(s)): RSS idle {:.1} MiB, loaded {:.1} MiB; apply {:.0} ms, {:.2} CPU s; push→use p50/p90/p99 {:.2}/{:.2}/{:.2} ms; push→ACK {:.2}/{:.2}/{:.2} ms", w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9]);
        return;
    }
    let e = summarize(&results[0]);
    println!(
        "xds-bench: {services} EDS clusters + {services} routes (one virtual host each), {pushes} route-table pushes, median of {rounds} round(s); each proxy one worker on core 0, control plane + client + backend on core 1"
    );
    println!();
    println!("| proxy | RSS idle MiB | RSS loaded MiB | apply ms | apply CPU s | push→use p50 / p90 / p99 ms | push→ACK p50 / p90 / p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [("envoy", e), ("weft", w)] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} |",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]
        );
    }
    let x: Vec<String> = (0..10).map(|i| format!("{:.2}×", w[i] / e[i])).collect();
    println!(
        "| **weft/envoy** | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} |",
        x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9]
    );
    println!();
    println!(
        "Targets (issue 4): RSS loaded ≤ 0.2× Envoy's; apply and push→use ≥ 10× faster (≤ 0.1×)."
    );
}
