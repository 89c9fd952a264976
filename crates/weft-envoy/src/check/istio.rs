//! Istio's filters: what weft's `istio.stats` and
//! `istio.metadata_exchange` implement, and the rest refused by name.

use super::At;
use crate::istio::{DiscoveryMethod, PeerMetadataConfig, StatsConfig};
use crate::FieldError;

/// The standard metrics' short names, as `MetricConfig.name` gives them.
pub const METRICS: &[&str] = &[
    "requests_total",
    "request_duration_milliseconds",
    "request_bytes",
    "response_bytes",
    "request_messages_total",
    "response_messages_total",
    "tcp_connections_opened_total",
    "tcp_connections_closed_total",
    "tcp_sent_bytes_total",
    "tcp_received_bytes_total",
];

pub(super) fn stats(at: &At, c: &StatsConfig) -> Result<(), FieldError> {
    if !c.definitions.is_empty() {
        return Err(at
            .key("definitions")
            .err("metrics of one's own (CEL values) are not implemented by weft yet"));
    }
    match c.reporter.as_deref() {
        None | Some("UNSPECIFIED") | Some("0") => {}
        Some(other) => {
            return Err(at.key("reporter").err(format!(
                "{other}: only UNSPECIFIED (reporter from the listener's direction) is implemented by weft; waypoints are not"
            )))
        }
    }
    for (field, set) in [
        ("rotation_interval", c.rotation_interval.is_some()),
        (
            "graceful_deletion_interval",
            c.graceful_deletion_interval.is_some(),
        ),
    ] {
        if set {
            return Err(at
                .key(field)
                .err("scope rotation is not implemented by weft yet"));
        }
    }
    for (i, m) in c.metrics.iter().enumerate() {
        let mat = at.key("metrics").idx(i);
        if !m.name.is_empty() && !METRICS.contains(&m.name.as_str()) {
            return Err(mat.key("name").err(format!(
                "{:?} is not one of Istio's standard metrics",
                m.name
            )));
        }
        if !m.match_.is_empty() {
            return Err(mat
                .key("match")
                .err("conditional overrides are not implemented (by Istio's proxy either)"));
        }
        if !m.dimensions.is_empty() {
            return Err(mat
                .key("dimensions")
                .err("tag values from CEL expressions are not implemented by weft yet"));
        }
    }
    Ok(())
}

fn discovery(at: &At, list: &[DiscoveryMethod]) -> Result<(), FieldError> {
    for (i, d) in list.iter().enumerate() {
        let dat = at.idx(i);
        let set = [
            d.baggage.is_some(),
            d.workload_discovery.is_some(),
            d.istio_headers.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(dat.err("needs exactly one of baggage, workload_discovery, istio_headers"));
        }
        if d.baggage.is_some() {
            return Err(dat
                .key("baggage")
                .err("the baggage method (deprecated by Istio) is not implemented by weft"));
        }
    }
    Ok(())
}

pub(super) fn peer_metadata(at: &At, c: &PeerMetadataConfig) -> Result<(), FieldError> {
    discovery(&at.key("downstream_discovery"), &c.downstream_discovery)?;
    discovery(&at.key("upstream_discovery"), &c.upstream_discovery)?;
    for (field, list) in [
        ("downstream_propagation", &c.downstream_propagation),
        ("upstream_propagation", &c.upstream_propagation),
    ] {
        for (i, p) in list.iter().enumerate() {
            if p.istio_headers.is_none() {
                return Err(at.key(field).idx(i).err("needs istio_headers"));
            }
        }
    }
    if c.shared_with_upstream {
        return Err(at
            .key("shared_with_upstream")
            .err("sharing the peer with the upstream is not implemented by weft yet"));
    }
    Ok(())
}
