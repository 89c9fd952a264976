//! ServiceEntry, WorkloadEntry and WorkloadGroup rules.

use weft_api::service_entry::{Resolution, ServiceEntry, WorkloadEntry, WorkloadGroup};

use super::common::*;
use super::gateway::protocol_ok;
use super::Report;

pub(super) fn service_entry(r: &mut Report, se: &ServiceEntry) {
    if se.hosts.is_empty() {
        r.err("spec.hosts", "at least one host is required");
    }
    let resolution = se.resolution.unwrap_or_default();
    for (i, h) in se.hosts.iter().enumerate() {
        let f = format!("spec.hosts[{i}]");
        host(r, &f, h, false);
        if h.starts_with('*') && matches!(resolution, Resolution::DNS | Resolution::DNS_ROUND_ROBIN)
        {
            r.err(
                &f,
                format!(
                    "wildcard host {h:?} cannot use {} resolution",
                    resolution.as_str()
                ),
            );
        }
    }
    for (i, a) in se.addresses.iter().enumerate() {
        let f = format!("spec.addresses[{i}]");
        ip_or_cidr(r, &f, a);
        if a.contains('/') && !matches!(resolution, Resolution::NONE | Resolution::STATIC) {
            r.err(
                &f,
                "CIDR addresses are allowed only with NONE or STATIC resolution",
            );
        }
    }
    let mut numbers = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for (i, p) in se.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        port(r, &format!("{f}.number"), p.number);
        if let Some(t) = p.target_port {
            port(r, &format!("{f}.targetPort"), t);
        }
        if p.name.is_empty() {
            r.err(format!("{f}.name"), "port name is required");
        } else if !names.insert(&p.name) {
            r.err(
                format!("{f}.name"),
                format!("port name {:?} is used twice", p.name),
            );
        }
        if !numbers.insert(p.number) {
            r.err(
                format!("{f}.number"),
                format!("port number {} cannot be duplicated", p.number),
            );
        }
        if !p.protocol.is_empty() && !protocol_ok(&p.protocol) {
            r.err(
                format!("{f}.protocol"),
                format!("unknown protocol {:?}", p.protocol),
            );
        }
    }
    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        r.err(
            "spec",
            "only one of workloadSelector or endpoints can be set",
        );
    }
    if let Some(sel) = &se.workload_selector {
        selector(r, "spec.workloadSelector.labels", &sel.labels);
    }
    match resolution {
        Resolution::NONE if !se.endpoints.is_empty() => {
            r.err("spec.endpoints", "NONE resolution cannot set endpoints");
        }
        Resolution::STATIC if se.endpoints.is_empty() && se.workload_selector.is_none() => {
            r.warn("spec.endpoints", "STATIC resolution without endpoints or workloadSelector: the service has no instances");
        }
        Resolution::DNS_ROUND_ROBIN if se.endpoints.len() > 1 => {
            r.err(
                "spec.endpoints",
                "DNS_ROUND_ROBIN resolution cannot have multiple endpoints",
            );
        }
        _ => {}
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        let f = format!("spec.endpoints[{i}]");
        workload_entry(r, ep, &f);
        if let Some(addr) = &ep.address {
            let is_ip = addr.parse::<std::net::IpAddr>().is_ok();
            if resolution == Resolution::STATIC && !is_ip && !addr.starts_with("unix://") {
                r.err(
                    format!("{f}.address"),
                    format!("STATIC resolution needs IP addresses, not {addr:?}"),
                );
            }
        }
        for name in ep.ports.keys() {
            if !se.ports.iter().any(|p| &p.name == name) {
                r.err(
                    format!("{f}.ports[{name:?}]"),
                    format!("endpoint port {name:?} does not name a port of the ServiceEntry"),
                );
            }
        }
    }
    export_to(r, "spec.exportTo", &se.export_to);
}

pub(super) fn workload_entry(r: &mut Report, we: &WorkloadEntry, f: &str) {
    match (&we.address, &we.network) {
        (None, None) => r.err(format!("{f}.address"), "address is required (or network)"),
        (Some(a), _) if a.starts_with("unix://") => {
            let path = &a["unix://".len()..];
            if !(path.starts_with('/') || path.starts_with('@')) {
                r.err(
                    format!("{f}.address"),
                    "UDS must be an absolute path or abstract socket",
                );
            } else if path.ends_with('/') {
                r.err(format!("{f}.address"), "UDS may not be a directory");
            }
            if !we.ports.is_empty() {
                r.err(format!("{f}.ports"), "UDS may not include ports");
            }
        }
        (Some(a), _) => {
            if a.is_empty() {
                r.err(format!("{f}.address"), "address must not be empty");
            } else if a.parse::<std::net::IpAddr>().is_err() {
                host(r, &format!("{f}.address"), a, false);
            }
        }
        _ => {}
    }
    for (name, p) in &we.ports {
        let pf = format!("{f}.ports[{name:?}]");
        port(r, &pf, *p);
        if !is_dns_label_mixed(name) {
            r.err(&pf, format!("invalid port name {name:?}"));
        }
    }
    labels(r, &format!("{f}.labels"), &we.labels);
    if let Some(sa) = &we.service_account {
        if !is_dns1123_subdomain(sa) {
            r.err(
                format!("{f}.serviceAccount"),
                format!("invalid service account {sa:?}"),
            );
        }
    }
}

fn is_dns_label_mixed(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn workload_group(r: &mut Report, wg: &WorkloadGroup) {
    // The template's address is filled in per instance; only check the rest.
    let mut template = wg.template.clone();
    if template.address.is_none() && template.network.is_none() {
        template.address = Some("127.0.0.1".to_string());
    }
    workload_entry(r, &template, "spec.template");
    if let Some(m) = &wg.metadata {
        labels(r, "spec.metadata.labels", &m.labels);
    }
    if let Some(p) = &wg.probe {
        let f = "spec.probe";
        let n = [
            p.http_get.is_some(),
            p.tcp_socket.is_some(),
            p.exec.is_some(),
            p.grpc.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            r.err(
                f,
                "a probe must set exactly one of httpGet, tcpSocket, exec or grpc",
            );
        }
        if let Some(h) = &p.http_get {
            port(r, &format!("{f}.httpGet.port"), h.port);
            if let Some(s) = &h.scheme {
                if !matches!(s.as_str(), "" | "HTTP" | "HTTPS") {
                    r.err(
                        format!("{f}.httpGet.scheme"),
                        "scheme must be one of HTTP, HTTPS",
                    );
                }
            }
        }
        if let Some(t) = &p.tcp_socket {
            port(r, &format!("{f}.tcpSocket.port"), t.port);
        }
        if let Some(g) = &p.grpc {
            port(r, &format!("{f}.grpc.port"), g.port);
        }
        if let Some(e) = &p.exec {
            if e.command.is_empty() {
                r.err(format!("{f}.exec.command"), "command is required");
            }
        }
        for (name, v) in [
            ("initialDelaySeconds", p.initial_delay_seconds),
            ("timeoutSeconds", p.timeout_seconds),
            ("periodSeconds", p.period_seconds),
            ("successThreshold", p.success_threshold),
            ("failureThreshold", p.failure_threshold),
        ] {
            non_negative(r, &format!("{f}.{name}"), v);
        }
    }
}
