use crate::route::RedirectResponseCode;
use crate::{parse_bootstrap, ConfigError, TypedConfig};

const BASIC: &str = include_str!("../tests/bootstraps/basic.yaml");
const DYNAMIC: &str = include_str!("../tests/bootstraps/dynamic.yaml");

#[test]
fn reads_dynamic_resources() {
    let b = parse_bootstrap("dynamic.yaml", DYNAMIC).expect("valid");
    let d = b.dynamic_resources.as_ref().unwrap();
    let ads = d.ads_config.as_ref().unwrap();
    assert_eq!(ads.cluster(), Some("xds-grpc"));
    assert!(!ads.delta());
    assert_eq!(d.lds_config.as_ref().unwrap().initial_fetch_timeout(), None);
    assert_eq!(
        d.cds_config.as_ref().unwrap().initial_fetch_timeout(),
        Some(std::time::Duration::from_secs(15))
    );
    let eds = b.static_resources.clusters[1]
        .eds_cluster_config
        .as_ref()
        .unwrap();
    assert_eq!(eds.service_name.as_deref(), Some("outbound|9080||backends"));
}

#[test]
fn dynamic_sources_other_than_ads_are_named() {
    let cases = [
        (
            DYNAMIC.replace("api_type: GRPC", "api_type: REST"),
            "dynamic_resources.ads_config.api_type",
            "ADS is GRPC or DELTA_GRPC",
        ),
        (
            DYNAMIC.replace("cluster_name: xds-grpc}", "cluster_name: nowhere}"),
            "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name",
            "unknown cluster \"nowhere\"",
        ),
        (
            DYNAMIC.replace("lds_config: {ads: {},", "lds_config: {path: /etc/lds.yaml,"),
            "dynamic_resources.lds_config.path",
            "come over ADS",
        ),
        (
            DYNAMIC.replace("          rds: {", "          route_config: {}\n          rds: {"),
            "filters[0].typed_config",
            "sets route_config and rds",
        ),
        (
            DYNAMIC.replace("type: EDS\n", "type: STATIC\n"),
            "static_resources.clusters[1].eds_cluster_config",
            "only valid on EDS clusters",
        ),
        (
            DYNAMIC.replace(
                "eds_cluster_config: {service_name: \"outbound|9080||backends\", eds_config: {ads: {}, resource_api_version: V3}}",
                "eds_cluster_config: {}",
            ),
            "static_resources.clusters[1].eds_cluster_config.eds_config",
            "needs eds_config",
        ),
    ];
    for (text, field, message) in cases {
        let (f, _, m) = error(&text);
        assert!(f.ends_with(field), "{f} does not end with {field} ({m})");
        assert!(m.contains(message), "{m:?} lacks {message:?}");
    }
    // Without ads_config, an RDS listener has nowhere to get routes from.
    let start = DYNAMIC.find("dynamic_resources:").unwrap();
    let end = DYNAMIC.find("static_resources:").unwrap();
    let text = format!("{}{}", &DYNAMIC[..start], &DYNAMIC[end..]);
    let (f, _, m) = error(&text);
    assert_eq!(f, "dynamic_resources.ads_config");
    assert!(m.contains("needs dynamic_resources.ads_config"), "{m}");
}

#[test]
fn reads_a_bootstrap_in_either_spelling() {
    let b = parse_bootstrap("basic.yaml", BASIC).expect("valid");
    assert_eq!(b.static_resources.listeners.len(), 2);
    let cb = &b.static_resources.clusters[1];
    assert_eq!(cb.connect_timeout.unwrap().0.as_millis(), 250);
    assert_eq!(
        cb.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints[0]
            .endpoint
            .address
            .to_string(),
        "127.0.0.1:18082"
    );
    let TypedConfig::HttpConnectionManager(hcm) =
        &b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    else {
        panic!("expected an HCM");
    };
    let routes = &hcm.route_config.as_ref().unwrap().virtual_hosts[0].routes;
    assert_eq!(routes.len(), 5);
    assert_eq!(
        routes[2].redirect.as_ref().unwrap().response_code,
        RedirectResponseCode::FOUND
    );
}

