//! Workload identity for weft: what Istio's CA (Citadel, in istiod) and
//! the certificate half of its agent (pilot-agent) do.
//!
//! Modules, each importing only from those above it:
//!
//! - `identity`: SPIFFE ids `spiffe://<trust domain>/ns/<ns>/sa/<sa>`;
//! - `x509`, `files`, `proto`: reading certificates; private files
//!   (0600, written atomically); Istio's CA messages;
//! - `auth`: who may ask for which identity (the mesh join token; the
//!   [`auth::Authenticator`] seam for Kubernetes TokenReview later);
//! - `ca`: the CA (self-signed root kept in a state directory, or
//!   Istio's plug-in `cacerts`), signing CSRs and the control plane's
//!   serving certificate;
//! - `tls`: rustls (ring) configurations, the rotating serving
//!   certificate, TLS-accepted connections for tonic;
//! - `service`: `IstioCertificateService/CreateCertificate` for tonic;
//! - `client`: the agent's CSR, the call over TLS, rotation at half life;
//! - `sds`: the SDS server Envoy reads `default` and `ROOTCA` from;
//! - `agent`: client and SDS together (`weft agent`).
//!
//! Crypto is rcgen, rustls and x509-parser on ring; nothing here
//! implements a primitive.

pub mod agent;
pub mod auth;
pub mod ca;
pub mod client;
mod files;
pub mod identity;
pub mod proto;
pub mod sds;
pub mod service;
pub mod tls;
pub mod x509;

pub use identity::{Identity, IdentityError, DEFAULT_TRUST_DOMAIN};
