//! Mesh mutual TLS end to end, with real sockets: the control plane and
//! its CA in-process, an agent per workload (a certificate from the CA,
//! served over SDS on a Unix socket, as pilot-agent does) and each
//! workload's sidecar on the bootstrap pilot-agent writes — Envoy for
//! one client and one server, weft for the others — so every pairing
//! (Envoy → weft, weft → Envoy, weft → weft, and Envoy → Envoy as the
//! reference) is a request from an application through its sidecar's
//! egress to another workload's sidecar and its application.
//!
//! With Istio's defaults (PERMISSIVE, auto mTLS) the request travels
//! over mutual TLS: the server's application sees the
//! `x-forwarded-client-cert` its sidecar's inbound side appended, whose
//! `URI` is the client's SPIFFE id and `By` the server's. Then a STRICT
//! PeerAuthentication lands in the watched directory: once the servers'
//! sidecars have it, a plaintext request straight to their inbound
//! address is refused, and sidecar to sidecar still works.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_control::bootstrap::{self, Identity as Node};
use weft_control::gen::ProxyKind;
use weft_identity::agent::{self, Agent, AgentOptions};
use weft_identity::Identity;
use weft_testkit::envoy::{free_port, start_envoy, Envoy, TempDir};
use weft_testkit::http::{request, Reply};
use weft_testkit::wait::{wait_for, PATIENCE};

const NS: &str = "default";

/// A workload: its sidecar's kind (`envoy` or `weft`), its address
/// (its sidecar's ingress binds there) and where its sidecar's egress
/// binds (the application's side).
struct Workload {
    name: &'static str,
    side: &'static str,
    ip: &'static str,
    egress: &'static str,
}

impl Workload {
    /// Each workload runs as a service account of its own name.
    fn spiffe(&self) -> String {
        format!("spiffe://cluster.local/ns/{NS}/sa/{}", self.name)
    }
}

// Addresses of their own, so no other test's listeners are in the way.
const CLIENTS: [Workload; 2] = [
    Workload {
        name: "client-envoy",
        side: "envoy",
        ip: "127.0.0.61",
        egress: "127.0.0.61",
    },
    Workload {
        name: "client-weft",
        side: "weft",
        ip: "127.0.0.62",
        egress: "127.0.0.62",
    },
];
const SERVERS: [Workload; 2] = [
    Workload {
        name: "server-envoy",
        side: "envoy",
        ip: "127.0.0.63",
        egress: "127.0.0.73",
    },
    Workload {
        name: "server-weft",
        side: "weft",
        ip: "127.0.0.64",
        egress: "127.0.0.74",
    },
];

