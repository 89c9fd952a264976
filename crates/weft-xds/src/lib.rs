//! Envoy's xDS v3 on the wire.
//!
//! Resources arrive as protobuf `Any`s. [`decode`] reads one with Envoy's
//! own descriptors (compiled by `build.rs` from the protos the
//! `envoy-types` crate ships), turns it into proto3 JSON — nested
//! `typed_config`s included — and hands that to `weft-envoy`, the same
//! strict model a bootstrap file goes through. So a resource from a
//! control plane and the same resource in a bootstrap are accepted or
//! refused alike, and a refusal names the resource and the field (what
//! a NACK's `error_detail` says). [`ads`] is the client's protocol state
//! (state of the world, and [`ads::delta`] for incremental xDS) and
//! [`client`] the gRPC stream that drives it.

pub mod ads;
pub mod client;
mod decode;

pub use decode::{decode, encode, encode_virtual_host, node, to_json, DecodeError, Kind, Resource};

/// The gRPC service and message types of ADS, from `envoy-types`.
pub use envoy_types::pb::envoy::service::discovery::v3 as discovery;
