//! The workload agent (the certificate half of Istio's pilot-agent):
//! keeps the workload's certificate fresh from the CA and serves it to
//! Envoy over SDS. `weft agent` runs it alone; `weft proxy` can embed it
//! with [`start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::client::{CaClient, CaClientOptions, ClientError, Rotation, RotationOptions};
use crate::identity::Identity;
use crate::sds::{self, SdsError, SdsServing};

/// Why the agent could not start. None is retryable as is: each names a
/// file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Sds(#[from] SdsError),
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub ca: CaClientOptions,
    pub identity: Identity,
    /// Where Envoy's `sds-grpc` cluster connects.
    pub sds_socket: PathBuf,
    pub rotation: RotationOptions,
}

impl AgentOptions {
    /// Options from the files `weft control` writes: the root
    /// certificate (`root-cert.pem`) and the join token.
    pub fn from_files(
        ca_address: SocketAddr,
        server_name: Option<String>,
        root_cert: &Path,
        token: &Path,
        identity: Identity,
        sds_socket: PathBuf,
    ) -> Result<AgentOptions, AgentError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| AgentError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(AgentOptions {
            ca: CaClientOptions {
                address: ca_address,
                server_name,
                root_pem: read(root_cert)?,
                token: read(token)?.trim().to_string(),
            },
            identity,
            sds_socket,
            rotation: RotationOptions::default(),
        })
    }
}

/// A running agent; stops when dropped.
#[derive(Debug)]
pub struct Agent {
    pub rotation: Rotation,
    pub sds: SdsServing,
}

/// Starts the rotation (the first certificate is asked at once) and the
/// SDS server (which answers Envoy once that certificate is there).
pub async fn start(opts: AgentOptions) -> Result<Agent, AgentError> {
    let client = CaClient::new(&opts.ca)?;
    let rotation = Rotation::start(opts.identity.clone(), client, opts.rotation.clone());
    let sds = sds::serve(&opts.sds_socket, rotation.certs.clone())?;
    tracing::info!(
        identity = %opts.identity,
        ca = %opts.ca.address,
        sds = %opts.sds_socket.display(),
        "agent started"
    );
    Ok(Agent { rotation, sds })
}

/// [`start`], then runs until the future is dropped.
pub async fn run(opts: AgentOptions) -> Result<(), AgentError> {
    let _agent = start(opts).await?;
    std::future::pending::<()>().await;
    Ok(())
}
