//! Gateway and Sidecar rules (both describe listeners).

use weft_api::common::Port;
use weft_api::gateway::{Gateway, ServerTlsMode, ServerTlsSettings};
use weft_api::sidecar::{CaptureMode, OutboundMode, Sidecar};

use super::common::*;
use super::Report;

/// Protocols a port may declare (case-insensitive), as Istio accepts
/// them, for messages; [`protocol_ok`] asks the mesh model.
const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "MYSQL", "REDIS", "UDP",
];

pub(crate) fn protocol_ok(p: &str) -> bool {
    crate::mesh::Protocol::parse(p) != crate::mesh::Protocol::Unknown
}

fn port_spec(r: &mut Report, f: &str, p: &Port, name_required: bool) {
    port(r, &format!("{f}.number"), p.number);
    if let Some(t) = p.target_port {
        port(r, &format!("{f}.targetPort"), t);
    }
    if p.protocol.is_empty() {
        r.err(format!("{f}.protocol"), "protocol is required");
    } else if !protocol_ok(&p.protocol) {
        r.err(
            format!("{f}.protocol"),
            format!(
                "unknown protocol {:?}: expected one of {}",
                p.protocol,
                PROTOCOLS.join(", ")
            ),
        );
    }
    if name_required && p.name.is_empty() {
        r.err(format!("{f}.name"), "port name is required");
    }
}

pub(super) fn gateway(r: &mut Report, gw: &Gateway) {
    if gw.servers.is_empty() {
        r.err("spec.servers", "a Gateway needs at least one server");
    }
    selector(r, "spec.selector", &gw.selector);
    let mut names = std::collections::HashSet::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let f = format!("spec.servers[{i}]");
        port_spec(r, &format!("{f}.port"), &s.port, true);
        if let Some(name) = &s.name {
            if !names.insert(name) {
                r.err(
                    format!("{f}.name"),
                    format!("server name {name:?} is used twice"),
                );
            }
        }
        if s.hosts.is_empty() {
            r.err(format!("{f}.hosts"), "a server needs at least one host");
        }
        for (j, h) in s.hosts.iter().enumerate() {
            namespaced_host(r, &format!("{f}.hosts[{j}]"), h);
        }
        if let Some(b) = &s.bind {
            bind(r, &format!("{f}.bind"), b);
        }
        let proto = s.port.protocol.to_ascii_uppercase();
        match &s.tls {
            Some(tls) => server_tls(r, &format!("{f}.tls"), tls, &proto),
            None if proto == "HTTPS" => {
                r.err(format!("{f}.tls"), "an HTTPS server requires tls settings")
            }
            None => {}
        }
    }
}

fn server_tls(r: &mut Report, f: &str, tls: &ServerTlsSettings, proto: &str) {
    if tls.https_redirect == Some(true) && tls.mode.is_none() {
        if proto != "HTTP" {
            r.err(
                format!("{f}.httpsRedirect"),
                "httpsRedirect only applies to HTTP servers",
            );
        }
        return;
    }
    if proto == "HTTP" || proto == "TCP" || proto == "GRPC" || proto == "HTTP2" {
        if tls.mode.is_some() {
            r.err(
                format!("{f}.mode"),
                format!("TLS settings are only valid on HTTPS or TLS servers, not {proto}"),
            );
        }
        return;
    }
    let mode = tls.mode.unwrap_or(ServerTlsMode::PASSTHROUGH);
    let multi = !tls.credential_names.is_empty() || !tls.tls_certificates.is_empty();
    if !tls.credential_names.is_empty() && !tls.tls_certificates.is_empty() {
        r.err(
            f,
            "only one of credentialNames or tlsCertificates can be set",
        );
    }
    if tls.credential_name.is_some() && !tls.credential_names.is_empty() {
        r.err(
            f,
            "only one of credentialName or credentialNames can be set",
        );
    }
    for (list, len) in [
        ("credentialNames", tls.credential_names.len()),
        ("tlsCertificates", tls.tls_certificates.len()),
    ] {
        if len > 2 {
            r.err(
                format!("{f}.{list}"),
                format!("at most 2 entries (one RSA and one ECDSA), got {len}"),
            );
        }
    }
    match mode {
        ServerTlsMode::SIMPLE | ServerTlsMode::MUTUAL | ServerTlsMode::OPTIONAL_MUTUAL => {
            let files = tls.server_certificate.is_some() && tls.private_key.is_some();
            if tls.credential_name.is_none() && !files && !multi {
                r.err(
                    f,
                    format!(
                        "{} mode requires credentialName (or serverCertificate and privateKey)",
                        mode.as_str()
                    ),
                );
            }
            if mode != ServerTlsMode::SIMPLE
                && tls.credential_name.is_none()
                && tls.ca_certificates.is_none()
                && tls.ca_cert_credential_name.is_none()
                && !multi
            {
                r.err(
                    f,
                    format!(
                        "{} mode requires caCertificates or credentialName to verify clients",
                        mode.as_str()
                    ),
                );
            }
        }
        ServerTlsMode::PASSTHROUGH | ServerTlsMode::AUTO_PASSTHROUGH => {
            if proto != "TLS" {
                r.err(
                    format!("{f}.mode"),
                    format!("{} requires protocol TLS, not {proto}", mode.as_str()),
                );
            }
        }
        ServerTlsMode::ISTIO_MUTUAL => {
            if tls.credential_name.is_some() || tls.server_certificate.is_some() {
                r.err(f, "ISTIO_MUTUAL uses the mesh's certificates: credentialName and certificate files must not be set");
            }
        }
    }
    if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version) {
        if (min as u8) > (max as u8) && max != weft_api::gateway::TlsProtocol::TLS_AUTO {
            r.err(f, "minProtocolVersion is above maxProtocolVersion");
        }
    }
}