fn error(text: &str) -> (String, u32, String) {
    match parse_bootstrap("t.yaml", text) {
        Err(ConfigError::Field {
            field,
            line,
            message,
            ..
        }) => (field, line, message),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn unknown_fields_are_named_with_their_path_and_line_even_inside_typed_config() {
    let bad = BASIC.replace("domains: [\"*\"]", "domainz: [\"*\"]");
    let (field, line, message) = error(&bad);
    assert_eq!(
        field,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].domainz"
    );
    assert_eq!(line, 21);
    assert!(message.contains("unknown field `domainz`"), "{message}");
}

#[test]
fn unimplemented_things_are_errors_not_ignored() {
    let cases = [
        (
            BASIC.replace(
                "lb_policy: ROUND_ROBIN",
                "lb_policy: RING_HASH\n    ring_hash_lb_config: {hash_function: MURMUR_HASH_2}",
            ),
            "static_resources.clusters[0].ring_hash_lb_config.hash_function",
            "MURMUR_HASH_2 is not implemented",
        ),
        (
            BASIC.replace(
                "envoy.extensions.filters.http.router.v3.Router",
                "envoy.extensions.filters.http.lua.v3.Lua",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config",
            "Lua: not implemented by weft",
        ),
        (
            BASIC.replace("route: {cluster: a, timeout: 5s}", "route: {cluster: a, max_grpc_timeout: 1s}"),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].route.max_grpc_timeout",
            "unknown field",
        ),
        (
            BASIC.replace(
                "route: {cluster: a, timeout: 5s}",
                "route: {cluster: a, retry_policy: {retry_on: 'reset-before-request'}}",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].route.retry_policy.retry_on",
            "reset-before-request is not implemented",
        ),
        (
            BASIC.replace(
                "route: {cluster: a, timeout: 5s}",
                "route: {cluster: a, retry_policy: {retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}]}}",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].route.retry_policy.retry_host_predicate[0].typed_config",
            "the only host predicate weft implements",
        ),
        (
            BASIC.replace(
                "route: {cluster: a, timeout: 5s}",
                "route: {cluster: a, retry_policy: {retry_back_off: {base_interval: 1s, max_interval: 0.5s}}}",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].route.retry_policy.retry_back_off.max_interval",
            "must not be less than base_interval",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.fault\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, response_rate_limit: {fixed_limit: {limit_kbps: 1}}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.response_rate_limit",
            "not implemented by weft",
        ),
        (
            BASIC.replace(
                "route: {cluster: a, timeout: 5s}",
                "route: {cluster: a}\n                typed_per_filter_config: {envoy.filters.http.fault: {'@type': type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 100}}}",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].typed_per_filter_config.envoy.filters.http.fault.abort.http_status",
            "out of range",
        ),
        (
            BASIC.replace(
                "route: {cluster: a, timeout: 5s}",
                "route: {cluster: a}\n                typed_per_filter_config: {envoy.filters.http.cors: {'@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_origin_string_match: [{exact: a, prefix: b}]}}",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].typed_per_filter_config.envoy.filters.http.cors.allow_origin_string_match[0]",
            "only one of exact, prefix",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.rbac\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, shadow_matcher: {}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.shadow_matcher",
            "not implemented by weft: the matcher-tree form",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.rbac\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {policies: {onlyGet: {permissions: [{any: true, destination_port: 80}], principals: [{any: true}]}}}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies.onlyGet.permissions[0]",
            "sets any and destination_port",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.rbac\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {policies: {p: {permissions: [{any: true}], principals: [{sourced_metadata: {metadata_source: ROUTE, metadata_matcher: {filter: f, path: [{key: k}], value: {present_match: true}}}}]}}}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies.p.principals[0].sourced_metadata.metadata_source",
            "ROUTE",
        ),
        (
            BASIC.replace(
                "    - filters:\n      - name: envoy.filters.network.http_connection_manager\n",
                "    - filters:\n      - name: envoy.filters.network.rbac\n        typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, rules: {}}\n      - name: envoy.filters.network.http_connection_manager\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix",
            "required",
        ),
        (
            BASIC.replace(
                "    - filters:\n      - name: envoy.filters.network.http_connection_manager\n",
                "    - filters:\n      - name: envoy.filters.network.rbac\n        typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: n, rules: {policies: {p: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: 10.0.0.0, prefix_len: 33}}]}}}}\n      - name: envoy.filters.network.http_connection_manager\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.rules.policies.p.principals[0].remote_ip.prefix_len",
            "out of range",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.jwt_authn\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: {p: {issuer: i, remote_jwks: {http_uri: {uri: 'https://x/jwks', cluster: a, timeout: 1s}}}}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.providers.p.remote_jwks",
            "not implemented by weft: keys fetched from a URI",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.jwt_authn\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, providers: {p: {issuer: i, local_jwks: {inline_string: '{\"keys\":[]}'}}}, rules: [{match: {prefix: /}, requires: {provider_name: q}}]}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules[0].requires.provider_name",
            "no provider named \"q\"",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.ext_authz\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: {server_uri: {uri: 'http://a', cluster: a, timeout: 1s}}, with_request_body: {max_request_bytes: 10}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.with_request_body",
            "not implemented by weft: the request body in the check",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.ext_authz\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, http_service: {server_uri: {uri: 'http://a', cluster: a}}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.http_service.server_uri.timeout",
            "required",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.ext_authz\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, grpc_service: {google_grpc: {target_uri: x, stat_prefix: y}}}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.grpc_service.google_grpc",
            "not implemented by weft: Google gRPC",
        ),
        (
            BASIC.replace(
                "          - name: envoy.filters.http.router\n",
                "          - name: envoy.filters.http.ext_authz\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, grpc_service: {envoy_grpc: {cluster_name: a}}, shadow_mode: true}\n          - name: envoy.filters.http.router\n",
            ),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.shadow_mode",
            "not implemented by weft: shadow mode",
        ),
    ];
    for (text, want_field, want_message) in cases {
        let (field, _, message) = error(&text);
        assert_eq!(field, want_field);
        assert!(message.contains(want_message), "{message}");
    }
}

#[test]
fn semantic_rules() {
    let cases = [
        (
            BASIC.replace(
                "route: {cluster: b, prefix_rewrite: /}",
                "route: {cluster: c}",
            ),
            "routes[0].route.cluster",
            "unknown cluster \"c\"",
        ),
        (
            BASIC.replace("match: {path: /old}", "match: {path: /old, prefix: /o}"),
            "routes[2].match",
            "sets prefix and path",
        ),
        (
            BASIC.replace("^/r/[0-9]+$", "^/r/(?P<x"),
            "routes[1].match.safe_regex.regex",
            "invalid regex",
        ),
        (
            BASIC.replace("port_value: 18081", "port_value: 70000"),
            "lb_endpoints[1].endpoint.address.socket_address.port_value",
            "out of range",
        ),
        (
            BASIC.replace("connect_timeout: 1s", "connect_timeout: 1"),
            "static_resources.clusters[0].connect_timeout",
            "expected a string",
        ),
        (
            BASIC.replace("connect_timeout: 1s", "connect_timeout: 1m"),
            "static_resources.clusters[0].connect_timeout",
            "invalid duration",
        ),
        (
            BASIC.replace(
                "{name: a, weight: 80}, {name: b, weight: 20}",
                "{name: a, weight: 0}",
            ),
            "routes[1].route.weighted_clusters",
            "weight above 0",
        ),
        (
            BASIC.replace("name: tcp\n", "name: ingress\n"),
            "static_resources.listeners[1].name",
            "duplicate listener name",
        ),
        (
            BASIC.replace("lb_policy: ROUND_ROBIN", "lb_policy: CLUSTER_PROVIDED"),
            "static_resources.clusters[0].lb_policy",
            "only valid for ORIGINAL_DST",
        ),
        (
            BASIC.replace("type: STATIC", "type: ORIGINAL_DST"),
            "static_resources.clusters[0].lb_policy",
            "must be CLUSTER_PROVIDED",
        ),
        (
            BASIC
                .replace("type: STATIC", "type: ORIGINAL_DST")
                .replace("lb_policy: ROUND_ROBIN", "lb_policy: CLUSTER_PROVIDED"),
            "static_resources.clusters[0].load_assignment",
            "take no endpoints",
        ),
    ];
    for (text, want_field, want_message) in cases {
        let (field, _, message) = error(&text);
        assert!(
            field.ends_with(want_field),
            "{field} should end with {want_field}"
        );
        assert!(message.contains(want_message), "{message}");
    }
}

#[test]
fn syntax_errors_and_empty_files() {
    assert!(matches!(
        parse_bootstrap("t.yaml", "static_resources: [\n"),
        Err(ConfigError::Syntax { .. })
    ));
    assert!(matches!(
        parse_bootstrap("t.yaml", ""),
        Err(ConfigError::Syntax { .. })
    ));
}

const TLS_BOOT: &str = r#"
static_resources:
  secrets:
  - {name: default, tls_certificate: {certificate_chain: {filename: /c.pem}, private_key: {filename: /k.pem}}}
  - {name: ROOTCA, validation_context: {trusted_ca: {filename: /ca.pem}}}
  clusters:
  - name: c
    transport_socket_matches:
    - name: tlsMode-istio
      match: {tlsMode: istio}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: outbound_.9080_._.b.default.svc.cluster.local
          common_tls_context:
            alpnProtocols: [istio-peer-exchange, istio]
            tls_certificate_sds_secret_configs: [{name: default}]
            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: "spiffe://cluster.local/ns/default/sa/b"}}]
              validation_context_sds_secret_config: {name: ROOTCA}
    - name: tlsMode-disabled
      match: {}
      transport_socket: {name: envoy.transport_sockets.raw_buffer}
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: {tls_minimum_protocol_version: TLSv1_2, cipher_suites: ["[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]"]}
            tls_certificates: [{certificate_chain: {inline_string: x}, private_key: {inline_bytes: eA==}}]
            validation_context: {trusted_ca: {filename: /ca.pem}}
      filters:
      - name: t
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}
"#;

