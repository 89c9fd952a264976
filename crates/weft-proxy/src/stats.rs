//! Statistics under Envoy's names. Each counter or gauge is registered
//! with its dotted Envoy name (`cluster.reviews.upstream_rq_total`) and
//! the tag-extracted form Envoy exports to Prometheus
//! (`envoy_cluster_upstream_rq_total{envoy_cluster_name="reviews"}`), so
//! dashboards and alerts written for Envoy read weft unchanged.
//!
//! Handles are looked up when a snapshot is compiled and kept in it; the
//! request path only touches atomics. The store outlives snapshots, so
//! counts carry across configuration updates as Envoy's do.
//!
//! Not `prometheus-client`: its text encoder appends `_total` to every
//! counter (OpenMetrics), which would rename Envoy's counters such as
//! `envoy_cluster_upstream_cx_connect_fail`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
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

#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
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

#[derive(Clone, Debug)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

/// One statistic of a family: its names after the family's prefixes,
/// as indexes into the store's interned names (every cluster's
/// `upstream_rq_total` is one string), and its own tag.
#[derive(Debug)]
struct Stat {
    /// After the dotted prefix: `upstream_rq_2xx`.
    name: Name,
    /// After the Prometheus prefix: `upstream_rq_xx`.
    prom: Name,
    /// The response code class it counts (`envoy_response_code_class`),
    /// 0 for none.
    class: u8,
    metric: Metric,
    /// Envoy creates some statistics on first use (a cluster's
    /// `upstream_rq_2xx`); those are not shown while still zero.
    lazy: bool,
}

impl Stat {
    fn value(&self) -> i64 {
        match &self.metric {
            Metric::Counter(c) => c.get() as i64,
            Metric::Gauge(g) => g.get(),
        }
    }

    fn shown(&self) -> bool {
        !self.lazy || self.value() != 0
    }
}

/// The statistics under one prefix (one cluster's, one listener's),
/// which share their tags. Thousands of clusters make this the shape
/// that matters for memory: a few words per statistic, not a map entry
/// with its own copies of the names and tags.
#[derive(Debug)]
struct Family {
    prom: &'static str,
    tags: Vec<(&'static str, String)>,
    stats: Vec<Stat>,
}

/// An interned statistic name.
type Name = u32;

/// Every statistic of one proxy.
#[derive(Debug, Default)]
pub struct Store {
    // Only registration and the admin endpoints lock these.
    families: Mutex<BTreeMap<String, Arc<Mutex<Family>>>>,
    names: Mutex<Names>,
}

#[derive(Debug, Default)]
struct Names {
    all: Vec<Arc<str>>,
    index: std::collections::HashMap<Arc<str>, Name, NameHash>,
}

/// Statistic names are few, short and ours (`upstream_rq_2xx`), and
/// every cluster registers each of them again: xxh64 instead of SipHash.
#[derive(Debug, Default, Clone, Copy)]
struct NameHash;

impl std::hash::BuildHasher for NameHash {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(0)
    }
}

struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh64::xxh64(bytes, self.0);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A family of statistics sharing a prefix and tags, e.g. one cluster's.
pub struct Scope<'a> {
    store: &'a Store,
    /// The family under the scope's dotted prefix (e.g.
    /// `cluster.reviews.`), found once for all its statistics.
    family: Arc<Mutex<Family>>,
}

impl Store {
    pub fn new() -> Arc<Store> {
        let s = Arc::new(Store::default());
        s.scope("server.", "envoy_server_", vec![])
            .gauge("live")
            .set(1);
        s
    }

