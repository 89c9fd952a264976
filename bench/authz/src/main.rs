//! weft proxy against Envoy with access policy filters, same bootstraps,
//! same machine, same run.
//!
//! `authz-bench [SECONDS] [ROUNDS] [CASES]` — run by `bench/authz.sh`,
//! which pins this process (load generator) and the backend to core 1;
//! each proxy runs with one worker pinned to core 0. One proxy at a
//! time: a plaintext HTTP/1.1 listener, an HTTP connection manager, the
//! case's filter, the router, one backend. The cases (CASES, comma
//! separated; all by default):
//!
//! - `none`: no auth filter, the baseline each filter's cost is added to;
//! - `rbac-10`, `rbac-1000` (any `rbac-N`): an RBAC filter with N
//!   Istio-shaped policies, the request allowed only by the one
//!   evaluated last (see [`rbac`]);
//! - `jwt-es256`, `jwt-rs256`: JWT authentication, one provider required
//!   on every path, each request carrying a valid token of that
//!   algorithm (see [`jwt`]).
//!
//! Per case and proxy: the maximum rate of a closed loop (64 keep-alive
//! connections, 64 requests in flight) for SECONDS (3) and the proxy's
//! CPU (utime + stime from /proc) per request served; medians of ROUNDS
//! (3) rounds, the order of the two proxies alternating by round. Every
//! response is counted by status, and any that is not a 200 stops the
//! run: a misconfigured rule must not benchmark the 403 path. Before
//! each measurement the proxy is checked to enforce its filter (a
//! request no policy allows gets a 403, one without a token a 401).
//!
//! `authz-bench backend PORT` runs the backend alone (used internally);
//! `files DIR` and `load DIR CASE SECS` run parts by hand (see
//! [`manual`]).

mod bootstrap;
mod jwt;
mod manual;
mod rbac;
mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bootstrap::Ports;
use http::HeaderValue;
use weft_bench_support::h1::{self, Request};
use weft_bench_support::procs::{self, free_port, generator_core_seconds, Kind, Proxy};
use weft_bench_support::{arg_or, backend};

/// One measured configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// No auth filter.
    Baseline,
    /// An RBAC filter with this many policies.
    Rbac(usize),
    /// The JWT filter, tokens of this algorithm.
    Jwt(jwt::Alg),
}

/// What runs when no CASES are given.
pub const DEFAULT_CASES: &str = "none,rbac-10,rbac-1000,jwt-es256,jwt-rs256";

impl Case {
    pub fn parse(s: &str) -> Result<Case, String> {
        match s {
            "none" => Ok(Case::Baseline),
            "jwt-es256" => Ok(Case::Jwt(jwt::Alg::Es256)),
            "jwt-rs256" => Ok(Case::Jwt(jwt::Alg::Rs256)),
            _ => match s.strip_prefix("rbac-").map(str::parse) {
                Some(Ok(n)) if n > 0 => Ok(Case::Rbac(n)),
                _ => Err(format!(
                    "unknown case {s:?}: expected none, rbac-N (N > 0), jwt-es256 or jwt-rs256"
                )),
            },
        }
    }

    /// As on the command line.
    pub fn name(self) -> String {
        match self {
            Case::Baseline => "none".into(),
            Case::Rbac(n) => format!("rbac-{n}"),
            Case::Jwt(a) => format!("jwt-{}", a.name().to_lowercase()),
        }
    }

    /// Its bootstrap's file name (the JWT cases share one).
    pub fn file(self) -> String {
        match self {
            Case::Jwt(_) => "jwt.json".into(),
            c => format!("{}.json", c.name()),
        }
    }
}

/// Everything a run's requests are made of.
pub struct Setup {
    pub dir: PathBuf,
    pub ports: Ports,
    pub tokens: jwt::Tokens,
}

/// Writes every case's bootstrap into `dir`.
pub fn write_files(dir: &Path, ports: Ports, tokens: &jwt::Tokens, cases: &[Case]) {
    for &c in cases {
        std::fs::write(
            dir.join(c.file()),
            bootstrap::render(c, ports, &tokens.jwks),
        )
        .expect("a bootstrap file");
    }
}

/// The request under load: the same in every case but for the token,
/// which only the JWT cases carry; `extra`, a header more for a check.
fn build(token: Option<&HeaderValue>, extra: Option<(&str, &str)>) -> Request {
    let mut b = http::Request::builder()
        .uri("/api/v1/items/42")
        .header("host", "items.bench.test")
        .header("user-agent", "authz-bench")
        .header("accept", "*/*")
        .header("x-tenant", rbac::TENANT);
    if let Some(t) = token {
        b = b.header("authorization", t.clone());
    }
    if let Some((name, value)) = extra {
        b = b.header(name, value);
    }
    b.body(http_body_util::Empty::new()).unwrap()
}

fn bearer(case: Case, tokens: &jwt::Tokens) -> Option<HeaderValue> {
    match case {
        Case::Jwt(alg) => Some(
            HeaderValue::from_str(&format!("Bearer {}", tokens.of(alg))).expect("a header value"),
        ),
        _ => None,
    }
}

/// A maker of `case`'s request under load.
pub fn requests(case: Case, tokens: &jwt::Tokens) -> impl Fn() -> Request + Send + Sync + 'static {
    let token = bearer(case, tokens);
    move || build(token.as_ref(), None)
}

