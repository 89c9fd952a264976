use super::*;
use crate::model::{Protocol, Resolution};

fn build(text: &str) -> Registry {
    let loaded = weft_config::load_str("k8s.yaml", text, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    Registry::build(&loaded.resources)
}

const PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: reviews-v1-abc, namespace: shop, labels: {app: reviews, version: v1}}
spec:
  containers: [{name: app, image: reviews, ports: [{name: http, containerPort: 9080}]}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2-def, namespace: shop, labels: {app: reviews, version: v2}}
spec:
  containers: [{name: app, image: reviews, ports: [{name: http, containerPort: 9090}]}]
status: {podIP: 10.0.0.2}
";

#[test]
fn kubernetes_services_take_the_pods_their_selector_picks() {
    let reg = build(&format!(
        "{PODS}---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec:
  clusterIP: 10.96.0.10
  selector: {{app: reviews}}
  ports: [{{name: http-api, port: 9080, targetPort: http}}, {{name: grpc, port: 7070, appProtocol: grpc}}]
"
    ));
    let s = &reg.services().next().unwrap();
    assert_eq!(s.hostname, "reviews.shop.svc.cluster.local");
    assert_eq!(s.address.as_deref(), Some("10.96.0.10"));
    assert_eq!(
        s.ports
            .iter()
            .map(|p| (p.number, p.protocol))
            .collect::<Vec<_>>(),
        [(9080, Protocol::Http), (7070, Protocol::Grpc)]
    );
    // targetPort by name: each pod's own container port.
    let eps: Vec<(String, u32, String)> = reg
        .endpoints_of("reviews.shop.svc.cluster.local", 9080)
        .map(|e| (e.address.clone(), e.port, e.labels["version"].clone()))
        .collect();
    assert_eq!(
        eps,
        [
            ("10.0.0.1".into(), 9080, "v1".into()),
            ("10.0.0.2".into(), 9090, "v2".into())
        ]
    );
    assert_eq!(reg.workloads().count(), 2);
}

#[test]
fn endpoints_and_endpoint_slices_name_their_pods_for_labels() {
    let reg = build(&format!(
        "{PODS}---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: reviews, namespace: shop}}
subsets:
- addresses: [{{ip: 10.0.0.1, targetRef: {{kind: Pod, name: reviews-v1-abc}}}}]
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ratings, namespace: shop}}
spec:
  ports: [{{name: http, port: 9080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: ratings-x1, namespace: shop, labels: {{kubernetes.io/service-name: ratings}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: [10.0.0.2]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: reviews-v2-def}}
- addresses: [10.0.0.9]
  conditions: {{ready: false}}
"
    ));
    // Listed endpoints replace the selector's pods.
    let reviews: Vec<_> = reg
        .endpoints_of("reviews.shop.svc.cluster.local", 9080)
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].labels["version"], "v1");
    // Slices: ready endpoints only, the slice's port, the pod's labels.
    let ratings: Vec<_> = reg
        .endpoints_of("ratings.shop.svc.cluster.local", 9080)
        .collect();
    assert_eq!(ratings.len(), 1, "{ratings:?}");
    assert_eq!(
        (ratings[0].address.as_str(), ratings[0].port),
        ("10.0.0.2", 8080)
    );
    assert_eq!(ratings[0].labels["version"], "v2");
}

#[test]
fn service_entries_take_inline_endpoints_or_selected_workload_entries() {
    let reg = build(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: data}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP, targetPort: 15432}]
  resolution: STATIC
  endpoints: [{address: 192.168.1.5, ports: {tcp-pg: 6432}, weight: 3}, {address: 192.168.1.6}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: data}
spec:
  hosts: [api.data.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: data}
spec: {address: 10.1.1.1, labels: {app: api}, ports: {http: 8080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: other}
spec: {address: 10.1.1.2, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: data}
spec:
  hosts: [www.example.org]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
",
    );
    let db: Vec<(String, u32, Option<u32>)> = reg
        .endpoints_of("db.example.com", 5432)
        .map(|e| (e.address.clone(), e.port, e.weight))
        .collect();
    assert_eq!(
        db,
        [
            ("192.168.1.5".into(), 6432, Some(3)),
            ("192.168.1.6".into(), 15432, None)
        ]
    );
    // The selector looks in the ServiceEntry's namespace only.
    let api: Vec<_> = reg.endpoints_of("api.data.svc.cluster.local", 80).collect();
    assert_eq!(api.len(), 1);
    assert_eq!((api[0].address.as_str(), api[0].port), ("10.1.1.1", 8080));
    // DNS without endpoints resolves the host itself.
    let ext: Vec<_> = reg.endpoints_of("www.example.org", 443).collect();
    assert_eq!(ext[0].address, "www.example.org");
    let s = reg
        .services()
        .find(|s| s.hostname == "www.example.org")
        .unwrap();
    assert_eq!((s.resolution, s.mesh_external), (Resolution::Dns, true));
}

const SERVICE: &str = "---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http-api, port: 9080, targetPort: http}]
";

