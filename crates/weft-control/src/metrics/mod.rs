//! The control plane's own metrics, served as Prometheus text at
//! `/metrics` on the debug endpoint (Istio's 15014) under istiod's
//! names, types and labels, so the control plane dashboard (Grafana
//! 7645) and the mesh dashboard's config counts (7639) read weft.
//!
//! As istiod's exporter does, counters carry no `_total` suffix
//! (`pilot_xds_pushes`), histograms use istiod's buckets, and error
//! counters are listed at 0 from the start. [`Pilot`] is one control
//! plane's registry: the ADS server, the run loop and the source count
//! into it through handles (`family`), never a lock per count.
//!
//! Not here yet: `sidecar_injection_*` (weft has no injector),
//! `pilot_proxy_queue_time` (weft has no push queue: a stream
//! generates on the snapshot itself), the push-status gauges
//! (`pilot_no_ip`, ...), and the Go runtime's `go_*` series, which a
//! Rust process has no equivalent of.
//!
//! - `family`: counters, gauges, histograms and their text;
//! - `process`: `process_*` from `/proc/self`;
//! - `targets`: Prometheus HTTP service discovery of the control plane
//!   and the connected proxies.

mod family;
mod process;
pub mod targets;

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use weft_api::Kind as ConfigKind;

pub(crate) use family::{Counter, Gauge, Histogram, PerType};
use family::{Labelled, Text};

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// istiod's buckets for push, send and debounce times (seconds).
static PUSH_BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// `pilot_pushcontext_init_seconds`.
static INIT_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 3.0, 5.0];
/// `pilot_proxy_convergence_time`.
static CONVERGENCE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// `pilot_xds_config_size_bytes` (bytes).
static SIZE_BUCKETS: &[f64] = &[
    1.0,
    10_000.0,
    1_000_000.0,
    4_000_000.0,
    10_000_000.0,
    40_000_000.0,
];

const CONVERGENCE_HELP: &str =
    "Delay in seconds between config change and a proxy receiving all required configuration.";
const DEBOUNCE_HELP: &str = "Delay in seconds between the first config enters debouncing and \
    the merged push request is pushed into the push queue.";

/// How a configuration object changed, as `pilot_k8s_cfg_events`'
/// `event` label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Add,
    Update,
    Delete,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Update => "update",
            Change::Delete => "delete",
        }
    }
}

/// Why a snapshot was pushed (`pilot_push_triggers`' `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    Config,
    Service,
    Endpoint,
    /// Refreshed RequestAuthentication keys: istiod's JWKS resolver
    /// pushes with an unknown reason.
    Unknown,
}

/// `pilot_push_triggers`' `type`, in [`Trigger`]'s order.
const TRIGGERS: [&str; 4] = ["config", "service", "endpoint", "unknown"];

/// `pilot_inbound_updates`' `type`.
const INBOUND: [&str; 4] = ["config", "eds", "svc", "svcdelete"];

/// The Kubernetes registry kinds, with the `type` istiod's Kubernetes
/// registry counts their events under in `pilot_k8s_reg_events` [the
/// plural names are believed, not read in istiod's source]. Every other
/// kind weft serves is configuration: `pilot_k8s_cfg_events` under its
/// Kind (ServiceEntry and WorkloadEntry included, as istiod's config
/// store counts them and the mesh dashboard reads them).
fn registry_type(kind: ConfigKind) -> Option<&'static str> {
    Some(match kind {
        ConfigKind::Service => "Services",
        ConfigKind::Endpoints => "Endpoints",
        ConfigKind::EndpointSlice => "EndpointSlice",
        ConfigKind::Pod => "Pods",
        _ => return None,
    })
}

/// Whether `kind` is counted as a configuration object at all: Istio's
/// and Gateway API kinds (the registry's are [`registry_type`]'s).
/// Namespaces, ConfigMaps, Secrets and workloads' owners are neither.
fn config_kind(kind: ConfigKind) -> bool {
    !kind.info().k8s_native
}

/// The resource (plural, lower case) a kind is validated as.
fn resource_name(kind: ConfigKind) -> String {
    let k = kind.info().name.to_ascii_lowercase();
    // A consonant's y becomes ies (policies), a vowel's stays (gateways).
    let stem = k
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']));
    if let Some(stem) = stem {
        format!("{stem}ies")
    } else if k.ends_with('s') {
        format!("{k}es")
    } else {
        format!("{k}s")
    }
}

