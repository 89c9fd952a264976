//! DestinationRule rules.

use weft_api::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};

use super::common::*;
use super::Report;

pub(super) fn destination_rule(r: &mut Report, dr: &DestinationRule) {
    if dr.host.is_empty() {
        r.err("spec.host", "host is required");
    } else {
        host(r, "spec.host", &dr.host, true);
    }
    export_to(r, "spec.exportTo", &dr.export_to);
    if let Some(sel) = &dr.workload_selector {
        selector(r, "spec.workloadSelector.matchLabels", &sel.match_labels);
        if !dr.export_to.is_empty() && dr.export_to != ["."] {
            r.err("spec.exportTo", "a DestinationRule with workloadSelector may only be exported to its own namespace (\".\")");
        }
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(r, "spec.trafficPolicy", tp, true);
    }
    let mut names = std::collections::HashSet::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let f = format!("spec.subsets[{i}]");
        if s.name.is_empty() {
            r.err(format!("{f}.name"), "subset name is required");
        } else if !is_dns1123_label(&s.name) {
            r.err(
                format!("{f}.name"),
                format!(
                    "invalid subset name {:?}: expected a DNS-1123 label",
                    s.name
                ),
            );
        } else if !names.insert(&s.name) {
            r.err(
                format!("{f}.name"),
                format!("duplicate subset name {:?}", s.name),
            );
        }
        labels(r, &format!("{f}.labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(r, &format!("{f}.trafficPolicy"), tp, true);
        }
    }
}

