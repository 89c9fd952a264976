//! The `weft` binary end to end: exit codes, output formats, and the
//! bundled examples (clean as rebuilt; each seed mistake found as written).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use weft_testkit::wait::{wait_for_blocking, PATIENCE};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `weft ARGS` in the repository root with `stdin` piped in.
fn weft(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example(path: &str) -> String {
    std::fs::read_to_string(repo().join("examples").join(path)).unwrap()
}

#[test]
fn examples_analyze_clean_and_validate() {
    let out = weft(&["analyze", "examples/"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "✔ No validation issues found when analyzing all namespaces.\n"
    );
    let out = weft(&["validate", "-f", "examples/"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("✔ 84 objects valid"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn seed_001_gateway_as_written_conflicts_with_the_other_scenarios() {
    let as_written = example("seed-canary/canary.yaml").replace("\"canary.example.com\"", "\"*\"");
    let out = weft(
        &[
            "analyze",
            "examples/seed-traffic",
            "examples/seed-routing",
            "-",
        ],
        &as_written,
    );
    assert_eq!(out.status.code(), Some(79), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("Error [IST0145]")),
        "{stdout}"
    );
    assert!(
        stdout.contains("(Gateway canary/bookinfo-gateway -:"),
        "{stdout}"
    );
    assert!(stdout.contains("Conflict with gateways bookinfo/bookinfo-gateway (workload selector istio=ingressgateway, port 80, hosts bookinfo.kubeasy.com)"), "{stdout}");
    assert!(
        stdout.contains("Conflict with gateways routing/httpbin-gateway"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("Error: Analyzers found issues"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn seed_001_service_port_number_is_rejected_by_validate() {
    let as_written =
        example("seed-canary/port-naming.yaml").replace("- port: 3306", "- number: 3306");
    let out = weft(&["validate", "-f", "-"], &as_written);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("-:13"), "{err}");
    assert!(err.contains("Service canary/myservice"), "{err}");
    assert!(err.contains("number"), "{err}");
}

#[test]
fn seed_002_without_the_reviews_destination_rule_misses_subsets() {
    let routing = example("seed-routing/routing.yaml");
    let start = routing.find("# The seed routes to subsets").unwrap();
    let end = routing.find("# bookinfo.com/reviews").unwrap();
    let as_written = format!("{}{}", &routing[..start], &routing[end..]);
    let out = weft(
        &["analyze", "examples/seed-routing/workloads.yaml", "-"],
        &as_written,
    );
    assert_eq!(out.status.code(), Some(79));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "Error [IST0101] (VirtualService routing/reviews -:20) Referenced host+subset in destinationrule not found: \"reviews+v2\"",
            "Error [IST0101] (VirtualService routing/reviews -:24) Referenced host+subset in destinationrule not found: \"reviews+v3\"",
        ]
    );
}

#[test]
fn every_bookinfo_sample_validates() {
    let shared = std::env::var("WEFT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("../shared"));
    let dir = shared.join("reference/istio/bookinfo");
    let out = weft(&["validate", "-f", dir.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("✔ 68 objects valid"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn seed_004_removed_deployment_api_is_named() {
    let as_written =
        example("seed-multicluster/local-cluster.yaml").replace("apps/v1", "extensions/v1beta1");
    let out = weft(&["validate", "-f", "-"], &as_written);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("apps/v1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn analyze_thresholds_and_formats() {
    let info_only = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    // IST0102 is Info: printed, but below the default failure threshold.
    let out = weft(&["analyze", "-"], info_only);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("Info [IST0102] (Namespace shop -:3)"));
    let out = weft(&["analyze", "--failure-threshold", "Info", "-"], info_only);
    assert_eq!(out.status.code(), Some(79));
    let out = weft(
        &["analyze", "--output-threshold", "Warning", "-"],
        info_only,
    );
    assert_eq!(text(&out.stdout), "");
    let out = weft(&["analyze", "-S", "IST0102=Namespace shop", "-"], info_only);
    assert_eq!(text(&out.stdout), "");

    let out = weft(&["analyze", "-o", "json", "-"], info_only);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON array");
    assert_eq!(json[0]["code"], "IST0102");
    assert_eq!(json[0]["origin"], "Namespace shop");
    let out = weft(&["analyze", "-o", "yaml", "-"], info_only);
    assert!(text(&out.stdout).contains("code: IST0102"));
}

#[test]
fn usage_and_io_errors() {
    let out = weft(&["analyze", "-S", "nonsense", "-"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected CODE=Kind name"));
    let out = weft(&["validate", "-f", "no/such/file.yaml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/file.yaml"));
    let out = weft(&["analyze", "--failure-threshold", "Loud", "-"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn agent_and_control_name_what_is_wrong_with_their_identity_settings() {
    let out = weft(
        &[
            "agent",
            "--root-cert",
            "no/such/root-cert.pem",
            "--token-file",
            "no/such/join-token",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no/such/root-cert.pem"));
    let out = weft(&["agent", "--namespace", "not a namespace"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("namespace"));

    // The CA's state may not sit among the configuration it watches.
    let dir = std::env::temp_dir().join(format!("weft-cli-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join(".weft-state");
    let out = weft(
        &[
            "control",
            "--config",
            dir.to_str().unwrap(),
            "--xds-address",
            "127.0.0.1:0",
            "--debug-address",
            "127.0.0.1:0",
            "--secure-address",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("inside the configuration directory"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn list_analyzers_version_and_completion() {
    let out = weft(&["analyze", "-L"], "");
    let list = text(&out.stdout);
    assert!(list.contains("virtualservice.DestinationRuleAnalyzer"));
    assert!(list.lines().count() >= 20, "{list}");
    let out = weft(&["version"], "");
    assert!(text(&out.stdout).starts_with("weft "));
    let out = weft(&["completion", "bash"], "");
    assert!(text(&out.stdout).contains("_weft()"));
}

#[test]
fn proxy_bootstrap_errors_name_the_field_and_exit_1() {
    let good = repo().join("crates/weft-envoy/tests/bootstraps/basic.yaml");
    let out = weft(&["proxy", "-c", good.to_str().unwrap(), "--validate"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK"));

    let dir = std::env::temp_dir().join(format!("weft-cli-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let text_good = std::fs::read_to_string(&good).unwrap();
    for (needle, replacement, want) in [
        (
            "prefix_rewrite: /",
            "prefix_rewrit: /",
            "route.prefix_rewrit: unknown field",
        ),
        (
            "lb_policy: ROUND_ROBIN",
            "lb_policy: CLUSTER_PROVIDED",
            "lb_policy: CLUSTER_PROVIDED is only valid for ORIGINAL_DST clusters",
        ),
        ("static_resources:", "static_resources: [", "bad.yaml:"),
    ] {
        std::fs::write(&bad, text_good.replace(needle, replacement)).unwrap();
        let out = weft(&["proxy", "-c", bad.to_str().unwrap()], "");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{needle}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "{needle}: {}",
            text(&out.stderr)
        );
    }
    let out = weft(&["proxy", "-c", "/no/such/bootstrap.yaml"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/no/such/bootstrap.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn proxy_admin_logging_config_dump_and_quit() {
    let (admin, listen) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("weft-cli-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let boot = dir.join("boot.yaml");
    std::fs::write(
        &boot,
        format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
          route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}}}]}}]}}
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "proxy",
            "-c",
            boot.to_str().unwrap(),
            "--drain-seconds",
            "0",
        ])
        .env("WEFT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_blocking("weft proxy to open its admin port", PATIENCE, || {
        std::net::TcpStream::connect(("127.0.0.1", admin))
    });
    assert_eq!(
        http(admin, "GET", "/logging"),
        (200, "active loggers:\n  weft: info\n".into())
    );
    assert_eq!(
        http(admin, "POST", "/logging?level=debug"),
        (200, "active loggers:\n  weft: debug\n".into())
    );
    assert_eq!(http(admin, "GET", "/logging?level=error").0, 405);
    let (status, body) = http(admin, "POST", "/logging?level=loud");
    assert_eq!(status, 400);
    assert!(body.contains("unknown level \"loud\""), "{body}");
    assert_eq!(
        http(admin, "GET", "/logging").1,
        "active loggers:\n  weft: debug\n"
    );
    let (status, dump) = http(admin, "GET", "/config_dump");
    assert_eq!(status, 200);
    assert!(dump.contains("\"name\": \"edge\""), "{dump}");
    assert_eq!(http(listen, "GET", "/").0, 200);
    let (_, stats) = http(admin, "GET", "/stats");
    assert!(
        stats.contains("http.edge.downstream_rq_2xx: 1\n"),
        "{stats}"
    );
    assert_eq!(http(admin, "POST", "/quitquitquit").0, 200);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weft runs"),
    )
}

#[test]
fn control_serves_a_directory_and_proxy_status_shows_the_sidecar_synced() {
    let (xds, debug, egress) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("weft-cli-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mesh")).unwrap();
    std::fs::write(
        dir.join("mesh/mesh.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {egress}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client, namespace: default}}
spec: {{address: 127.0.0.4, labels: {{app: client}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress:
  - port: {{number: {egress}, protocol: HTTP, name: http}}
    bind: 127.0.0.4
    captureMode: NONE
    hosts: [\"./*\"]
"
        ),
    )
    .unwrap();
    let mesh_dir = dir.join("mesh");
    let xds_addr = format!("127.0.0.1:{xds}");
    let debug_addr = format!("127.0.0.1:{debug}");
    let mesh_arg = mesh_dir.to_str().unwrap();
    let state_dir = dir.join("state");
    let state_arg = state_dir.to_str().unwrap();
    let _control = spawn(&[
        "control",
        "--config",
        mesh_arg,
        "--xds-address",
        &xds_addr,
        "--debug-address",
        &debug_addr,
        "--secure-address",
        "127.0.0.1:0",
        "--state-dir",
        state_arg,
    ]);
    wait_for_blocking("weft control to become ready", PATIENCE, || {
        std::net::TcpStream::connect(("127.0.0.1", debug))?;
        match http(debug, "GET", "/ready") {
            (200, _) => Ok(()),
            other => Err(std::io::Error::other(format!("{other:?}"))),
        }
    });

    // A second control plane on the same port says which port is taken.
    let out = weft(
        &[
            "control",
            "--config",
            mesh_arg,
            "--xds-address",
            &xds_addr,
            "--debug-address",
            "127.0.0.1:0",
            "--no-ca",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("cannot listen for xDS on {xds_addr}")),
        "{}",
        text(&out.stderr)
    );

    let node = "sidecar~127.0.0.4~client.default~default.svc.cluster.local";
    let boot = dir.join("boot.json");
    let xds_sock: std::net::SocketAddr = xds_addr.parse().unwrap();
    std::fs::write(
        &boot,
        weft_testkit::xds::ads_bootstrap(node, free_port(), xds_sock),
    )
    .unwrap();
    let _proxy = spawn(&["proxy", "-c", boot.to_str().unwrap()]);
    let last = wait_for_blocking("proxy-status to list the proxy synced", PATIENCE, || {
        let out = weft(&["proxy-status", "--control", &debug_addr], "");
        let last = text(&out.stdout);
        if last.contains(node) && last.matches("SYNCED").count() == 4 {
            Ok(last)
        } else {
            Err(last)
        }
    });
    assert!(last.starts_with("NAME"), "{last}");
    assert!(
        last.contains(node) && last.matches("SYNCED").count() == 4,
        "{last}"
    );
    // The sidecar's egress listener is up on its bind address.
    assert!(std::net::TcpStream::connect(("127.0.0.4", egress)).is_ok());

    // What it was given, as istioctl's tables, by node id or name.namespace.
    let out = weft(
        &[
            "proxy-config",
            "clusters",
            "client.default",
            "--control",
            &debug_addr,
        ],
        "",
    );
    let table = text(&out.stdout);
    let rows = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert!(
        table.starts_with("SERVICE FQDN"),
        "{table}{}",
        text(&out.stderr)
    );
    let want = format!("echo.default.svc.cluster.local {egress} - outbound EDS");
    assert!(rows(&table).contains(&want), "{table}");
    let out = weft(
        &["proxy-config", "listeners", node, "--control", &debug_addr],
        "",
    );
    let want = format!("127.0.0.4 {egress} ALL Route: {egress}");
    assert!(
        rows(&text(&out.stdout)).contains(&want),
        "{}",
        text(&out.stdout)
    );
    let out = weft(
        &[
            "proxy-config",
            "routes",
            "client.default",
            "--control",
            &debug_addr,
            "-o",
            "json",
        ],
        "",
    );
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(routes["routes"][0]["name"], egress.to_string());
    let out = weft(
        &[
            "proxy-config",
            "endpoints",
            "nobody.default",
            "--control",
            &debug_addr,
        ],
        "",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no connected proxy"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn up_and_bootstrap_arguments() {
    let out = weft(&["up", "/no/such/dir"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/no/such/dir: not a directory"),
        "{}",
        text(&out.stderr)
    );

    let out = weft(
        &[
            "bootstrap",
            "--role",
            "gateway",
            "--name",
            "gw",
            "--namespace",
            "edge",
            "--ip",
            "10.0.0.1",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let boot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        boot["node"]["id"],
        "router~10.0.0.1~gw.edge~edge.svc.cluster.local"
    );
    // The same file runs under `weft proxy` (and Envoy: the control
    // plane's tests connect Envoy with it).
    let dir = std::env::temp_dir().join(format!("weft-cli-boot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("boot.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let out = weft(&["proxy", "--validate", "-c", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);

    let out = weft(&["bootstrap", "--role", "mesh", "--name", "x"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn agent_gets_its_certificate_from_weft_control() {
    use weft_testkit::envoy::free_port;
    let (xds, debug, secure) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("weft-cli-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mesh")).unwrap();
    let state = dir.join("state");
    let secure_addr = format!("127.0.0.1:{secure}");
    // A service with a sidecar'd workload: the proxy's auto mTLS cluster
    // to it names the agent's secrets.
    std::fs::write(
        dir.join("mesh/reviews.yaml"),
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.5, serviceAccount: reviews, labels: {app: reviews}}
",
    )
    .unwrap();
    let _control = spawn(&[
        "control",
        "--config",
        dir.join("mesh").to_str().unwrap(),
        "--xds-address",
        &format!("127.0.0.1:{xds}"),
        "--debug-address",
        &format!("127.0.0.1:{debug}"),
        "--secure-address",
        &secure_addr,
        "--state-dir",
        state.to_str().unwrap(),
        "--serving-name",
        "weft-control.example",
    ]);
    wait_for_blocking("weft control to become ready", PATIENCE, || {
        std::net::TcpStream::connect(("127.0.0.1", debug)).map_err(|e| e.to_string())?;
        match http(debug, "GET", "/ready") {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let socket = dir.join("sds/socket");
    let mut agent = spawn(&[
        "agent",
        "--ca-address",
        &secure_addr,
        "--ca-server-name",
        "weft-control.example",
        "--root-cert",
        state.join("root-cert.pem").to_str().unwrap(),
        "--token-file",
        state.join("join-token").to_str().unwrap(),
        "--namespace",
        "default",
        "--service-account",
        "reviews",
        "--sds-socket",
        socket.to_str().unwrap(),
    ]);
    // Its log says when the certificate came, and for whom.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = agent.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = String::new();
    wait_for_blocking("the agent to log its certificate", PATIENCE, || {
        while let Ok(line) = rx.try_recv() {
            log += &line;
            log.push('\n');
        }
        if log.contains("workload certificate issued")
            && log.contains("spiffe://cluster.local/ns/default/sa/reviews")
        {
            Ok(())
        } else {
            Err(log.clone())
        }
    });
    assert!(socket.exists(), "the SDS socket is served");

    // A proxy bootstrapped to use the agent; `weft proxy-config secret`
    // finds it through the control plane and shows what it holds.
    let admin = free_port().to_string();
    let out = weft(
        &[
            "bootstrap",
            "--role",
            "sidecar",
            "--name",
            "reviews-v1",
            "--ip",
            "127.0.0.5",
            "--service-account",
            "reviews",
            "--xds",
            &format!("127.0.0.1:{xds}"),
            "--admin-port",
            &admin,
            "--sds-socket",
            socket.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let boot = dir.join("boot.json");
    std::fs::write(&boot, &out.stdout).unwrap();
    let _proxy = spawn(&["proxy", "-c", boot.to_str().unwrap()]);
    let debug_addr = format!("127.0.0.1:{debug}");
    let table = wait_for_blocking("proxy-config secret to list both secrets", PATIENCE, || {
        let out = weft(
            &[
                "proxy-config",
                "secret",
                "reviews-v1.default",
                "--control",
                &debug_addr,
            ],
            "",
        );
        let t = text(&out.stdout);
        // Both listed, and delivered (they are WARMING until the agent's
        // answer arrives).
        let active = |name: &str| {
            t.lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains("ACTIVE"))
        };
        if out.status.success() && active("ROOTCA") && active("default") {
            Ok(t)
        } else {
            Err(format!("{t}{}", text(&out.stderr)))
        }
    });
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][0], "RESOURCE", "{table}");
    let default = rows.iter().find(|r| r[0] == "default").expect(&table);
    assert_eq!(
        &default[1..5],
        ["Cert", "Chain", "ACTIVE", "true"],
        "{table}"
    );
    assert_eq!(
        default.last(),
        Some(&"spiffe://cluster.local/ns/default/sa/reviews"),
        "{table}"
    );
    let root = rows.iter().find(|r| r[0] == "ROOTCA").expect(&table);
    assert_eq!(&root[1..4], ["CA", "ACTIVE", "true"], "{table}");
    // The root is the control plane's (its serial is the state dir's
    // root-cert.pem's).
    let root_pem = std::fs::read_to_string(state.join("root-cert.pem")).unwrap();
    let der = weft_identity::x509::certs_from_pem("root", &root_pem).unwrap();
    let serial = weft_identity::x509::Info::read("root", &der[0])
        .unwrap()
        .serial;
    assert_eq!(root[4], serial, "{table}");
    let out = weft(
        &["proxy-config", "secret", "nobody", "--control", &debug_addr],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no connected proxy \"nobody\""),
        "{}",
        text(&out.stderr)
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
