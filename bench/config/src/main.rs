//! Generates a realistic mesh configuration (namespaces of services, each
//! with Deployments, DestinationRules, VirtualServices, policies; some
//! gateways and ServiceEntries), writes it as YAML files, then times
//! loading, validating and analyzing it the way `weft analyze` does.
//!
//! `config-bench [RESOURCES] [RUNS]` (defaults 10000 and 5). Prints a
//! table of the best and median of RUNS per phase. Pin it to one core with
//! `taskset -c 0` (bench/config.sh does) to measure one core.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_config::{load_paths, validate, LoadOptions};

/// Objects one service brings: Service, Deployment v1 and v2,
/// DestinationRule, VirtualService, AuthorizationPolicy.
const PER_SERVICE: usize = 6;
const SERVICES_PER_NAMESPACE: usize = 20;

fn service(out: &mut String, ns: &str, i: usize, n_services: usize) {
    let name = format!("svc-{i}");
    let next = format!("svc-{}", (i + 1) % n_services);
    let _ = write!(
        out,
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 8080, targetPort: 8080}}
"#
    );
    for v in ["v1", "v2"] {
        let _ = write!(
            out,
            r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}-{v}, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}, version: {v}}}}}
  template:
    metadata:
      labels: {{app: {name}, version: {v}}}
      annotations: {{sidecar.istio.io/proxyCPU: 100m}}
    spec:
      containers:
      - name: app
        image: registry.example.com/{name}:{v}
        ports: [{{containerPort: 8080}}]
        env: [{{name: NEXT, value: "http://{next}:8080"}}]
        resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
"#
        );
    }
    let _ = write!(
        out,
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100, connectTimeout: 3s}}
      http: {{http1MaxPendingRequests: 50, maxRequestsPerConnection: 10}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - name: v2
    labels: {{version: v2}}
    trafficPolicy: {{loadBalancer: {{simple: LEAST_REQUEST}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - name: canary-by-header
    match:
    - headers: {{end-user: {{exact: jason}}}}
      uri: {{prefix: /api/}}
    route:
    - destination: {{host: {name}, subset: v2, port: {{number: 8080}}}}
    timeout: 2s
    retries: {{attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,reset,connect-failure"}}
  - name: split
    route:
    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {name}, subset: v2}}, weight: 10}}
    fault:
      delay: {{fixedDelay: 5s, percentage: {{value: 0.1}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/{ns}/sa/{next}"]}}}}]
    to: [{{operation: {{methods: [GET, POST], paths: ["/api/*"]}}}}]
"#
    );
}

fn namespace(out: &mut String, ns: &str, n: usize) {
    let _ = write!(
        out,
        r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {ns}}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: {ns}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["{ns}.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: public, namespace: {ns}}}
spec:
  hosts: ["{ns}.example.com"]
  gateways: [public]
  http:
  - match: [{{uri: {{prefix: /}}}}]
    route: [{{destination: {{host: svc-0, subset: v1, port: {{number: 8080}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments-api, namespace: {ns}}}
spec:
  hosts: [payments-{ns}.example.org]
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  resolution: DNS
  location: MESH_EXTERNAL
"#
    );
    for i in 0..n {
        service(out, ns, i, n);
    }
}

/// Writes one file per namespace; returns the directory and object count.
fn generate(target: usize) -> (PathBuf, usize) {
    let dir = std::env::temp_dir().join(format!("weft-config-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let per_ns = 5 + SERVICES_PER_NAMESPACE * PER_SERVICE;
    let namespaces = target.div_ceil(per_ns).max(1);
    for n in 0..namespaces {
        let mut text = String::new();
        namespace(&mut text, &format!("team-{n}"), SERVICES_PER_NAMESPACE);
        std::fs::write(dir.join(format!("team-{n}.yaml")), text).expect("write");
    }
    (dir, namespaces * per_ns)
}

struct Timings {
    load: Duration,
    validate: Duration,
    analyze: Duration,
}

fn run_once(dir: &PathBuf) -> (Timings, usize, usize, usize) {
    let t0 = Instant::now();
    let loaded = load_paths(std::slice::from_ref(dir), &LoadOptions::default());
    let t1 = Instant::now();
    let violations: usize = loaded
        .resources
        .iter()
        .map(|r| validate(&r.object).len())
        .sum();
    let t2 = Instant::now();
    // analyze() runs the schema analyzer again; the validate phase above is
    // what `weft validate` costs, analyze is what `weft analyze` adds.
    let findings = weft_analyze::analyze(&loaded.resources, &loaded.issues, &Default::default());
    let t3 = Instant::now();
    (
        Timings {
            load: t1 - t0,
            validate: t2 - t1,
            analyze: t3 - t2,
        },
        loaded.resources.len(),
        violations,
        findings.len(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let (dir, expected) = generate(target);
    let mut all = Vec::new();
    let mut counts = (0, 0, 0);
    for _ in 0..runs {
        let (t, objects, violations, findings) = run_once(&dir);
        counts = (objects, violations, findings);
        all.push(t);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (objects, violations, findings) = counts;
    assert_eq!(objects, expected, "every generated object must load");
    let phase = |f: &dyn Fn(&Timings) -> Duration| {
        let mut v: Vec<Duration> = all.iter().map(f).collect();
        v.sort();
        (v[0], v[v.len() / 2])
    };
    let rows: [(&str, (Duration, Duration)); 4] = [
        ("load (read + parse + decode)", phase(&|t| t.load)),
        ("validate (admission rules)", phase(&|t| t.validate)),
        ("analyze (all analyzers)", phase(&|t| t.analyze)),
        ("total", phase(&|t| t.load + t.validate + t.analyze)),
    ];
    println!("config-bench: {objects} objects, {runs} runs, {violations} violations, {findings} findings");
    println!("| phase | best ms | median ms |");
    println!("|---|---:|---:|");
    for (name, (best, median)) in rows {
        println!("| {name} | {} | {} |", ms(best), ms(median));
    }
    let (_, median_total) = phase(&|t| t.load + t.validate + t.analyze);
    let verdict = if median_total < Duration::from_secs(1) {
        "under"
    } else {
        "OVER"
    };
    println!(
        "median total {} ms: {verdict} the 1 s target",
        ms(median_total)
    );
}
