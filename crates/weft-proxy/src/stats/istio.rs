//! Istio's standard HTTP metrics as a proxy exports them on
//! `/stats/prometheus`: `istio_requests_total` and the
//! `istio_request_duration_milliseconds`, `istio_request_bytes` and
//! `istio_response_bytes` histograms, with Istio's 25 labels in the
//! order its proxies print them, and `istio_build`.
//!
//! A series is found by a hash of its label values, in a lock-free map:
//! the request path hashes the values it has (no allocation), reads the
//! map, and only the first request of a new series allocates and
//! inserts. Overrides (`drop`, `tags_to_remove`) are applied when the
//! text is rendered: a series remembers the override set of the filter
//! that recorded it, and series that differ only in removed tags are
//! summed, as Istio's proxy aggregates them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The labels of the HTTP metrics, in the order Istio's proxy emits them.
pub const HTTP_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// The HTTP metrics, by their short names (`stats.MetricConfig.name`).
pub const HTTP_METRICS: [&str; 4] = [
    "requests_total",
    "request_duration_milliseconds",
    "request_bytes",
    "response_bytes",
];

/// Envoy's default histogram buckets, which Istio's histograms use
/// (milliseconds and bytes alike), after the first (0.5, which only 0
/// of the whole numbers recorded falls in).
const UPPER: [u64; 18] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000, 600_000,
    1_800_000, 3_600_000,
];

/// How the bounds print.
const BOUND_TEXT: [&str; 19] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000",
];

