//! `weft agent`: the workload's certificate from the control plane's CA,
//! kept fresh, served to Envoy over SDS (the certificate half of Istio's
//! pilot-agent).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub struct Args {
    pub ca_address: SocketAddr,
    pub ca_server_name: Option<String>,
    /// `root-cert.pem` in the default state directory when `None`.
    pub root_cert: Option<PathBuf>,
    /// `join-token` in the default state directory when `None`.
    pub token_file: Option<PathBuf>,
    pub namespace: String,
    pub service_account: String,
    pub trust_domain: String,
    pub sds_socket: PathBuf,
    /// The CA's default when `None`.
    pub ttl: Option<Duration>,
}

/// Exit codes: 0 after Ctrl-C / SIGTERM, 1 for unusable settings or
/// files (the error names them).
pub fn run(args: Args) -> anyhow::Result<u8> {
    crate::proxy::init_logging();
    let identity = match weft_identity::Identity::new(
        &args.trust_domain,
        &args.namespace,
        &args.service_account,
    ) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let state = weft_control::ca::default_state_dir();
    let root_cert = args
        .root_cert
        .unwrap_or_else(|| state.join(weft_identity::ca::ROOT_CERT_FILE));
    let token_file = args
        .token_file
        .unwrap_or_else(|| state.join(weft_identity::auth::JOIN_TOKEN_FILE));
    let mut opts = match weft_identity::agent::AgentOptions::from_files(
        args.ca_address,
        args.ca_server_name,
        &root_cert,
        &token_file,
        identity,
        args.sds_socket,
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    opts.rotation.ttl = args.ttl;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let agent = match weft_identity::agent::start(opts).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(1);
            }
        };
        crate::control::shutdown_signal().await;
        tracing::info!("stopping");
        drop(agent);
        Ok(0)
    })
}
