//! Outlier detection (a cluster's `outlier_detection`): every upstream
//! result is reported to its endpoint; consecutive failures eject the
//! endpoint at once, and a sweep every `interval` ejects by success rate
//! and failure percentage and returns endpoints whose time is up. An
//! ejected endpoint is left out of load balancing for base_ejection_time
//! times the number of its ejections (capped at max_ejection_time), and
//! no more than max_ejection_percent of the cluster is out at a time
//! (unless always_eject_one_host). Defaults are Envoy's.
//!
//! Counters are atomics on each endpoint, so reporting takes no lock;
//! ejections are rare and rebuild the cluster's host set.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weft_envoy::cluster::OutlierDetection;

use crate::cluster::Endpoint;
use crate::stats::{Counter, Gauge, Store};

/// What one attempt at an endpoint came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Result {
    /// An HTTP response with this status.
    Status(u16),
    /// The connection could not be made.
    ConnectFailed,
    /// Reset, closed or timed out after connecting.
    LocalFailure,
}

/// Per-endpoint state.
#[derive(Debug, Default)]
pub struct HostHealth {
    pub ejected: AtomicBool,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Ejections so far: the ejection time's multiplier.
    ejections: AtomicU32,
    /// When the current ejection ends (ms on the detector's clock).
    ejected_until: AtomicU64,
    // This interval's results, for success rate and failure percentage.
    external_ok: AtomicU32,
    external_total: AtomicU32,
    local_ok: AtomicU32,
    local_total: AtomicU32,
}

#[derive(Debug)]
struct Settings {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    interval: Duration,
    base_ejection: Duration,
    max_ejection: Duration,
    jitter: Duration,
    max_percent: u32,
    enforce_5xx: u32,
    enforce_gateway: u32,
    enforce_local: u32,
    enforce_success_rate: u32,
    enforce_local_success_rate: u32,
    success_rate_hosts: usize,
    success_rate_volume: u32,
    stdev_factor: f64,
    enforce_failure_percentage: u32,
    enforce_failure_percentage_local: u32,
    failure_percentage_threshold: u32,
    failure_percentage_hosts: usize,
    failure_percentage_volume: u32,
    split: bool,
    always_eject_one: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocal,
    SuccessRate,
    FailurePercentage,
}

#[derive(Debug)]
struct Stats {
    active: Gauge,
    enforced_total: Counter,
    overflow: Counter,
    /// (detected, enforced) per reason, in `Reason` order.
    by_reason: [(Counter, Counter); 5],
}

#[derive(Debug)]
pub struct Detector {
    s: Settings,
    stats: Stats,
    clock: Instant,
}

/// Whether a roll of `percent` (0–100) comes up.
fn enforce(percent: u32) -> bool {
    percent >= 100 || (percent > 0 && fastrand::u32(0..100) < percent)
}

