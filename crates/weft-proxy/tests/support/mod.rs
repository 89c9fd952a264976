//! Test helpers: echo backends, running weft and Envoy from the same
//! bootstrap, and a plain HTTP client (the generic ones live in
//! weft-testkit, shared with the control plane's tests). Shared by the
//! parity tests.

#![allow(dead_code)]

pub mod pair;
pub mod scenario;
pub mod xds;

pub use weft_testkit::envoy::*;
pub use weft_testkit::http::*;
