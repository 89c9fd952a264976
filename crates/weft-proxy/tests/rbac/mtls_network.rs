//! The mTLS and network half of the RBAC parity tests: principals from
//! client certificates over real TLS connections (a rustls client with
//! the test CA's leaves), the network filter on tcp_proxy listeners and
//! in front of a connection manager, and the configurations weft
//! refuses by name.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::ca::{Ca, LeafFiles, Validity};

use super::support::pair::{socket, HCM, ROUTER, TCP_PROXY};
use super::support::*;
use super::{
    any, cidr, path_prefix, policy, prometheus_diffs, rbac_filter, same_stats, stat_diffs,
};

const NETWORK_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// The certificates of the mTLS tests.
struct Pki {
    _dir: TempDir,
    root: String,
    server: LeafFiles,
    allowed: LeafFiles,
    other: LeafFiles,
    /// No URI SAN: its DNS SAN and subject are its names.
    named: LeafFiles,
    root_pem: String,
}

fn pki() -> Pki {
    let dir = TempDir::new("rbac");
    let d = &dir.0;
    let root = Ca::root("weft rbac root");
    let sa = |name: &str| format!("spiffe://cluster.local/ns/default/sa/{name}");
    Pki {
        root: root.write(d, "root").display().to_string(),
        root_pem: root.cert_pem().to_string(),
        server: root
            .leaf(&["server.test"], &[&sa("server")], Validity::Current)
            .write(d, "server"),
        allowed: root
            .leaf(&[], &[&sa("allowed")], Validity::Current)
            .write(d, "allowed"),
        other: root
            .leaf(&[], &[&sa("other")], Validity::Current)
            .write(d, "other"),
        named: root
            .leaf(&["named.test"], &[], Validity::Current)
            .write(d, "named"),
        _dir: dir,
    }
}

fn file(p: &std::path::Path) -> Value {
    json!({"filename": p.display().to_string()})
}

fn tls_socket(p: &Pki, require_client: bool) -> Value {
    let mut common = json!({
        "tls_certificates": [{"certificate_chain": file(&p.server.cert), "private_key": file(&p.server.key)}]
    });
    if require_client {
        common["validation_context"] = json!({"trusted_ca": {"filename": p.root}});
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS,
        "require_client_certificate": require_client,
        "common_tls_context": common
    }})
}

fn network_rbac(config: Value) -> Value {
    let mut c = json!({"@type": NETWORK_RBAC});
    for (k, v) in config.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"name": "envoy.filters.network.rbac", "typed_config": c})
}

fn tcp_proxy(name: &str) -> Value {
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": TCP_PROXY, "stat_prefix": name, "cluster": "greeter"}})
}

fn hcm(name: &str, filters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters
        .push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM,
        "stat_prefix": name,
        "http_filters": http_filters,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]}
    }})
}

fn listener(name: &str, port: u16, filters: Vec<Value>, tls: Option<Value>) -> Value {
    let mut chain = json!({"filters": filters});
    if let Some(t) = tls {
        chain["transport_socket"] = t;
    }
    json!({"name": name, "address": socket(port), "filter_chains": [chain]})
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(port)}}]}]}
    })
}

const STATIC_LISTENERS: usize = 11;

/// The mTLS and network listeners, on `ports` in this order.
/// The access log entry of the mTLS listener (Envoy's default format).
fn access_log(path: &std::path::Path) -> Value {
    json!([{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path.display().to_string()}}])
}

/// A default-format access log line's status, response flags and bytes
/// sent when the answer was the proxy's own (`-` for a backend's, whose
/// echoed headers differ).
fn logged(line: &str) -> String {
    let after = line.split('"').nth(2).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    match f.as_slice() {
        [status, flags, _received, sent, ..] if *status != "200" => {
            format!("{status} {flags} {sent}")
        }
        [status, flags, ..] => format!("{status} {flags} -"),
        _ => format!("unreadable: {line}"),
    }
}

