//! VirtualService `tcp` and `tls` routes end to end: a real Envoy and
//! weft's proxy as sidecars of `weft control` (egress bound with
//! `captureMode: NONE`) and then as a gateway with a TLS PASSTHROUGH
//! server, each connection answered by a TCP backend that first writes
//! its name. TLS hellos are built by hand (`weft_testkit::tls`): the
//! proxies route them by SNI without terminating TLS, and the backend
//! echoes them back untouched.

mod common;

use std::time::Duration;

use common::snapshot;
use weft_control::server::AdsServer;
use weft_testkit::envoy::{free_port, start_envoy};
use weft_testkit::http::tcp_echo_backend;
use weft_testkit::tls::client_hello;
use weft_testkit::xds::ads_bootstrap;

const WAIT: Duration = weft_testkit::wait::PATIENCE;
const TCP: u16 = 9000;
const TLS: u16 = 9443;

/// `tcp-echo` (v1, v2) on TCP 9000; the external hosts `a.example` and
/// `b.example` on TLS 9443; two clients binding their egress on
/// 127.0.0.4 (Envoy) and 127.0.0.5 (weft); the ingress gateway.
async fn registry() -> String {
    let mut out = String::new();
    for v in ["v1", "v2"] {
        let name: &'static str = if v == "v1" {
            "tcp-echo-v1"
        } else {
            "tcp-echo-v2"
        };
        let port = tcp_echo_backend(name).await.port();
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{tcp: {port}}}
  labels: {{app: tcp-echo, version: {v}}}
"
        );
    }
    for (host, name) in [("a.example", "tls-a"), ("b.example", "tls-b")] {
        let port = tcp_echo_backend(name).await.port();
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {TLS}, name: tls, protocol: TLS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {port}}}}}]
"
        );
    }
    out += &format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [tcp-echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {TCP}, name: tcp, protocol: TCP}}]
  workloadSelector: {{labels: {{app: tcp-echo}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: default}}
spec:
  host: tcp-echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  address: 127.0.0.1
  labels: {{istio: ingressgateway}}
"
    );
    for (client, ip) in CLIENTS {
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client-{client}, namespace: default}}
spec:
  address: {ip}
  labels: {{app: client-{client}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client-{client}, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client-{client}}}}}
  egress:
  - port: {{number: {TCP}, protocol: TCP, name: tcp}}
    bind: {ip}
    captureMode: NONE
    hosts: [\"./*\"]
  - port: {{number: {TLS}, protocol: TLS, name: tls}}
    bind: {ip}
    captureMode: NONE
    hosts: [\"./*\"]
"
        );
    }
    out
}

const CLIENTS: [(&str, &str); 2] = [("envoy", "127.0.0.4"), ("weft", "127.0.0.5")];

fn node(client: &str, ip: &str) -> String {
    format!("sidecar~{ip}~client-{client}.default~default.svc.cluster.local")
}

/// Who answered a connection from `ip` to `port` that opens with
/// `data`: the backend's name, or `closed`. Like a TLS client waiting
/// for the server's hello, it keeps its side open until the backend's
/// answer is in.
async fn answer(ip: &str, port: u16, data: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((ip, port)).await.unwrap();
    s.write_all(data).await.unwrap();
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let name_end = out.iter().position(|b| *b == b'\n');
            if name_end.is_some_and(|end| out.len() >= end + 1 + data.len()) {
                break;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, read).await;
    match out.iter().position(|b| *b == b'\n') {
        Some(end) => {
            let name = String::from_utf8_lossy(&out[..end]).into_owned();
            assert_eq!(&out[end + 1..], data, "{name} echoed something else");
            name
        }
        None => "closed".to_string(),
    }
}