    pub fn scope(
        &self,
        prefix: &str,
        prom: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> Scope<'_> {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = match families.get(prefix) {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(Mutex::new(Family {
                    prom,
                    tags: labels,
                    stats: Vec::new(),
                }));
                families.insert(prefix.to_string(), Arc::clone(&f));
                f
            }
        };
        Scope {
            store: self,
            family,
        }
    }

    fn intern(&self, s: &str) -> Name {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.index.get(s) {
            return *n;
        }
        let n = Name::try_from(names.all.len()).unwrap_or(Name::MAX);
        let text: Arc<str> = Arc::from(s);
        names.all.push(Arc::clone(&text));
        names.index.insert(text, n);
        n
    }

    /// The statistic `name` of `scope`'s family, made by `make` the first
    /// time: the same name is the same statistic, across snapshots.
    fn register(&self, scope: &Scope<'_>, name: &str, make: impl FnOnce(Name) -> Stat) -> Metric {
        let wanted = self.intern(name);
        let mut family = scope.family.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = family.stats.iter().find(|s| s.name == wanted) {
            return s.metric.clone();
        }
        let stat = make(wanted);
        let metric = stat.metric.clone();
        family.stats.push(stat);
        metric
    }

    /// Envoy's `/stats` text: `name: value`, sorted by name.
    pub fn text(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines: Vec<(String, i64)> = Vec::new();
        for (prefix, f) in families.iter() {
            let f = f.lock().unwrap_or_else(|p| p.into_inner());
            for s in f.stats.iter().filter(|s| s.shown()) {
                let name = &names.all[s.name as usize];
                lines.push((format!("{prefix}{name}"), s.value()));
            }
        }
        drop((names, families));
        lines.sort();
        let mut out = String::new();
        for (name, v) in lines {
            let _ = writeln!(out, "{name}: {v}");
        }
        out
    }

    /// Envoy's `/stats/prometheus`: one `# TYPE` line per metric name,
    /// then a sample per label set.
    pub fn prometheus(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_name: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
        for f in families.values() {
            let f = f.lock().unwrap_or_else(|p| p.into_inner());
            for st in f.stats.iter().filter(|s| s.shown()) {
                let kind = match &st.metric {
                    Metric::Counter(_) => "counter",
                    Metric::Gauge(_) => "gauge",
                };
                let name = format!("{}{}", f.prom, names.all[st.prom as usize]);
                let class =
                    (st.class > 0).then(|| ("envoy_response_code_class", st.class.to_string()));
                let labels: Vec<String> = class
                    .iter()
                    .chain(f.tags.iter())
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let sample = format!("{name}{{{}}} {}", labels.join(","), st.value());
                by_name
                    .entry(name)
                    .or_insert((kind, Vec::new()))
                    .1
                    .push(sample);
            }
        }
        drop((names, families));
        let mut out = String::new();
        for (name, (kind, mut samples)) in by_name {
            samples.sort();
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(out, "{s}");
            }
        }
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Scope<'_> {
    fn stat(&self, name: Name, prom: &str, class: u8, metric: Metric) -> Stat {
        Stat {
            name,
            prom: self.store.intern(prom),
            class,
            metric,
            lazy: false,
        }
    }

    pub fn counter(&self, stat: &str) -> Counter {
        self.tagged_counter(stat, stat, 0, false)
    }

    pub fn gauge(&self, stat: &str) -> Gauge {
        match self.store.register(self, stat, |name| {
            self.stat(name, stat, 0, Metric::Gauge(Gauge::default()))
        }) {
            Metric::Gauge(g) => g,
            Metric::Counter(_) => Gauge::default(),
        }
    }

    /// A counter whose dotted name carries a tag, as Envoy's
    /// `upstream_rq_2xx` carries the response code class.
    fn tagged_counter(&self, name: &str, prom_stat: &str, class: u8, lazy: bool) -> Counter {
        match self.store.register(self, name, |name| Stat {
            lazy,
            ..self.stat(name, prom_stat, class, Metric::Counter(Counter::default()))
        }) {
            Metric::Counter(c) => c,
            Metric::Gauge(_) => Counter::default(),
        }
    }

    /// `STAT_1xx` … `STAT_5xx`, exported as `STAT_xx` with
    /// `envoy_response_code_class`; `lazy` hides them until used.
    pub fn by_class(&self, stat: &str, lazy: bool) -> [Counter; 5] {
        std::array::from_fn(|i| {
            let class = i as u8 + 1;
            self.tagged_counter(
                &format!("{stat}_{class}xx"),
                &format!("{stat}_xx"),
                class,
                lazy,
            )
        })
    }
}

