//! `weft control` under load: SERVICES services × ENDPOINTS endpoints,
//! each with a DestinationRule (two subsets) and a VirtualService (90/10
//! split), served to PROXIES simulated sidecars.
//!
//! `control-bench [SERVICES] [PROXIES] [CHANGES] [DEBOUNCE_MS]` — run by
//! `bench/control.sh`, which pins the control plane (`weft control`, a
//! child process) to core 0 and this process (the simulated proxies) to
//! core 1. A simulated proxy speaks state-of-the-world ADS as Envoy
//! does: CDS and LDS first, EDS for every EDS cluster it was given, RDS
//! for the route table its listeners name, and it ACKs every response.
//!
//! Reported:
//! - *initial sync*: from the proxies connecting to all of them holding
//!   every type;
//! - *full push*: a new service written to the directory (new clusters,
//!   endpoints and virtual hosts for every proxy) until every proxy has
//!   the new route table and the new service's endpoints;
//! - *route change* and *endpoint change*, CHANGES times each: one
//!   VirtualService's weights or one WorkloadEntry's address rewritten
//!   (atomically, by rename) until every proxy has received the changed
//!   type, p50 / p99 — this includes the quiet time DEBOUNCE_MS
//!   (Istio's default is 100 ms; 0 measures the pipeline alone);
//! - the control plane's RSS once loaded (no proxy yet), after the
//!   initial sync and at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::mpsc;
use weft_xds::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_xds::discovery::{DiscoveryRequest, DiscoveryResponse};
use weft_xds::Kind;

type Cluster = envoy_types::pb::envoy::config::cluster::v3::Cluster;
type Node = envoy_types::pb::envoy::config::core::v3::Node;

const WAIT: Duration = Duration::from_secs(600);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes `text` to `path` atomically (rename), as editors that save
/// safely do; the control plane never sees half a file here.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn service(i: usize) -> (String, String) {
    (format!("svc-{i}"), format!("ns-{}", i % 10))
}

fn service_yaml(i: usize, endpoints: usize, shift: usize) -> String {
    let (name, ns) = service(i);
    let mut out = format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}.{ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"
    );
    for e in 0..endpoints {
        let version = if e % 2 == 0 { "v1" } else { "v2" };
        let n = i * endpoints + e + shift;
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-{e}, namespace: {ns}}}
spec:
  address: 10.{}.{}.{}
  ports: {{http: 9080}}
  labels: {{app: {name}, version: {version}}}
",
            (n >> 16) & 255,
            (n >> 8) & 255,
            n & 255
        );
    }
    out
}

fn route_yaml(i: usize, v1: u32) -> String {
    let (name, ns) = service(i);
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: {name}, subset: v2}}, weight: {}}}
",
        100 - v1
    )
}

/// What every simulated proxy has received: type → version, by proxy.
#[derive(Default)]
struct Seen {
    /// (proxy, kind) → (version, when it arrived).
    latest: BTreeMap<(usize, Kind), (u64, Instant)>,
    /// (proxy) → EDS names it holds.
    eds_names: BTreeMap<usize, BTreeSet<String>>,
}

