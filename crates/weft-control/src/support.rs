//! What the control plane does not translate yet, said out loud: a field
//! that changes behaviour in Istio but that weft's generators ignore is
//! reported (file, line, field) whenever its object is read, and the
//! object is served without it. Kinds the control plane does not act on
//! at all are reported the same way.

use weft_api::destination_rule::{ClientTlsSettings, TrafficPolicy};
use weft_api::{Kind, Spec};
use weft_config::Resource;

fn client_tls(tls: &ClientTlsSettings, at: &str, out: &mut Vec<(String, &'static str)>) {
    if tls.ca_crl.is_some() {
        out.push((
            format!("{at}.tls.caCrl"),
            "certificate revocation lists are not implemented: revoked certificates are accepted",
        ));
    }
}

fn traffic_policy(tp: &TrafficPolicy, at: &str, out: &mut Vec<(String, &'static str)>) {
    if let Some(tls) = &tp.tls {
        client_tls(tls, at, out);
    }
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        if let Some(tls) = &pl.tls {
            client_tls(tls, &format!("{at}.portLevelSettings[{i}]"), out);
        }
    }
    if let Some(lb) = &tp.load_balancer {
        if lb.locality_lb_setting.is_some() {
            out.push((
                format!("{at}.loadBalancer.localityLbSetting"),
                "locality load balancing is not implemented",
            ));
        }
        if lb.warmup.is_some() || lb.warmup_duration_secs.is_some() {
            out.push((
                format!("{at}.loadBalancer.warmup"),
                "slow start is not implemented",
            ));
        }
        if lb.backend_utilization.is_some() || lb.zone_aware_lb_setting.is_some() {
            out.push((
                format!("{at}.loadBalancer"),
                "utilization and zone-aware balancing are not implemented",
            ));
        }
        if lb
            .consistent_hash
            .as_ref()
            .and_then(|c| c.http_cookie.as_ref())
            .is_some_and(|c| !c.attributes.is_empty())
        {
            out.push((
                format!("{at}.loadBalancer.consistentHash.httpCookie.attributes"),
                "cookie attributes are not implemented",
            ));
        }
    }
    if let Some(pool) = &tp.connection_pool {
        if let Some(h) = &pool.http {
            for (set, field) in [
                (
                    h.max_requests_per_connection.is_some(),
                    "maxRequestsPerConnection",
                ),
                (h.max_concurrent_streams.is_some(), "maxConcurrentStreams"),
                (h.use_client_protocol.is_some(), "useClientProtocol"),
                (h.http2_keep_alive.is_some(), "http2KeepAlive"),
            ] {
                if set {
                    out.push((
                        format!("{at}.connectionPool.http.{field}"),
                        "not implemented",
                    ));
                }
            }
        }
        if let Some(t) = &pool.tcp {
            if t.tcp_keepalive.is_some() || t.idle_timeout.is_some() {
                out.push((
                    format!("{at}.connectionPool.tcp"),
                    "tcpKeepalive and idleTimeout are not implemented",
                ));
            }
        }
    }
    for (set, field) in [
        (tp.tunnel.is_some(), "tunnel"),
        (tp.proxy_protocol.is_some(), "proxyProtocol"),
        (tp.retry_budget.is_some(), "retryBudget"),
    ] {
        if set {
            out.push((format!("{at}.{field}"), "not implemented"));
        }
    }
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        let sub = TrafficPolicy {
            load_balancer: p.load_balancer.clone(),
            connection_pool: p.connection_pool.clone(),
            outlier_detection: p.outlier_detection.clone(),
            tls: p.tls.clone(),
            ..TrafficPolicy::default()
        };
        traffic_policy(&sub, &format!("{at}.portLevelSettings[{i}]"), out);
    }
}

/// Where weft decides `destinationSubnets`, and where it cannot.
const SUBNETS_PARTLY: &str =
    "implemented only on a sidecar's listener for a service with an address \
     (VIP_PORT), where every connection goes to that address; on shared listeners (0.0.0.0_PORT, \
     bound egress ports) and gateways this match never applies";