/// The mesh: a service per server workload (which has a sidecar: its
/// `tlsMode` label says so, as injection does), on `port`, its sidecar's
/// ingress on the workload's address handing requests to the echo
/// backend; each client's sidecar egress on the client's address.
fn mesh(port: u16, backends: &[u16; 2]) -> String {
    let mut out = String::new();
    for (w, backend) in SERVERS.iter().zip(backends) {
        let (name, ip, egress) = (w.name, w.ip, w.egress);
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{name}.{NS}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  address: {ip}
  serviceAccount: {name}
  labels: {{app: {name}, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {NS}}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  ingress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {ip}
    captureMode: NONE
    defaultEndpoint: 127.0.0.1:{backend}
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {egress}
    captureMode: NONE
    hosts: [\"./*\"]
"
        );
    }
    for w in &CLIENTS {
        let (name, ip, egress) = (w.name, w.ip, w.egress);
        out += &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  address: {ip}
  serviceAccount: {name}
  labels: {{app: {name}, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {NS}}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: {egress}
    captureMode: NONE
    hosts: [\"./*\"]
"
        );
    }
    out
}

const STRICT: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
";

/// A workload's sidecar: Envoy or weft, on the same bootstrap.
enum Sidecar {
    /// Killed when dropped.
    Envoy {
        _process: Envoy,
    },
    Weft(weft_proxy::Running),
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Sidecar::Weft(w) = self {
            w.shared.shutdown();
        }
    }
}

/// What runs for a workload: its agent and its sidecar.
struct Running {
    _agent: Agent,
    _sidecar: Sidecar,
    node: String,
}

/// Starts `w`'s agent (its certificate from the mesh CA, served on an
/// SDS socket under `dir`) and its sidecar, bootstrapped as pilot-agent
/// bootstraps Envoy: ADS from the control plane at `xds`, certificates
/// from the agent.
async fn start_workload(
    w: &Workload,
    ca: &weft_control::ca::MeshCa,
    xds: SocketAddr,
    dir: &Path,
) -> Running {
    let socket: PathBuf = dir.join(format!("{}.sock", w.name));
    let id = Identity::in_cluster_local(NS, w.name).unwrap();
    let opts = AgentOptions::from_files(
        ca.address,
        Some("istiod.istio-system.svc".into()),
        ca.root_cert_path(),
        ca.join_token_path(),
        id,
        socket.clone(),
    )
    .unwrap();
    let agent = agent::start(opts).await.unwrap();
    let node = Node {
        kind: ProxyKind::Sidecar,
        name: w.name.into(),
        namespace: NS.into(),
        ip: w.ip.into(),
        service_account: Some(w.name.into()),
        labels: Default::default(),
    };
    let admin = free_port();
    let text = bootstrap::envoy(
        &node,
        &bootstrap::Options {
            xds,
            admin,
            sds_socket: Some(socket),
            prometheus: 0,
        },
    )
    .to_string();
    let sidecar = match w.side {
        "envoy" => Sidecar::Envoy {
            _process: start_envoy(&text, admin).await,
        },
        _ => {
            let boot = weft_envoy::parse_bootstrap("bootstrap", &text).unwrap();
            let snapshot = weft_proxy::Snapshot::compile(&boot).await.unwrap();
            let running = weft_proxy::start(snapshot).await.unwrap();
            weft_proxy::xds::spawn(&running.shared, &boot).unwrap();
            Sidecar::Weft(running)
        }
    };
    Running {
        _agent: agent,
        _sidecar: sidecar,
        node: node.node_id(),
    }
}

/// A request from `client`'s application to `server`'s service, through
/// the client's sidecar egress; the application sends an XFCC header of
/// its own, which its sidecar must not pass on.
async fn through_sidecars(
    client: &Workload,
    server: &Workload,
    port: u16,
) -> Result<Reply, String> {
    let host = format!("{}.{NS}.svc.cluster.local:{port}", server.name);
    request(
        "GET",
        &format!("http://{}:{port}/hello", client.egress),
        &[
            ("host", host.as_str()),
            (
                "x-forwarded-client-cert",
                "By=spiffe://forged;URI=spiffe://forged",
            ),
        ],
        false,
    )
    .await
}

/// The XFCC header lines the server's application received.
fn xfcc(r: &Reply) -> Result<Vec<String>, String> {
    let seen = r
        .seen()
        .filter(|_| r.status == 200)
        .ok_or_else(|| format!("{} {}", r.status, r.body))?;
    Ok(seen["headers"]["x-forwarded-client-cert"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect())
}

/// `client` → `server` answered by the server's application, with the
/// one XFCC element its sidecar added: By the server's identity, the
/// client certificate's hash, its (empty) subject and its URI, the
/// client's identity. Returns the element with `By` left out.
fn mutual_tls_seen(client: &Workload, server: &Workload, r: &Reply) -> Result<String, String> {
    let lines = xfcc(r)?;
    let [element] = lines.as_slice() else {
        return Err(format!("one XFCC element expected: {lines:?}"));
    };
    let rest = element
        .strip_prefix(&format!("By={};", server.spiffe()))
        .ok_or_else(|| format!("By is not {}: {element}", server.spiffe()))?;
    let hash = rest
        .strip_prefix("Hash=")
        .and_then(|r| r.split(';').next())
        .unwrap_or_default();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("no SHA-256 hash: {element}"));
    }
    let tail = format!(";Subject=\"\";URI={}", client.spiffe());
    if !rest.ends_with(&tail) {
        return Err(format!("expected it to end with {tail}: {element}"));
    }
    Ok(rest.to_string())
}

/// A plaintext request straight to `server`'s inbound listener.
async fn plaintext_to(server: &Workload, port: u16) -> Result<Reply, String> {
    let host = format!("{}.{NS}.svc.cluster.local:{port}", server.name);
    request(
        "GET",
        &format!("http://{}:{port}/direct", server.ip),
        &[("host", host.as_str())],
        false,
    )
    .await
}