fn static_bootstrap(
    p: &Pki,
    ports: &[u16],
    admin: u16,
    backend: u16,
    greeter: u16,
    log: &std::path::Path,
) -> String {
    let spiffe = |sa: &str| format!("spiffe://cluster.local/ns/default/sa/{sa}");
    let authenticated = |m: Value| json!([{"authenticated": {"principal_name": m}}]);
    let only_allowed = json!({"rules": {"policies": {
        "allowed": policy(any(), authenticated(json!({"exact": spiffe("allowed")})))
    }}});
    let names = json!({"rules": {"policies": {
        "subject": policy(json!([path_prefix("/subject")]), authenticated(json!({"exact": "CN=named.test"}))),
        "dns": policy(json!([path_prefix("/dns")]), authenticated(json!({"exact": "named.test"}))),
        "anyone": policy(json!([path_prefix("/anyone")]), json!([{"authenticated": {}}])),
        "notls": policy(json!([path_prefix("/notls")]), json!([{"not_id": {"authenticated": {}}}]))
    }}});
    let rbac = |c: Value| rbac_filter("envoy.filters.http.rbac", c);
    let listeners = vec![
        listener(
            "mtls",
            ports[0],
            vec![hcm("mtls", vec![rbac(only_allowed.clone())])],
            Some(tls_socket(p, true)),
        ),
        listener(
            "names",
            ports[1],
            vec![hcm("names", vec![rbac(names.clone())])],
            Some(tls_socket(p, true)),
        ),
        // TLS without a client certificate asked for.
        listener(
            "tlsonly",
            ports[2],
            vec![hcm("tlsonly", vec![rbac(names.clone())])],
            Some(tls_socket(p, false)),
        ),
        listener(
            "plain",
            ports[3],
            vec![hcm("plain", vec![rbac(names)])],
            None,
        ),
        listener(
            "tcp_allow",
            ports[4],
            vec![
                network_rbac(json!({"stat_prefix": "tcp_allow", "rules": {"policies": {
                "local": policy(any(), json!([{"direct_remote_ip": cidr("127.0.0.1", 32)}]))}}})),
                tcp_proxy("tcp_allow"),
            ],
            None,
        ),
        listener(
            "tcp_deny",
            ports[5],
            vec![
                network_rbac(json!({"stat_prefix": "tcp_deny", "rules": {"policies": {
                "ten": policy(any(), json!([{"direct_remote_ip": cidr("10.0.0.0", 8)}]))}}})),
                tcp_proxy("tcp_deny"),
            ],
            None,
        ),
        listener(
            "tcp_shadow",
            ports[6],
            vec![
                network_rbac(
                    json!({"stat_prefix": "tcp_shadow", "shadow_rules_stat_prefix": "shp",
                "shadow_rules": {"action": "DENY", "policies": {"all": policy(any(), any())}}}),
                ),
                tcp_proxy("tcp_shadow"),
            ],
            None,
        ),
        listener(
            "tcp_paths",
            ports[7],
            vec![
                // A connection has no path (header rules Envoy refuses).
                network_rbac(json!({"stat_prefix": "tcp_paths", "rules": {"policies": {
                "path": policy(json!([{"url_path": {"path": {"prefix": "/"}}}]), any()),
                "notpath": policy(json!([{"not_rule": {"url_path": {"path": {"prefix": "/"}}}}]),
                    json!([{"url_path": {"path": {"prefix": "/"}}}]))}}})),
                tcp_proxy("tcp_paths"),
            ],
            None,
        ),
        listener(
            "tcp_continuous",
            ports[8],
            vec![
                network_rbac(
                    json!({"stat_prefix": "tcp_continuous", "enforcement_type": "CONTINUOUS",
                "rules": {"policies": {"all": policy(any(), any())}}}),
                ),
                tcp_proxy("tcp_continuous"),
            ],
            None,
        ),
        listener(
            "tcp_mtls",
            ports[9],
            vec![
                network_rbac(json!({"stat_prefix": "tcp_mtls", "rules": {"policies": {
                "allowed": policy(any(), authenticated(json!({"exact": spiffe("allowed")})))}}})),
                tcp_proxy("tcp_mtls"),
            ],
            Some(tls_socket(p, true)),
        ),
        listener(
            "net_http",
            ports[10],
            vec![
                network_rbac(
                    json!({"stat_prefix": "net_http", "rules": {"action": "DENY", "policies": {
                "local": policy(any(), json!([{"direct_remote_ip": cidr("127.0.0.0", 8)}]))}}}),
                ),
                hcm("net_http", vec![]),
            ],
            None,
        ),
    ];
    assert_eq!(listeners.len(), STATIC_LISTENERS);
    let mut listeners = listeners;
    listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]["access_log"] = access_log(log);
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": listeners,
            "clusters": [cluster("backend", backend), cluster("greeter", greeter)]
        }
    })
    .to_string()
}

/// A TCP backend that greets first ("hello\n"), then echoes.
async fn greeter() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.write_all(b"hello\n").await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

