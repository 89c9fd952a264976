//! The registry's text: istiod's names and types, error counters at 0
//! before anything happened, and counts where the events put them.

use super::*;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn error_counters_and_build_info_are_there_from_the_start() {
    let text = Pilot::new().render();
    let l = lines(&text);
    for want in [
        "# TYPE istio_build gauge",
        &format!(
            "istio_build{{component=\"pilot\",tag=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE pilot_total_xds_internal_errors counter",
        "pilot_total_xds_internal_errors 0",
        "pilot_xds_write_timeout 0",
        "pilot_total_xds_rejects{type=\"cds\"} 0",
        "pilot_total_xds_rejects{type=\"sds\"} 0",
        "pilot_xds_expired_nonce{type=\"eds\"} 0",
        "# TYPE pilot_xds_cds_reject gauge",
        "pilot_xds_cds_reject 0",
        "pilot_xds_eds_reject 0",
        "pilot_xds_lds_reject 0",
        "pilot_xds_rds_reject 0",
        "pilot_xds_pushes{type=\"lds\"} 0",
        "pilot_xds_pushes{type=\"lds_senderr\"} 0",
        "pilot_push_triggers{type=\"config\"} 0",
        "pilot_inbound_updates{type=\"svcdelete\"} 0",
        "pilot_conflict_inbound_listener 0",
        "pilot_conflict_outbound_listener_http_over_https 0",
        "pilot_services 0",
        "pilot_virt_services 0",
        "# TYPE pilot_xds_push_time histogram",
        "pilot_xds_push_time_bucket{type=\"rds\",le=\"0.01\"} 0",
        "pilot_xds_push_time_bucket{type=\"rds\",le=\"30\"} 0",
        "pilot_xds_config_size_bytes_bucket{type=\"cds\",le=\"40000000\"} 0",
        "pilot_pushcontext_init_seconds_bucket{le=\"0.5\"} 0",
        "pilot_proxy_convergence_time_bucket{le=\"+Inf\"} 0",
        "pilot_debounce_time_count 0",
        "pilot_xds_send_time_sum 0",
        "# TYPE pilot_xds gauge",
        "# TYPE pilot_k8s_cfg_events counter",
        "# TYPE galley_validation_failed counter",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_max_fds gauge",
    ] {
        assert!(l.contains(&want), "no {want:?} in\n{text}");
    }
    // istiod's exporter adds no `_total` to its counters.
    assert!(
        !l.iter().any(|l| l.starts_with("pilot_")
            && l.contains("_total ")
            && !l.starts_with("pilot_total_")),
        "{text}"
    );
}

#[test]
fn events_count_under_their_kind_registry_and_trigger() {
    let m = Pilot::new();
    m.config_event(ConfigKind::VirtualService, Change::Add);
    m.config_event(ConfigKind::VirtualService, Change::Add);
    m.config_event(ConfigKind::ServiceEntry, Change::Delete);
    m.config_event(ConfigKind::WorkloadEntry, Change::Update);
    m.config_event(ConfigKind::Service, Change::Add);
    // Not configuration, not the registry: not counted.
    m.config_event(ConfigKind::ConfigMap, Change::Add);
    m.validated(ConfigKind::VirtualService, "networking.istio.io/v1", true);
    m.validated(
        ConfigKind::AuthorizationPolicy,
        "security.istio.io/v1beta1",
        false,
    );
    m.validated(ConfigKind::Service, "v1", true);
    let text = m.render();
    let l = lines(&text);
    for want in [
        "pilot_k8s_cfg_events{type=\"VirtualService\",event=\"add\"} 2",
        "pilot_k8s_cfg_events{type=\"ServiceEntry\",event=\"delete\"} 1",
        "pilot_k8s_cfg_events{type=\"WorkloadEntry\",event=\"update\"} 1",
        "pilot_k8s_reg_events{type=\"Services\",event=\"add\"} 1",
        "pilot_inbound_updates{type=\"config\"} 2",
        "pilot_inbound_updates{type=\"eds\"} 1",
        "pilot_inbound_updates{type=\"svc\"} 1",
        "pilot_inbound_updates{type=\"svcdelete\"} 1",
        "pilot_push_triggers{type=\"config\"} 2",
        "pilot_push_triggers{type=\"service\"} 2",
        "pilot_push_triggers{type=\"endpoint\"} 1",
        "galley_validation_passed{group=\"networking.istio.io\",version=\"v1\",resource=\"virtualservices\"} 1",
        "galley_validation_failed{group=\"security.istio.io\",version=\"v1beta1\",resource=\"authorizationpolicies\",reason=\"invalid_resource\"} 1",
    ] {
        assert!(l.contains(&want), "no {want:?} in\n{text}");
    }
    assert!(!text.contains("ConfigMap"), "{text}");
    assert!(!text.contains("resource=\"services\""), "{text}");
    assert_eq!(
        l.iter()
            .filter(|l| l.starts_with("galley_validation_passed{"))
            .count(),
        1
    );
}

#[test]
fn connected_proxies_are_counted_by_version() {
    use envoy_types::pb::google::protobuf::{value::Kind as V, Struct, Value};
    let m = Pilot::new();
    let bare = Node::default();
    let versioned = Node {
        metadata: Some(Struct {
            fields: [(
                "ISTIO_VERSION".to_string(),
                Value {
                    kind: Some(V::StringValue("1.24.2".into())),
                },
            )]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    };
    let a = m.connected(&bare);
    a.inc();
    m.connected(&bare).inc();
    m.connected(&versioned).inc();
    a.dec();
    let text = m.render();
    assert!(
        text.contains("pilot_xds{version=\"unknown\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("pilot_xds{version=\"1.24.2\"} 1\n"), "{text}");
    assert_eq!(resource_name(ConfigKind::Telemetry), "telemetries");
    assert_eq!(resource_name(ConfigKind::Gateway), "gateways");
}
