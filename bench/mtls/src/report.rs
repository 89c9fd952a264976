//! What one round measured for one proxy kind, the medians over rounds,
//! and the markdown table with weft, Envoy and weft/Envoy columns and the
//! issue's targets.

/// One proxy kind (a client side and a server side) in one round.
#[derive(Clone, Default)]
pub struct Round {
    /// RSS at start, after the first requests, MiB.
    pub rss_client: f64,
    pub rss_server: f64,
    /// Keep-alive: max rps through client side → server side → backend,
    /// CPU seconds per 100k requests of each side.
    pub rps: f64,
    pub cpu_client: f64,
    pub cpu_server: f64,
    /// Share of the generator's core (generator + backend) in use during
    /// the keep-alive run: near 100% the rate is the generator's.
    pub rps_gen_busy: f64,
    pub errors: u64,
    /// Latency at 1,000 rps through both proxies, ms.
    pub p50: f64,
    pub p99: f64,
    /// New mTLS connections per second to the server side, its CPU
    /// seconds per 1,000 of them, the generator's core use meanwhile.
    pub hs_rate: f64,
    pub hs_cpu_1k: f64,
    pub hs_gen_busy: f64,
    /// KiB per idle connection: direct mTLS to the server side.
    pub idle_direct: f64,
    pub idle_opened: usize,
    /// KiB per idle connection through the client side, on each side.
    pub chain_client: f64,
    pub chain_server: f64,
    /// Requests the backend held at once in that run (the connections
    /// each hop had open together).
    pub chain_held: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Each figure's median over the rounds (counts: the sum, or the least
/// for connections reached).
pub fn medians(rounds: &[Round]) -> Round {
    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    Round {
        rss_client: m(|r| r.rss_client),
        rss_server: m(|r| r.rss_server),
        rps: m(|r| r.rps),
        cpu_client: m(|r| r.cpu_client),
        cpu_server: m(|r| r.cpu_server),
        rps_gen_busy: m(|r| r.rps_gen_busy),
        errors: rounds.iter().map(|r| r.errors).sum(),
        p50: m(|r| r.p50),
        p99: m(|r| r.p99),
        hs_rate: m(|r| r.hs_rate),
        hs_cpu_1k: m(|r| r.hs_cpu_1k),
        hs_gen_busy: m(|r| r.hs_gen_busy),
        idle_direct: m(|r| r.idle_direct),
        idle_opened: rounds.iter().map(|r| r.idle_opened).min().unwrap_or(0),
        chain_client: m(|r| r.chain_client),
        chain_server: m(|r| r.chain_server),
        chain_held: rounds.iter().map(|r| r.chain_held).min().unwrap_or(0),
    }
}

/// How a ratio is judged against a target.
#[derive(Clone, Copy)]
enum Target {
    None,
    AtMost(f64),
    AtLeast(f64),
}

pub struct Floor {
    pub p50: f64,
    pub p99: f64,
}

pub fn print(w: &Round, e: &Round, floor: &Floor, secs: f64, rounds: usize, conns: usize) {
    println!("mtls-bench: {secs} s per measurement, median of {rounds} rounds (errors: total); each proxy one worker, both on core 0; load generator and backend on core 1");
    println!();
    println!("| measure | weft | envoy | weft/envoy | target | met |");
    println!("|---|---:|---:|---:|---:|---|");
    let row = |name: &str, w: f64, e: f64, prec: usize, t: Target| {
        let ratio = w / e;
        // A difference from the floor can come out negative in noise; a
        // ratio of such is no figure.
        let shown = if w > 0.0 && e > 0.0 {
            format!("{ratio:.2}×")
        } else {
            "–".into()
        };
        let (target, met) = match t {
            Target::None => (String::new(), ""),
            Target::AtMost(x) => (format!("≤ {x}×"), if ratio <= x { "yes" } else { "no" }),
            Target::AtLeast(x) => (format!("≥ {x}×"), if ratio >= x { "yes" } else { "no" }),
        };
        println!("| {name} | {w:.prec$} | {e:.prec$} | {shown} | {target} | {met} |");
    };
    row(
        "keep-alive: max rps (client side → server side → backend)",
        w.rps,
        e.rps,
        0,
        Target::None,
    );
    row(
        "keep-alive: CPU s / 100k req, both proxies",
        w.cpu_client + w.cpu_server,
        e.cpu_client + e.cpu_server,
        2,
        Target::AtMost(0.6),
    );
    row(
        "keep-alive: CPU s / 100k req, client side",
        w.cpu_client,
        e.cpu_client,
        2,
        Target::None,
    );
    row(
        "keep-alive: CPU s / 100k req, server side",
        w.cpu_server,
        e.cpu_server,
        2,
        Target::None,
    );
    row(
        "keep-alive: generator core busy, %",
        w.rps_gen_busy * 100.0,
        e.rps_gen_busy * 100.0,
        0,
        Target::None,
    );
    row(
        "new mTLS handshakes/s to the server side (one request each)",
        w.hs_rate,
        e.hs_rate,
        0,
        Target::AtLeast(1.5),
    );
    row(
        "server side CPU s / 1k handshakes",
        w.hs_cpu_1k,
        e.hs_cpu_1k,
        3,
        Target::None,
    );
    row(
        "handshakes per server-side CPU second (1000 / the row above)",
        1000.0 / w.hs_cpu_1k,
        1000.0 / e.hs_cpu_1k,
        0,
        Target::None,
    );
    row(
        "handshakes: generator core busy, %",
        w.hs_gen_busy * 100.0,
        e.hs_gen_busy * 100.0,
        0,
        Target::None,
    );
    row(
        &format!("p50 ms @1000 rps through both (no proxy: {:.3})", floor.p50),
        w.p50,
        e.p50,
        3,
        Target::None,
    );
    row(
        &format!("p99 ms @1000 rps through both (no proxy: {:.3})", floor.p99),
        w.p99,
        e.p99,
        3,
        Target::None,
    );
    row(
        "p50 ms added to no proxy",
        w.p50 - floor.p50,
        e.p50 - floor.p50,
        3,
        Target::None,
    );
    row(
        "p99 ms added to no proxy",
        w.p99 - floor.p99,
        e.p99 - floor.p99,
        3,
        Target::None,
    );
    row(
        "RSS MiB at start, client side",
        w.rss_client,
        e.rss_client,
        1,
        Target::None,
    );
    row(
        "RSS MiB at start, server side",
        w.rss_server,
        e.rss_server,
        1,
        Target::None,
    );
    row(
        &format!("KiB per idle mTLS connection, server side ({conns} direct)"),
        w.idle_direct,
        e.idle_direct,
        1,
        Target::AtMost(0.5),
    );
    row(&format!("KiB per idle connection via client side ({conns}): client side, plaintext in + mTLS out"), w.chain_client, e.chain_client, 1, Target::None);
    row(&format!("KiB per idle connection via client side ({conns}): server side, mTLS in + plaintext out"), w.chain_server, e.chain_server, 1, Target::None);
    println!();
    println!(
        "Connections: direct idle opened {} / {} (weft) and {} / {} (envoy), fewest in a round; via the client side the backend held {} (weft) and {} (envoy) requests at once (= connections open together at each hop). Failed requests or handshakes (all measurements, all rounds): weft {}, envoy {}.",
        w.idle_opened, conns, e.idle_opened, conns, w.chain_held, e.chain_held, w.errors, e.errors
    );
    println!("Targets (issue): CPU per request ≤ 0.6× Envoy's, handshakes/s ≥ 1.5× Envoy's, memory per idle TLS connection ≤ 0.5× Envoy's.");
    println!("Handshakes: the generator is the client sidecar (client certificate, rustls), resumption off (no session ID or ticket offered), TLS 1.3 with X25519 and ECDSA P-256; it does not verify the server (the proxies verify each other in the keep-alive chain). Near 100% generator core busy, the handshake rate is the generator's; the per-CPU-second row does not depend on it.");
    for (name, r) in [("weft", w), ("envoy", e)] {
        if r.hs_gen_busy > 0.9 || r.rps_gen_busy > 0.9 {
            println!("Note: the generator's core was saturated in a {name} run (≥ 90%): that rate is a lower bound for {name}.");
        }
    }
}
