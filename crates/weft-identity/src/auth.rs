//! Who may ask the CA for which identity.
//!
//! Istio's CA authenticates a CSR with the caller's Kubernetes service
//! account token (a JWT it sends TokenReview) and signs only the
//! identity of that service account. weft runs without Kubernetes, so
//! the default is a **mesh join token**: a random secret the control
//! plane keeps in its state directory (`join-token`, mode 0600) and
//! prints the path of; an agent sends it as `authorization: Bearer
//! <token>`. Holding the token entitles the caller to **any** identity of
//! the mesh's trust domain: it is a key to the whole mesh, like a
//! bootstrap token, and belongs only on machines trusted to run mesh
//! workloads. The Kubernetes mode (a later issue) implements
//! [`Authenticator`] with TokenReview and answers
//! [`Entitlement::Only`] the service account's identity.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::identity::Identity;

/// Why a caller was refused or the token store failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer` header. Not retryable as is.
    #[error("no credential: send `authorization: Bearer <join token>`")]
    Missing,
    /// The credential is not one this CA knows. Not retryable as is.
    #[error("the bearer token is not this mesh's join token")]
    Refused,
    /// The token file could not be read or written. Retryable once the
    /// file system is fixed.
    #[error("join token {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error("join token {path}: {why}")]
    Bad { path: PathBuf, why: &'static str },
    /// What checks credentials could not be asked (an API server for
    /// TokenReview). Retryable.
    #[error("cannot check the credential now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// Whether asking again (with the same credential) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, AuthError::Io { .. } | AuthError::Unavailable(_))
    }
}

/// Which identities an authenticated caller may be issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entitlement {
    /// Any identity of the CA's trust domain (a join-token holder).
    AnyInTrustDomain,
    /// Only these (a Kubernetes service account's own identity).
    Only(Vec<Identity>),
}

impl Entitlement {
    pub fn allows(&self, id: &Identity) -> bool {
        match self {
            Entitlement::AnyInTrustDomain => true,
            Entitlement::Only(ids) => ids.contains(id),
        }
    }
}

/// What [`Authenticator::authenticate`] returns: a future, as checking
/// a credential may take a call (Kubernetes TokenReview).
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Entitlement, AuthError>> + Send + 'a>>;

/// Decides from a request's bearer credential what the caller may get.
pub trait Authenticator: Send + Sync + 'static {
    /// `bearer` is the text after `Bearer ` in the `authorization`
    /// header, if there was one.
    fn authenticate<'a>(&'a self, bearer: Option<&'a str>) -> AuthFuture<'a>;
}

/// The file name of the join token in a state directory.
pub const JOIN_TOKEN_FILE: &str = "join-token";

/// The mesh join token: checked against the one in the state directory.
#[derive(Clone)]
pub struct JoinToken {
    /// SHA-256 of the token; the token itself is not kept in memory.
    digest: Vec<u8>,
    path: PathBuf,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// The token in `state_dir`, created (32 random bytes, hex, mode
    /// 0600; the directory 0700) when there is none.
    pub fn load_or_create(state_dir: &Path) -> Result<JoinToken, AuthError> {
        let path = state_dir.join(JOIN_TOKEN_FILE);
        let io = |source| AuthError::Io {
            path: path.clone(),
            source,
        };
        crate::files::create_private_dir(state_dir).map_err(io)?;
        let token = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token();
                crate::files::write_private(&path, token.as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), "created the mesh join token");
                token
            }
            Err(e) => return Err(io(e)),
        };
        let token = token.trim();
        if token.len() < 16 {
            return Err(AuthError::Bad {
                path,
                why: "shorter than 16 characters",
            });
        }
        Ok(JoinToken {
            digest: digest(token),
            path,
        })
    }

    /// Where the token is (what `weft control` prints).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl JoinToken {
    /// The check itself (no I/O).
    pub fn check(&self, bearer: Option<&str>) -> Result<Entitlement, AuthError> {
        let given = bearer.ok_or(AuthError::Missing)?;
        // Digests compared: the time taken says nothing of the token.
        if digest(given.trim()) == self.digest {
            Ok(Entitlement::AnyInTrustDomain)
        } else {
            Err(AuthError::Refused)
        }
    }
}

impl Authenticator for JoinToken {
    fn authenticate<'a>(&'a self, bearer: Option<&'a str>) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.check(bearer)))
    }
}

fn digest(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

fn new_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token part of an `authorization` header value (`Bearer <t>`,
/// the scheme case-insensitive).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_once_and_checked() {
        let dir = weft_testkit::envoy::TempDir::new("token");
        let a = JoinToken::load_or_create(&dir.0).unwrap();
        let text = std::fs::read_to_string(a.path()).unwrap();
        assert_eq!(text.len(), 64);
        let b = JoinToken::load_or_create(&dir.0).unwrap();
        assert_eq!(a.digest, b.digest, "a restart keeps the token");
        assert_eq!(b.check(Some(&text)).unwrap(), Entitlement::AnyInTrustDomain);
        assert!(matches!(
            b.check(Some("not-the-token")),
            Err(AuthError::Refused)
        ));
        assert!(matches!(b.check(None), Err(AuthError::Missing)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