/// Counts one response status into its class counter.
pub fn count_class(counters: &[Counter; 5], status: u16) {
    if let Some(c) = ((status / 100) as usize)
        .checked_sub(1)
        .and_then(|i| counters.get(i))
    {
        c.inc();
    }
}

/// A cluster's statistics (`cluster.NAME.*`).
#[derive(Debug, Clone)]
pub struct ClusterStats {
    pub upstream_rq_total: Counter,
    pub upstream_rq: [Counter; 5],
    pub upstream_rq_timeout: Counter,
    pub upstream_cx_total: Counter,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_none_healthy: Counter,
    pub membership_total: Gauge,
    pub membership_healthy: Gauge,
    /// Retries sent, and how many of them got a response kept.
    pub upstream_rq_retry: Counter,
    pub upstream_rq_retry_success: Counter,
    /// Retries the max_retries circuit breaker did not allow.
    pub upstream_rq_retry_overflow: Counter,
    /// Requests that still failed when their retries ran out.
    pub upstream_rq_retry_limit_exceeded: Counter,
    pub upstream_rq_per_try_timeout: Counter,
    /// Requests refused by the max_pending_requests and max_requests
    /// circuit breakers; requests that found max_connections reached
    /// and waited.
    pub upstream_rq_pending_overflow: Counter,
    pub upstream_rq_active_overflow: Counter,
    pub upstream_cx_overflow: Counter,
    pub upstream_rq_active: Gauge,
    pub upstream_rq_pending_active: Gauge,
}

impl ClusterStats {
    pub fn new(store: &Store, cluster: &str) -> Self {
        let s = store.scope(
            &format!("cluster.{cluster}."),
            "envoy_cluster_",
            vec![("envoy_cluster_name", cluster.to_string())],
        );
        ClusterStats {
            upstream_rq_total: s.counter("upstream_rq_total"),
            upstream_rq: s.by_class("upstream_rq", true),
            upstream_rq_timeout: s.counter("upstream_rq_timeout"),
            upstream_cx_total: s.counter("upstream_cx_total"),
            upstream_cx_connect_fail: s.counter("upstream_cx_connect_fail"),
            upstream_cx_none_healthy: s.counter("upstream_cx_none_healthy"),
            membership_total: s.gauge("membership_total"),
            membership_healthy: s.gauge("membership_healthy"),
            upstream_rq_retry: s.counter("upstream_rq_retry"),
            upstream_rq_retry_success: s.counter("upstream_rq_retry_success"),
            upstream_rq_retry_overflow: s.counter("upstream_rq_retry_overflow"),
            upstream_rq_retry_limit_exceeded: s.counter("upstream_rq_retry_limit_exceeded"),
            upstream_rq_per_try_timeout: s.counter("upstream_rq_per_try_timeout"),
            upstream_rq_pending_overflow: s.counter("upstream_rq_pending_overflow"),
            upstream_rq_active_overflow: s.counter("upstream_rq_active_overflow"),
            upstream_cx_overflow: s.counter("upstream_cx_overflow"),
            upstream_rq_active: s.gauge("upstream_rq_active"),
            upstream_rq_pending_active: s.gauge("upstream_rq_pending_active"),
        }
    }
}

/// An HTTP connection manager's statistics (`http.PREFIX.*`).
#[derive(Debug, Clone)]
pub struct HttpStats {
    pub downstream_rq_total: Counter,
    pub downstream_rq: [Counter; 5],
    pub downstream_rq_active: Gauge,
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub no_route: Counter,
    /// Connections closed after idle_timeout with no request open.
    pub downstream_cx_idle_timeout: Counter,
    /// Connections drained at max_connection_duration.
    pub downstream_cx_max_duration_reached: Counter,
}

impl HttpStats {
    pub fn new(store: &Store, stat_prefix: &str) -> Self {
        let s = store.scope(
            &format!("http.{stat_prefix}."),
            "envoy_http_",
            vec![("envoy_http_conn_manager_prefix", stat_prefix.to_string())],
        );
        HttpStats {
            downstream_rq_total: s.counter("downstream_rq_total"),
            downstream_rq: s.by_class("downstream_rq", false),
            downstream_rq_active: s.gauge("downstream_rq_active"),
            downstream_cx_total: s.counter("downstream_cx_total"),
            downstream_cx_active: s.gauge("downstream_cx_active"),
            no_route: s.counter("no_route"),
            downstream_cx_idle_timeout: s.counter("downstream_cx_idle_timeout"),
            downstream_cx_max_duration_reached: s.counter("downstream_cx_max_duration_reached"),
        }
    }
}

