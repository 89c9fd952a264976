//! weft proxy against Envoy as a pair of mTLS sidecars, same bootstraps,
//! same certificates, same machine, same run.
//!
//! `mtls-bench [SECONDS] [ROUNDS] [IDLE_CONNS]` — run by `bench/mtls.sh`,
//! which pins this process (load generator, TLS client and backend) to
//! core 1; each proxy runs with one worker pinned to core 0. The
//! topology is client side (plaintext listener → mTLS cluster) → server
//! side (mTLS listener requiring the client's SPIFFE certificate → HCM
//! → plaintext backend), run first as two Envoys and then as two wefts
//! (the order alternates by round). Measured: keep-alive max rps and
//! CPU per request of each side; new mTLS handshakes per second to the
//! server side (the bench as the client sidecar, no resumption) and its
//! CPU per handshake; p50/p99 at 1,000 rps through both, and with no
//! proxy; RSS per idle connection with IDLE_CONNS (1,000) idle mTLS
//! connections to the server side, and through the client side. Each
//! figure is the median of ROUNDS (3) rounds.
//!
//! `mtls-bench backend PORT` runs the backend alone (used internally);
//! `files`, `load` and `handshakes` run parts by hand (see `manual`).

mod bootstrap;
mod load;
mod manual;
mod memory;
mod pki;
mod report;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use bootstrap::Ports;
use report::Round;
use weft_bench_support::procs::{self, free_port, generator_core_seconds, Kind, Proxy};
use weft_bench_support::{arg_or, backend, h1};

/// Handshakes in flight at once in the handshake-rate loop.
pub(crate) const HANDSHAKERS: usize = 32;

/// What every start of a pair of proxies shares in one run.
struct Setup {
    dir: PathBuf,
    tls: tls::Client,
    ports: Ports,
    client_file: PathBuf,
    server_file: PathBuf,
}

struct Pair {
    client: Proxy,
    server: Proxy,
}

/// Starts the server side, then the client side, and checks that a
/// request goes through both and that the server side answers the
/// bench's own verifying mTLS client.
async fn start_pair(kind: Kind, s: &Setup) -> Pair {
    let p = s.ports;
    let server = procs::start(kind, "server", &s.server_file, p.server_admin, &s.dir).await;
    let client = procs::start(kind, "client", &s.client_file, p.client_admin, &s.dir).await;
    let through = match h1::connect(p.outbound).await {
        Ok(mut c) => h1::get(&mut c, "/check").await,
        Err(_) => false,
    };
    let direct = match s.tls.connect(p.inbound, &s.tls.verifying).await {
        Ok(mut c) => h1::get(&mut c, "/check").await,
        Err(e) => {
            eprintln!("mtls-bench: mTLS to {}: {e}", server.label);
            false
        }
    };
    if !through || !direct {
        panic!(
            "{}: a request through both sides {}, straight to the server side over mTLS {}\n--- client side log:\n{}\n--- server side log:\n{}",
            kind.name(),
            if through { "passed" } else { "failed" },
            if direct { "passed" } else { "failed" },
            client.log_tail(),
            server.log_tail()
        );
    }
    Pair { client, server }
}