async fn proxy(id: usize, xds: u16, seen: Arc<Mutex<Seen>>) {
    let node = Node {
        id: format!(
            "sidecar~10.200.{}.{}~client-{id}.ns-0~ns-0.svc.cluster.local",
            id / 256,
            id % 256
        ),
        cluster: "bench".into(),
        ..Default::default()
    };
    let mut client = loop {
        match AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{xds}")).await {
            Ok(c) => break c.max_decoding_message_size(usize::MAX),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let first = |kind: Kind, names: Vec<String>| DiscoveryRequest {
        node: Some(node.clone()),
        type_url: kind.type_url(),
        resource_names: names,
        ..Default::default()
    };
    tx.send(first(Kind::Cluster, vec![])).unwrap();
    tx.send(first(Kind::Listener, vec![])).unwrap();
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let mut names: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    let mut acked: BTreeMap<Kind, (String, String)> = BTreeMap::new();
    while let Ok(Some(resp)) = stream.message().await {
        let now = Instant::now();
        let DiscoveryResponse {
            version_info,
            resources,
            type_url,
            nonce,
            ..
        } = resp;
        let Some(kind) = Kind::from_type_url(&type_url) else {
            continue;
        };
        let ack = |kind: Kind, version: &str, nonce: &str, names: Vec<String>| DiscoveryRequest {
            type_url: kind.type_url(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            resource_names: names,
            ..Default::default()
        };
        tx.send(ack(
            kind,
            &version_info,
            &nonce,
            names.get(&kind).cloned().unwrap_or_default(),
        ))
        .unwrap();
        acked.insert(kind, (version_info.clone(), nonce.clone()));
        match kind {
            Kind::Cluster => {
                let eds: Vec<String> = resources
                    .iter()
                    .filter_map(|a| Cluster::decode(a.value.as_slice()).ok())
                    .filter(|c| c.eds_cluster_config.is_some())
                    .map(|c| c.name)
                    .collect();
                if names.get(&Kind::ClusterLoadAssignment) != Some(&eds) {
                    names.insert(Kind::ClusterLoadAssignment, eds.clone());
                    let (v, n) = acked
                        .get(&Kind::ClusterLoadAssignment)
                        .cloned()
                        .unwrap_or_default();
                    tx.send(ack(Kind::ClusterLoadAssignment, &v, &n, eds))
                        .unwrap();
                }
            }
            Kind::Listener if !names.contains_key(&Kind::RouteConfiguration) => {
                // Every service is on port 9080: one route table.
                names.insert(Kind::RouteConfiguration, vec!["9080".into()]);
                tx.send(ack(Kind::RouteConfiguration, "", "", vec!["9080".into()]))
                    .unwrap();
            }
            _ => {}
        }
        let version: u64 = version_info.parse().unwrap_or(0);
        let mut s = seen.lock().unwrap();
        s.latest.insert((id, kind), (version, now));
        if kind == Kind::ClusterLoadAssignment {
            let held = s.eds_names.entry(id).or_default();
            for a in &resources {
                if let Ok(c) =
                    envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment::decode(
                        a.value.as_slice(),
                    )
                {
                    held.insert(c.cluster_name);
                }
            }
        }
    }
}

/// Waits until every proxy has `kind` at a version above `after` (and,
/// for EDS, holds `eds_name`); the latest arrival among them.
async fn all_received(
    seen: &Mutex<Seen>,
    proxies: usize,
    kinds: &[Kind],
    after: u64,
    eds_name: Option<&str>,
) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        {
            let s = seen.lock().unwrap();
            let mut last = None::<Instant>;
            let mut done = true;
            'proxies: for p in 0..proxies {
                for k in kinds {
                    match s.latest.get(&(p, *k)) {
                        Some((v, t)) if *v > after => last = Some(last.map_or(*t, |l| l.max(*t))),
                        _ => {
                            done = false;
                            break 'proxies;
                        }
                    }
                }
                if let Some(n) = eds_name {
                    if !s.eds_names.get(&p).is_some_and(|h| h.contains(n)) {
                        done = false;
                        break;
                    }
                }
            }
            if done {
                return last.expect("some proxy");
            }
        }
        assert!(Instant::now() < deadline, "proxies did not converge");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn version_now(seen: &Mutex<Seen>) -> u64 {
    seen.lock()
        .unwrap()
        .latest
        .values()
        .map(|(v, _)| *v)
        .max()
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let services = args.first().copied().unwrap_or(1000);
    let proxies = args.get(1).copied().unwrap_or(100);
    let changes = args.get(2).copied().unwrap_or(20);
    let debounce = args.get(3).copied().unwrap_or(100);
    let endpoints = 10;
    let bin = std::env::var("WEFT_BIN").unwrap_or_else(|_| "target/release/weft".into());

    let dir: PathBuf =
        std::env::temp_dir().join(format!("weft-control-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!(
        "control-bench: writing {services} services × {endpoints} endpoints to {}",
        dir.display()
    );
    let mut svc = String::new();
    let mut routes = String::new();
    for i in 1..services {
        svc += &service_yaml(i, endpoints, 0);
        routes += &route_yaml(i, 90);
    }
    write(&dir.join("services.yaml"), &svc);
    write(&dir.join("routes.yaml"), &routes);
    write(&dir.join("svc-0.yaml"), &service_yaml(0, endpoints, 0));
    write(&dir.join("vs-0.yaml"), &route_yaml(0, 90));
    let clients: String = (0..proxies)
        .map(|id| {
            format!(
                "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client-{id}, namespace: ns-0}}
spec:
  address: 10.200.{}.{}
  labels: {{app: client}}
",
                id / 256,
                id % 256
            )
        })
        .collect();
    write(&dir.join("clients.yaml"), &clients);
    drop((svc, routes));

    let (xds, debug) = (free_port(), free_port());
    let log = dir.with_extension("log");
    let started = Instant::now();
    // On core 0 when taskset is there (it execs, so the pid is weft's).
    let mut cmd = if Command::new("taskset").arg("-V").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let mut control: Child = cmd
        .args(["control", "--config"])
        .arg(&dir)
        .args(["--xds-address", &format!("127.0.0.1:{xds}")])
        .args(["--debug-address", &format!("127.0.0.1:{debug}")])
        .args(["--debounce-ms", &debounce.to_string()])
        .env(
            "WEFT_LOG",
            std::env::var("WEFT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let pid = control.id();
    while std::net::TcpStream::connect(("127.0.0.1", xds)).is_err() {
        assert!(started.elapsed() < WAIT, "weft control did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let load = started.elapsed();
    let rss_loaded = rss_mib(pid);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let connect = Instant::now();
    for id in 0..proxies {
        tokio::spawn(proxy(id, xds, Arc::clone(&seen)));
    }
    let all = [
        Kind::Cluster,
        Kind::ClusterLoadAssignment,
        Kind::Listener,
        Kind::RouteConfiguration,
    ];
    let synced = all_received(
        &seen,
        proxies,
        &all,
        0,
        Some("outbound|9080|v2|svc-0.ns-0.svc.cluster.local"),
    )
    .await;
    let initial = synced - connect;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_synced = rss_mib(pid);

    // Full push: a new service for everyone.
    let before = version_now(&seen);
    let t0 = Instant::now();
    let new = services;
    write(
        &dir.join("new.yaml"),
        &(service_yaml(new, endpoints, 7) + &route_yaml(new, 90)),
    );
    let name = format!(
        "outbound|9080|v1|svc-{new}.ns-{}.svc.cluster.local",
        new % 10
    );
    let done = all_received(
        &seen,
        proxies,
        &[Kind::RouteConfiguration, Kind::Cluster],
        before,
        Some(&name),
    )
    .await;
    let full = done - t0;

    let mut route_ms = Vec::new();
    let mut endpoint_ms = Vec::new();
    for c in 0..changes {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = version_now(&seen);
        let t0 = Instant::now();
        write(
            &dir.join("vs-0.yaml"),
            &route_yaml(0, if c % 2 == 0 { 80 } else { 90 }),
        );
        let done = all_received(&seen, proxies, &[Kind::RouteConfiguration], before, None).await;
        route_ms.push((done - t0).as_secs_f64() * 1e3);

        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = version_now(&seen);
        let t0 = Instant::now();
        write(
            &dir.join("svc-0.yaml"),
            &service_yaml(0, endpoints, if c % 2 == 0 { 100_000 } else { 0 }),
        );
        let done = all_received(&seen, proxies, &[Kind::ClusterLoadAssignment], before, None).await;
        endpoint_ms.push((done - t0).as_secs_f64() * 1e3);
    }
    let rss_end = rss_mib(pid);
    let _ = control.kill();
    let _ = control.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var_os("WEFT_LOG").is_none() {
        let _ = std::fs::remove_file(&log);
    } else {
        eprintln!("control plane log: {}", log.display());
    }

    println!(
        "\n{services} services × {endpoints} endpoints (+ a DestinationRule with 2 subsets and a VirtualService each), {proxies} simulated sidecars, debounce {debounce} ms; control plane on core 0, proxies on core 1\n"
    );
    println!("| measure | value |\n|---|---:|");
    println!(
        "| control plane start (load, validate, listen) | {:.0} ms |",
        load.as_secs_f64() * 1e3
    );
    println!(
        "| initial sync of {proxies} proxies (all four types) | {:.0} ms |",
        initial.as_secs_f64() * 1e3
    );
    println!(
        "| full push (a new service → every proxy has it) | {:.0} ms |",
        full.as_secs_f64() * 1e3
    );
    println!(
        "| route change → every proxy received RDS, p50 / p99 | {:.1} / {:.1} ms |",
        pct(&mut route_ms.clone(), 0.5),
        pct(&mut route_ms, 0.99)
    );
    println!(
        "| endpoint change → every proxy received EDS, p50 / p99 | {:.1} / {:.1} ms |",
        pct(&mut endpoint_ms.clone(), 0.5),
        pct(&mut endpoint_ms, 0.99)
    );
    println!(
        "| control plane RSS loaded (no proxy) / after sync / at the end | {rss_loaded:.0} / {rss_synced:.0} / {rss_end:.0} MiB |"
    );
}