/// The fault filter's statistics (`http.PREFIX.fault.*`).
#[derive(Debug, Clone)]
pub struct FaultStats {
    pub delays_injected: Counter,
    pub aborts_injected: Counter,
    /// Faults not injected because max_active_faults were in progress.
    pub faults_overflow: Counter,
    pub active_faults: Gauge,
}

impl FaultStats {
    pub fn new(store: &Store, stat_prefix: &str) -> Self {
        let s = store.scope(
            &format!("http.{stat_prefix}.fault."),
            "envoy_http_fault_",
            vec![("envoy_http_conn_manager_prefix", stat_prefix.to_string())],
        );
        FaultStats {
            delays_injected: s.counter("delays_injected"),
            aborts_injected: s.counter("aborts_injected"),
            faults_overflow: s.counter("faults_overflow"),
            active_faults: s.gauge("active_faults"),
        }
    }
}

/// A TCP proxy's statistics (`tcp.PREFIX.*`).
#[derive(Debug, Clone)]
pub struct TcpStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_rx_bytes_total: Counter,
    pub downstream_cx_tx_bytes_total: Counter,
}

impl TcpStats {
    pub fn new(store: &Store, stat_prefix: &str) -> Self {
        let s = store.scope(
            &format!("tcp.{stat_prefix}."),
            "envoy_tcp_",
            vec![("envoy_tcp_prefix", stat_prefix.to_string())],
        );
        TcpStats {
            downstream_cx_total: s.counter("downstream_cx_total"),
            downstream_cx_rx_bytes_total: s.counter("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: s.counter("downstream_cx_tx_bytes_total"),
        }
    }
}

/// A listener's statistics (`listener.ADDRESS.*`, the address with `_`
/// before the port as Envoy writes it).
#[derive(Debug, Clone)]
pub struct ListenerStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    /// Connections closed because no filter chain matched.
    pub no_filter_chain_match: Counter,
    /// Connections whose listener filters ran past listener_filters_timeout.
    pub downstream_pre_cx_timeout: Counter,
}

impl ListenerStats {
    pub fn new(store: &Store, addr: std::net::SocketAddr) -> Self {
        let name = format!("{}_{}", addr.ip(), addr.port());
        let s = store.scope(
            &format!("listener.{name}."),
            "envoy_listener_",
            vec![("envoy_listener_address", name.clone())],
        );
        ListenerStats {
            downstream_cx_total: s.counter("downstream_cx_total"),
            downstream_cx_active: s.gauge("downstream_cx_active"),
            no_filter_chain_match: s.counter("no_filter_chain_match"),
            downstream_pre_cx_timeout: s.counter("downstream_pre_cx_timeout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_prometheus_forms() {
        let store = Store::new();
        let c = ClusterStats::new(&store, "reviews");
        c.upstream_rq_total.inc();
        count_class(&c.upstream_rq, 503);
        c.membership_total.set(2);
        let text = store.text();
        assert!(
            text.contains("cluster.reviews.upstream_rq_total: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.reviews.upstream_rq_5xx: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.reviews.membership_total: 2\n"),
            "{text}"
        );
        assert!(text.contains("server.live: 1\n"), "{text}");
        let prom = store.prometheus();
        assert!(prom.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"));
        assert!(
            prom.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"reviews\"} 1\n")
        );
        assert!(prom.contains(
            "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"reviews\"} 1\n"
        ));
        assert!(prom.contains("# TYPE envoy_cluster_membership_total gauge\n"));
        assert!(prom.contains("envoy_server_live{} 1\n"));
        // The same name twice is the same counter.
        let again = ClusterStats::new(&store, "reviews");
        assert_eq!(again.upstream_rq_total.get(), 1);
    }
}
