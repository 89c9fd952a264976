//! Parts of the bench run by hand, to look at one proxy under a
//! profiler (`perf record -p PID`, callgrind) with the run's own
//! certificates, bootstraps and load:
//!
//! - `mtls-bench files DIR` writes the certificates and both bootstraps
//!   to DIR and prints the ports (start the proxies and
//!   `mtls-bench backend PORT` yourself);
//! - `mtls-bench load PORT SECS` drives plaintext keep-alive load at a
//!   client side (or the backend): max rps, then p50/p99 at 1,000 rps;
//! - `mtls-bench handshakes DIR PORT SECS [CONCURRENCY]` opens new mTLS
//!   connections to a server side, one request each, with DIR's client
//!   certificate, as the handshake measurement does.

use std::path::PathBuf;

use weft_bench_support::procs::{free_port, generator_core_seconds};

use crate::bootstrap::Ports;
use crate::{load, pki, tls, write_files, HANDSHAKERS};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, usage: &str) -> T {
    weft_bench_support::arg(args, i, &format!("mtls-bench {usage}"))
}

/// Runs a manual sub-command if `args` name one; whether one ran.
pub fn run(args: &[String], rt: &tokio::runtime::Runtime) -> bool {
    match args.first().map(String::as_str) {
        Some("files") => {
            let dir: PathBuf = arg(args, 1, "files DIR");
            std::fs::create_dir_all(&dir).expect("DIR");
            let p = Ports {
                outbound: free_port(),
                inbound: free_port(),
                client_admin: free_port(),
                server_admin: free_port(),
                backend: free_port(),
            };
            write_files(&dir, p);
            println!(
                "{}: client side listens on {} (admin {}), server side on {} (admin {}), backend expected on {}",
                dir.display(), p.outbound, p.client_admin, p.inbound, p.server_admin, p.backend
            );
        }
        Some("load") => {
            let usage = "load PORT SECS";
            let (port, secs): (u16, f64) = (arg(args, 1, usage), arg(args, 2, usage));
            rt.block_on(async move {
                let m = load::max_rps(port, &[], secs).await;
                println!("max rps {:.0} (errors {})", m.rps, m.errors());
                let ([p50, p99], e) = load::latency_at(port, 1000.0, secs).await;
                println!("@1000 rps: p50 {p50:.3} ms, p99 {p99:.3} ms (errors {e})");
            });
        }
        Some("handshakes") => {
            let usage = "handshakes DIR PORT SECS [CONCURRENCY]";
            let dir: PathBuf = arg(args, 1, usage);
            let (port, secs): (u16, f64) = (arg(args, 2, usage), arg(args, 3, usage));
            let conc = if args.len() > 4 {
                arg(args, 4, usage)
            } else {
                HANDSHAKERS
            };
            let client = tls::Client::new(&pki::load(&dir));
            rt.block_on(async move {
                let g0 = generator_core_seconds();
                let (ok, failed, secs) = tls::handshake_loop(&client, port, conc, secs).await;
                println!(
                    "{:.0} handshakes/s (failed {failed}), generator core busy {:.0}%",
                    ok as f64 / secs,
                    (generator_core_seconds() - g0) / secs * 100.0
                );
            });
        }
        _ => return false,
    }
    true
}