#[test]
fn reads_tls_contexts_secrets_and_transport_socket_matches() {
    let b = parse_bootstrap("tls.yaml", TLS_BOOT).expect("valid");
    assert_eq!(b.static_resources.secrets.len(), 2);
    let c = &b.static_resources.clusters[0];
    assert_eq!(c.transport_socket_matches.len(), 2);
    let Some(TypedConfig::UpstreamTlsContext(u)) = &c.transport_socket_matches[0]
        .transport_socket
        .as_ref()
        .unwrap()
        .typed_config
    else {
        panic!("an upstream TLS context");
    };
    let common = u.common_tls_context.as_ref().unwrap();
    assert_eq!(common.alpn_protocols, ["istio-peer-exchange", "istio"]);
    assert_eq!(common.validation_secret().unwrap().name, "ROOTCA");
    assert_eq!(
        common
            .inline_validation()
            .unwrap()
            .match_typed_subject_alt_names[0]
            .san_type,
        crate::tls::SanType::URI
    );
}

#[test]
fn unimplemented_tls_fields_are_named() {
    let up =
        "static_resources.clusters[0].transport_socket_matches[0].transport_socket.typed_config";
    let down = "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config";
    let cases = [
        (
            TLS_BOOT.replace("sni: outbound", "allow_renegotiation: true\n          sni: outbound"),
            format!("{up}.allow_renegotiation"),
        ),
        (
            TLS_BOOT.replace(
                "[{name: default}]",
                "[{name: default, sds_config: {api_config_source: {api_type: REST}}}]",
            ),
            format!("{up}.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.api_config_source.api_type"),
        ),
        // SDS comes over ADS: a bootstrap without ADS cannot use it.
        (
            TLS_BOOT.replace("[{name: default}]", "[{name: default, sds_config: {ads: {}}}]"),
            "dynamic_resources.ads_config".to_string(),
        ),
        (
            TLS_BOOT.replace("require_client_certificate: true", "require_sni: true"),
            format!("{down}.require_sni"),
        ),
        (
            TLS_BOOT.replace("{trusted_ca: {filename: /ca.pem}}\n", "{trusted_ca: {filename: /ca.pem}, crl: {filename: /crl}}\n"),
            format!("{down}.common_tls_context.validation_context.crl"),
        ),
        (
            TLS_BOOT.replace("private_key: {inline_bytes: eA==}", "private_key: {inline_bytes: eA==}, password: {inline_string: p}"),
            format!("{down}.common_tls_context.tls_certificates[0].password"),
        ),
        (
            TLS_BOOT.replace("{name: ROOTCA, validation_context", "{name: ROOTCA, tls_certificate: {certificate_chain: {filename: /c}, private_key: {filename: /k}}, validation_context"),
            "static_resources.secrets[1]".to_string(),
        ),
        (
            TLS_BOOT.replace(
                "DownstreamTlsContext\n          require_client_certificate: true",
                "UpstreamTlsContext",
            ),
            down.to_string(),
        ),
    ];
    for (text, field) in cases {
        assert!(text != TLS_BOOT, "{field}: the replacement did not apply");
        let (got, _, message) = error(&text);
        assert_eq!(got, field, "{message}");
    }
}

