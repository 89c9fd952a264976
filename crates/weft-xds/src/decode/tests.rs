//! Resources built the way a control plane sends them: JSON read by
//! prost-reflect against Envoy's descriptors, encoded to protobuf bytes.

use std::collections::{BTreeMap, HashSet};

use prost_reflect::{DynamicMessage, Value as PValue};

use super::*;

pub(super) fn encode(kind: Kind, json: &str) -> Vec<u8> {
    let desc = POOL.get_message_by_name(kind.message()).unwrap();
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(desc, &mut de).expect("test JSON is a valid message");
    prost_reflect::prost::Message::encode_to_vec(&msg)
}

fn decode_ok(kind: Kind, json: &str, clusters: &[&str]) -> Resource {
    let clusters: HashSet<&str> = clusters.iter().copied().collect();
    match decode(&kind.type_url(), &encode(kind, json), &clusters) {
        Ok((_, r)) => r,
        Err(e) => panic!("{e}"),
    }
}

fn decode_err(kind: Kind, json: &str, clusters: &[&str]) -> DecodeError {
    let clusters: HashSet<&str> = clusters.iter().copied().collect();
    decode(&kind.type_url(), &encode(kind, json), &clusters).expect_err("must be refused")
}

pub(super) const LISTENER: &str = r#"{
  "name": "http",
  "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 8080}},
  "filterChains": [{"filters": [{
    "name": "envoy.filters.network.http_connection_manager",
    "typedConfig": {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "statPrefix": "in",
      "routeConfig": {"virtualHosts": [{"name": "all", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "1.500s"}}]}]},
      "httpFilters": [{"name": "envoy.filters.http.router", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    }}]}]
}"#;

#[test]
fn listener_with_inline_routes_round_trips() {
    let Resource::Listener(l) = decode_ok(Kind::Listener, LISTENER, &["backend"]) else {
        panic!("not a listener")
    };
    assert_eq!(l.name, "http");
    assert_eq!(
        l.address.socket_addr(),
        Some("127.0.0.1:8080".parse().unwrap())
    );
    let weft_envoy::TypedConfig::HttpConnectionManager(hcm) =
        &l.filter_chains[0].filters[0].typed_config
    else {
        panic!("not an HTTP connection manager")
    };
    let rc = hcm.route_config.as_ref().unwrap();
    assert_eq!(rc.virtual_hosts[0].domains, ["*"]);
    let json = serde_json::to_string(
        &to_json(
            &Kind::Listener.type_url(),
            &encode(Kind::Listener, LISTENER),
        )
        .unwrap()
        .2,
    )
    .unwrap();
    assert!(json.contains(r#""timeout":"1.500s""#), "{json}");
}

#[test]
fn inline_routes_check_their_clusters() {
    let e = decode_err(Kind::Listener, LISTENER, &["other"]);
    let DecodeError::Field {
        kind,
        name,
        field,
        message,
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!((kind, name.as_str()), (Kind::Listener, "http"));
    assert_eq!(
        field,
        "filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster"
    );
    assert!(message.contains("unknown cluster \"backend\""), "{message}");
}

#[test]
fn rds_tables_check_clusters_only_when_asked() {
    let table = r#"{"name": "r", "virtualHosts": [{"name": "v", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "missing"}}]}]}"#;
    assert!(matches!(
        decode_ok(Kind::RouteConfiguration, table, &[]),
        Resource::RouteConfiguration(_)
    ));
    let validated = table.replacen('{', r#"{"validateClusters": true, "#, 1);
    let e = decode_err(Kind::RouteConfiguration, &validated, &[]);
    assert!(
        e.to_string()
            .contains("virtual_hosts[0].routes[0].route.cluster"),
        "{e}"
    );
}

#[test]
fn cluster_and_endpoints() {
    let c = r#"{"name": "backend", "type": "STATIC", "connectTimeout": "0.250s",
        "loadAssignment": {"clusterName": "backend", "endpoints": [{"lbEndpoints": [
          {"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 9000}}},
           "loadBalancingWeight": 3}]}]}}"#;
    let Resource::Cluster(c) = decode_ok(Kind::Cluster, c, &[]) else {
        panic!("not a cluster")
    };
    assert_eq!(
        c.connect_timeout.unwrap().0,
        std::time::Duration::from_millis(250)
    );
    let cla = r#"{"clusterName": "backend", "endpoints": [{"lbEndpoints": [
        {"endpoint": {"address": {"socketAddress": {"address": "10.0.0.1", "portValue": 80}}}}]}]}"#;
    let (name, r) = decode(
        &Kind::ClusterLoadAssignment.type_url(),
        &encode(Kind::ClusterLoadAssignment, cla),
        &HashSet::new(),
    )
    .unwrap();
    assert_eq!(name, "backend");
    let Resource::ClusterLoadAssignment(cla) = r else {
        panic!("not endpoints")
    };
    assert_eq!(cla.endpoints[0].lb_endpoints.len(), 1);
}

