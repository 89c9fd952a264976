//! The control plane's metric primitives and their Prometheus text.
//!
//! Counters, gauges and histograms are atomics: whoever counts holds
//! a handle it resolved once (a stream resolves its proxy's version
//! gauge when the proxy connects) and never takes a lock to count.
//! Families whose label is an xDS type are arrays indexed by the type;
//! families whose labels are open-ended (a proxy's version, a config
//! kind) keep a map under a lock that only resolving a handle takes —
//! on a connect or a configuration change, never per request.
//!
//! Not `prometheus-client`: its text encoder appends `_total` to every
//! counter, and istiod's exporter does not (`pilot_xds_pushes`).

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use weft_xds::Kind;

/// A monotonic count.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A level that goes up and down.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into fixed buckets (upper bounds, ascending),
/// with their sum.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the overflow (`+Inf`); not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + v).to_bits())
            });
    }

    /// The seconds since `start`.
    pub fn since(&self, start: Instant) {
        self.observe(start.elapsed().as_secs_f64());
    }
}

/// One of a family per xDS type, labelled `type` with istiod's short
/// name (`cds`, `eds`, `lds`, `rds`, `sds`).
#[derive(Debug)]
pub(crate) struct PerType<T> {
    by: [T; 5],
}

/// istiod's metric name for an xDS type (`v3.GetMetricType`).
pub(crate) fn type_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Cluster => "cds",
        Kind::ClusterLoadAssignment => "eds",
        Kind::Listener => "lds",
        Kind::RouteConfiguration => "rds",
        Kind::Secret => "sds",
    }
}

fn type_index(kind: Kind) -> usize {
    match kind {
        Kind::Cluster => 0,
        Kind::ClusterLoadAssignment => 1,
        Kind::Listener => 2,
        Kind::RouteConfiguration => 3,
        Kind::Secret => 4,
    }
}

impl<T> PerType<T> {
    pub fn new(make: impl Fn() -> T) -> PerType<T> {
        PerType {
            by: std::array::from_fn(|_| make()),
        }
    }

    pub fn get(&self, kind: Kind) -> &T {
        &self.by[type_index(kind)]
    }

    /// Each type with its label, in the order istiod's dashboards list
    /// them.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &T)> {
        Kind::ALL.into_iter().map(|k| (type_label(k), self.get(k)))
    }
}

impl<T: Default> Default for PerType<T> {
    fn default() -> Self {
        PerType::new(T::default)
    }
}

/// A family with open-ended label values: a handle per label set,
/// resolved once under the lock and then counted without it.
#[derive(Debug)]
pub(crate) struct Labelled<T> {
    names: &'static [&'static str],
    handles: Mutex<BTreeMap<Vec<String>, Arc<T>>>,
}

impl<T: Default> Labelled<T> {
    pub fn new(names: &'static [&'static str]) -> Labelled<T> {
        Labelled {
            names,
            handles: Mutex::new(BTreeMap::new()),
        }
    }

    /// The handle for `values` (one per label name, in order).
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.names.len(), "{:?}", self.names);
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(handles.entry(key).or_default())
    }

    /// Every label set resolved so far, in label order.
    fn each(&self) -> Vec<(Vec<String>, Arc<T>)> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}

/// Prometheus text exposition (format 0.0.4), family by family.
#[derive(Default)]
pub(crate) struct Text(String);

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out.push('}');
}

impl Text {
    pub fn into_string(self) -> String {
        self.0
    }

    /// `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, l: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        labels(&mut self.0, l, None);
        let _ = writeln!(self.0, " {value}");
    }

    pub fn counter(&mut self, name: &str, help: &str, c: &Counter) {
        self.family(name, "counter", help);
        self.sample(name, &[], c.get());
    }

    pub fn gauge(&mut self, name: &str, help: &str, g: &Gauge) {
        self.family(name, "gauge", help);
        self.sample(name, &[], g.get());
    }

    /// A counter family labelled `type` by xDS type.
    pub fn per_type_counter(&mut self, name: &str, help: &str, c: &PerType<Counter>) {
        self.family(name, "counter", help);
        for (t, c) in c.iter() {
            self.sample(name, &[("type", t)], c.get());
        }
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` lines of one
    /// label set.
    pub fn histogram_samples(&mut self, name: &str, l: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, c) in h.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = match h.bounds.get(i) {
                Some(b) => b.to_string(),
                None => "+Inf".to_string(),
            };
            self.0.push_str(&bucket);
            labels(&mut self.0, l, Some(&le));
            let _ = writeln!(self.0, " {cumulative}");
        }
        let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
        self.sample(&format!("{name}_sum"), l, sum);
        self.sample(&format!("{name}_count"), l, cumulative);
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        self.histogram_samples(name, &[], h);
    }

    pub fn per_type_histogram(&mut self, name: &str, help: &str, h: &PerType<Histogram>) {
        self.family(name, "histogram", help);
        for (t, h) in h.iter() {
            self.histogram_samples(name, &[("type", t)], h);
        }
    }

    /// A counter or gauge family with open-ended labels (only the label
    /// sets resolved so far).
    pub fn labelled<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        family: &Labelled<T>,
        value: impl Fn(&T) -> i64,
    ) where
        T: Default,
    {
        self.family(name, kind, help);
        for (values, h) in family.each() {
            let l: Vec<(&str, &str)> = family
                .names
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            self.sample(name, &l, value(&h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        static B: &[f64] = &[0.1, 1.0, 5.0];
        let h = Histogram::new(B);
        // A value on a bound falls in that bound's bucket (`le`).
        for v in [0.0625, 1.0, 0.5, 2.0, 10.0] {
            h.observe(v);
        }
        let mut t = Text::default();
        t.histogram_samples("x", &[("type", "cds")], &h);
        assert_eq!(
            t.into_string(),
            "x_bucket{type=\"cds\",le=\"0.1\"} 1\n\
             x_bucket{type=\"cds\",le=\"1\"} 3\n\
             x_bucket{type=\"cds\",le=\"5\"} 4\n\
             x_bucket{type=\"cds\",le=\"+Inf\"} 5\n\
             x_sum{type=\"cds\"} 13.5625\n\
             x_count{type=\"cds\"} 5\n"
        );
    }

    #[test]
    fn label_values_are_escaped_and_handles_are_shared() {
        let f: Labelled<Counter> = Labelled::new(&["version"]);
        f.with(&["a\"b\\c\nd"]).inc();
        f.with(&["a\"b\\c\nd"]).add(2);
        let mut t = Text::default();
        t.labelled("v", "counter", "help", &f, |c| c.get() as i64);
        assert_eq!(
            t.into_string(),
            "# HELP v help\n# TYPE v counter\nv{version=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }
}
