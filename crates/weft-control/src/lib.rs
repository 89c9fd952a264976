//! weft's control plane (`weft control`): Istio configuration and the
//! service registry compiled into Envoy xDS v3 per proxy and served over
//! ADS.
//!
//! - `model` / `registry`: services, ports, endpoints and workloads, from
//!   Kubernetes objects or ServiceEntry/WorkloadEntry alike;
//! - `context`: one immutable view of the mesh and the lookups
//!   generators share (Sidecar scope, VirtualService and DestinationRule
//!   selection with Istio's precedence);
//! - `delegate`: delegate VirtualServices merged into their roots;
//! - `gen`: per-proxy resources with Istio's names and semantics;
//! - `server`: the ADS server proxies connect to;
//! - `source`: where configuration comes from (the `Source` interface;
//!   the watched directory, with the last good version of every file and
//!   object) and mesh settings;
//! - `debounce`: a burst of changes let settle before it is published;
//! - `jwks`: RequestAuthentication key sets fetched by URL, inlined;
//! - `ca`: the mesh CA and the secure port (CA and ADS over TLS);
//! - `metrics`: the control plane's own metrics under istiod's names,
//!   and Prometheus service discovery of it and its proxies;
//! - `run`: all of it assembled, with the debug endpoint.

pub mod bootstrap;
pub mod ca;
pub mod context;
pub mod debounce;
mod delegate;
pub mod gen;
pub mod jwks;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod run;
pub mod server;
pub mod source;
pub mod support;

pub use context::{Context, Mesh};
pub use gen::{Proxy, ProxyKind};
