//! Workload certificates for the proxies `weft up` runs, the way Istio's
//! agent gives them to Envoy: for each proxy a key made here, a CSR
//! signed by the control plane's CA (in this process), renewed at half
//! its life, and served over SDS on a Unix socket of its own that the
//! proxy's bootstrap names (`sds-grpc`). A proxy started with one gets
//! mesh mTLS (auto mTLS out, PERMISSIVE in); without a CA, proxies run
//! without certificates and the mesh stays plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_control::bootstrap::Identity;
use weft_identity::client::{LocalCa, Rotation, RotationOptions};
use weft_identity::sds::{self, SdsServing};

/// A proxy's certificates could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// The workload's identity is not a valid SPIFFE id (a namespace or
    /// service account Istio would refuse). Not retryable.
    #[error("workload identity: {0}")]
    Identity(#[from] weft_identity::IdentityError),
    /// The SDS socket could not be served. Retryable once the path is
    /// usable.
    #[error(transparent)]
    Sds(#[from] sds::SdsError),
    /// The directory for the sockets could not be made.
    #[error("{path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where certificates come from: the mesh CA, and a private directory for
/// the proxies' SDS sockets (removed when this goes).
pub(crate) struct Issuer {
    ca: Arc<weft_identity::ca::Ca>,
    dir: PathBuf,
}

impl Issuer {
    /// Sockets go under `dir`, made here with mode 0700 (they hand out
    /// private keys).
    pub fn new(ca: Arc<weft_identity::ca::Ca>, dir: PathBuf) -> Result<Issuer, CertsError> {
        use std::os::unix::fs::DirBuilderExt;
        let fail = |source| CertsError::Dir {
            path: dir.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(fail)?;
        Ok(Issuer { ca, dir })
    }

    /// Starts `who`'s certificate rotation and its SDS socket.
    pub fn start(&self, who: &Identity) -> Result<WorkloadCerts, CertsError> {
        let id = weft_identity::Identity::new(
            self.ca.trust_domain(),
            who.namespace.as_str(),
            who.service_account(),
        )?;
        let rotation = Rotation::start(
            id,
            LocalCa(Arc::clone(&self.ca)),
            RotationOptions::default(),
        );
        // Short names: a Unix socket path has ~100 bytes.
        let socket = self
            .dir
            .join(format!("{}.{}.sock", who.name, who.namespace));
        let sds = sds::serve(&socket, rotation.certs.clone())?;
        Ok(WorkloadCerts {
            _rotation: rotation,
            sds,
        })
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One proxy's rotation and SDS socket; both stop when this is dropped.
pub(crate) struct WorkloadCerts {
    _rotation: Rotation,
    sds: SdsServing,
}

impl WorkloadCerts {
    pub fn socket(&self) -> &Path {
        &self.sds.socket
    }
}

/// A directory for one mesh's sockets: `$XDG_RUNTIME_DIR/weft-up-PID-N`,
/// else under the system's temporary directory (N tells apart meshes
/// of one process, as tests run).
pub(crate) fn socket_dir() -> PathBuf {
    static MESHES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = MESHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("weft-up-{}-{n}", std::process::id()))
}
