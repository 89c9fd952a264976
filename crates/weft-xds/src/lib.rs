//! Envoy's xDS v3 on the wire.
//!
//! Resources arrive as protobuf `Any`s. [`decode`] reads one with Envoy's
//! own descriptors (compiled by `build.rs` from the protos the
//! `envoy-types` crate ships) and reads `weft-envoy`'s model from it as
//! from its proto3 JSON form — nested `typed_config`s included — the same
//! strict model a bootstrap file goes through. (The message is read in
//! place; only what does not read that way is serialized to JSON and
//! decoded again, which names the field that failed.) So a resource from a
//! control plane and the same resource in a bootstrap are accepted or
//! refused alike, and a refusal names the resource and the field (what
//! a NACK's `error_detail` says). [`ads`] is the client's protocol state
//! (state of the world, and [`ads::delta`] for incremental xDS) and
//! [`client`] the gRPC stream that drives it.

pub mod ads;
pub mod client;
mod decode;
pub mod message;

pub use decode::{
    compare_decoders, decode, encode, encode_virtual_host, node, to_json, DecodeError, Kind,
    Resource,
};

/// The gRPC service and message types of ADS, from `envoy-types`.
pub use envoy_types::pb::envoy::service::discovery::v3 as discovery;
