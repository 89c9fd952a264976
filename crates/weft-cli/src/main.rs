//! The `weft` binary: assembles the library crates behind one command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod agent;
mod control;
mod jwt;
mod proxy;
mod proxy_config;
mod proxy_secret;
mod up;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use weft_analyze::{Level, Suppression};
use weft_config::{load_paths, IssueKind, LoadOptions, Severity};

/// istioctl's exit code when analyzers found issues at or above the
/// failure threshold.
const EXIT_ANALYZER_FOUND_ISSUES: u8 = 79;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "A service mesh that speaks Istio's configuration API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check objects the way Istio's admission webhook would.
    Validate {
        /// Files or directories (recursive); `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace for objects that do not name one.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Find problems across resources, with istioctl analyze's codes.
    Analyze {
        /// Files or directories (recursive); `-` for stdin.
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Output::Log)]
        output: Output,
        /// Exit non-zero when a message at or above this level exists.
        #[arg(long, default_value = "Error", value_parser = parse_level)]
        failure_threshold: Level,
        /// Print only messages at or above this level.
        #[arg(long, default_value = "Info", value_parser = parse_level)]
        output_threshold: Level,
        /// Suppress messages: "CODE=Kind name[.namespace]", `*` globs.
        #[arg(short = 'S', long = "suppress")]
        suppress: Vec<String>,
        /// Report on every namespace (the default for files).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only report on this namespace; also the namespace of objects
        /// that do not name one.
        #[arg(short, long)]
        namespace: Option<String>,
        /// List the analyzers and exit.
        #[arg(short = 'L', long)]
        list_analyzers: bool,
    },
    /// Run the proxy from an Envoy v3 bootstrap (the same file `envoy -c` runs).
    Proxy {
        /// Bootstrap file (YAML or JSON).
        #[arg(short = 'c', long = "config-path")]
        config: PathBuf,
        /// Worker threads, as Envoy's --concurrency (Istio sidecars use 2).
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// How long open connections may finish after SIGTERM.
        #[arg(long, default_value = "5")]
        drain_seconds: u64,
        /// How long connections of a listener that xDS replaced or removed
        /// may go on before they are closed (as Envoy's --drain-time-s).
        #[arg(long = "drain-time-s", default_value = "600")]
        drain_time_s: u64,
        /// Check the bootstrap and exit (as `envoy --mode validate`).
        #[arg(long)]
        validate: bool,
    },
    /// Run the control plane on a directory of Istio YAML (watched for
    /// changes) and serve xDS to proxies.
    Control {
        /// Directory of Istio and Kubernetes YAML (registry and config).
        #[arg(long = "config")]
        config: PathBuf,
        /// Where proxies connect (ADS over gRPC; Istio's 15010).
        #[arg(long, default_value = "127.0.0.1:15010")]
        xds_address: std::net::SocketAddr,
        /// Readiness and /debug/syncz (Istio's 15014).
        #[arg(long, default_value = "127.0.0.1:15014")]
        debug_address: std::net::SocketAddr,
        /// Quiet time before a change is pushed, in milliseconds.
        #[arg(long, default_value_t = 100)]
        debounce_ms: u64,
        /// The secure port: the CA and xDS over TLS (Istio's 15012).
        #[arg(long, default_value = "127.0.0.1:15012")]
        secure_address: std::net::SocketAddr,
        /// Where the CA keeps its root and the mesh join token
        /// [default: $XDG_STATE_HOME/weft or ~/.local/state/weft].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Istio's plug-in CA directory (ca-cert.pem, ca-key.pem,
        /// root-cert.pem, cert-chain.pem) instead of a self-signed root.
        #[arg(long)]
        cacerts: Option<PathBuf>,
        /// The mesh's trust domain (SPIFFE ids spiffe://DOMAIN/ns/NS/sa/SA).
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Another name (DNS name or IP) on the secure port's certificate,
        /// besides istiod's service names and loopback; repeatable.
        #[arg(long = "serving-name")]
        serving_names: Vec<String>,
        /// A workload certificate's lifetime when the agent asks none, in
        /// seconds (Istio's DEFAULT_WORKLOAD_CERT_TTL, 24 h).
        #[arg(long, default_value_t = 24 * 3600)]
        workload_cert_ttl: u64,
        /// The longest lifetime an agent may ask, in seconds (Istio's
        /// MAX_WORKLOAD_CERT_TTL, 90 days).
        #[arg(long, default_value_t = 90 * 24 * 3600)]
        max_workload_cert_ttl: u64,
        /// Serve no CA and no secure port (plaintext xDS only).
        #[arg(long)]
        no_ca: bool,
    },
    /// Get the workload's certificate from the control plane's CA, keep
    /// it fresh, and serve it to Envoy over SDS (pilot-agent's
    /// certificate half).
    Agent {
        /// The control plane's secure port (Istio: istiod:15012).
        #[arg(long, default_value = "127.0.0.1:15012")]
        ca_address: std::net::SocketAddr,
        /// The name the CA's certificate must carry (e.g.
        /// istiod.istio-system.svc) [default: the address's IP].
        #[arg(long)]
        ca_server_name: Option<String>,
        /// The mesh's root certificate [default: root-cert.pem in weft
        /// control's default state directory].
        #[arg(long)]
        root_cert: Option<PathBuf>,
        /// The mesh join token [default: join-token in weft control's
        /// default state directory].
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, default_value = "default")]
        service_account: String,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Where Envoy's sds-grpc cluster connects.
        #[arg(long, default_value = weft_identity::sds::DEFAULT_SOCKET)]
        sds_socket: PathBuf,
        /// The certificate lifetime to ask, in seconds (0: the CA's
        /// default, 24 h).
        #[arg(long, default_value_t = 0)]
        cert_ttl_seconds: u64,
    },
    /// Run the local mesh on a directory: the control plane, a proxy per
    /// workload and gateway, and the demo applications.
    Up {
        /// Directory of Istio YAML (e.g. examples/bookinfo).
        dir: PathBuf,
        /// Who serves the ingress gateway: a weft proxy, or `none` (you
        /// start one with `weft bootstrap --role gateway`).
        #[arg(long, value_parser = ["weft", "none"], default_value = "weft")]
        gateway: String,
        #[arg(long, default_value = "127.0.0.1:15010")]
        xds_address: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:15014")]
        debug_address: std::net::SocketAddr,
        /// The control plane's secure port: its CA and xDS over TLS.
        #[arg(long, default_value = "127.0.0.1:15012")]
        secure_address: std::net::SocketAddr,
        /// Where the CA keeps its root and the mesh join token
        /// [default: $XDG_STATE_HOME/weft or ~/.local/state/weft].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// No CA: the proxies get no workload certificates and the mesh
        /// runs without mutual TLS (as Istio with mTLS off).
        #[arg(long)]
        no_mtls: bool,
        /// Where the Prometheus `weft up` starts listens (Debian's
        /// `prometheus`, when installed; its targets from the control
        /// plane's discovery).
        #[arg(long, default_value = "127.0.0.1:9090")]
        prometheus_address: std::net::SocketAddr,
        /// Start no Prometheus.
        #[arg(long)]
        no_prometheus: bool,
    },
    /// Print the Envoy bootstrap that connects a proxy to the control
    /// plane (what pilot-agent generates for Envoy).
    Bootstrap {
        #[arg(long, value_parser = ["sidecar", "gateway"])]
        role: String,
        /// The workload (WorkloadEntry or pod) name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The workload's address.
        #[arg(long, default_value = "127.0.0.1")]
        ip: String,
        #[arg(long, default_value = "127.0.0.1:15010")]
        xds: std::net::SocketAddr,
        /// The proxy's admin port (0: any free port).
        #[arg(long, default_value_t = 15000)]
        admin_port: u16,
        /// Istio's Prometheus port: `/stats/prometheus` on 0.0.0.0:PORT,
        /// from the admin endpoint (0: none).
        #[arg(long, default_value_t = 15090)]
        prometheus_port: u16,
        /// The workload's service account (its certificate's identity).
        #[arg(long)]
        service_account: Option<String>,
        /// The agent's SDS socket (`weft agent --sds-socket`): the proxy
        /// gets its workload certificate there and takes part in mesh
        /// mTLS. Without one it runs without certificates (plaintext).
        #[arg(long)]
        sds_socket: Option<PathBuf>,
    },
    /// Show the configuration the control plane serves a proxy, as
    /// istioctl's tables.
    ProxyConfig {
        /// `secret` reads the proxy's own admin endpoint (its
        /// certificates); the rest is what the control plane serves it.
        #[arg(value_parser = ["clusters", "listeners", "routes", "endpoints", "secret", "all"])]
        what: String,
        /// A node id, or the workload's name.namespace.
        proxy: String,
        #[arg(long, default_value = "127.0.0.1:15014")]
        control: std::net::SocketAddr,
        #[arg(short = 'o', long, value_parser = ["json", "table"], default_value = "table")]
        output: String,
    },
    /// Show whether each connected proxy accepted its configuration.
    ProxyStatus {
        /// The control plane's debug address.
        #[arg(long, default_value = "127.0.0.1:15014")]
        control: std::net::SocketAddr,
        /// The control plane's JSON instead of a table.
        #[arg(short = 'o', long, value_parser = ["json", "table"], default_value = "table")]
        output: String,
    },
    /// The demo issuer: a signing key, its JWKS, tokens signed with it.
    Jwt {
        #[command(subcommand)]
        what: JwtCommand,
    },
    /// Print the version.
    Version,
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum JwtCommand {
    /// Write a new ECDSA P-256 signing key (PKCS#8 PEM).
    Key { out: std::path::PathBuf },
    /// Print the key's public half as a JWKS (for a RequestAuthentication's `jwks`).
    Jwks { key: std::path::PathBuf },
    /// Print a token signed with the key (ES256).
    Token {
        #[arg(long)]
        key: std::path::PathBuf,
        #[arg(long)]
        iss: String,
        #[arg(long)]
        sub: String,
        /// Audience (repeat for several).
        #[arg(long)]
        aud: Vec<String>,
        /// Another claim, NAME=VALUE (VALUE as JSON when it parses).
        #[arg(long)]
        claim: Vec<String>,
        /// Seconds until it expires (negative: already expired).
        #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
        ttl: i64,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Log,
    Json,
    Yaml,
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{s:?} is not a level: expected Info, Warning or Error"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Jwt { what } => {
            let done = match what {
                JwtCommand::Key { out } => jwt::new_key(&out),
                JwtCommand::Jwks { key } => jwt::jwks(&key).map(|j| println!("{j}")),
                JwtCommand::Token {
                    key,
                    iss,
                    sub,
                    aud,
                    claim,
                    ttl,
                } => jwt::token(&key, &iss, &sub, &aud, &claim, ttl).map(|t| println!("{t}")),
            };
            done.map(|()| 0)
        }
        Command::Version => {
            println!("weft {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "weft", &mut std::io::stdout());
            Ok(0)
        }
        Command::Validate { files, namespace } => validate(&files, namespace),
        Command::Control {
            config,
            xds_address,
            debug_address,
            debounce_ms,
            secure_address,
            state_dir,
            cacerts,
            trust_domain,
            serving_names,
            workload_cert_ttl,
            max_workload_cert_ttl,
            no_ca,
        } => control::run(control::Args {
            config,
            xds: xds_address,
            debug: debug_address,
            debounce: Duration::from_millis(debounce_ms),
            ca: (!no_ca).then(|| {
                let state = state_dir.unwrap_or_else(weft_control::ca::default_state_dir);
                let mut ca = weft_control::ca::SecureOptions::new(state);
                ca.address = secure_address;
                ca.cacerts = cacerts;
                ca.trust_domain = trust_domain;
                for name in serving_names {
                    match name.parse() {
                        Ok(ip) => ca.extra_ips.push(ip),
                        Err(_) => ca.extra_dns.push(name),
                    }
                }
                ca.workload_ttl = Duration::from_secs(workload_cert_ttl);
                ca.max_ttl = Duration::from_secs(max_workload_cert_ttl);
                ca
            }),
        }),
        Command::Agent {
            ca_address,
            ca_server_name,
            root_cert,
            token_file,
            namespace,
            service_account,
            trust_domain,
            sds_socket,
            cert_ttl_seconds,
        } => agent::run(agent::Args {
            ca_address,
            ca_server_name,
            root_cert,
            token_file,
            namespace,
            service_account,
            trust_domain,
            sds_socket,
            ttl: (cert_ttl_seconds > 0).then(|| Duration::from_secs(cert_ttl_seconds)),
        }),
        Command::ProxyConfig {
            what,
            proxy,
            control,
            output,
        } if what == "secret" => proxy_secret::run(control, &proxy, output == "json"),
        Command::ProxyConfig {
            what,
            proxy,
            control,
            output,
        } => proxy_config::run(control, &what, &proxy, output == "json"),
        Command::ProxyStatus { control, output } => {
            control::proxy_status(control, output == "json")
        }
        Command::Up {
            dir,
            gateway,
            xds_address,
            debug_address,
            secure_address,
            state_dir,
            no_mtls,
            prometheus_address,
            no_prometheus,
        } => up::run(up::Args {
            dir,
            prometheus: (!no_prometheus).then_some(prometheus_address),
            xds: xds_address,
            debug: debug_address,
            ca: (!no_mtls).then(|| {
                let state = state_dir.unwrap_or_else(weft_control::ca::default_state_dir);
                let mut ca = weft_control::ca::SecureOptions::new(state);
                ca.address = secure_address;
                ca
            }),
            gateway: if gateway == "none" {
                weft_local::GatewayMode::None
            } else {
                weft_local::GatewayMode::Weft
            },
        }),
        Command::Bootstrap {
            role,
            name,
            namespace,
            ip,
            xds,
            admin_port,
            prometheus_port,
            service_account,
            sds_socket,
        } => up::bootstrap(
            up::BootstrapArgs {
                role,
                name,
                namespace,
                ip,
                service_account,
            },
            weft_control::bootstrap::Options {
                xds,
                admin: admin_port,
                sds_socket,
                prometheus: prometheus_port,
            },
        ),
        Command::Proxy {
            config,
            concurrency,
            drain_seconds,
            drain_time_s,
            validate,
        } => proxy::run(
            &config,
            concurrency,
            proxy::Drain {
                shutdown: Duration::from_secs(drain_seconds),
                listener: Duration::from_secs(drain_time_s),
            },
            validate,
        ),
        Command::Analyze {
            paths,
            output,
            failure_threshold,
            output_threshold,
            suppress,
            all_namespaces,
            namespace,
            list_analyzers,
        } => {
            if list_analyzers {
                for a in weft_analyze::ANALYZERS {
                    let codes: Vec<&str> = a.codes.iter().map(|c| c.code).collect();
                    println!("{:<48} {} [{}]", a.name, a.description, codes.join(", "));
                }
                return Ok(0);
            }
            if paths.is_empty() {
                anyhow::bail!("no input: give files or directories to analyze (live clusters are not supported yet)");
            }
            let suppressions = suppress
                .iter()
                .map(|s| Suppression::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let opts = LoadOptions {
                default_namespace: namespace.clone().unwrap_or_else(|| "default".into()),
                ..LoadOptions::default()
            };
            let loaded = load_paths(&paths, &opts);
            let mut io_failed = false;
            for issue in &loaded.issues {
                if matches!(issue.kind, IssueKind::Io | IssueKind::UnknownKind) {
                    eprintln!("{issue}");
                    io_failed |= issue.kind == IssueKind::Io;
                }
            }
            let diags = weft_analyze::analyze(
                &loaded.resources,
                &loaded.issues,
                &weft_analyze::Options {
                    suppressions,
                    namespace: if all_namespaces {
                        None
                    } else {
                        namespace.clone()
                    },
                },
            );
            let shown: Vec<_> = diags
                .iter()
                .filter(|d| d.level() >= output_threshold)
                .collect();
            match output {
                Output::Log => {
                    for d in &shown {
                        println!("{d}");
                    }
                    if shown.is_empty() {
                        let scope = namespace
                            .as_deref()
                            .map_or("all namespaces".to_string(), |n| format!("namespace: {n}"));
                        eprintln!("✔ No validation issues found when analyzing {scope}.");
                    }
                }
                Output::Json | Output::Yaml => {
                    let msgs: Vec<weft_analyze::OutputMessage> =
                        shown.iter().map(|d| (*d).into()).collect();
                    if output == Output::Json {
                        println!("{}", serde_json::to_string_pretty(&msgs)?);
                    } else {
                        print!("{}", serde_yaml::to_string(&msgs)?);
                    }
                }
            }
            if io_failed {
                return Ok(1);
            }
            let failing = diags.iter().any(|d| d.level() >= failure_threshold);
            if !failing {
                return Ok(0);
            }
            if output == Output::Log {
                let scope = namespace
                    .as_deref()
                    .map_or("all namespaces".to_string(), |n| format!("namespace: {n}"));
                eprintln!("Error: Analyzers found issues when analyzing {scope}.");
                eprintln!("See https://istio.io/latest/docs/reference/config/analysis for more information about causes and resolutions.");
            }
            Ok(EXIT_ANALYZER_FOUND_ISSUES)
        }
    }
}

fn validate(files: &[PathBuf], namespace: String) -> anyhow::Result<u8> {
    let opts = LoadOptions {
        default_namespace: namespace,
        keep_duplicates: true,
        ..LoadOptions::default()
    };
    let loaded = load_paths(files, &opts);
    let mut errors = 0usize;
    let mut io = false;
    for issue in &loaded.issues {
        match issue.kind {
            IssueKind::UnknownKind => eprintln!("warning: {issue}"),
            IssueKind::Io => {
                io = true;
                eprintln!("error: {issue}");
            }
            _ => {
                errors += 1;
                eprintln!("error: {issue}");
            }
        }
    }
    let mut valid = 0usize;
    for r in &loaded.resources {
        let violations = weft_config::validate(&r.object);
        let mut bad = false;
        for v in &violations {
            let level = match v.severity {
                Severity::Error => {
                    bad = true;
                    errors += 1;
                    "error"
                }
                Severity::Warning => "warning",
            };
            eprintln!(
                "{level}: {} ({}) {}: {}",
                r.origin_of(&v.field),
                r.display_name(),
                v.field,
                v.message
            );
        }
        if !bad {
            valid += 1;
        }
    }
    if io {
        return Ok(2);
    }
    if errors == 0 {
        println!("✔ {valid} objects valid ({} files)", loaded.files);
        Ok(0)
    } else {
        println!(
            "✘ {errors} errors; {valid} objects valid ({} files)",
            loaded.files
        );
        Ok(1)
    }
}
