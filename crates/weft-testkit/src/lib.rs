//! Helpers shared by weft's tests and benchmarks. Nothing here is used by
//! the shipped binaries.

pub mod ca;
pub mod envoy;
pub mod http;
pub mod jwt;
pub mod tls;
pub mod wait;
pub mod xds;