fn traffic_policy(r: &mut Report, f: &str, tp: &TrafficPolicy, top: bool) {
    if let Some(lb) = &tp.load_balancer {
        load_balancer(r, &format!("{f}.loadBalancer"), lb);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(r, &format!("{f}.connectionPool"), cp);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier(r, &format!("{f}.outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(r, &format!("{f}.tls"), tls);
    }
    if let Some(t) = &tp.tunnel {
        if t.target_host.is_empty() {
            r.err(format!("{f}.tunnel.targetHost"), "targetHost is required");
        }
        port(r, &format!("{f}.tunnel.targetPort"), t.target_port);
        if let Some(p) = &t.protocol {
            if p != "CONNECT" && p != "POST" {
                r.err(
                    format!("{f}.tunnel.protocol"),
                    format!("tunnel protocol {p:?} must be CONNECT or POST"),
                );
            }
        }
    }
    if let Some(b) = &tp.retry_budget {
        if let Some(p) = b.percent {
            if !(0.0..=100.0).contains(&p) {
                r.err(
                    format!("{f}.retryBudget.percent"),
                    format!("percentage {p} is out of range: expected 0–100"),
                );
            }
        }
    }
    if top {
        let mut ports = std::collections::HashSet::new();
        for (i, pl) in tp.port_level_settings.iter().enumerate() {
            let pf = format!("{f}.portLevelSettings[{i}]");
            match &pl.port {
                None => r.err(
                    format!("{pf}.port"),
                    "port is required in portLevelSettings",
                ),
                Some(p) => {
                    port(r, &format!("{pf}.port.number"), p.number);
                    if !ports.insert(p.number) {
                        r.err(
                            format!("{pf}.port"),
                            format!("port {} has settings twice", p.number),
                        );
                    }
                }
            }
            if let Some(lb) = &pl.load_balancer {
                load_balancer(r, &format!("{pf}.loadBalancer"), lb);
            }
            if let Some(cp) = &pl.connection_pool {
                connection_pool(r, &format!("{pf}.connectionPool"), cp);
            }
            if let Some(od) = &pl.outlier_detection {
                outlier(r, &format!("{pf}.outlierDetection"), od);
            }
            if let Some(tls) = &pl.tls {
                client_tls(r, &format!("{pf}.tls"), tls);
            }
        }
    }
}

fn load_balancer(r: &mut Report, f: &str, lb: &LoadBalancerSettings) {
    let kinds = [
        lb.simple.is_some(),
        lb.consistent_hash.is_some(),
        lb.backend_utilization.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if kinds > 1 {
        r.err(
            f,
            "only one of simple, consistentHash or backendUtilization may be set",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        let cf = format!("{f}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip.is_some(),
            ch.http_query_parameter_name.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if keys != 1 {
            r.err(&cf, "consistentHash must set exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName");
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            r.err(&cf, "only one of ringHash or maglev may be set");
        }
        if ch.minimum_ring_size.is_some() {
            r.warn(
                format!("{cf}.minimumRingSize"),
                "minimumRingSize is deprecated; use ringHash.minimumRingSize",
            );
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                r.err(format!("{cf}.httpCookie.name"), "cookie name is required");
            }
        }
        if let Some(h) = &ch.http_header_name {
            header_name(r, &format!("{cf}.httpHeaderName"), h);
        }
        if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size) {
            if !is_prime(size) {
                r.err(
                    format!("{cf}.maglev.tableSize"),
                    format!("maglev table size {size} must be a prime number"),
                );
            }
        }
    }
    if let Some(w) = &lb.warmup {
        if w.duration.is_none() {
            r.err(format!("{f}.warmup.duration"), "duration is required");
        }
        opt_duration(r, &format!("{f}.warmup.duration"), &w.duration);
        if let Some(p) = w.minimum_percent {
            if !(0.0..=100.0).contains(&p) {
                r.err(
                    format!("{f}.warmup.minimumPercent"),
                    format!("percentage {p} is out of range: expected 0–100"),
                );
            }
        }
    }
    opt_duration(
        r,
        &format!("{f}.warmupDurationSecs"),
        &lb.warmup_duration_secs,
    );
    if let Some(l) = &lb.locality_lb_setting {
        if !l.distribute.is_empty() && !l.failover.is_empty() {
            r.err(
                format!("{f}.localityLbSetting"),
                "only one of distribute or failover may be set",
            );
        }
        for (i, d) in l.distribute.iter().enumerate() {
            let total: u64 = d.to.values().map(|v| u64::from(*v)).sum();
            if total != 100 {
                r.err(
                    format!("{f}.localityLbSetting.distribute[{i}].to"),
                    format!("weights must add up to 100, not {total}"),
                );
            }
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn connection_pool(r: &mut Report, f: &str, cp: &ConnectionPoolSettings) {
    if cp.tcp.is_none() && cp.http.is_none() {
        r.err(f, "connectionPool must set tcp or http");
    }
    if let Some(tcp) = &cp.tcp {
        non_negative(r, &format!("{f}.tcp.maxConnections"), tcp.max_connections);
        opt_duration(r, &format!("{f}.tcp.connectTimeout"), &tcp.connect_timeout);
        opt_duration(
            r,
            &format!("{f}.tcp.maxConnectionDuration"),
            &tcp.max_connection_duration,
        );
        if let Some(k) = &tcp.tcp_keepalive {
            opt_duration(r, &format!("{f}.tcp.tcpKeepalive.time"), &k.time);
            opt_duration(r, &format!("{f}.tcp.tcpKeepalive.interval"), &k.interval);
        }
    }
    if let Some(http) = &cp.http {
        let hf = format!("{f}.http");
        non_negative(
            r,
            &format!("{hf}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
        );
        non_negative(
            r,
            &format!("{hf}.http2MaxRequests"),
            http.http2_max_requests,
        );
        non_negative(
            r,
            &format!("{hf}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
        );
        non_negative(r, &format!("{hf}.maxRetries"), http.max_retries);
        non_negative(
            r,
            &format!("{hf}.maxConcurrentStreams"),
            http.max_concurrent_streams,
        );
        opt_duration(r, &format!("{hf}.idleTimeout"), &http.idle_timeout);
        if let Some(k) = &http.http2_keep_alive {
            opt_duration(r, &format!("{hf}.http2KeepAlive.interval"), &k.interval);
            opt_duration(r, &format!("{hf}.http2KeepAlive.timeout"), &k.timeout);
        }
    }
}

fn outlier(r: &mut Report, f: &str, od: &OutlierDetection) {
    if let Some(e) = od.consecutive_errors {
        r.warn(
            format!("{f}.consecutiveErrors"),
            "consecutiveErrors is deprecated; use consecutive5xxErrors or consecutiveGatewayErrors",
        );
        non_negative(r, &format!("{f}.consecutiveErrors"), Some(e));
    }
    opt_duration(r, &format!("{f}.interval"), &od.interval);
    opt_duration(r, &format!("{f}.baseEjectionTime"), &od.base_ejection_time);
    if let Some(p) = od.max_ejection_percent {
        int_percent(r, &format!("{f}.maxEjectionPercent"), p);
    }
    if let Some(p) = od.min_health_percent {
        int_percent(r, &format!("{f}.minHealthPercent"), p);
    }
    for (i, c) in od.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            r.err(
                format!("{f}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("{c} is not an HTTP status code (100–599)"),
            );
        }
    }
}

fn client_tls(r: &mut Report, f: &str, tls: &ClientTlsSettings) {
    let mode = tls.mode.unwrap_or_default();
    let has_files = tls.client_certificate.is_some()
        || tls.private_key.is_some()
        || tls.ca_certificates.is_some();
    match mode {
        ClientTlsMode::ISTIO_MUTUAL => {
            if has_files || tls.credential_name.is_some() {
                r.err(f, "ISTIO_MUTUAL uses the mesh's certificates: clientCertificate, privateKey, caCertificates and credentialName must not be set");
            }
        }
        ClientTlsMode::MUTUAL => {
            if tls.credential_name.is_none()
                && (tls.client_certificate.is_none() || tls.private_key.is_none())
            {
                r.err(
                    f,
                    "MUTUAL requires clientCertificate and privateKey, or credentialName",
                );
            }
        }
        ClientTlsMode::SIMPLE => {
            if tls.client_certificate.is_some() || tls.private_key.is_some() {
                r.warn(
                    f,
                    "clientCertificate and privateKey are ignored in SIMPLE mode",
                );
            }
        }
        ClientTlsMode::DISABLE => {}
    }
    if tls.credential_name.is_some() && has_files {
        r.err(
            f,
            "credentialName cannot be combined with certificate files",
        );
    }
}