#[test]
fn a_field_weft_does_not_implement_is_named() {
    let with_limit = LISTENER.replacen('{', r#"{"perConnectionBufferLimitBytes": 1024, "#, 1);
    // Accepted by the model or refused by name: never silently dropped.
    match decode(
        &Kind::Listener.type_url(),
        &encode(Kind::Listener, &with_limit),
        &["backend"].into_iter().collect(),
    ) {
        Ok((_, Resource::Listener(l))) => {
            assert_eq!(l.per_connection_buffer_limit_bytes, Some(1024))
        }
        Ok(_) => panic!("not a listener"),
        Err(e) => assert!(
            e.to_string().contains("per_connection_buffer_limit_bytes"),
            "{e}"
        ),
    }
    let fault = LISTENER.replace(
        r#""httpFilters": ["#,
        r#""httpFilters": [{"name": "envoy.filters.http.fault", "typedConfig": {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
          "abort": {"httpStatus": 503, "percentage": {"numerator": 100}},
          "responseRateLimit": {"fixedLimit": {"limitKbps": "1"}}}},"#,
    );
    let e = decode_err(Kind::Listener, &fault, &["backend"]);
    assert!(
        e.to_string()
            .contains("http_filters[0].typed_config.response_rate_limit"),
        "{e}"
    );
}

#[test]
fn an_extension_type_weft_has_no_descriptor_for_is_refused_by_name() {
    // A control plane may send any extension; an Any whose type weft's
    // descriptors do not have cannot be read and must be refused.
    let any = POOL.get_message_by_name("google.protobuf.Any").unwrap();
    let mut filter = DynamicMessage::new(any);
    filter.set_field_by_name(
        "type_url",
        PValue::String("type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua".into()),
    );
    filter.set_field_by_name("value", PValue::Bytes(Default::default()));
    let desc = POOL.get_message_by_name(Kind::Listener.message()).unwrap();
    let mut de = serde_json::Deserializer::from_str(LISTENER);
    let mut l = DynamicMessage::deserialize(desc, &mut de).unwrap();
    // filter_chains[0].filters[0].typed_config = the unknown Any
    let mut chains = l.get_field_by_name("filter_chains").unwrap().into_owned();
    let PValue::List(chains_list) = &mut chains else {
        unreachable!()
    };
    let PValue::Message(chain) = &mut chains_list[0] else {
        unreachable!()
    };
    let mut filters = chain.get_field_by_name("filters").unwrap().into_owned();
    let PValue::List(fl) = &mut filters else {
        unreachable!()
    };
    let PValue::Message(f) = &mut fl[0] else {
        unreachable!()
    };
    f.set_field_by_name("typed_config", PValue::Message(filter));
    chain.set_field_by_name("filters", filters);
    l.set_field_by_name("filter_chains", chains);
    let bytes = prost_reflect::prost::Message::encode_to_vec(&l);
    let e = decode(&Kind::Listener.type_url(), &bytes, &HashSet::new()).expect_err("refused");
    assert!(matches!(e, DecodeError::Json { .. }), "{e:?}");
    assert!(e.to_string().contains("lua.v3.Lua"), "{e}");
}