impl Detector {
    pub fn new(c: &OutlierDetection, store: &Store, cluster: &str) -> Self {
        let d = |v: Option<weft_envoy::Duration>, default: u64| {
            v.map_or(Duration::from_millis(default), |d| d.0)
        };
        let base_ejection = d(c.base_ejection_time, 30_000);
        let scope = store.scope(
            &format!("cluster.{cluster}.outlier_detection."),
            "envoy_cluster_outlier_detection_",
            vec![("envoy_cluster_name", cluster.to_string())],
        );
        let pair = |name: &str| {
            (
                scope.counter(&format!("ejections_detected_{name}")),
                scope.counter(&format!("ejections_enforced_{name}")),
            )
        };
        Detector {
            s: Settings {
                consecutive_5xx: c.consecutive_5xx.unwrap_or(5),
                consecutive_gateway: c.consecutive_gateway_failure.unwrap_or(5),
                consecutive_local: c.consecutive_local_origin_failure.unwrap_or(5),
                interval: d(c.interval, 10_000).max(Duration::from_millis(1)),
                base_ejection,
                max_ejection: d(c.max_ejection_time, 300_000).max(base_ejection),
                jitter: d(c.max_ejection_time_jitter, 0),
                max_percent: c.max_ejection_percent.unwrap_or(10),
                enforce_5xx: c.enforcing_consecutive_5xx.unwrap_or(100),
                enforce_gateway: c.enforcing_consecutive_gateway_failure.unwrap_or(0),
                enforce_local: c.enforcing_consecutive_local_origin_failure.unwrap_or(100),
                enforce_success_rate: c.enforcing_success_rate.unwrap_or(100),
                enforce_local_success_rate: c.enforcing_local_origin_success_rate.unwrap_or(100),
                success_rate_hosts: c.success_rate_minimum_hosts.unwrap_or(5) as usize,
                success_rate_volume: c.success_rate_request_volume.unwrap_or(100),
                stdev_factor: f64::from(c.success_rate_stdev_factor.unwrap_or(1900)) / 1000.0,
                enforce_failure_percentage: c.enforcing_failure_percentage.unwrap_or(0),
                enforce_failure_percentage_local: c
                    .enforcing_failure_percentage_local_origin
                    .unwrap_or(0),
                failure_percentage_threshold: c.failure_percentage_threshold.unwrap_or(85),
                failure_percentage_hosts: c.failure_percentage_minimum_hosts.unwrap_or(5) as usize,
                failure_percentage_volume: c.failure_percentage_request_volume.unwrap_or(50),
                split: c.split_external_local_origin_errors,
                always_eject_one: c.always_eject_one_host.unwrap_or(false),
            },
            stats: Stats {
                active: scope.gauge("ejections_active"),
                enforced_total: scope.counter("ejections_enforced_total"),
                overflow: scope.counter("ejections_overflow"),
                by_reason: [
                    pair("consecutive_5xx"),
                    pair("consecutive_gateway_failure"),
                    pair("consecutive_local_origin_failure"),
                    pair("success_rate"),
                    pair("failure_percentage"),
                ],
            },
            clock: Instant::now(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.s.interval
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Records one result. `Some(reason)` (an index for `eject`) when it
    /// completes a run of consecutive failures and the ejection is
    /// enforced; the caller then ejects with the cluster's endpoints.
    pub fn report(&self, h: &HostHealth, result: Result) -> Option<usize> {
        let s = &self.s;
        let reset = |c: &AtomicU32| c.store(0, Ordering::Relaxed);
        let bump = |c: &AtomicU32| c.fetch_add(1, Ordering::Relaxed) + 1;
        let (external_failed, local_failed) = match result {
            Result::Status(code) => ((500..600).contains(&code), None),
            Result::ConnectFailed | Result::LocalFailure if s.split => (false, Some(true)),
            // Not split: a local failure counts as the 503 (or 504) a
            // proxy would have answered with.
            Result::ConnectFailed | Result::LocalFailure => (true, None),
        };
        let gateway = match result {
            Result::Status(code) => matches!(code, 502..=504),
            _ => !s.split,
        };
        let mut hit = None;
        if let Some(failed) = local_failed {
            h.local_total.fetch_add(1, Ordering::Relaxed);
            if failed && bump(&h.consecutive_local) == s.consecutive_local {
                hit = Some(Reason::ConsecutiveLocal);
            }
        } else {
            h.external_total.fetch_add(1, Ordering::Relaxed);
            if s.split && matches!(result, Result::Status(_)) {
                // Having connected and answered is a local success.
                reset(&h.consecutive_local);
            }
            if external_failed {
                if gateway && bump(&h.consecutive_gateway) == s.consecutive_gateway {
                    hit = Some(Reason::ConsecutiveGateway);
                }
                if bump(&h.consecutive_5xx) == s.consecutive_5xx {
                    hit = Some(Reason::Consecutive5xx);
                }
            } else {
                h.external_ok.fetch_add(1, Ordering::Relaxed);
                reset(&h.consecutive_5xx);
                reset(&h.consecutive_gateway);
            }
        }
        let reason = hit?;
        // A detection starts the run over, enforced or not (so a host
        // failing on is detected again every threshold's worth).
        match reason {
            Reason::Consecutive5xx => reset(&h.consecutive_5xx),
            Reason::ConsecutiveGateway => reset(&h.consecutive_gateway),
            _ => reset(&h.consecutive_local),
        }
        let percent = match reason {
            Reason::Consecutive5xx => s.enforce_5xx,
            Reason::ConsecutiveGateway => s.enforce_gateway,
            _ => s.enforce_local,
        };
        self.decide(h, reason, percent).then_some(reason as usize)
    }

    /// Counts a detection of a host in service; true when the ejection
    /// is enforced (by the reason's enforcing percentage).
    fn decide(&self, h: &HostHealth, reason: Reason, percent: u32) -> bool {
        if h.ejected.load(Ordering::Relaxed) {
            return false;
        }
        let (detected, _) = &self.stats.by_reason[reason as usize];
        detected.inc();
        enforce(percent)
    }

    /// Ejects `h` (one of `all`) for `reason` unless max_ejection_percent
    /// is reached; true when it was ejected.
    pub fn eject(&self, h: &HostHealth, all: &[Arc<Endpoint>], reason_ix: usize) -> bool {
        let total = all.len().max(1);
        let out = all
            .iter()
            .filter(|e| e.outlier.ejected.load(Ordering::Relaxed))
            .count();
        // As Envoy (measured against 1.40): the share out once this host
        // goes may not pass the maximum, unless always_eject_one_host
        // lets a first one go regardless.
        let share = 100.0 * (out + 1) as f64 / total as f64;
        let allowed =
            share <= f64::from(self.s.max_percent) || (self.s.always_eject_one && out == 0);
        if !allowed {
            self.stats.overflow.inc();
            return false;
        }
        if h.ejected.swap(true, Ordering::AcqRel) {
            return false;
        }
        let n = h.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let mut time = (self.s.base_ejection * n).min(self.s.max_ejection);
        if !self.s.jitter.is_zero() {
            time += Duration::from_millis(fastrand::u64(0..=self.s.jitter.as_millis() as u64));
        }
        h.ejected_until
            .store(self.now_ms() + time.as_millis() as u64, Ordering::Relaxed);
        for c in [
            &h.consecutive_5xx,
            &h.consecutive_gateway,
            &h.consecutive_local,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.stats.active.inc();
        self.stats.enforced_total.inc();
        self.stats.by_reason[reason_ix].1.inc();
        true
    }

    /// The interval sweep: returns ejected endpoints whose time is up,
    /// then ejects by success rate and failure percentage over the
    /// interval's results, and starts a new interval. True when anything
    /// changed.
    pub fn sweep(&self, all: &[Arc<Endpoint>]) -> bool {
        let now = self.now_ms();
        let mut changed = false;
        for e in all {
            let h = &e.outlier;
            if h.ejected.load(Ordering::Relaxed) {
                if h.ejected_until.load(Ordering::Relaxed) <= now {
                    h.ejected.store(false, Ordering::Release);
                    self.stats.active.dec();
                    changed = true;
                }
            } else {
                // Each interval in service takes one off the multiplier.
                let _ = h
                    .ejections
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
        let take = |ok: &AtomicU32, total: &AtomicU32| {
            (
                ok.swap(0, Ordering::Relaxed),
                total.swap(0, Ordering::Relaxed),
            )
        };
        let results: Vec<((u32, u32), (u32, u32))> = all
            .iter()
            .map(|e| {
                let h = &e.outlier;
                (
                    take(&h.external_ok, &h.external_total),
                    take(&h.local_ok, &h.local_total),
                )
            })
            .collect();
        let s = &self.s;
        let mut candidates: Vec<(usize, Reason, u32)> = Vec::new();
        // (each host's (ok, total), success-rate enforcement, failure-
        // percentage enforcement): external results, and local-origin
        // ones on their own when split.
        let external: Vec<(u32, u32)> = results.iter().map(|r| r.0).collect();
        let mut sides = vec![(
            external,
            s.enforce_success_rate,
            s.enforce_failure_percentage,
        )];
        if s.split {
            sides.push((
                results.iter().map(|r| r.1).collect(),
                s.enforce_local_success_rate,
                s.enforce_failure_percentage_local,
            ));
        }
        for (side, sr_percent, fp_percent) in sides {
            let rates: Vec<(usize, f64, u32)> = (0..all.len())
                .map(|i| {
                    let (ok, total) = side[i];
                    let rate = if total == 0 {
                        100.0
                    } else {
                        100.0 * f64::from(ok) / f64::from(total)
                    };
                    (i, rate, total)
                })
                .collect();
            let for_sr: Vec<&(usize, f64, u32)> = rates
                .iter()
                .filter(|(_, _, n)| *n >= s.success_rate_volume)
                .collect();
            if for_sr.len() >= s.success_rate_hosts && !for_sr.is_empty() {
                let n = for_sr.len() as f64;
                let mean = for_sr.iter().map(|r| r.1).sum::<f64>() / n;
                let var = for_sr.iter().map(|r| (r.1 - mean).powi(2)).sum::<f64>() / n;
                let threshold = mean - s.stdev_factor * var.sqrt();
                for r in &for_sr {
                    if r.1 < threshold {
                        candidates.push((r.0, Reason::SuccessRate, sr_percent));
                    }
                }
            }
            let for_fp: Vec<&(usize, f64, u32)> = rates
                .iter()
                .filter(|(_, _, n)| *n >= s.failure_percentage_volume)
                .collect();
            if for_fp.len() >= s.failure_percentage_hosts {
                for r in &for_fp {
                    if 100.0 - r.1 >= f64::from(s.failure_percentage_threshold) {
                        candidates.push((r.0, Reason::FailurePercentage, fp_percent));
                    }
                }
            }
        }
        for (i, reason, percent) in candidates {
            let h = &all[i].outlier;
            if self.decide(h, reason, percent) && self.eject(h, all, reason as usize) {
                changed = true;
            }
        }
        changed
    }
}