/// One kind in one round. The memory measurements each start a fresh
/// pair, so what earlier loads left in the allocator does not absorb the
/// connections' memory.
async fn measure(kind: Kind, s: &Setup, secs: f64, conns: usize) -> Round {
    let p = s.ports;
    let mut r = Round::default();
    {
        let pair = start_pair(kind, s).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (r.rss_client, r.rss_server) = (pair.client.rss_mib(), pair.server.rss_mib());

        let g0 = generator_core_seconds();
        let t0 = std::time::Instant::now();
        let m = load::max_rps(p.outbound, &[&pair.client, &pair.server], secs).await;
        r.rps_gen_busy = (generator_core_seconds() - g0) / t0.elapsed().as_secs_f64();
        (r.rps, r.cpu_client, r.cpu_server) = (m.rps, m.cpu_per_100k[0], m.cpu_per_100k[1]);
        let rate_errors = m.errors();

        let ([p50, p99], lat_errors) = load::latency_at(p.outbound, 1000.0, secs).await;
        (r.p50, r.p99) = (p50, p99);

        let (cpu0, g0) = (pair.server.cpu_seconds(), generator_core_seconds());
        let (ok, failed, elapsed) = tls::handshake_loop(&s.tls, p.inbound, HANDSHAKERS, secs).await;
        r.hs_rate = ok as f64 / elapsed;
        r.hs_cpu_1k = (pair.server.cpu_seconds() - cpu0) / (ok.max(1) as f64) * 1000.0;
        r.hs_gen_busy = (generator_core_seconds() - g0) / elapsed;
        r.errors = rate_errors + lat_errors + failed;
    }
    {
        let pair = start_pair(kind, s).await;
        (r.idle_direct, r.idle_opened) =
            memory::direct(&s.tls, p.inbound, &pair.server, conns).await;
    }
    {
        let pair = start_pair(kind, s).await;
        let c = memory::chain(p.outbound, p.backend, &pair.client, &pair.server, conns).await;
        (r.chain_client, r.chain_server, r.chain_held) = (c.client_kib, c.server_kib, c.held);
        r.errors += c.failed as u64;
    }
    r
}

/// The certificates and the two bootstraps in `dir`: one pair of
/// files, run unchanged by both proxies.
pub(crate) fn write_files(dir: &std::path::Path, ports: Ports) -> (pki::Pki, PathBuf, PathBuf) {
    let pki = pki::generate(dir);
    let (client_file, server_file) = (dir.join("client.json"), dir.join("server.json"));
    std::fs::write(&client_file, bootstrap::client(&pki, ports)).unwrap();
    std::fs::write(&server_file, bootstrap::server(&pki, ports)).unwrap();
    (pki, client_file, server_file)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = weft_bench_support::runtime();
    if backend::serve_if_asked(&args, &rt) || manual::run(&args, &rt) {
        return;
    }
    let secs: f64 = arg_or(&args, 0, 3.0);
    let runs: usize = arg_or(&args, 1, 3).max(1);
    let conns: usize = arg_or(&args, 2, 1000).max(1);
    rt.block_on(async move {
        let dir = std::env::temp_dir().join(format!("weft-mtls-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = Ports {
            outbound: free_port(),
            inbound: free_port(),
            client_admin: free_port(),
            server_admin: free_port(),
            backend: free_port(),
        };
        let (pki, client_file, server_file) = write_files(&dir, ports);
        let backend = procs::spawn_backend(&["backend".into(), ports.backend.to_string()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let setup = Setup {
            tls: tls::Client::new(&pki),
            dir: dir.clone(),
            ports,
            client_file,
            server_file,
        };
        let (mut weft, mut envoy, mut floors) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..runs {
            eprintln!("mtls-bench: round {} of {runs}", round + 1);
            // The floor both proxies stand on: the generator to the
            // backend directly, through the same sockets and wake-ups.
            floors.push(load::latency_at(ports.backend, 1000.0, secs).await.0);
            // Alternating which kind goes first spreads the machine's
            // drift over both.
            let order = if round % 2 == 0 {
                [Kind::Envoy, Kind::Weft]
            } else {
                [Kind::Weft, Kind::Envoy]
            };
            for kind in order {
                eprintln!("mtls-bench:   {}", kind.name());
                let r = measure(kind, &setup, secs, conns).await;
                match kind {
                    Kind::Weft => weft.push(r),
                    Kind::Envoy => envoy.push(r),
                }
            }
        }
        drop(backend);
        let _ = std::fs::remove_dir_all(&dir);
        let med = |k: usize| {
            let mut v: Vec<f64> = floors.iter().map(|f| f[k]).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let floor = report::Floor {
            p50: med(0),
            p99: med(1),
        };
        report::print(
            &report::medians(&weft),
            &report::medians(&envoy),
            &floor,
            secs,
            runs,
            conns,
        );
    });
}
