//! The medians over rounds and the markdown table: per case rps and CPU
//! per request of weft and Envoy, their ratio against the issue's
//! target, the cost each filter adds to the baseline, and weft's
//! 1,000-policy to 10-policy ratio against its target.

use weft_bench_support::median;

use crate::{Case, Sample};

/// The targets.
const CPU_RATIO_TARGET: f64 = 0.6;
const RULES_RATIO_TARGET: f64 = 1.10;

/// One case's medians.
pub struct Row {
    pub case: Case,
    pub weft: Sample,
    pub envoy: Sample,
}

/// Each figure's median over the rounds (200s: the sum).
pub fn medians(rounds: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(rounds.iter().map(f).collect());
    Sample {
        rps: m(|s| s.rps),
        cpu_us: m(|s| s.cpu_us),
        gen_busy: m(|s| s.gen_busy),
        ok: rounds.iter().map(|s| s.ok).sum(),
    }
}

fn label(c: Case) -> String {
    match c {
        Case::Baseline => "(d) no auth filter (baseline)".into(),
        Case::Rbac(10) => "(a) RBAC, 10 policies".into(),
        Case::Rbac(1000) => "(b) RBAC, 1,000 policies".into(),
        Case::Rbac(n) => format!("RBAC, {n} policies"),
        Case::Jwt(a) => format!("(c) JWT, {}", a.name()),
    }
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio <= target {
        "met"
    } else {
        "**NOT met**"
    }
}

pub fn print(rows: &[Row], secs: f64, rounds: usize) {
    println!("authz-bench: {secs} s per measurement, median of {rounds} rounds; each proxy one worker on core 0, load generator (64 keep-alive HTTP/1.1 connections) and backend on core 1; every response counted was a 200");
    println!();
    println!("| case | weft rps | envoy rps | weft CPU µs/req | envoy CPU µs/req | weft/envoy CPU | added to baseline, µs/req (weft / envoy) | target | met |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let base = rows.iter().find(|r| r.case == Case::Baseline);
    for r in rows {
        let (w, e) = (&r.weft, &r.envoy);
        let ratio = w.cpu_us / e.cpu_us;
        let added = match (r.case, base) {
            (Case::Baseline, _) | (_, None) => String::new(),
            (_, Some(b)) => format!(
                "{:.2} / {:.2}",
                w.cpu_us - b.weft.cpu_us,
                e.cpu_us - b.envoy.cpu_us
            ),
        };
        let (target, met) = match r.case {
            Case::Baseline => (String::new(), ""),
            _ => (
                format!("≤ {CPU_RATIO_TARGET}×"),
                verdict(ratio, CPU_RATIO_TARGET),
            ),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {ratio:.2}× | {added} | {target} | {met} |",
            label(r.case),
            w.rps,
            e.rps,
            w.cpu_us,
            e.cpu_us
        );
    }
    let of = |n: usize| rows.iter().find(|r| r.case == Case::Rbac(n));
    if let (Some(small), Some(large)) = (of(10), of(1000)) {
        let w = large.weft.cpu_us / small.weft.cpu_us;
        let e = large.envoy.cpu_us / small.envoy.cpu_us;
        println!(
            "| weft: CPU/req with 1,000 policies ÷ with 10 (envoy: {e:.2}×) | | | {:.2} / {:.2} | {:.2} / {:.2} | | | ≤ {RULES_RATIO_TARGET:.2}× (weft {w:.2}×) | {} |",
            large.weft.cpu_us,
            small.weft.cpu_us,
            large.envoy.cpu_us,
            small.envoy.cpu_us,
            verdict(w, RULES_RATIO_TARGET)
        );
    }
    println!();
    let ok = |f: fn(&Row) -> u64| rows.iter().map(f).sum::<u64>();
    println!(
        "Requests answered 200 (all cases, all rounds): weft {}, envoy {}; none answered otherwise (the bench stops at the first that is not a 200).",
        ok(|r| r.weft.ok),
        ok(|r| r.envoy.ok)
    );
    println!("Targets (issue): weft's CPU per request ≤ {CPU_RATIO_TARGET}× Envoy's in each auth case; weft with 1,000 policies within 10% of weft with 10.");
    println!("RBAC: ALLOW with N Istio-shaped policies (and_rules of or_rules over :method, url_path and destination_port; and_ids of or_ids over headers, remote_ip/direct_remote_ip and not_id); the request is allowed only by the policy whose name sorts last, so Envoy evaluates all N policies on each request; weft's policy index (crates/weft-proxy/src/rbac/index.rs) looks the request's method, path, port, peer and headers up and evaluates only the policies that could match, here the last one. JWT: one provider with an inline JWKS (P-256 and RSA-2048 keys) required on every path; each request carries a valid token (no token cache in either proxy).");
    println!("CPU per request is the proxy process's utime + stime over the measurement, divided by the 200s served; it holds when the generator's core is the limit, rps does not.");
    for r in rows {
        for (name, s) in [("weft", &r.weft), ("envoy", &r.envoy)] {
            if s.gen_busy > 0.9 {
                println!(
                    "Note: the generator's core was {:.0}% busy in {name}'s {} runs: that rps is a lower bound for {name}.",
                    s.gen_busy * 100.0,
                    r.case.name()
                );
            }
        }
    }
}
