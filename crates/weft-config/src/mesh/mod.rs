//! Istio's mesh model: the rules every stage that reads Istio
//! configuration must read alike — which protocol a port speaks
//! (`protocol`), what a label selector picks (`selector`), how a host is
//! completed and compared, and the cluster domain (`host`), and who may
//! see an exported object (`export`), which mutual-TLS mode a workload
//! port accepts (`mtls`), what a key set must be (`jwks`). Validation, `weft analyze` and the
//! control plane all ask these modules, as Istio's analyzers and pilot
//! share one model, so no stage can read a port, selector or host
//! differently from another.
//!
//! It sits in weft-config, the lowest crate that knows Istio's kinds and
//! below every crate that reads them, and depends on nothing but
//! weft-api's types.

pub mod export;
pub mod host;
pub mod jwks;
pub mod mtls;
pub mod protocol;
pub mod selector;

pub use protocol::Protocol;
pub use selector::{Labels, Scope, Selector};