#[test]
fn access_logs_are_typed_and_their_formats_checked() {
    let with_log = |log: &str| {
        BASIC.replace(
            "          stat_prefix: ingress\n",
            &format!("          stat_prefix: ingress\n          access_log:\n          - name: l\n            typed_config: {log}\n"),
        )
    };
    let file = "{'@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: /dev/null, log_format: {json_format: {code: '%RESPONSE_CODE%', n: {m: '%REQ(:METHOD)%'}}, json_format_options: {sort_properties: true}, omit_empty_values: true}}";
    let b = parse_bootstrap("t.yaml", &with_log(file)).expect("valid");
    let TypedConfig::HttpConnectionManager(h) =
        &b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    else {
        panic!("an HCM");
    };
    let Some(TypedConfig::FileAccessLog(f)) = &h.access_log[0].typed_config else {
        panic!("a file access log");
    };
    let l = f.log_format.as_ref().unwrap();
    assert!(l.omit_empty_values && l.json_format_options.as_ref().unwrap().sort_properties);
    assert_eq!(l.json_format.as_ref().unwrap()["code"], "%RESPONSE_CODE%");
    let cases = [
        (
            "{'@type': type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog, log_format: {text_format: x, json_format: {}}}",
            "access_log[0].typed_config.log_format",
            "sets text_format and json_format",
        ),
        (
            "{'@type': type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog, log_format: {text_format_source: {filename: /x}}}",
            "access_log[0].typed_config.log_format.text_format_source.filename",
            "not implemented",
        ),
        (
            "{'@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: /x, format: a, log_format: {text_format: b}}",
            "access_log[0].typed_config",
            "sets format and log_format",
        ),
        (
            "{'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}",
            "access_log[0].typed_config",
            "not an access logger",
        ),
        (
            "{'@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: /x, log_format: {text_format: a, omit_empty: true}}",
            "access_log[0].typed_config.log_format.omit_empty",
            "unknown field",
        ),
    ];
    for (log, want_field, want_message) in cases {
        let (field, _, message) = error(&with_log(log));
        assert!(
            field.ends_with(want_field),
            "{field} should end with {want_field}"
        );
        assert!(message.contains(want_message), "{message}");
    }
}
