use http::HeaderMap;
use weft_envoy::route::RouteConfiguration;

use super::*;

fn table(yaml: &str) -> RouteTable {
    let boot = format!(
        r#"
static_resources:
  clusters:
  - {{name: a, type: STATIC}}
  - {{name: b, type: STATIC}}
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          http_filters: [{{name: r, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
          route_config:
{yaml}"#
    );
    let b = weft_envoy::parse_bootstrap("t.yaml", &boot).unwrap_or_else(|e| panic!("{e}"));
    let weft_envoy::TypedConfig::HttpConnectionManager(hcm) =
        &b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    else {
        unreachable!()
    };
    let rc: &RouteConfiguration = hcm.route_config.as_ref().unwrap();
    RouteTable::compile(rc, &crate::stats::Store::default(), None).unwrap()
}

fn cluster_of(t: &RouteTable, host: &str, path: &str, hdrs: &[(&str, &str)]) -> Option<String> {
    let mut h = HeaderMap::new();
    for (k, v) in hdrs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let vh = t.virtual_host(host)?;
    let r = vh.route(&RequestView {
        method: "GET",
        authority: host,
        scheme: "http",
        path_and_query: path,
        headers: &h,
    })?;
    match &r.action {
        Action::Forward(f) => Some(f.targets.pick().0.to_string()),
        Action::Redirect(_) => Some("redirect".into()),
        Action::Direct { status, .. } => Some(format!("direct {status}")),
    }
}

#[test]
fn domain_precedence_exact_suffix_prefix_any() {
    let t = table(
        r#"            virtual_hosts:
            - {name: exact, domains: [api.example.com], routes: [{match: {prefix: /}, direct_response: {status: 201}}]}
            - {name: suffix, domains: ["*.example.com"], routes: [{match: {prefix: /}, direct_response: {status: 202}}]}
            - {name: longer, domains: ["*.b.example.com"], routes: [{match: {prefix: /}, direct_response: {status: 203}}]}
            - {name: prefix, domains: ["api.*"], routes: [{match: {prefix: /}, direct_response: {status: 204}}]}
            - {name: port, domains: ["x.test:8080"], routes: [{match: {prefix: /}, direct_response: {status: 205}}]}
            - {name: any, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 206}}]}
"#,
    );
    let status = |host: &str| cluster_of(&t, host, "/", &[]).unwrap();
    assert_eq!(status("API.example.com"), "direct 201");
    assert_eq!(status("www.example.com"), "direct 202");
    assert_eq!(status("a.b.example.com"), "direct 203");
    assert_eq!(status("api.other.org"), "direct 204");
    assert_eq!(status("x.test:8080"), "direct 205");
    assert_eq!(status("x.test"), "direct 206");
    assert_eq!(status("example.com"), "direct 206");
}

#[test]
fn path_header_and_query_matching() {
    let t = table(
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {path: /exact, case_sensitive: false}
                route: {cluster: a}
              - match: {path_separated_prefix: /sep}
                direct_response: {status: 201}
              - match: {safe_regex: {regex: "/r/[0-9]+"}}
                direct_response: {status: 202}
              - match: {prefix: /h, headers: [{name: x-v, string_match: {prefix: be}}, {name: x-no, present_match: true, invert_match: true}]}
                direct_response: {status: 203}
              - match: {prefix: /q, query_parameters: [{name: u, string_match: {exact: jason}}]}
                direct_response: {status: 204}
              - match: {prefix: /g, grpc: {}}
                direct_response: {status: 205}
              - match: {prefix: /}
                route: {cluster: b}
"#,
    );
    let c = |p: &str, h: &[(&str, &str)]| cluster_of(&t, "h", p, h).unwrap();
    assert_eq!(c("/EXACT", &[]), "a");
    assert_eq!(c("/exact/more", &[]), "b");
    assert_eq!(c("/sep", &[]), "direct 201");
    assert_eq!(c("/sep/x?y", &[]), "direct 201");
    assert_eq!(c("/sepx", &[]), "b");
    assert_eq!(c("/r/12", &[]), "direct 202");
    assert_eq!(c("/r/12x", &[]), "b", "safe_regex matches the whole path");
    assert_eq!(
        c("/r/12?q=1", &[]),
        "direct 202",
        "query is not part of the path"
    );
    assert_eq!(c("/h", &[("x-v", "beta")]), "direct 203");
    assert_eq!(c("/h", &[("x-v", "beta"), ("x-no", "1")]), "b");
    assert_eq!(c("/h", &[]), "b");
    assert_eq!(c("/q?a=1&u=jason", &[]), "direct 204");
    assert_eq!(c("/q?u=jasonx", &[]), "b");
    assert_eq!(
        c("/g", &[("content-type", "application/grpc+proto")]),
        "direct 205"
    );
    assert_eq!(c("/g", &[("content-type", "text/plain")]), "b");
}

