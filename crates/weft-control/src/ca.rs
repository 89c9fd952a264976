//! The control plane's CA and its secure port (Istio's 15012): the mesh
//! CA (`weft_identity::ca`, self-signed in the state directory or
//! Istio's plug-in `cacerts`) and, on one TLS port presenting a
//! certificate that CA issued, both its `CreateCertificate` API and the
//! same ADS service as the plaintext port (xDS over TLS).
//!
//! Agents authenticate with the mesh join token kept in the state
//! directory (see `weft_identity::auth`); [`MeshCa`] tells where it and
//! the root certificate are, for `weft up` and `weft bootstrap`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weft_identity::auth::JoinToken;
use weft_identity::ca::{Ca, CaOptions, CaSource, ServingNames};
use weft_identity::service::CertificateService;
use weft_identity::tls::{ServingCert, TlsIncoming};

use crate::server::{AdsServer, ServeError, REQUEST_WINDOW};

/// How the CA and the secure port run.
#[derive(Clone, Debug)]
pub struct SecureOptions {
    /// The self-signed root and the join token live here (0700; keys
    /// 0600). Never inside the watched configuration directory.
    pub state_dir: PathBuf,
    /// Istio's plug-in `cacerts` directory (`ca-cert.pem`, `ca-key.pem`,
    /// `root-cert.pem`, `cert-chain.pem`); the self-signed root when
    /// `None`.
    pub cacerts: Option<PathBuf>,
    /// MeshConfig's trustDomain.
    pub trust_domain: String,
    /// The secure port (Istio: 15012).
    pub address: SocketAddr,
    /// Names on the serving certificate besides istiod's and loopback.
    pub extra_dns: Vec<String>,
    pub extra_ips: Vec<IpAddr>,
    /// A workload certificate's lifetime when the agent asks none.
    pub workload_ttl: Duration,
    /// The longest lifetime an agent may ask.
    pub max_ttl: Duration,
}

impl SecureOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> SecureOptions {
        SecureOptions {
            state_dir: state_dir.into(),
            cacerts: None,
            trust_domain: weft_identity::DEFAULT_TRUST_DOMAIN.into(),
            address: ([127, 0, 0, 1], 15012).into(),
            extra_dns: Vec::new(),
            extra_ips: Vec::new(),
            workload_ttl: weft_identity::ca::DEFAULT_TTL,
            max_ttl: weft_identity::ca::MAX_TTL,
        }
    }
}

/// The state directory when none is given: `$XDG_STATE_HOME/weft`, else
/// `$HOME/.local/state/weft`, else `./.weft-state`. Per user, outside any
/// project (so never committed with the configuration), and kept across
/// restarts so the root stays the same.
pub fn default_state_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = env("XDG_STATE_HOME") {
        return PathBuf::from(state).join("weft");
    }
    if let Some(home) = env("HOME") {
        return PathBuf::from(home).join(".local/state/weft");
    }
    PathBuf::from(".weft-state")
}

/// The running CA: what bootstraps and agents need to find it.
#[derive(Clone, Debug)]
pub struct MeshCa {
    pub ca: Arc<Ca>,
    /// Where the secure port listens.
    pub address: SocketAddr,
    join_token: PathBuf,
    root_cert: PathBuf,
}

impl MeshCa {
    /// The mesh's root certificate, PEM (a bootstrap's trusted CA for
    /// the xDS cluster on the secure port; an agent's `--root-cert`).
    pub fn root_pem(&self) -> &str {
        self.ca.root_pem()
    }

    /// The file holding the root certificate (`root-cert.pem` in the
    /// state directory, or in `cacerts`).
    pub fn root_cert_path(&self) -> &Path {
        &self.root_cert
    }

    /// The file holding the mesh join token (mode 0600).
    pub fn join_token_path(&self) -> &Path {
        &self.join_token
    }

    pub fn trust_domain(&self) -> &str {
        self.ca.trust_domain()
    }
}

/// Opens the CA and serves the secure port: `CreateCertificate` and
/// `ads`'s ADS service, over TLS.
pub(crate) async fn start(
    opts: &SecureOptions,
    config_dir: &Path,
    ads: AdsServer,
) -> Result<(MeshCa, tokio::task::JoinHandle<()>), ServeError> {
    check_state_dir(&opts.state_dir, config_dir)?;
    let (source, root_cert) = match &opts.cacerts {
        Some(dir) => (
            CaSource::Plugin {
                cacerts: dir.clone(),
            },
            dir.join("root-cert.pem"),
        ),
        None => (
            CaSource::SelfSigned {
                state_dir: opts.state_dir.clone(),
            },
            opts.state_dir.join(weft_identity::ca::ROOT_CERT_FILE),
        ),
    };
    let ca = Arc::new(Ca::open(
        &source,
        CaOptions {
            trust_domain: opts.trust_domain.clone(),
            default_ttl: opts.workload_ttl,
            max_ttl: opts.max_ttl,
        },
    )?);
    let token = JoinToken::load_or_create(&opts.state_dir)?;
    let mut names = ServingNames::default();
    names.dns.extend(opts.extra_dns.iter().cloned());
    names.ips.extend(opts.extra_ips.iter().copied());
    let serving = ServingCert::new(ca.clone(), names, weft_identity::ca::DEFAULT_TTL)?;
    let tls = weft_identity::tls::server_config(Arc::new(serving))?;
    let (listener, address) =
        crate::server::bind("the secure port (CA and xDS over TLS)", opts.address).await?;
    let incoming = TlsIncoming::new(listener, tls);
    let ca_service = CertificateService::new(ca.clone(), Arc::new(token.clone()));
    let ads_service = ads.grpc_service();
    let task = tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .initial_stream_window_size(REQUEST_WINDOW)
            .initial_connection_window_size(REQUEST_WINDOW)
            .add_service(ads_service)
            .add_service(ca_service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!("secure port stopped: {e}");
        }
    });
    tracing::info!(
        %address,
        root = %root_cert.display(),
        join_token = %token.path().display(),
        trust_domain = %ca.trust_domain(),
        "CA and xDS over TLS serving; agents authenticate with the join token"
    );
    Ok((
        MeshCa {
            ca,
            address,
            join_token: token.path().to_path_buf(),
            root_cert,
        },
        task,
    ))
}

/// Refuses a state directory inside the configuration directory.
fn check_state_dir(state: &Path, config: &Path) -> Result<(), ServeError> {
    let (s, c) = (resolve(state), resolve(config));
    if s.starts_with(&c) {
        return Err(ServeError::StateInConfig {
            state: state.to_path_buf(),
            config: config.to_path_buf(),
        });
    }
    Ok(())
}

/// `path` made absolute with symlinks resolved as far as it exists (the
/// state directory may not exist yet).
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_may_not_be_inside_the_configuration() {
        let dir = std::env::temp_dir().join(format!("weft-ca-{}", std::process::id()));
        let config = dir.join("mesh");
        std::fs::create_dir_all(&config).unwrap();
        let inside = config.join("sub/.weft-state");
        assert!(matches!(
            check_state_dir(&inside, &config),
            Err(ServeError::StateInConfig { .. })
        ));
        assert!(check_state_dir(&config, &config).is_err());
        // Spelt another way.
        assert!(check_state_dir(&dir.join("mesh/./x/../y"), &config).is_err());
        assert!(check_state_dir(&dir.join("state"), &config).is_ok());
        assert!(check_state_dir(&dir.join("mesh-state"), &config).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
