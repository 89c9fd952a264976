//! weft's data plane. A configuration (today: an Envoy bootstrap with
//! static resources) is compiled into an immutable snapshot of listeners,
//! route tables and clusters; listeners accept connections and serve
//! them from whatever snapshot is current, without taking locks.

pub mod headers;
pub mod routes;