/// Hosts in Gateways and Sidecars: `[namespace/]dnsName` where namespace is
/// `*`, `.`, `~` or a name, and dnsName may be `*` or start with `*.`.
fn namespaced_host(r: &mut Report, f: &str, h: &str) {
    let (ns, name) = match h.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, h),
    };
    if let Some(ns) = ns {
        if !(ns == "*" || ns == "." || ns == "~" || is_dns1123_label(ns)) {
            r.err(f, format!("invalid namespace {ns:?} in host {h:?}: expected \"*\", \".\", \"~\" or a namespace name"));
        }
    }
    host(r, f, name, true);
}

fn bind(r: &mut Report, f: &str, b: &str) {
    let ok = b.parse::<std::net::IpAddr>().is_ok()
        || b.strip_prefix("unix://")
            .is_some_and(|p| p.starts_with('/') || p.starts_with('@'));
    if !ok {
        r.err(
            f,
            format!("invalid bind address {b:?}: expected an IP address or unix:///path"),
        );
    }
}

pub(super) fn sidecar(r: &mut Report, sc: &Sidecar) {
    if let Some(sel) = &sc.workload_selector {
        selector(r, "spec.workloadSelector.labels", &sel.labels);
    }
    if sc.egress.is_empty()
        && sc.ingress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        r.warn("spec", "the Sidecar sets nothing");
    }
    let mut ports = std::collections::HashSet::new();
    for (i, l) in sc.ingress.iter().enumerate() {
        let f = format!("spec.ingress[{i}]");
        port_spec(r, &format!("{f}.port"), &l.port, false);
        if !ports.insert(l.port.number) {
            r.err(
                format!("{f}.port"),
                format!("port {} has two ingress listeners", l.port.number),
            );
        }
        if let Some(b) = &l.bind {
            bind(r, &format!("{f}.bind"), b);
        }
        if let Some(ep) = &l.default_endpoint {
            let ok = ep.starts_with("unix://")
                || ep.rsplit_once(':').is_some_and(|(host, p)| {
                    (host == "127.0.0.1" || host == "0.0.0.0" || host == "[::1]" || host == "[::]")
                        && p.parse::<u16>().is_ok_and(|p| p > 0)
                });
            if !ok {
                r.err(format!("{f}.defaultEndpoint"), format!("invalid defaultEndpoint {ep:?}: expected 127.0.0.1:PORT, 0.0.0.0:PORT or unix:///path"));
            }
        }
        if let Some(tls) = &l.tls {
            server_tls(
                r,
                &format!("{f}.tls"),
                tls,
                &l.port.protocol.to_ascii_uppercase(),
            );
        }
    }
    let mut catch_all = 0;
    let mut egress_ports = std::collections::HashSet::new();
    for (i, l) in sc.egress.iter().enumerate() {
        let f = format!("spec.egress[{i}]");
        if l.hosts.is_empty() {
            r.err(
                format!("{f}.hosts"),
                "an egress listener needs at least one host",
            );
        }
        for (j, h) in l.hosts.iter().enumerate() {
            let hf = format!("{f}.hosts[{j}]");
            if !h.contains('/') {
                r.err(
                    &hf,
                    format!("sidecar egress host {h:?} must be of the form namespace/dnsName"),
                );
            } else {
                namespaced_host(r, &hf, h);
            }
        }
        match &l.port {
            Some(p) => {
                port_spec(r, &format!("{f}.port"), p, false);
                if !egress_ports.insert((l.bind.clone(), p.number)) {
                    r.err(
                        format!("{f}.port"),
                        format!(
                            "port {} has two egress listeners on the same bind address",
                            p.number
                        ),
                    );
                }
            }
            None => {
                catch_all += 1;
                if i + 1 != sc.egress.len() {
                    r.err(
                        &f,
                        "the egress listener without a port must be the last one",
                    );
                }
                if l.bind.is_some() {
                    r.err(format!("{f}.bind"), "bind needs a port");
                }
            }
        }
        if let Some(b) = &l.bind {
            bind(r, &format!("{f}.bind"), b);
        }
        if l.capture_mode == Some(CaptureMode::NONE) && l.port.is_some() && l.bind.is_none() {
            r.warn(
                format!("{f}.bind"),
                "with captureMode NONE and no bind, the listener binds 127.0.0.1",
            );
        }
    }
    if catch_all > 1 {
        r.err("spec.egress", "only one egress listener may omit the port");
    }
    if let Some(p) = &sc.outbound_traffic_policy {
        if p.egress_proxy.is_some() && p.mode != Some(OutboundMode::ALLOW_ANY) {
            r.err(
                "spec.outboundTrafficPolicy.egressProxy",
                "egressProxy requires mode ALLOW_ANY",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{protocol_ok, PROTOCOLS};

    #[test]
    fn the_protocols_named_in_messages_are_the_mesh_model_s() {
        for p in PROTOCOLS {
            assert!(
                protocol_ok(p) && protocol_ok(&p.to_ascii_lowercase()),
                "{p}"
            );
        }
        for p in ["H2C", "HTTP_PROXY", "SCTP", ""] {
            assert!(!protocol_ok(p), "{p}");
        }
    }
}