/// A proxy's Istio version, from its node metadata `ISTIO_VERSION`
/// (pilot-agent's build); `unknown` without one. weft's bootstrap
/// (`crate::bootstrap`) sends none: a version it named would be read by
/// istiod's feature gates as Istio's.
pub(crate) fn proxy_version(node: &Node) -> String {
    use envoy_types::pb::google::protobuf::value::Kind as V;
    node.metadata
        .as_ref()
        .and_then(|m| m.fields.get("ISTIO_VERSION"))
        .and_then(|v| match &v.kind {
            Some(V::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// One control plane's metrics.
#[derive(Debug)]
pub struct Pilot {
    /// `pilot_xds{version}`: connected proxies.
    pub(crate) xds: Labelled<Gauge>,
    pub(crate) pushes: PerType<Counter>,
    /// `pilot_xds_pushes{type="<type>_senderr"}`: a response the stream
    /// could no longer take.
    pub(crate) send_errors: PerType<Counter>,
    triggers: [Counter; 4],
    pub(crate) push_time: PerType<Histogram>,
    pub(crate) send_time: Histogram,
    pub(crate) config_size: PerType<Histogram>,
    pub(crate) convergence: Histogram,
    pub(crate) debounce: Histogram,
    pub(crate) pushcontext_init: Histogram,
    pub(crate) rejects: PerType<Counter>,
    /// `pilot_xds_{cds,eds,lds,rds}_reject`: kept by istiod for older
    /// dashboards, and as there incremented on every rejection.
    pub(crate) reject_gauges: PerType<Gauge>,
    /// Nothing counts it yet: weft's generators build typed messages
    /// and cannot fail on a proxy's input, where istiod's count their
    /// errors here.
    pub(crate) internal_errors: Counter,
    pub(crate) expired_nonce: PerType<Counter>,
    /// Always 0: a stream's responses go through an unbounded queue,
    /// with no write timeout for a slow proxy to exceed.
    pub(crate) write_timeout: Counter,
    inbound: [Counter; 4],
    cfg_events: Labelled<Counter>,
    reg_events: Labelled<Counter>,
    pub(crate) services: Gauge,
    pub(crate) virt_services: Gauge,
    validation_passed: Labelled<Counter>,
    validation_failed: Labelled<Counter>,
}

impl Default for Pilot {
    fn default() -> Self {
        Pilot::new()
    }
}

impl Pilot {
    pub fn new() -> Pilot {
        Pilot {
            xds: Labelled::new(&["version"]),
            pushes: PerType::default(),
            send_errors: PerType::default(),
            triggers: Default::default(),
            push_time: PerType::new(|| Histogram::new(PUSH_BUCKETS)),
            send_time: Histogram::new(PUSH_BUCKETS),
            config_size: PerType::new(|| Histogram::new(SIZE_BUCKETS)),
            convergence: Histogram::new(CONVERGENCE_BUCKETS),
            debounce: Histogram::new(PUSH_BUCKETS),
            pushcontext_init: Histogram::new(INIT_BUCKETS),
            rejects: PerType::default(),
            reject_gauges: PerType::default(),
            internal_errors: Counter::default(),
            expired_nonce: PerType::default(),
            write_timeout: Counter::default(),
            inbound: Default::default(),
            cfg_events: Labelled::new(&["type", "event"]),
            reg_events: Labelled::new(&["type", "event"]),
            services: Gauge::default(),
            virt_services: Gauge::default(),
            validation_passed: Labelled::new(&["group", "version", "resource"]),
            validation_failed: Labelled::new(&["group", "version", "resource", "reason"]),
        }
    }

    /// The gauge of connected proxies of `node`'s version, for its
    /// stream to raise while connected.
    pub(crate) fn connected(&self, node: &Node) -> Arc<Gauge> {
        self.xds.with(&[&proxy_version(node)])
    }

    pub(crate) fn trigger(&self, t: Trigger) {
        self.triggers[t as usize].inc();
    }

    /// An object of `kind` added, changed or removed: its event, the
    /// inbound update it is, and what it triggers.
    pub(crate) fn config_event(&self, kind: ConfigKind, change: Change) {
        use ConfigKind as K;
        if let Some(t) = registry_type(kind) {
            self.reg_events.with(&[t, change.label()]).inc();
        } else if config_kind(kind) {
            self.cfg_events
                .with(&[kind.info().name, change.label()])
                .inc();
        } else {
            return;
        }
        let (inbound, trigger) = match kind {
            K::Service | K::ServiceEntry if change == Change::Delete => (3, Trigger::Service),
            K::Service | K::ServiceEntry => (2, Trigger::Service),
            K::Endpoints | K::EndpointSlice | K::Pod | K::WorkloadEntry => (1, Trigger::Endpoint),
            _ => (0, Trigger::Config),
        };
        self.inbound[inbound].inc();
        self.trigger(trigger);
    }

    /// An Istio object checked by Istio's admission rules as it was
    /// loaded: what galley's validating webhook counts. `reason` is
    /// istiod's for a rejected object (`invalid_resource`); objects
    /// whose fields do not decode are not counted, as Kubernetes'
    /// schema check rejects those before the webhook sees them.
    pub(crate) fn validated(&self, kind: ConfigKind, api_version: &str, passed: bool) {
        if !kind.is_istio() {
            return;
        }
        let info = kind.info();
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let resource = resource_name(kind);
        if passed {
            self.validation_passed
                .with(&[info.group, version, &resource])
                .inc();
        } else {
            self.validation_failed
                .with(&[info.group, version, &resource, "invalid_resource"])
                .inc();
        }
    }

    /// The whole registry as Prometheus text, with the process' figures
    /// and `istio_build`.
    pub fn render(&self) -> String {
        let mut t = Text::default();
        let count = |c: &Counter| c.get() as i64;
        let level = |g: &Gauge| g.get();
        t.family("istio_build", "gauge", "Istio component build info");
        t.sample(
            "istio_build",
            &[("component", "pilot"), ("tag", env!("CARGO_PKG_VERSION"))],
            1,
        );
        t.labelled(
            "pilot_xds",
            "gauge",
            "Number of endpoints connected to this pilot using XDS.",
            &self.xds,
            level,
        );
        t.family(
            "pilot_xds_pushes",
            "counter",
            "Pilot build and send errors for lds, rds, cds and eds.",
        );
        for (ty, c) in self.pushes.iter() {
            t.sample("pilot_xds_pushes", &[("type", ty)], c.get());
        }
        for (ty, c) in self.send_errors.iter() {
            t.sample(
                "pilot_xds_pushes",
                &[("type", &format!("{ty}_senderr"))],
                c.get(),
            );
        }
        t.family(
            "pilot_push_triggers",
            "counter",
            "Total number of times a push was triggered, labeled by reason for the push.",
        );
        for (label, c) in TRIGGERS.iter().zip(&self.triggers) {
            t.sample("pilot_push_triggers", &[("type", label)], c.get());
        }
        t.per_type_histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            &self.push_time,
        );
        t.histogram(
            "pilot_xds_send_time",
            "Total time in seconds Pilot takes to send generated configuration.",
            &self.send_time,
        );
        t.per_type_histogram(
            "pilot_xds_config_size_bytes",
            "Distribution of configuration sizes pushed to clients",
            &self.config_size,
        );
        t.histogram(
            "pilot_proxy_convergence_time",
            CONVERGENCE_HELP,
            &self.convergence,
        );
        t.histogram("pilot_debounce_time", DEBOUNCE_HELP, &self.debounce);
        t.histogram(
            "pilot_pushcontext_init_seconds",
            "Total time in seconds Pilot takes to init pushContext.",
            &self.pushcontext_init,
        );
        t.per_type_counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            &self.rejects,
        );
        for (ty, g) in self.reject_gauges.iter().filter(|(ty, _)| *ty != "sds") {
            t.gauge(
                &format!("pilot_xds_{ty}_reject"),
                &format!("Pilot rejected {} configs.", ty.to_uppercase()),
                g,
            );
        }
        t.counter(
            "pilot_total_xds_internal_errors",
            "Total number of internal XDS errors in pilot.",
            &self.internal_errors,
        );
        t.per_type_counter(
            "pilot_xds_expired_nonce",
            "Total number of XDS requests with an expired nonce.",
            &self.expired_nonce,
        );
        t.counter(
            "pilot_xds_write_timeout",
            "Pilot XDS response write timeouts.",
            &self.write_timeout,
        );
        t.family(
            "pilot_inbound_updates",
            "counter",
            "Total number of updates received by pilot.",
        );
        for (label, c) in INBOUND.iter().zip(&self.inbound) {
            t.sample("pilot_inbound_updates", &[("type", label)], c.get());
        }
        t.labelled(
            "pilot_k8s_cfg_events",
            "counter",
            "Events from k8s config.",
            &self.cfg_events,
            count,
        );
        t.labelled(
            "pilot_k8s_reg_events",
            "counter",
            "Events from k8s registry.",
            &self.reg_events,
            count,
        );
        t.gauge(
            "pilot_services",
            "Total services known to pilot.",
            &self.services,
        );
        t.gauge(
            "pilot_virt_services",
            "Total virtual services known to pilot.",
            &self.virt_services,
        );
        // weft's listener generation takes the first service on a port
        // and does not detect conflicts between services: these stay 0.
        for name in [
            "pilot_conflict_inbound_listener",
            "pilot_conflict_outbound_listener_tcp_over_current_http",
            "pilot_conflict_outbound_listener_tcp_over_current_tcp",
            "pilot_conflict_outbound_listener_http_over_current_tcp",
            "pilot_conflict_outbound_listener_http_over_https",
        ] {
            t.gauge(name, "Number of conflicting listeners.", &Gauge::default());
        }
        t.labelled(
            "galley_validation_passed",
            "counter",
            "Resource is valid.",
            &self.validation_passed,
            count,
        );
        t.labelled(
            "galley_validation_failed",
            "counter",
            "Resource validation failed.",
            &self.validation_failed,
            count,
        );
        match process::Process::read() {
            Ok(p) => p.render(&mut t),
            Err(e) => tracing::debug!("process metrics: {e}"),
        }
        t.into_string()
    }
}

#[cfg(test)]
mod tests;