#[test]
fn garbage_and_unknown_types_are_errors_not_panics() {
    let e = decode(
        &Kind::Cluster.type_url(),
        &[0xff, 0xff, 0xff],
        &HashSet::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::Protobuf {
                kind: Kind::Cluster,
                ..
            }
        ),
        "{e:?}"
    );
    let e = decode(
        "type.googleapis.com/envoy.config.core.v3.Node",
        &[],
        &HashSet::new(),
    )
    .unwrap_err();
    assert!(matches!(e, DecodeError::UnknownType(_)), "{e:?}");
    for seed in 0..200u32 {
        let bytes: Vec<u8> = (0..64)
            .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
            .collect();
        for kind in Kind::ALL {
            let _ = decode(&kind.type_url(), &bytes, &HashSet::new());
        }
    }
}

#[test]
fn type_urls_round_trip() {
    for kind in Kind::ALL {
        assert_eq!(Kind::from_type_url(&kind.type_url()), Some(kind));
        assert!(
            POOL.get_message_by_name(kind.message()).is_some(),
            "{kind:?}"
        );
    }
}

fn table(second: &str) -> String {
    format!(
        r#"{{"name": "big", "virtualHosts": [
          {{"name": "a", "domains": ["a"], "routes": [{{"match": {{"prefix": "/"}}, "route": {{"cluster": "a"}}}}]}},
          {{"name": "b", "domains": ["b"], "routes": [{{"match": {{"prefix": "/"}}, {second}}}]}},
          {{"name": "c", "domains": ["c"], "routes": [{{"match": {{"prefix": "/"}}, "route": {{"cluster": "c"}}}}]}}
        ], "responseHeadersToAdd": [{{"header": {{"key": "x-t", "value": "1"}}}}]}}"#
    )
}

fn hosts(r: &Resource) -> &[std::sync::Arc<weft_envoy::route::VirtualHost>] {
    match r {
        Resource::RouteConfiguration(rc) => &rc.virtual_hosts,
        other => panic!("not a route table: {other:?}"),
    }
}

#[test]
fn a_table_sent_again_decodes_only_the_hosts_that_changed() {
    let url = Kind::RouteConfiguration.type_url();
    let none = HashSet::new();
    let first = encode(
        Kind::RouteConfiguration,
        &table(r#""route": {"cluster": "b"}"#),
    );
    let (name, r1) = decode(&url, &first, &none).unwrap();
    let mut held = BTreeMap::new();
    held.insert(name, crate::ads::Held::for_test(r1.clone(), &first));
    let second = encode(
        Kind::RouteConfiguration,
        &table(r#""directResponse": {"status": 204}"#),
    );
    let (_, r2) = decode_against(&url, &second, &none, &held).unwrap();
    let (old, new) = (hosts(&r1), hosts(&r2));
    assert!(std::sync::Arc::ptr_eq(&old[0], &new[0]));
    assert!(!std::sync::Arc::ptr_eq(&old[1], &new[1]));
    assert!(std::sync::Arc::ptr_eq(&old[2], &new[2]));
    // The same table as a decode from nothing gives.
    let (_, whole) = decode(&url, &second, &none).unwrap();
    assert_eq!(format!("{whole:?}"), format!("{r2:?}"));
    assert!(format!("{r2:?}").contains("x-t"), "table-level fields kept");
    // A bad host is named with its place in the table.
    let bad = encode(
        Kind::RouteConfiguration,
        &table(r#""route": {"cluster": "b", "retryPolicy": {"retryOn": "reset-before-request"}}"#),
    );
    let e = decode_against(&url, &bad, &none, &held)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("virtual_hosts[1].routes[0].route.retry_policy.retry_on"),
        "{e}"
    );
    // And a table that asks for its clusters to exist is checked whole,
    // kept hosts included.
    let strict = encode(
        Kind::RouteConfiguration,
        &table(r#""route": {"cluster": "b"}"#).replace(
            r#""name": "big","#,
            r#""name": "big", "validateClusters": true,"#,
        ),
    );
    let e = decode_against(&url, &strict, &["b", "c"].into_iter().collect(), &held)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"a\""), "{e}");
}

#[test]
fn splitting_garbage_never_panics() {
    let mut seed = 7u64;
    for len in 0..300 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect();
        let _ = rds::split(&bytes);
        let _ = decode(
            &Kind::RouteConfiguration.type_url(),
            &bytes,
            &HashSet::new(),
        );
    }
}

