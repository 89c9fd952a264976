use crate::route::RedirectResponseCode;
use crate::{parse_bootstrap, ConfigError, TypedConfig};

const BASIC: &str = include_str!("../tests/bootstraps/basic.yaml");

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
            BASIC.replace("lb_policy: ROUND_ROBIN", "lb_policy: MAGLEV"),
            "static_resources.clusters[0].lb_policy",
            "MAGLEV is not implemented",
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
            BASIC.replace("route: {cluster: a, timeout: 5s}", "route: {cluster: a, hash_policy: []}"),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[4].route.hash_policy",
            "unknown field",
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
