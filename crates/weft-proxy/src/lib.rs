//! weft's data plane. A configuration (today: an Envoy bootstrap with
//! static resources) is compiled into an immutable [`Snapshot`] of
//! listeners, route tables and clusters; listeners accept connections and
//! serve them from whatever snapshot is current, without taking locks.

pub mod access_log;
pub mod admin;
pub mod circuit;
pub mod cluster;
mod config_dump;
pub mod cors;
pub mod error;
pub mod fault;
pub mod hashing;
pub mod headers;
pub mod http;
mod io;
pub mod listener;
mod local_reply;
pub mod outlier;
pub mod ratelimit;
mod replay;
pub mod retry;
pub mod router;
pub mod routes;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod stream_timers;
mod tcp;
mod upstream_headers;
pub mod xds;

pub use error::{CompileError, ForwardError};
pub use server::{start, Running};
pub use snapshot::Snapshot;