fn hello(sni: &str) -> Vec<u8> {
    client_hello(Some(sni), &["h2"], None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_routes_through_envoy_and_weft_sidecars() {
    let base = registry().await;
    let server = AdsServer::new(snapshot(&base, 1));
    let (addr, _task) = server
        .clone()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let admin = free_port();
    let (e, ip) = CLIENTS[0];
    let _envoy = start_envoy(&ads_bootstrap(&node(e, ip), admin, addr), admin).await;
    let (w, ip) = CLIENTS[1];
    let _weft = common::weft_sidecar(&node(w, ip), addr).await;
    let nodes = CLIENTS.map(|(c, ip)| node(c, ip));
    let nodes = nodes.each_ref().map(String::as_str);
    // No HTTP port, no route tables: LDS, CDS, EDS.
    let types = 3;
    common::wait_synced(&server, 1, &nodes, types).await;
    let mut version = 1;
    let mut apply = async |extra: &str| {
        version += 1;
        server.publish(snapshot(&format!("{base}---\n{extra}"), version));
        common::wait_synced(&server, version, &nodes, types).await;
    };
    let both = async |port: u16, data: &[u8]| {
        let e = answer(CLIENTS[0].1, port, data).await;
        let w = answer(CLIENTS[1].1, port, data).await;
        assert_eq!(e, w, "envoy and weft disagree on port {port}");
        e
    };

    // No VirtualService: the service's own cluster; TLS by SNI.
    for (client, ip) in CLIENTS {
        let name = answer(ip, TCP, b"ping").await;
        assert!(name.starts_with("tcp-echo-v"), "{client}: {name}");
    }
    assert_eq!(both(TLS, &hello("a.example")).await, "tls-a");
    assert_eq!(both(TLS, &hello("b.example")).await, "tls-b");

    // A tcp route to one subset.
    apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo]
  tcp:
  - route: [{destination: {host: tcp-echo, subset: v2}}]
",
    )
    .await;
    for _ in 0..10 {
        assert_eq!(both(TCP, b"ping").await, "tcp-echo-v2");
    }

    // By source: the Envoy client's workload to v1, everyone else to v2.
    apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{sourceLabels: {app: client-envoy}, port: 9000}]
    route: [{destination: {host: tcp-echo, subset: v1}}]
  - route: [{destination: {host: tcp-echo, subset: v2}}]
",
    )
    .await;
    for _ in 0..5 {
        assert_eq!(answer(CLIENTS[0].1, TCP, b"x").await, "tcp-echo-v1");
        assert_eq!(answer(CLIENTS[1].1, TCP, b"x").await, "tcp-echo-v2");
    }

    // Weighted 50/50: over 40 connections per proxy both versions answer
    // (all 40 to one side has a chance of 2^-39).
    apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo]
  tcp:
  - route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 50}
    - {destination: {host: tcp-echo, subset: v2}, weight: 50}
",
    )
    .await;
    for (client, ip) in CLIENTS {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            seen.insert(answer(ip, TCP, b"x").await);
        }
        let want: std::collections::BTreeSet<String> =
            ["tcp-echo-v1".into(), "tcp-echo-v2".into()].into();
        assert_eq!(seen, want, "{client}");
    }

    // A tls route: hellos for a.example go to b.example's endpoints.
    apply(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example]
  tls:
  - match: [{sniHosts: [a.example], port: 9443}]
    route: [{destination: {host: b.example, port: {number: 9443}}}]
",
    )
    .await;
    assert_eq!(both(TLS, &hello("a.example")).await, "tls-b");
    assert_eq!(both(TLS, &hello("b.example")).await, "tls-b");
}

/// A gateway server in TLS PASSTHROUGH mode: the hello's SNI picks the
/// VirtualService `tls` route; a name no route admits is refused. Served
/// by an Envoy gateway, then by a weft gateway on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_gateway_through_envoy_and_weft() {
    let gw_port = free_port();
    let yaml = format!(
        "{}---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tls-gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw_port}, name: tls, protocol: TLS}}
    tls: {{mode: PASSTHROUGH}}
    hosts: [\"*.example\"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: passthrough, namespace: default}}
spec:
  hosts: [a.example, b.example]
  gateways: [tls-gw]
  tls:
  - match: [{{sniHosts: [a.example]}}]
    route: [{{destination: {{host: a.example, port: {{number: {TLS}}}}}}}]
  - match: [{{sniHosts: [b.example]}}]
    route: [{{destination: {{host: b.example, port: {{number: {TLS}}}}}}}]
",
        registry().await
    );
    let server = AdsServer::new(snapshot(&yaml, 1));
    let (addr, _task) = server
        .clone()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node = "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local";
    let mut answers = Vec::new();
    for side in ["envoy", "weft"] {
        // Each gateway is a new proxy on the same node name: wait until
        // the control plane has seen the previous one's stream end, so
        // that its status is not taken for the new one's.
        weft_testkit::wait::wait_until(
            "the previous gateway's stream to end",
            weft_testkit::wait::PATIENCE,
            || async { server.status().iter().all(|p| p.id != node) },
        )
        .await;
        let gateway = common::Gateway::start(side, node, addr).await;
        common::wait_synced(&server, 1, &[node], 3).await;
        // The listener is up once the proxy has ACKed it; wait for the
        // bind all the same.
        weft_testkit::wait::wait_until(
            &format!("{side}: the gateway listening on {gw_port}"),
            weft_testkit::wait::PATIENCE,
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", gw_port))
                    .await
                    .is_ok()
            },
        )
        .await;
        let mut got = Vec::new();
        for sni in ["a.example", "b.example", "c.example"] {
            got.push(answer("127.0.0.1", gw_port, &hello(sni)).await);
        }
        assert_eq!(got, ["tls-a", "tls-b", "closed"], "{side}");
        answers.push(got);
        gateway.stop(gw_port).await;
    }
    assert_eq!(answers[0], answers[1]);
}