#[test]
fn weighted_clusters_follow_their_weights() {
    let t = table(
        r#"            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {weighted_clusters: {clusters: [{name: a, weight: 80}, {name: b, weight: 20}]}}
"#,
    );
    fastrand::seed(7);
    let n = 20_000;
    let a = (0..n)
        .filter(|_| cluster_of(&t, "h", "/", &[]).unwrap() == "a")
        .count();
    // Binomial(20000, 0.8): sd ≈ 57, so ±400 is about 7 sd.
    assert!((15_600..=16_400).contains(&a), "{a} of {n} went to a");
}

#[test]
fn a_new_table_keeps_the_compiled_hosts_it_shares_with_the_old_one() {
    let host = |name: &str, cluster: &str| {
        std::sync::Arc::new(cfg::VirtualHost {
            name: name.into(),
            domains: vec![name.into()],
            routes: vec![serde_json::from_value(serde_json::json!(
                {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
            ))
            .unwrap()],
            ..Default::default()
        })
    };
    let (a, b1, b2) = (host("a", "a"), host("b", "b"), host("b", "a"));
    let store = crate::stats::Store::default();
    let old_rc = RouteConfiguration {
        virtual_hosts: vec![a.clone(), b1],
        ..Default::default()
    };
    let old = RouteTable::compile(&old_rc, &store, None).unwrap();
    let new_rc = RouteConfiguration {
        virtual_hosts: vec![a, b2],
        ..Default::default()
    };
    let new = RouteTable::compile(&new_rc, &store, Some(&old)).unwrap();
    assert!(std::sync::Arc::ptr_eq(&old.hosts[0], &new.hosts[0]));
    assert!(!std::sync::Arc::ptr_eq(&old.hosts[1], &new.hosts[1]));
    assert_eq!(cluster_of(&new, "b", "/", &[]).as_deref(), Some("a"));
    assert_eq!(cluster_of(&new, "a", "/", &[]).as_deref(), Some("a"));
}

/// A table compiled again after one host changed shares the domain index
/// when no domain changed, and builds it again when one did.
#[test]
fn the_domain_index_is_shared_while_the_domains_stay() {
    use std::sync::Arc;
    let host = |name: &str, domains: &[&str], cluster: &str| {
        Arc::new(weft_envoy::route::VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![serde_json::from_value(serde_json::json!(
                {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
            ))
            .unwrap()],
            ..Default::default()
        })
    };
    let store = crate::stats::Store::default();
    let rc = |hosts: Vec<Arc<weft_envoy::route::VirtualHost>>| RouteConfiguration {
        virtual_hosts: hosts,
        ..Default::default()
    };
    let first_hosts = vec![
        host("x", &["x.test", "*.w.test"], "a"),
        host("y", &["Y.test"], "a"),
    ];
    let first = RouteTable::compile(&rc(first_hosts.clone()), &store, None).unwrap();
    let of = |t: &RouteTable, h: &str| t.virtual_host(h).map(|v| v.name.clone());
    assert_eq!(of(&first, "y.TEST").as_deref(), Some("y"));

    // `y` changed its route, not its domains: the index is shared.
    let second = RouteTable::compile(
        &rc(vec![first_hosts[0].clone(), host("y", &["Y.test"], "b")]),
        &store,
        Some(&first),
    )
    .unwrap();
    assert!(Arc::ptr_eq(&first.domains, &second.domains));
    assert_eq!(of(&second, "a.w.test").as_deref(), Some("x"));

    // `y` answers to another name now: built again.
    let third = RouteTable::compile(
        &rc(vec![first_hosts[0].clone(), host("y", &["z.test"], "b")]),
        &store,
        Some(&second),
    )
    .unwrap();
    assert!(!Arc::ptr_eq(&second.domains, &third.domains));
    assert_eq!(of(&third, "y.test"), None);
    assert_eq!(of(&third, "z.test").as_deref(), Some("y"));

    // A host added at the end: built again, duplicates still refused.
    let dup = RouteTable::compile(
        &rc(vec![
            first_hosts[0].clone(),
            host("y", &["z.test"], "b"),
            host("z", &["Z.TEST"], "a"),
        ]),
        &store,
        Some(&third),
    );
    assert!(dup
        .err()
        .unwrap()
        .contains("\"z.test\" is used by another virtual host"));
}
