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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// A counter registered on its own (a block's are [`Count`]s): a shared
/// handle to one.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<Count>);

impl std::ops::Deref for Counter {
    type Target = Count;
    fn deref(&self) -> &Count {
        &self.0
    }
}

/// A gauge registered on its own: a shared handle to a [`Level`].
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<Level>);

impl std::ops::Deref for Gauge {
    type Target = Level;
    fn deref(&self) -> &Level {
        &self.0
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
}

/// The statistics under one prefix (one cluster's, one listener's),
/// which share their tags: a fixed block, and those registered one by
/// one (a few words each, not a map entry with its own copies of the
/// names and tags).
#[derive(Debug)]
struct Family {
    prom: &'static str,
    tags: Vec<(&'static str, String)>,
    block: Option<Arc<dyn Block>>,
    stats: Vec<Stat>,
}

impl Family {
    fn rows(&self, names: &Names, out: &mut dyn FnMut(Row)) {
        if let Some(b) = &self.block {
            b.each(out);
        }
        for s in &self.stats {
            let (name, prom) = (&names.all[s.name as usize], &names.all[s.prom as usize]);
            out(Row {
                name: Cow::Owned(name.to_string()),
                prom: Cow::Owned(prom.to_string()),
                class: s.class,
                value: s.value(),
                gauge: matches!(s.metric, Metric::Gauge(_)),
                lazy: s.lazy,
            });
        }
    }
}

/// One statistic as the admin endpoints list it: its name after the
/// family's dotted prefix and after its Prometheus prefix.
pub struct Row {
    name: Cow<'static, str>,
    prom: Cow<'static, str>,
    /// The response code class it counts, 0 for none.
    class: u8,
    value: i64,
    gauge: bool,
    /// Created by Envoy on first use: not shown while zero.
    lazy: bool,
}

impl Row {
    fn counter(
        name: Cow<'static, str>,
        prom: Cow<'static, str>,
        class: u8,
        v: u64,
        lazy: bool,
    ) -> Row {
        Row {
            name,
            prom,
            class,
            value: v as i64,
            gauge: false,
            lazy,
        }
    }

    fn gauge(name: &'static str, value: i64) -> Row {
        Row {
            name: name.into(),
            prom: name.into(),
            class: 0,
            value,
            gauge: true,
            lazy: false,
        }
    }

    fn shown(&self) -> bool {
        !self.lazy || self.value != 0
    }
}

/// An interned statistic name.
type Name = u32;

/// Every statistic of one proxy.
#[derive(Debug, Default)]
pub struct Store {
    // Only registration and the admin endpoints lock these.
    families: Mutex<BTreeMap<String, Arc<Mutex<Family>>>>,
    names: Mutex<Names>,
    /// Istio's standard metrics (`istio.stats` filters).
    pub istio: Arc<istio::IstioMetrics>,
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
                    block: None,
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

    /// The fixed block of statistics under `prefix`, made the first time
    /// (`labels` are the family's tags): the same prefix is the same
    /// block, across snapshots.
    pub fn block<B: Block + Default>(
        &self,
        prefix: &str,
        prom: &'static str,
        labels: impl FnOnce() -> Vec<(&'static str, String)>,
    ) -> Arc<B> {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = families.get(prefix) {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let held = f
                .block
                .clone()
                .map(|b| b as Arc<dyn std::any::Any + Send + Sync>);
            if let Some(b) = held.and_then(|b| b.downcast::<B>().ok()) {
                return b;
            }
            // Only one block type is ever made under a prefix; a family
            // that has none yet (its statistics were registered one by
            // one) gets it now.
            let b = Arc::new(B::default());
            f.block = Some(b.clone());
            return b;
        }
        let b = Arc::new(B::default());
        families.insert(
            prefix.to_string(),
            Arc::new(Mutex::new(Family {
                prom,
                tags: labels(),
                block: Some(b.clone()),
                stats: Vec::new(),
            })),
        );
        b
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
            f.rows(&names, &mut |r| {
                if r.shown() {
                    lines.push((format!("{prefix}{}", r.name), r.value));
                }
            });
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
            f.rows(&names, &mut |r| {
                if !r.shown() {
                    return;
                }
                let kind = if r.gauge { "gauge" } else { "counter" };
                let name = format!("{}{}", f.prom, r.prom);
                let class =
                    (r.class > 0).then(|| ("envoy_response_code_class", r.class.to_string()));
                let labels: Vec<String> = class
                    .iter()
                    .chain(f.tags.iter())
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let sample = format!("{name}{{{}}} {}", labels.join(","), r.value);
                by_name
                    .entry(name)
                    .or_insert((kind, Vec::new()))
                    .1
                    .push(sample);
            });
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
        self.istio.render(&mut out);
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

    /// A counter whose Prometheus name is not its dotted one (a dotted
    /// name that carries a user's prefix: `shadow.shadow_allowed` is
    /// exported as `shadow_shadow_allowed`).
    pub fn counter_as(&self, stat: &str, prom: &str) -> Counter {
        self.tagged_counter(stat, prom, 0, false)
    }

    /// A counter Envoy creates on first use: not listed while zero.
    pub fn lazy_counter(&self, stat: &str) -> Counter {
        self.tagged_counter(stat, stat, 0, true)
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
}

mod blocks;
pub mod istio;

pub use blocks::{
    Block, ClusterStats, Count, FaultStats, HttpStats, Level, ListenerStats, TcpStats,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_prometheus_forms() {
        let store = Store::new();
        let c = ClusterStats::new(&store, "reviews");
        c.upstream_rq_total.inc();
        c.upstream_rq.count(503);
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
        assert!(Arc::ptr_eq(&c, &again));
    }

    #[test]
    fn a_block_and_single_statistics_share_a_family() {
        let store = Store::new();
        let h = HttpStats::new(&store, "in");
        store
            .scope("http.in.", "envoy_http_", vec![])
            .counter("rq_direct_response")
            .add(3);
        h.downstream_rq.count(200);
        let c = ClusterStats::new(&store, "a");
        let text = store.text();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("http.in.")).collect();
        // Sorted together, whichever way each was registered.
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
        assert!(lines.contains(&"http.in.rq_direct_response: 3"), "{text}");
        assert!(lines.contains(&"http.in.downstream_rq_2xx: 1"), "{text}");
        // Eager classes are listed at zero, lazy ones only once used.
        assert!(lines.contains(&"http.in.downstream_rq_5xx: 0"), "{text}");
        assert!(!text.contains("cluster.a.upstream_rq_2xx"), "{text}");
        c.upstream_rq.count(204);
        assert!(store.text().contains("cluster.a.upstream_rq_2xx: 1\n"));
        assert!(!store.text().contains("cluster.a.upstream_rq_5xx"));
        let prom = store.prometheus();
        assert!(prom.contains(
            "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"in\"} 1\n"
        ), "{prom}");
        assert!(
            prom.contains("# TYPE envoy_http_downstream_rq_active gauge\n"),
            "{prom}"
        );
    }
}