#[test]
fn the_jwt_filter_decodes_over_xds() {
    let jwt = r#"{"name": "envoy.filters.http.jwt_authn", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"p": {"issuer": "i", "localJwks": {"inlineString": "{\"keys\":[]}"},
          "fromHeaders": [{"name": "x-t", "valuePrefix": "T "}], "payloadInMetadata": "payload",
          "clockSkewSeconds": 5}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requiresAny": {"requirements": [
          {"providerName": "p"}, {"allowMissing": {}}]}}}]}},
      "#;
    let json = LISTENER.replace(r#""httpFilters": ["#, &format!(r#""httpFilters": [{jwt}"#));
    let Resource::Listener(l) = decode_ok(Kind::Listener, &json, &["backend"]) else {
        panic!("not a listener")
    };
    let weft_envoy::TypedConfig::HttpConnectionManager(hcm) =
        &l.filter_chains[0].filters[0].typed_config
    else {
        panic!("not an HTTP connection manager")
    };
    let Some(weft_envoy::TypedConfig::JwtAuthn(j)) = &hcm.http_filters[0].typed_config else {
        panic!("not the JWT filter")
    };
    let p = &j.providers["p"];
    assert_eq!(p.from_headers[0].value_prefix, "T ");
    assert_eq!(p.clock_skew_seconds, Some(5));
    assert!(j.rules[0].requires.as_ref().unwrap().requires_any.is_some());
}

#[test]
fn the_ext_authz_filter_decodes_over_xds() {
    // As istiod writes a CUSTOM provider: gated on the RBAC filter's
    // shadow metadata; and a route that turns it off.
    let ext = r#"{"name": "envoy.filters.http.ext_authz", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "httpService": {"serverUri": {"uri": "http://authz.test", "cluster": "backend", "timeout": "0.5s"},
          "pathPrefix": "/check",
          "authorizationRequest": {"allowedHeaders": {"patterns": [{"exact": "x-allow", "ignoreCase": true}]},
            "headersToAdd": [{"key": "x-from", "value": "weft"}]},
          "authorizationResponse": {"allowedUpstreamHeaders": {"patterns": [{"prefix": "x-up"}]},
            "allowedClientHeaders": {"patterns": [{"exact": "x-down"}]}}},
        "failureModeAllow": true, "failureModeAllowHeaderAdd": true,
        "statusOnError": {"code": "ServiceUnavailable"},
        "filterEnabledMetadata": {"filter": "envoy.filters.http.rbac",
          "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
          "value": {"stringMatch": {"prefix": "istio-ext-authz"}}},
        "transportApiVersion": "V3"}},
      "#;
    let json = LISTENER.replace(r#""httpFilters": ["#, &format!(r#""httpFilters": [{ext}"#));
    let Resource::Listener(l) = decode_ok(Kind::Listener, &json, &["backend"]) else {
        panic!("not a listener")
    };
    let weft_envoy::TypedConfig::HttpConnectionManager(hcm) =
        &l.filter_chains[0].filters[0].typed_config
    else {
        panic!("not an HTTP connection manager")
    };
    let Some(weft_envoy::TypedConfig::ExtAuthz(e)) = &hcm.http_filters[0].typed_config else {
        panic!("not the ext_authz filter")
    };
    let h = e.http_service.as_ref().unwrap();
    assert_eq!(h.server_uri.as_ref().unwrap().cluster, "backend");
    assert_eq!(h.path_prefix, "/check");
    let req = h.authorization_request.as_ref().unwrap();
    assert!(req.allowed_headers.as_ref().unwrap().patterns[0].ignore_case);
    assert_eq!(req.headers_to_add[0].key, "x-from");
    assert!(e.failure_mode_allow && e.failure_mode_allow_header_add);
    assert_eq!(e.status_on_error.as_ref().unwrap().number(), Some(503));
    let m = e.filter_enabled_metadata.as_ref().unwrap();
    assert_eq!(m.filter, "envoy.filters.http.rbac");
    assert_eq!(e.transport_api_version, weft_envoy::xds::ApiVersion::V3);
}