/// Everything a lookup can see, for comparing two registries.
fn view(reg: &Registry) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n",
        reg.services().collect::<Vec<_>>(),
        reg.workloads().collect::<Vec<_>>()
    );
    for s in reg.services() {
        out += &format!("{} {:?}\n", s.hostname, reg.endpoint_digest(&s.hostname));
        for p in &s.ports {
            out += &format!(
                "  {:?}\n",
                reg.endpoints_of(&s.hostname, p.number).collect::<Vec<_>>()
            );
        }
        out += &format!("  first {:?}\n", reg.service(&s.hostname));
    }
    out
}

fn entries(ns: &str, app: &str, addresses: &[&str]) -> String {
    let mut out = format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {app}, namespace: {ns}}}
spec:
  hosts: [{app}.{ns}.svc.cluster.local, shared.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {app}}}}}
"
    );
    for (i, a) in addresses.iter().enumerate() {
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {app}-{i}, namespace: {ns}}}
spec: {{address: {a}, labels: {{app: {app}}}}}
"
        );
    }
    out
}

#[test]
fn rebuilding_the_changed_namespaces_gives_what_building_everything_gives() {
    let load = |text: &str| weft_config::load_str("mesh.yaml", text, &Default::default()).resources;
    let steps: Vec<(String, &[&str])> = vec![
        (
            entries("a", "web", &["10.0.0.1", "10.0.0.2"])
                + &entries("b", "db", &["10.1.0.1"])
                + "---\n"
                + PODS
                + SERVICE,
            &[],
        ),
        // An instance of `a` moves.
        (
            entries("a", "web", &["10.0.0.1", "10.0.0.9"])
                + &entries("b", "db", &["10.1.0.1"])
                + "---\n"
                + PODS
                + SERVICE,
            &["a"],
        ),
        // `b` gains an instance; a new namespace appears.
        (
            entries("a", "web", &["10.0.0.1", "10.0.0.9"])
                + &entries("b", "db", &["10.1.0.1", "10.1.0.2"])
                + &entries("c", "cache", &["10.2.0.1"])
                + "---\n"
                + PODS
                + SERVICE,
            &["b", "c"],
        ),
        // `a` goes away.
        (
            entries("b", "db", &["10.1.0.1", "10.1.0.2"])
                + &entries("c", "cache", &["10.2.0.1"])
                + "---\n"
                + PODS
                + SERVICE,
            &["a"],
        ),
    ];
    let mut prev: Option<Registry> = None;
    for (i, (text, changed)) in steps.iter().enumerate() {
        let resources = load(text);
        let changed: BTreeSet<String> = changed.iter().map(|s| s.to_string()).collect();
        let whole = Registry::build(&resources);
        let rebuilt = Registry::rebuild(prev.as_ref(), &resources, &changed);
        assert_eq!(view(&rebuilt), view(&whole), "step {i}");
        let removal_only = i == 3;
        if let (Some(p), false) = (&prev, changed.is_empty() || removal_only) {
            // What the step changed shows: not rebuilding it would serve
            // the previous instances. (A namespace with no objects left
            // is simply not there.)
            let stale = Registry::rebuild(Some(p), &resources, &BTreeSet::new());
            assert_ne!(view(&stale), view(&whole), "step {i} changes nothing?");
        }
        prev = Some(rebuilt);
    }
}

#[test]
fn a_service_with_an_empty_selector_selects_no_pods() {
    // Kubernetes: a Service whose selector is empty or absent has its
    // endpoints managed elsewhere; `selector: {}` used to pick every pod
    // of the namespace.
    for selector in ["selector: {}", ""] {
        let reg = build(&format!(
            "{PODS}---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec:
  {selector}
  ports: [{{name: http, port: 9080}}]
"
        ));
        assert_eq!(
            reg.endpoints_of("reviews.shop.svc.cluster.local", 9080)
                .count(),
            0,
            "{selector:?}"
        );
    }
}

#[test]
fn port_protocols_follow_istio_s_protocol_selection() {
    let reg = build(
        "apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports:
  - {name: h2c, port: 8080}
  - {name: web, port: 8081, appProtocol: kubernetes.io/h2c}
  - {name: ws, port: 8082, appProtocol: kubernetes.io/ws}
  - {name: http, port: 8083, appProtocol: example.com/custom}
  - {name: http-dns, port: 8084, protocol: UDP}
  - {name: db, port: 3306}
",
    );
    let s = reg.services().next().unwrap();
    let got: Vec<_> = s.ports.iter().map(|p| (p.number, p.protocol)).collect();
    assert_eq!(
        got,
        [
            // `h2c` is not in Istio's table of port name prefixes.
            (8080, Protocol::Unknown),
            (8081, Protocol::Http2),
            (8082, Protocol::Http),
            // An appProtocol wins over the name, known or not.
            (8083, Protocol::Unknown),
            (8084, Protocol::Udp),
            // A well-known server-first port is TCP, not sniffed.
            (3306, Protocol::Tcp),
        ]
    );
}
