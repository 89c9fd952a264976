//! `weft up DIR` (the local mesh) and `weft bootstrap` (the bootstrap
//! that connects any xDS proxy, Envoy included, to the control plane).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weft_control::bootstrap::Identity;
use weft_control::ProxyKind;

pub struct Args {
    pub dir: PathBuf,
    pub xds: SocketAddr,
    pub debug: SocketAddr,
    pub gateway: weft_local::GatewayMode,
    /// The control plane's CA (mesh mTLS); none runs the mesh plaintext.
    pub ca: Option<weft_control::ca::SecureOptions>,
    /// Where to start Prometheus, if it is installed.
    pub prometheus: Option<SocketAddr>,
}

/// Exit codes: 0 after Ctrl-C / SIGTERM, 1 when the directory cannot be
/// read or describes something that cannot run, 2 when an address is
/// taken.
pub fn run(args: Args) -> anyhow::Result<u8> {
    // The summary below is what a newcomer reads; the proxies' and the
    // control plane's own logs start at warnings (WEFT_LOG=info for more).
    crate::proxy::init_logging_at("warn");
    if !args.dir.is_dir() {
        eprintln!("error: {}: not a directory", args.dir.display());
        return Ok(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut opts = weft_local::Options::new(&args.dir);
        opts.control.xds = args.xds;
        opts.control.debug = args.debug;
        opts.gateway = args.gateway;
        opts.control.ca = args.ca.clone();
        let mesh = match weft_local::start(opts).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {e}");
                let taken = matches!(
                    &e,
                    weft_local::UpError::Control(_)
                        | weft_local::UpError::Demo { source: weft_demo::DemoError::Bind { .. }, .. }
                );
                return Ok(if taken { 2 } else { 1 });
            }
        };
        let problems = mesh.settle(Duration::from_secs(10)).await;
        println!(
            "weft up: control plane on {} (debug http://{}), watching {}",
            mesh.control.xds,
            mesh.control.debug,
            args.dir.display()
        );
        match &mesh.control.ca {
            Some(ca) => println!(
                "  mesh mTLS on (auto mTLS, PERMISSIVE): CA on {}, root {}, trust domain {}",
                ca.address,
                ca.root_cert_path().display(),
                ca.trust_domain()
            ),
            None => println!("  mesh mTLS off (--no-mtls): proxies have no certificates"),
        }
        for (who, admin) in &mesh.proxies {
            let role = match who.kind {
                ProxyKind::Sidecar => "sidecar",
                ProxyKind::Router => "gateway",
            };
            let admin = admin.map(|a| format!("admin http://{a}")).unwrap_or_default();
            println!("  {role:<8} {}.{} {admin}", who.name, who.namespace);
        }
        for a in &mesh.plan.apps {
            println!("  app      {} on {}", a.workload, a.listen);
        }
        if args.gateway == weft_local::GatewayMode::None {
            for who in mesh.plan.proxies.iter().filter(|p| p.kind == ProxyKind::Router) {
                let boot = format!(
                    "weft bootstrap --role gateway --name {} --namespace {} --ip {} --xds {} --service-account {}",
                    who.name, who.namespace, who.ip, mesh.control.xds, who.service_account()
                );
                match &mesh.control.ca {
                    // Its certificate from the CA through an agent, as
                    // pilot-agent gives Envoy one.
                    Some(ca) => println!(
                        "  gateway {}.{} left to you: weft agent --ca-address {} --root-cert {} --token-file {} --namespace {} --service-account {} --sds-socket /tmp/{}.sock &\n    {boot} --sds-socket /tmp/{}.sock > gw.json && envoy -c gw.json",
                        who.name, who.namespace, ca.address, ca.root_cert_path().display(), ca.join_token_path().display(),
                        who.namespace, who.service_account(), who.name, who.name
                    ),
                    None => println!(
                        "  gateway {}.{} left to you: {boot} > gw.json && envoy -c gw.json",
                        who.name, who.namespace
                    ),
                }
            }
        }
        let prom_dir = std::env::temp_dir().join(format!("weft-up-prometheus-{}", std::process::id()));
        let targets = format!("http://{}/debug/prometheus-targets", mesh.control.debug);
        let prometheus = match (args.prometheus, weft_local::prometheus::find_binary()) {
            (None, _) => {
                println!("  metrics: each proxy's admin /stats/prometheus; Prometheus discovery at {targets}");
                None
            }
            (Some(_), None) => {
                println!("  metrics: no prometheus installed (apt install prometheus); Prometheus discovery at {targets}");
                None
            }
            (Some(at), Some(binary)) => {
                match weft_local::prometheus::start(&binary, at, mesh.control.debug, &prom_dir) {
                    Ok(p) => {
                        println!("  prometheus http://{at} (targets from {targets}), e.g. sum by (destination_version) (rate(istio_requests_total{{reporter=\"source\",destination_service_name=\"reviews\"}}[1m]))");
                        Some(p)
                    }
                    Err(e) => {
                        eprintln!("warning: {e}");
                        None
                    }
                }
            }
        };
        for p in &problems {
            eprintln!("warning: {p}");
        }
        for port in &mesh.plan.gateway_ports {
            match mesh.plan.https.iter().find(|(p, _)| p == port) {
                Some((_, host)) => println!(
                    "\nHTTPS on port {port} for {host}: curl --resolve {host}:{port}:127.0.0.1 https://{host}:{port}/ (with the CA of its credentialName)"
                ),
                None => println!("\nSend requests to http://127.0.0.1:{port}/ (Bookinfo: http://127.0.0.1:{port}/productpage)"),
            }
        }
        println!("Edit the YAML in {} to change routing; Ctrl-C stops everything.", args.dir.display());
        crate::control::shutdown_signal().await;
        println!("weft up: stopping");
        drop(prometheus);
        let _ = std::fs::remove_dir_all(&prom_dir);
        drop(mesh);
        Ok(0)
    })
}

/// Who `weft bootstrap` writes a bootstrap for.
pub struct BootstrapArgs {
    pub role: String,
    pub name: String,
    pub namespace: String,
    pub ip: String,
    pub service_account: Option<String>,
}

pub fn bootstrap(
    args: BootstrapArgs,
    opts: weft_control::bootstrap::Options,
) -> anyhow::Result<u8> {
    let kind = match args.role.as_str() {
        "sidecar" => ProxyKind::Sidecar,
        "gateway" | "router" => ProxyKind::Router,
        other => anyhow::bail!("--role {other:?}: expected sidecar or gateway"),
    };
    let who = Identity {
        kind,
        name: args.name,
        namespace: args.namespace,
        ip: args.ip,
        service_account: args.service_account,
        labels: Default::default(),
    };
    let text = serde_json::to_string_pretty(&weft_control::bootstrap::envoy(&who, &opts))?;
    println!("{text}");
    Ok(0)
}