/// Each field of `r` that weft's control plane ignores, as
/// `file:line (Kind ns/name) field: why`.
pub fn unsupported(r: &Resource) -> Vec<String> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    match &r.object.spec {
        Spec::VirtualService(vs) => {
            for (i, t) in vs.tls.iter().enumerate() {
                for (j, m) in t.matches.iter().enumerate() {
                    if !m.destination_subnets.is_empty() {
                        out.push((
                            format!("spec.tls[{i}].match[{j}].destinationSubnets"),
                            SUBNETS_PARTLY,
                        ));
                    }
                }
            }
            for (i, t) in vs.tcp.iter().enumerate() {
                for (j, m) in t.matches.iter().enumerate() {
                    if !m.destination_subnets.is_empty() {
                        out.push((
                            format!("spec.tcp[{i}].match[{j}].destinationSubnets"),
                            SUBNETS_PARTLY,
                        ));
                    }
                    if m.source_subnet.is_some() {
                        out.push((
                            format!("spec.tcp[{i}].match[{j}].sourceSubnet"),
                            "not implemented: this match never applies",
                        ));
                    }
                }
            }
            for (i, h) in vs.http.iter().enumerate() {
                let at = format!("spec.http[{i}]");
                if h.retries
                    .as_ref()
                    .is_some_and(|r| r.retry_remote_localities.is_some())
                {
                    out.push((
                        format!("{at}.retries.retryRemoteLocalities"),
                        "not implemented",
                    ));
                }
                if let Some(f) = &h.fault {
                    if f.delay
                        .as_ref()
                        .is_some_and(|d| d.exponential_delay.is_some())
                    {
                        out.push((
                            format!("{at}.fault.delay.exponentialDelay"),
                            "not implemented",
                        ));
                    }
                    if f.abort.as_ref().is_some_and(|a| a.http2_error.is_some()) {
                        out.push((format!("{at}.fault.abort.http2Error"), "not implemented"));
                    }
                }
                if h.redirect.as_ref().is_some_and(|r| r.derive_port.is_some()) {
                    out.push((format!("{at}.redirect.derivePort"), "not implemented"));
                }
            }
        }
        Spec::DestinationRule(dr) => {
            if dr.workload_selector.is_some() {
                out.push((
                    "spec.workloadSelector".into(),
                    "DestinationRules with a workloadSelector are not applied",
                ));
            }
            if let Some(tp) = &dr.traffic_policy {
                traffic_policy(tp, "spec.trafficPolicy", &mut out);
            }
            for (i, s) in dr.subsets.iter().enumerate() {
                if let Some(tp) = &s.traffic_policy {
                    traffic_policy(tp, &format!("spec.subsets[{i}].trafficPolicy"), &mut out);
                }
            }
        }
        Spec::Sidecar(sc) => {
            for (i, ing) in sc.ingress.iter().enumerate() {
                if ing.tls.is_some() || ing.connection_pool.is_some() {
                    out.push((
                        format!("spec.ingress[{i}]"),
                        "tls and connectionPool on ingress listeners are not implemented",
                    ));
                }
            }
            if sc.inbound_connection_pool.is_some() {
                out.push(("spec.inboundConnectionPool".into(), "not implemented"));
            }
            if sc
                .outbound_traffic_policy
                .as_ref()
                .is_some_and(|p| p.egress_proxy.is_some())
            {
                out.push((
                    "spec.outboundTrafficPolicy.egressProxy".into(),
                    "not implemented",
                ));
            }
        }
        Spec::Gateway(gw) => {
            for (i, s) in gw.servers.iter().enumerate() {
                if s.tls.as_ref().is_some_and(|t| t.ca_crl.is_some()) {
                    out.push((
                        format!("spec.servers[{i}].tls.caCrl"),
                        "certificate revocation lists are not implemented: revoked certificates are accepted",
                    ));
                }
            }
        }
        Spec::AuthorizationPolicy(ap) => {
            use weft_api::security::AuthorizationAction;
            if ap.action == Some(AuthorizationAction::CUSTOM) {
                out.push((
                    "spec.action".into(),
                    "CUSTOM on TCP ports (Envoy's network ext_authz) is not implemented: the connections it selects there are denied (HTTP requests go to the provider's authorizer)",
                ));
            }
            if ap.target_ref.is_some() || !ap.target_refs.is_empty() {
                out.push((
                    "spec.targetRefs".into(),
                    "policies attached by targetRef are not applied by weft yet (only selectors)",
                ));
            }
        }
        Spec::RequestAuthentication(ra) => {
            if ra.target_ref.is_some() || !ra.target_refs.is_empty() {
                out.push((
                    "spec.targetRefs".into(),
                    "policies attached by targetRef are not applied by weft yet (only selectors)",
                ));
            }
        }
        _ => {
            let ignored = matches!(
                r.object.kind,
                Kind::Telemetry
                    | Kind::EnvoyFilter
                    | Kind::WasmPlugin
                    | Kind::WorkloadGroup
                    | Kind::ProxyConfig
            );
            if ignored {
                out.push((
                    "spec".into(),
                    "this kind is not acted on by weft's control plane yet",
                ));
            }
        }
    }
    out.into_iter()
        .map(|(field, why)| {
            format!(
                "{} ({}) {field}: {why}",
                r.origin_of(&field),
                r.display_name()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ignored_fields_are_named_with_their_line() {
        let text = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: SIMPLE, caCrl: /etc/crl.pem}
    connectionPool:
      http: {maxRequestsPerConnection: 10}
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: default, namespace: istio-system}
spec: {}
";
        let loaded = weft_config::load_str("rules.yaml", text, &Default::default());
        let found: Vec<String> = loaded
            .resources
            .iter()
            .flat_map(super::unsupported)
            .collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with(
                "rules.yaml:7 (DestinationRule default/reviews) spec.trafficPolicy.tls.caCrl:"
            ),
            "{found:#?}"
        );
        assert!(found[1].starts_with("rules.yaml:9 (DestinationRule default/reviews) spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection:"), "{found:#?}");
        assert!(
            found[2].contains("Telemetry istio-system/default) spec: this kind is not acted on"),
            "{found:#?}"
        );
    }
}