fn client_config(p: &Pki, leaf: Option<&LeafFiles>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(p.root_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match leaf {
        Some(l) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&l.cert)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&l.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A connection to 127.0.0.1:`port`, over TLS (to `server.test`) when
/// `tls` is given.
async fn connect(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Box<dyn Io>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(c) => {
            let name = rustls_pki_types::ServerName::try_from("server.test").unwrap();
            let s = tokio_rustls::TlsConnector::from(c)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok(Box::new(s))
        }
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP/1.1 request (with `connection: close`); the status line and
/// the body, or how the connection ended without an answer.
async fn http_over(port: u16, tls: Option<Arc<rustls::ClientConfig>>, path: &str) -> String {
    let mut s = match connect(port, tls).await {
        Ok(s) => s,
        Err(e) => return format!("no connection ({e})"),
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: rbac.test\r\nconnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return "closed before the request".into();
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or("").to_string();
    if status.is_empty() {
        return match read {
            Ok(Ok(_)) => "closed without an answer".into(),
            Ok(Err(_)) => "closed without an answer".into(),
            Err(_) => "timeout".into(),
        };
    }
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let body = if body.contains("\"backend\"") {
        "from the backend"
    } else {
        body
    };
    format!("{status} {body:?}")
}

/// A TCP conversation through a greeter: read the greeting, send `ping`,
/// read what comes back until the connection ends; then (CONTINUOUS
/// counts reads) `pong` the same way when the first came back.
async fn converse(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> String {
    let mut s = match connect(port, tls).await {
        Ok(s) => s,
        Err(e) => return format!("no connection ({e})"),
    };
    let mut log = String::new();
    let mut buf = [0u8; 64];
    let mut read_some = async |s: &mut Box<dyn Io>, log: &mut String| match tokio::time::timeout(
        Duration::from_secs(10),
        s.read(&mut buf),
    )
    .await
    {
        Ok(Ok(0)) => {
            log.push_str("[closed]");
            false
        }
        Ok(Ok(n)) => {
            log.push_str(&String::from_utf8_lossy(&buf[..n]));
            true
        }
        Ok(Err(_)) => {
            log.push_str("[reset]");
            false
        }
        Err(_) => {
            log.push_str("[timeout]");
            false
        }
    };
    if !read_some(&mut s, &mut log).await {
        return log;
    }
    for word in ["ping", "pong"] {
        if s.write_all(word.as_bytes()).await.is_err() {
            log.push_str("[write failed]");
            return log;
        }
        if !read_some(&mut s, &mut log).await {
            return log;
        }
    }
    let _ = s.shutdown().await;
    read_some(&mut s, &mut log).await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_principals_and_network_rbac_match_envoy() {
    let p = pki();
    let backend = echo_backend("backend").await.port();
    let greeter = greeter().await;
    let ports: [Vec<u16>; 2] =
        std::array::from_fn(|_| (0..STATIC_LISTENERS).map(|_| free_port()).collect());
    let admins = [free_port(), free_port()];
    let logs = TempDir::new("rbac-logs");
    let log = |i: usize| logs.0.join(format!("{i}.log"));
    let envoy = start_envoy(
        &static_bootstrap(&p, &ports[0], admins[0], backend, greeter, &log(0)),
        admins[0],
    )
    .await;
    let weft = super::support::pair::start_weft(&static_bootstrap(
        &p,
        &ports[1],
        admins[1],
        backend,
        greeter,
        &log(1),
    ))
    .await;
    let allowed = client_config(&p, Some(&p.allowed));
    let other = client_config(&p, Some(&p.other));
    let named = client_config(&p, Some(&p.named));
    let nocert = client_config(&p, None);
    let https: Vec<(usize, &Arc<rustls::ClientConfig>, &str)> = vec![
        (0, &allowed, "/"),
        (0, &other, "/"),
        (0, &named, "/"),
        (1, &named, "/subject"),
        (1, &named, "/dns"),
        (1, &other, "/subject"),
        (1, &allowed, "/anyone"),
        (1, &allowed, "/notls"),
        (2, &nocert, "/anyone"),
        (2, &nocert, "/notls"),
        (2, &nocert, "/subject"),
    ];
    let mut diffs = Vec::new();
    let mut compare = |what: String, got: [String; 2]| {
        if got[0] != got[1] {
            diffs.push(format!("{what}:\n  envoy: {}\n  weft:  {}", got[0], got[1]));
        }
        got[1].clone()
    };
    let mut answers = Vec::new();
    for (i, client, path) in https {
        let mut got = Vec::new();
        for side in &ports {
            got.push(http_over(side[i], Some(Arc::clone(client)), path).await);
        }
        let what = format!("https listener {i} {path}");
        answers.push(compare(what, [got[0].clone(), got[1].clone()]));
    }
    for path in ["/anyone", "/notls"] {
        let mut got = Vec::new();
        for side in &ports {
            got.push(http_over(side[3], None, path).await);
        }
        compare(
            format!("plaintext {path}"),
            [got[0].clone(), got[1].clone()],
        );
    }
    let tcp: Vec<(usize, Option<&Arc<rustls::ClientConfig>>)> = vec![
        (4, None),
        (5, None),
        (6, None),
        (7, None),
        (8, None),
        (9, Some(&allowed)),
        (9, Some(&other)),
    ];
    for (i, client) in tcp {
        let mut got = Vec::new();
        for side in &ports {
            got.push(converse(side[i], client.cloned()).await);
        }
        answers.push(compare(
            format!("tcp listener {i} (client cert: {})", client.is_some()),
            [got[0].clone(), got[1].clone()],
        ));
    }
    let mut got = Vec::new();
    for side in &ports {
        got.push(http_over(side[10], None, "/").await);
    }
    compare(
        "HTTP behind a denying network filter".into(),
        [got[0].clone(), got[1].clone()],
    );
    let stats = same_stats(admins, ".rbac.").await;
    stat_diffs(&mut diffs, &stats);
    prometheus_diffs(&mut diffs, admins).await;
    // Envoy writes its access log out when it exits; the three requests
    // to the mTLS listener, each as its own proxy logged it.
    envoy.quit(admins[0]).await;
    weft.shared.shutdown();
    let read = |i| std::fs::read_to_string(log(i)).unwrap_or_default();
    let start = std::time::Instant::now();
    while (read(0).lines().count() < 3 || read(1).lines().count() < 3)
        && start.elapsed() < weft_testkit::wait::PATIENCE
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<Vec<String>> = (0..2)
        .map(|i| read(i).lines().map(logged).collect())
        .collect();
    if lines[0] != lines[1] {
        diffs.push(format!(
            "access log (status, flags, bytes sent):\n  envoy: {:?}\n  weft:  {:?}",
            lines[0], lines[1]
        ));
    }
    assert_eq!(lines[0].len(), 3, "{lines:?}");
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy in {} cases:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // Not vacuous: the allowed principal got through, the others not.
    assert!(answers[0].contains("200"), "{answers:?}");
    assert!(answers[1].contains("403"), "{answers:?}");
    assert!(
        answers.iter().any(|a| a.starts_with("hello\nping")),
        "{answers:?}"
    );
}

#[tokio::test]
async fn what_weft_does_not_implement_is_refused_by_name() {
    let boot = |http_filter: Value| {
        json!({"static_resources": {"listeners": [{
            "name": "l", "address": socket(1),
            "filter_chains": [{"filters": [hcm("h", vec![http_filter])]}]
        }], "clusters": [cluster("backend", 2)]}})
        .to_string()
    };
    let refused = |text: String| match weft_envoy::parse_bootstrap("t", &text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    };
    let at = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";
    let cel = refused(boot(rbac_filter(
        "r",
        json!({"rules": {"policies": {"p": {
            "permissions": [{"any": true}], "principals": [{"any": true}],
            "condition": {"const_expr": {"bool_value": true}}}}}}),
    )));
    assert!(
        cel.contains(&format!("{at}.rules.policies.p.condition:")),
        "{cel}"
    );
    let tree = refused(boot(rbac_filter("r", json!({"matcher": {}}))));
    assert!(tree.contains(&format!("{at}.matcher:")), "{tree}");
    let state = refused(boot(rbac_filter(
        "r",
        json!({"rules": {"policies": {"p": {
            "permissions": [{"any": true}],
            "principals": [{"filter_state": {"key": "k", "string_match": {"exact": "v"}}}]}}}}),
    )));
    assert!(
        state.contains(&format!(
            "{at}.rules.policies.p.principals[0].filter_state:"
        )),
        "{state}"
    );
    let net = json!({"static_resources": {"listeners": [{
        "name": "l", "address": socket(1),
        "filter_chains": [{"filters": [
            network_rbac(json!({"stat_prefix": "n", "rules": {"policies": {"p": {
                "permissions": [{"any": true}],
                "principals": [{"not_id": {"header": {"name": "x", "present_match": true}}}]}}}})),
            tcp_proxy("t")]}]
    }], "clusters": [cluster("greeter", 2)]}});
    let header = refused(net.to_string());
    assert!(
        header.contains("filters[0].typed_config.rules.policies.p.principals[0].not_id.header:"),
        "{header}"
    );
    let empty = refused(boot(rbac_filter(
        "r",
        json!({"rules": {"policies": {"p": {"permissions": [], "principals": [{"any": true}]}}}}),
    )));
    assert!(empty.contains("permissions"), "{empty}");
}
