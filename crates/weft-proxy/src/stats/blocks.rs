//! The fixed statistics of a cluster, an HTTP connection manager, a
//! fault filter, a TCP proxy and a listener, each kept as one block.
//!
//! A block is a struct of atomics, allocated once per family and shared
//! by every snapshot that names the family. Thousands of clusters make
//! this the shape that matters: one allocation per cluster instead of
//! one per statistic, and no name lookups while a snapshot is compiled.
//! The field names are the statistics' Envoy names; the admin endpoints
//! read a block through [`Block::each`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Row, Store};

/// A counter inside a block.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge inside a block.
#[derive(Debug, Default)]
pub struct Level(AtomicI64);

impl Level {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `STAT_1xx` … `STAT_5xx`, exported as `STAT_xx` tagged with
/// `envoy_response_code_class`.
#[derive(Debug, Default)]
pub struct Classes(pub [Count; 5]);

/// [`Classes`] that Envoy creates on first use: not shown while zero
/// (a cluster's `upstream_rq_2xx`).
#[derive(Debug, Default)]
pub struct LazyClasses(pub [Count; 5]);

impl Classes {
    /// Counts one response status into its class.
    pub fn count(&self, status: u16) {
        count(&self.0, status);
    }
}

impl LazyClasses {
    pub fn count(&self, status: u16) {
        count(&self.0, status);
    }
}

fn count(classes: &[Count; 5], status: u16) {
    if let Some(c) = ((status / 100) as usize)
        .checked_sub(1)
        .and_then(|i| classes.get(i))
    {
        c.inc();
    }
}

/// One field of a block, listed under its name.
pub trait Field {
    fn rows(&self, name: &'static str, out: &mut dyn FnMut(Row));
}

impl Field for Count {
    fn rows(&self, name: &'static str, out: &mut dyn FnMut(Row)) {
        out(Row::counter(name.into(), name.into(), 0, self.get(), false));
    }
}

impl Field for Level {
    fn rows(&self, name: &'static str, out: &mut dyn FnMut(Row)) {
        out(Row::gauge(name, self.get()));
    }
}

fn class_rows(counts: &[Count; 5], name: &str, lazy: bool, out: &mut dyn FnMut(Row)) {
    for (i, c) in counts.iter().enumerate() {
        let class = i as u8 + 1;
        out(Row::counter(
            format!("{name}_{class}xx").into(),
            format!("{name}_xx").into(),
            class,
            c.get(),
            lazy,
        ));
    }
}

impl Field for Classes {
    fn rows(&self, name: &'static str, out: &mut dyn FnMut(Row)) {
        class_rows(&self.0, name, false, out);
    }
}

impl Field for LazyClasses {
    fn rows(&self, name: &'static str, out: &mut dyn FnMut(Row)) {
        class_rows(&self.0, name, true, out);
    }
}

/// A struct of statistics the store can list.
pub trait Block: std::any::Any + std::fmt::Debug + Send + Sync {
    fn each(&self, out: &mut dyn FnMut(Row));
}

/// Declares a block: each field is a statistic under its own name.
macro_rules! block {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Block for $name {
            fn each(&self, out: &mut dyn FnMut(Row)) {
                $(Field::rows(&self.$field, stringify!($field), out);)*
            }
        }
    };
}

block! {
    /// A cluster's statistics (`cluster.NAME.*`).
    pub struct ClusterStats {
        pub upstream_rq_total: Count,
        pub upstream_rq: LazyClasses,
        pub upstream_rq_timeout: Count,
        pub upstream_cx_total: Count,
        pub upstream_cx_connect_fail: Count,
        pub upstream_cx_none_healthy: Count,
        pub membership_total: Level,
        pub membership_healthy: Level,
        /// Retries sent, and how many of them got a response kept.
        pub upstream_rq_retry: Count,
        pub upstream_rq_retry_success: Count,
        /// Retries the max_retries circuit breaker did not allow.
        pub upstream_rq_retry_overflow: Count,
        /// Requests that still failed when their retries ran out.
        pub upstream_rq_retry_limit_exceeded: Count,
        pub upstream_rq_per_try_timeout: Count,
        /// Requests refused by the max_pending_requests and max_requests
        /// circuit breakers; requests that found max_connections reached
        /// and waited.
        pub upstream_rq_pending_overflow: Count,
        pub upstream_rq_active_overflow: Count,
        pub upstream_cx_overflow: Count,
        pub upstream_rq_active: Level,
        pub upstream_rq_pending_active: Level,
    }
}

block! {
    /// An HTTP connection manager's statistics (`http.PREFIX.*`).
    pub struct HttpStats {
        pub downstream_rq_total: Count,
        pub downstream_rq: Classes,
        pub downstream_rq_active: Level,
        pub downstream_cx_total: Count,
        pub downstream_cx_active: Level,
        pub no_route: Count,
        /// Connections closed after idle_timeout with no request open.
        pub downstream_cx_idle_timeout: Count,
        /// Connections drained at max_connection_duration.
        pub downstream_cx_max_duration_reached: Count,
        /// Requests refused for their path (an escaped slash under
        /// REJECT_REQUEST, a NUL, a gRPC request to redirect).
        pub downstream_rq_failed_path_normalization: Count,
        /// Requests redirected to their path with slashes unescaped.
        pub downstream_rq_redirected_with_normalized_path: Count,
    }
}

block! {
    /// The fault filter's statistics (`http.PREFIX.fault.*`).
    pub struct FaultStats {
        pub delays_injected: Count,
        pub aborts_injected: Count,
        /// Faults not injected because max_active_faults were in progress.
        pub faults_overflow: Count,
        pub active_faults: Level,
    }
}

block! {
    /// A TCP proxy's statistics (`tcp.PREFIX.*`).
    pub struct TcpStats {
        pub downstream_cx_total: Count,
        pub downstream_cx_rx_bytes_total: Count,
        pub downstream_cx_tx_bytes_total: Count,
    }
}

block! {
    /// A listener's statistics (`listener.ADDRESS.*`, the address with
    /// `_` before the port as Envoy writes it).
    pub struct ListenerStats {
        pub downstream_cx_total: Count,
        pub downstream_cx_active: Level,
        /// Connections closed because no filter chain matched.
        pub no_filter_chain_match: Count,
        /// Connections whose listener filters ran past listener_filters_timeout.
        pub downstream_pre_cx_timeout: Count,
    }
}

impl ClusterStats {
    pub fn new(store: &Store, cluster: &str) -> Arc<Self> {
        store.block(&format!("cluster.{cluster}."), "envoy_cluster_", || {
            vec![("envoy_cluster_name", cluster.to_string())]
        })
    }
}

impl HttpStats {
    pub fn new(store: &Store, stat_prefix: &str) -> Arc<Self> {
        store.block(&format!("http.{stat_prefix}."), "envoy_http_", || {
            vec![("envoy_http_conn_manager_prefix", stat_prefix.to_string())]
        })
    }
}

impl FaultStats {
    pub fn new(store: &Store, stat_prefix: &str) -> Arc<Self> {
        store.block(
            &format!("http.{stat_prefix}.fault."),
            "envoy_http_fault_",
            || vec![("envoy_http_conn_manager_prefix", stat_prefix.to_string())],
        )
    }
}

impl TcpStats {
    pub fn new(store: &Store, stat_prefix: &str) -> Arc<Self> {
        store.block(&format!("tcp.{stat_prefix}."), "envoy_tcp_", || {
            vec![("envoy_tcp_prefix", stat_prefix.to_string())]
        })
    }
}

impl ListenerStats {
    pub fn new(store: &Store, addr: std::net::SocketAddr) -> Arc<Self> {
        let name = format!("{}_{}", addr.ip(), addr.port());
        store.block(&format!("listener.{name}."), "envoy_listener_", || {
            vec![("envoy_listener_address", name.clone())]
        })
    }
}