/// A histogram of whole numbers (milliseconds, bytes).
#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket, not cumulative: `buckets[i]` counts values in
    /// (bound[i-1], bound[i]]; values past the last are only in `count`.
    buckets: [AtomicU64; 19],
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    fn record(&self, v: u64) {
        // The first bucket is 0.5: only 0 falls in it.
        let i = if v == 0 {
            0
        } else {
            UPPER
                .iter()
                .position(|b| v <= *b)
                .map_or(UPPER.len() + 1, |i| i + 1)
        };
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    fn add_to(&self, into: &mut Totals) {
        for (t, b) in into.buckets.iter_mut().zip(&self.buckets) {
            *t += b.load(Ordering::Relaxed);
        }
        into.count += self.count.load(Ordering::Relaxed);
        into.sum += self.sum.load(Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    buckets: [u64; 19],
    count: u64,
    sum: u64,
}

/// What one filter's settings change: per HTTP metric, dropped or not,
/// and the label positions removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub drop: [bool; 4],
    pub removed: [Vec<usize>; 4],
}

#[derive(Debug)]
struct HttpSeries {
    labels: Box<[Box<str>]>,
    overrides: u32,
    requests: AtomicU64,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// One finished request, as the stats filter reports it.
pub struct HttpSample<'a> {
    pub labels: [&'a str; 25],
    pub duration_ms: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The proxy's Istio metrics; one per statistics store, so counts carry
/// across configuration updates.
#[derive(Debug, Default)]
pub struct IstioMetrics {
    http: papaya::HashMap<u64, Arc<HttpSeries>>,
    /// Series whose hash another series already had (64-bit collisions:
    /// in practice never; correct if they happen).
    collided: Mutex<Vec<Arc<HttpSeries>>>,
    /// Override sets by id, interned when filters compile.
    overrides: Mutex<Vec<Overrides>>,
    /// The bootstrap's node id and metadata: who this proxy is.
    node: OnceLock<(String, Option<serde_json::Value>)>,
    /// Some filter reports (so `istio_build` is shown).
    active: std::sync::atomic::AtomicBool,
}

fn hash(overrides: u32, labels: &[&str; 25]) -> u64 {
    // Each value chained into the next, with its length, so that moving
    // a byte from one label to the next changes the hash.
    let mut h = xxhash_rust::xxh64::xxh64(&overrides.to_le_bytes(), 0);
    for l in labels {
        h = xxhash_rust::xxh64::xxh64(l.as_bytes(), h ^ l.len() as u64);
    }
    h
}

impl IstioMetrics {
    /// Records this proxy's node metadata (the first call wins: the
    /// node does not change while the proxy runs).
    pub fn set_node(&self, id: String, metadata: Option<serde_json::Value>) {
        let _ = self.node.set((id, metadata));
    }

    pub fn node(&self) -> Option<&serde_json::Value> {
        self.node.get().and_then(|(_, m)| m.as_ref())
    }

    pub fn node_id(&self) -> &str {
        self.node.get().map_or("", |(id, _)| id.as_str())
    }

    /// The id of an override set, for a filter to report with.
    pub fn intern(&self, o: Overrides) -> u32 {
        self.active.store(true, Ordering::Relaxed);
        let mut all = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter().position(|x| *x == o) {
            Some(i) => i as u32,
            None => {
                all.push(o);
                (all.len() - 1) as u32
            }
        }
    }

    pub fn record(&self, overrides: u32, s: &HttpSample) {
        let key = hash(overrides, &s.labels);
        let same = |x: &HttpSeries| {
            x.overrides == overrides && x.labels.iter().map(|l| &**l).eq(s.labels.iter().copied())
        };
        let map = self.http.pin();
        let series = match map.get(&key) {
            Some(x) if same(x) => Arc::clone(x),
            Some(_) => self.collided_series(overrides, s, same),
            None => {
                let fresh = Arc::new(HttpSeries {
                    labels: s.labels.iter().map(|l| Box::from(*l)).collect(),
                    overrides,
                    requests: AtomicU64::new(0),
                    duration: Histogram::default(),
                    request_bytes: Histogram::default(),
                    response_bytes: Histogram::default(),
                });
                let inserted = map.get_or_insert(key, fresh);
                if same(inserted) {
                    Arc::clone(inserted)
                } else {
                    self.collided_series(overrides, s, same)
                }
            }
        };
        series.requests.fetch_add(1, Ordering::Relaxed);
        series.duration.record(s.duration_ms);
        series.request_bytes.record(s.request_bytes);
        series.response_bytes.record(s.response_bytes);
    }

    fn collided_series(
        &self,
        overrides: u32,
        s: &HttpSample,
        same: impl Fn(&HttpSeries) -> bool,
    ) -> Arc<HttpSeries> {
        let mut list = self.collided.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = list.iter().find(|x| same(x)) {
            return Arc::clone(x);
        }
        let fresh = Arc::new(HttpSeries {
            labels: s.labels.iter().map(|l| Box::from(*l)).collect(),
            overrides,
            requests: AtomicU64::new(0),
            duration: Histogram::default(),
            request_bytes: Histogram::default(),
            response_bytes: Histogram::default(),
        });
        list.push(Arc::clone(&fresh));
        fresh
    }

    /// The metrics in Prometheus text form (empty when no filter reports).
    pub fn render(&self, out: &mut String) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let overrides = self
            .overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut all: Vec<Arc<HttpSeries>> = self.http.pin().values().cloned().collect();
        all.extend(
            self.collided
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        for (m, short) in HTTP_METRICS.iter().enumerate() {
            // Series by their printed labels, summed where removed tags
            // made them one.
            let mut rows: BTreeMap<String, (u64, Totals)> = BTreeMap::new();
            for s in &all {
                let o = overrides.get(s.overrides as usize);
                if o.is_some_and(|o| o.drop[m]) {
                    continue;
                }
                let removed = o.map(|o| o.removed[m].as_slice()).unwrap_or(&[]);
                let mut labels = String::new();
                for (i, (name, value)) in HTTP_LABELS.iter().zip(s.labels.iter()).enumerate() {
                    if removed.contains(&i) {
                        continue;
                    }
                    if !labels.is_empty() {
                        labels.push(',');
                    }
                    let _ = write!(labels, "{name}=\"{}\"", super::escape_label(value));
                }
                let row = rows.entry(labels).or_default();
                match m {
                    0 => row.0 += s.requests.load(Ordering::Relaxed),
                    1 => s.duration.add_to(&mut row.1),
                    2 => s.request_bytes.add_to(&mut row.1),
                    _ => s.response_bytes.add_to(&mut row.1),
                }
            }
            if rows.is_empty() {
                continue;
            }
            let name = format!("istio_{short}");
            if m == 0 {
                let _ = writeln!(out, "# TYPE {name} counter");
                for (labels, (n, _)) in &rows {
                    let _ = writeln!(out, "{name}{{{labels}}} {n}");
                }
                continue;
            }
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, (_, t)) in &rows {
                let mut cumulative = 0;
                for (b, bound) in t.buckets.iter().zip(BOUND_TEXT) {
                    cumulative += b;
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", t.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", t.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", t.count);
            }
        }
        let tag = self
            .node()
            .and_then(|n| n.get("ISTIO_VERSION"))
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .unwrap_or("unknown");
        let _ = writeln!(out, "# TYPE istio_build gauge");
        let _ = writeln!(
            out,
            "istio_build{{component=\"proxy\",tag=\"{}\"}} 1",
            super::escape_label(tag)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(code: &'a str, ms: u64) -> HttpSample<'a> {
        let mut labels = ["x"; 25];
        labels[0] = "destination";
        labels[21] = code;
        HttpSample {
            labels,
            duration_ms: ms,
            request_bytes: 0,
            response_bytes: 120,
        }
    }

    #[test]
    fn series_count_bucket_and_sum_in_istio_order_and_overrides_aggregate() {
        let m = IstioMetrics::default();
        let plain = m.intern(Overrides::default());
        m.record(plain, &sample("200", 3));
        m.record(plain, &sample("200", 3000));
        m.record(plain, &sample("503", 0));
        let mut out = String::new();
        m.render(&mut out);
        let first = out
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .unwrap();
        assert!(first.starts_with("istio_requests_total{reporter=\"destination\",source_workload=\"x\",source_canonical_service=\"x\""), "{first}");
        assert!(first.ends_with("response_code=\"200\",grpc_response_status=\"x\",response_flags=\"x\",connection_security_policy=\"x\"} 2"), "{first}");
        let bucket = |le: &str, code: &str| {
            out.lines()
                .find(|l| {
                    l.starts_with("istio_request_duration_milliseconds_bucket{")
                        && l.contains(&format!("response_code=\"{code}\""))
                        && l.contains(&format!("le=\"{le}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .unwrap()
                .to_string()
        };
        assert_eq!(bucket("1", "200"), "0");
        assert_eq!(bucket("5", "200"), "1");
        assert_eq!(bucket("2500", "200"), "1");
        assert_eq!(bucket("5000", "200"), "2");
        assert_eq!(bucket("+Inf", "200"), "2");
        assert_eq!(bucket("0.5", "503"), "1");
        assert!(out.contains("_sum{") && out.contains("} 3003\n"));
        assert!(out.contains("istio_build{component=\"proxy\",tag=\"unknown\"} 1"));
        // Removing response_code from requests_total sums the two
        // series; dropping the byte histograms hides them.
        let mut o = Overrides::default();
        o.removed[0] = vec![21];
        o.drop[2] = true;
        o.drop[3] = true;
        let trimmed = m.intern(o);
        m.record(trimmed, &sample("200", 1));
        m.record(trimmed, &sample("404", 1));
        let mut out = String::new();
        m.render(&mut out);
        let merged: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{") && !l.contains("response_code"))
            .collect();
        assert_eq!(merged.len(), 1, "{out}");
        assert!(merged[0].ends_with("} 2"));
        let byte_series = out
            .lines()
            .filter(|l| l.starts_with("istio_request_bytes_count"))
            .count();
        assert_eq!(byte_series, 2, "only the plain filter's two series: {out}");
    }
}