/// One request on a connection of its own: its status, or 0.
async fn status_of(port: u16, req: Request) -> u16 {
    match h1::connect(port).await {
        Ok(mut c) => h1::send(&mut c, req).await.unwrap_or(0),
        Err(_) => 0,
    }
}

/// Checks that `proxy` serves `case`'s request under load (200) and
/// enforces its filter: the checks' statuses must be as expected, or
/// the run stops with the proxy's log.
async fn check(proxy: &Proxy, case: Case, s: &Setup) {
    let port = s.ports.listener;
    let token = bearer(case, &s.tokens);
    let mut checks: Vec<(&str, Request, u16)> =
        vec![("the request under load", build(token.as_ref(), None), 200)];
    match case {
        Case::Baseline => {}
        Case::Rbac(_) => {
            checks.push((
                "a path no policy allows",
                http::Request::builder()
                    .uri("/nope")
                    .header("host", "items.bench.test")
                    .header("x-tenant", rbac::TENANT)
                    .body(http_body_util::Empty::new())
                    .unwrap(),
                403,
            ));
            // Only the policy evaluated last allows the request; it
            // refuses an x-blocked header, so that must be a 403.
            checks.push((
                "the request with x-blocked",
                build(None, Some(("x-blocked", "1"))),
                403,
            ));
        }
        Case::Jwt(_) => checks.push(("the request without a token", build(None, None), 401)),
    }
    for (what, req, want) in checks {
        let got = status_of(port, req).await;
        if got != want {
            panic!(
                "{} on {}: {what} got {got}, expected {want}\n--- its log:\n{}",
                proxy.label,
                case.name(),
                proxy.log_tail()
            );
        }
    }
}

/// One proxy kind on one case in one round.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    pub rps: f64,
    /// The proxy's CPU microseconds per request served.
    pub cpu_us: f64,
    /// Share of the generator's core (generator + backend) in use.
    pub gen_busy: f64,
    /// 200s counted.
    pub ok: u64,
}

/// Measures `kind` on `case`: a fresh proxy, checked, then the closed
/// loop. Stops the run at any response but a 200.
async fn measure(kind: Kind, case: Case, s: &Setup, secs: f64) -> Sample {
    let file = s.dir.join(case.file());
    let proxy = procs::start(kind, &case.name(), &file, s.ports.admin, &s.dir).await;
    check(&proxy, case, s).await;
    let g0 = generator_core_seconds();
    let t0 = std::time::Instant::now();
    let m = h1::max_rps(s.ports.listener, &[&proxy], secs, requests(case, &s.tokens)).await;
    let gen_busy = (generator_core_seconds() - g0) / t0.elapsed().as_secs_f64();
    if m.errors() > 0 {
        panic!(
            "{} on {}: not every request got a 200: by status {:?}, {} without a response\n--- its log:\n{}",
            proxy.label,
            case.name(),
            m.statuses,
            m.failed,
            proxy.log_tail()
        );
    }
    Sample {
        rps: m.rps,
        // CPU seconds per 100k requests → microseconds per request.
        cpu_us: m.cpu_per_100k[0] * 10.0,
        gen_busy,
        ok: m.statuses.get(&200).copied().unwrap_or(0),
    }
}

fn parse_cases(list: Option<&String>) -> Vec<Case> {
    list.map_or(DEFAULT_CASES, String::as_str)
        .split(',')
        .map(|c| Case::parse(c).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = weft_bench_support::runtime();
    if backend::serve_if_asked(&args, &rt) || manual::run(&args, &rt) {
        return;
    }
    let secs: f64 = arg_or(&args, 0, 3.0);
    let rounds: usize = arg_or(&args, 1, 3).max(1);
    let cases = parse_cases(args.get(2));
    rt.block_on(async move {
        let dir = std::env::temp_dir().join(format!("weft-authz-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = Ports {
            listener: free_port(),
            admin: free_port(),
            backend: free_port(),
        };
        let tokens = jwt::tokens();
        write_files(&dir, ports, &tokens, &cases);
        let backend = procs::spawn_backend(&["backend".into(), ports.backend.to_string()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let setup = Setup {
            dir: dir.clone(),
            ports,
            tokens,
        };
        // samples[case][0 weft, 1 envoy][round]
        let mut samples = vec![[Vec::new(), Vec::new()]; cases.len()];
        for round in 0..rounds {
            eprintln!("authz-bench: round {} of {rounds}", round + 1);
            // Alternating which kind goes first spreads the machine's
            // drift over both.
            let order = if round % 2 == 0 {
                [Kind::Envoy, Kind::Weft]
            } else {
                [Kind::Weft, Kind::Envoy]
            };
            for (i, &case) in cases.iter().enumerate() {
                for kind in order {
                    let r = measure(kind, case, &setup, secs).await;
                    eprintln!(
                        "authz-bench:   {:<10} {:<5} {:>8.0} rps {:>7.2} µs/req",
                        case.name(),
                        kind.name(),
                        r.rps,
                        r.cpu_us
                    );
                    samples[i][usize::from(kind == Kind::Envoy)].push(r);
                }
            }
        }
        drop(backend);
        let _ = std::fs::remove_dir_all(&dir);
        let rows: Vec<report::Row> = cases
            .iter()
            .zip(&samples)
            .map(|(&case, [w, e])| report::Row {
                case,
                weft: report::medians(w),
                envoy: report::medians(e),
            })
            .collect();
        report::print(&rows, secs, rounds);
    });
}