/// Waits until the proxies `nodes` were sent a snapshot newer than
/// `after` and accepted all of it.
async fn synced_after(server: &weft_control::server::AdsServer, nodes: &[&str], after: u64) {
    wait_for(
        "the servers' sidecars to take the new snapshot",
        PATIENCE,
        async || {
            let status = server.status();
            let ok = nodes.iter().all(|n| {
                status.iter().any(|p| {
                    p.id == *n
                        && p.snapshot > after
                        && p.types
                            .values()
                            .all(|t| t.nack.is_none() && t.sent == t.acked)
                })
            });
            if ok {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_mtls_between_envoy_and_weft_sidecars_with_agents() {
    let dir = TempDir::new("mtls-agents");
    let config = dir.0.join("mesh");
    std::fs::create_dir_all(&config).unwrap();
    let sockets = dir.0.join("sds");
    std::fs::create_dir_all(&sockets).unwrap();
    let port = free_port();
    let backends = [
        weft_testkit::http::echo_backend("server-envoy-app")
            .await
            .port(),
        weft_testkit::http::echo_backend("server-weft-app")
            .await
            .port(),
    ];
    std::fs::write(config.join("mesh.yaml"), mesh(port, &backends)).unwrap();

    let mut opts = weft_control::run::Options::new(&config);
    opts.xds = "127.0.0.1:0".parse().unwrap();
    opts.debug = "127.0.0.1:0".parse().unwrap();
    opts.poll = Duration::from_millis(200);
    let mut secure = weft_control::ca::SecureOptions::new(dir.0.join("state"));
    secure.address = "127.0.0.1:0".parse().unwrap();
    opts.ca = Some(secure);
    let control = weft_control::run::start(opts).await.unwrap();
    let ca = control.ca.clone().expect("the CA runs");

    let mut running = Vec::new();
    for w in SERVERS.iter().chain(&CLIENTS) {
        running.push(start_workload(w, &ca, control.xds, &sockets).await);
    }

    // PERMISSIVE (no PeerAuthentication) with auto mTLS: every pairing
    // goes over mutual TLS with the client's identity.
    let mut elements = Vec::new();
    for client in &CLIENTS {
        for server in &SERVERS {
            let what = format!(
                "{} ({}) → {} ({}) over mutual TLS",
                client.name, client.side, server.name, server.side
            );
            let element = wait_for(&what, PATIENCE, async || {
                let r = through_sidecars(client, server, port).await?;
                mutual_tls_seen(client, server, &r)
            })
            .await;
            elements.push((client.name, server.name, element));
        }
    }
    // Both servers described each client's certificate alike (By aside).
    for client in &CLIENTS {
        let seen: Vec<&String> = elements
            .iter()
            .filter(|(c, _, _)| *c == client.name)
            .map(|(_, _, e)| e)
            .collect();
        assert_eq!(seen[0], seen[1], "{}: {elements:?}", client.name);
    }
    // The plaintext half of PERMISSIVE: a client without a sidecar is
    // served, with no certificate to describe.
    for server in &SERVERS {
        let r = plaintext_to(server, port).await;
        let lines = r.as_ref().map_err(Clone::clone).and_then(xfcc);
        assert_eq!(lines, Ok(Vec::new()), "plaintext to {}: {r:?}", server.name);
    }

    // STRICT: plaintext refused once the servers' sidecars have it.
    let before = control
        .server
        .status()
        .iter()
        .map(|p| p.snapshot)
        .max()
        .unwrap_or(0);
    std::fs::write(config.join("strict.yaml"), STRICT).unwrap();
    let servers: Vec<&str> = running[..SERVERS.len()]
        .iter()
        .map(|r| r.node.as_str())
        .collect();
    synced_after(&control.server, &servers, before).await;
    for server in &SERVERS {
        let what = format!("plaintext to {} ({}) refused", server.name, server.side);
        wait_for(&what, PATIENCE, async || {
            match plaintext_to(server, port).await {
                Err(_) => Ok(()),
                Ok(r) => Err(format!("answered {}: {}", r.status, r.body)),
            }
        })
        .await;
    }
    for client in &CLIENTS {
        for server in &SERVERS {
            let r = through_sidecars(client, server, port).await;
            let seen = r
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|r| mutual_tls_seen(client, server, r));
            assert!(
                seen.is_ok(),
                "STRICT: {} ({}) → {} ({}): {seen:?} {r:?}",
                client.name,
                client.side,
                server.name,
                server.side
            );
        }
    }
    drop(running);
}
