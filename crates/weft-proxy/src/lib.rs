//! weft's data plane. A configuration (an Envoy bootstrap, then xDS
//! updates) is compiled into an immutable [`Snapshot`] of listeners,
//! route tables and clusters; listeners accept connections and serve
//! them from whatever snapshot is current, without taking locks.
//!
//! The modules form floors; each imports only from floors below it.
//!
//! 0. Types and tools: `error`, `body`, `headers`, `matchers`, `transport`
//!    (the byte streams, plain or TLS, and what a connection carried),
//!    `io`, `stats`, `metadata` (a request's dynamic metadata).
//! 1. Policies, each knowing only floor 0: `fault`, `ratelimit`, `cors`,
//!    `rbac`, `retry`, `hashing`, `circuit`, `outlier`, `replay`,
//!    `stream_timers`, `local_reply`, `access_log`, `xfcc`, `path_norm`
//!    (a request path normalized as Envoy's connection manager does).
//! 2. Compiled configuration: `cluster` (endpoints, balancing, pools),
//!    `routes` (route tables), `chain` (filter chains: transport, HTTP
//!    connection manager or TCP proxy), `listener`, `snapshot`,
//!    `config_dump`.
//! 3. The request path: `request` (a routed request's context),
//!    `upstream_headers`, `router`, `http` (the connection manager), `tcp`.
//! 4. Serving: `server` (listeners bound, connections served, snapshots
//!    installed), `admin`, `xds` (updates compiled and installed), `sds`
//!    (secrets from a gRPC config source of their own, over a Unix
//!    socket).

// Floor 0.
mod body;
mod error;
mod headers;
mod io;
mod matchers;
mod metadata;
mod peer;
mod stats;
mod transport;

// Floor 1.
mod access_log;
mod circuit;
mod cors;
mod ext_authz;
mod fault;
mod hashing;
mod istio_stats;
mod jwt;
mod local_reply;
mod outlier;
pub mod path_norm;
mod peer_exchange;
mod ratelimit;
mod rbac;
mod replay;
mod retry;
mod stream_timers;
mod xfcc;

// Floor 2.
mod chain;
mod cluster;
mod config_dump;
pub mod listener;
mod routes;
mod snapshot;

// Floor 3.
mod http;
mod request;
mod router;
mod tcp;
mod upstream_headers;

// Floor 4.
pub mod admin;
mod sds;
mod server;
pub mod xds;

pub use access_log::format_time;
pub use error::{CompileError, ForwardError};
pub use server::{start, InstallError, Running, Shared, DRAIN_TIME};
pub use snapshot::Snapshot;
