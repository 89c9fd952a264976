//! Parts of the bench run by hand, to look at one proxy under a
//! profiler (`perf record -p PID`, callgrind) with the run's own
//! bootstraps, tokens and load:
//!
//! - `authz-bench files DIR` writes every case's bootstrap (CASE.json;
//!   the JWT cases share jwt.json), the tokens and the ports to DIR and
//!   prints how to start the rest (`authz-bench backend PORT`, the
//!   proxy on a bootstrap);
//! - `authz-bench load DIR CASE SECS [PID]` drives the closed loop with
//!   CASE's request at the listener DIR's ports name, and prints rps,
//!   responses by status and, given the proxy's PID, its CPU µs per
//!   request.

use std::path::{Path, PathBuf};

use weft_bench_support::h1;
use weft_bench_support::procs::{cpu_seconds_of, free_port, generator_core_seconds};

use crate::bootstrap::Ports;
use crate::{jwt, parse_cases, requests, write_files, Case};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, usage: &str) -> T {
    weft_bench_support::arg(args, i, &format!("authz-bench {usage}"))
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (written by `authz-bench files`)",
                dir.join(name).display()
            )
        })
        .trim()
        .to_string()
}

/// Runs a manual sub-command if `args` name one; whether one ran.
pub fn run(args: &[String], rt: &tokio::runtime::Runtime) -> bool {
    match args.first().map(String::as_str) {
        Some("files") => {
            let dir: PathBuf = arg(args, 1, "files DIR");
            std::fs::create_dir_all(&dir).expect("DIR");
            let p = Ports {
                listener: free_port(),
                admin: free_port(),
                backend: free_port(),
            };
            let tokens = jwt::tokens();
            write_files(&dir, p, &tokens, &parse_cases(None));
            std::fs::write(dir.join("token-es256"), &tokens.es256).unwrap();
            std::fs::write(dir.join("token-rs256"), &tokens.rs256).unwrap();
            std::fs::write(dir.join("listener-port"), p.listener.to_string()).unwrap();
            println!(
                "{}: the proxies listen on {} (admin {}); start `authz-bench backend {}`, then e.g. `taskset -c 0 weft proxy --concurrency 1 -c {}/rbac-1000.json`, then `authz-bench load {} rbac-1000 10 PID`",
                dir.display(), p.listener, p.admin, p.backend, dir.display(), dir.display()
            );
        }
        Some("load") => {
            let usage = "load DIR CASE SECS [PID]";
            let dir: PathBuf = arg(args, 1, usage);
            let case =
                Case::parse(&arg::<String>(args, 2, usage)).unwrap_or_else(|e| panic!("{e}"));
            let secs: f64 = arg(args, 3, usage);
            let pid: Option<u32> = args.get(4).map(|_| arg(args, 4, usage));
            let port: u16 = read(&dir, "listener-port").parse().expect("a port");
            let tokens = jwt::Tokens {
                jwks: serde_json::Value::Null,
                es256: read(&dir, "token-es256"),
                rs256: read(&dir, "token-rs256"),
            };
            rt.block_on(async move {
                let cpu0 = pid.map(cpu_seconds_of);
                let g0 = generator_core_seconds();
                let t0 = std::time::Instant::now();
                let m = h1::max_rps(port, &[], secs, requests(case, &tokens)).await;
                let elapsed = t0.elapsed().as_secs_f64();
                let served = m.statuses.get(&200).copied().unwrap_or(0).max(1) as f64;
                println!(
                    "{}: {:.0} rps, by status {:?}, {} without a response, generator core busy {:.0}%",
                    case.name(),
                    m.rps,
                    m.statuses,
                    m.failed,
                    (generator_core_seconds() - g0) / elapsed * 100.0
                );
                if let (Some(pid), Some(c0)) = (pid, cpu0) {
                    println!(
                        "process {pid}: {:.2} CPU µs per 200",
                        (cpu_seconds_of(pid) - c0) / served * 1e6
                    );
                }
            });
        }
        _ => return false,
    }
    true
}
