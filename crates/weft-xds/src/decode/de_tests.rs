//! The direct read (`de`) against the JSON form, resource by resource:
//! the same model or the same error, and never a refusal of something
//! the JSON form takes. Each resource is written to touch a kind of
//! value: wrappers, durations, 64-bit integers, enums, floats, bytes,
//! maps of `Any`s, empty messages, Struct data.

use std::collections::HashSet;

use super::tests::encode;
use super::*;

/// What both ways gave: the model's `Debug` form or the error.
fn both(kind: Kind, json: &str, clusters: &[&str]) -> String {
    let clusters: HashSet<&str> = clusters.iter().copied().collect();
    compare_decoders(&kind.type_url(), &encode(kind, json), &clusters)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Taken, and the same both ways.
fn same(kind: Kind, json: &str, clusters: &[&str]) {
    let got = both(kind, json, clusters);
    assert!(!got.starts_with("error at "), "refused both ways: {got}");
}

/// Refused both ways, with the same error.
fn refused(kind: Kind, json: &str, clusters: &[&str], error: &str) {
    let got = both(kind, json, clusters);
    assert!(got.starts_with("error at ") && got.contains(error), "{got}");
}

#[test]
fn clusters_read_the_same_both_ways() {
    same(
        Kind::Cluster,
        r#"{"name": "c", "type": "STRICT_DNS", "lbPolicy": "RING_HASH", "connectTimeout": "0.250s",
          "dnsLookupFamily": "V4_ONLY", "respectDnsTtl": true, "dnsRefreshRate": "5s",
          "perConnectionBufferLimitBytes": 32768,
          "ringHashLbConfig": {"minimumRingSize": "1024", "maximumRingSize": "4096", "hashFunction": "XX_HASH"},
          "commonLbConfig": {"healthyPanicThreshold": {"value": 25.5}},
          "circuitBreakers": {"thresholds": [{"priority": "HIGH", "maxConnections": 1, "maxPendingRequests": 0,
            "maxRequests": 4294967295, "maxRetries": 3, "trackRemaining": true}]},
          "outlierDetection": {"consecutive5xx": 3, "interval": "0.010s", "baseEjectionTime": "30s",
            "maxEjectionPercent": 100, "enforcingConsecutive5xx": 0, "splitExternalLocalOriginErrors": true,
            "consecutiveLocalOriginFailure": 2, "maxEjectionTimeJitter": "0s"},
          "typedExtensionProtocolOptions": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicitHttpConfig": {"http2ProtocolOptions": {"maxConcurrentStreams": 100}}}},
          "loadAssignment": {"clusterName": "c", "endpoints": [{"priority": 1, "loadBalancingWeight": 7,
            "locality": {"region": "r", "zone": "z", "subZone": "s"},
            "lbEndpoints": [{"endpoint": {"hostname": "h", "address": {"socketAddress":
              {"address": "backend.example", "portValue": 80}}}, "healthStatus": "DRAINING",
              "loadBalancingWeight": 2}]}]}}"#,
        &[],
    );
    same(
        Kind::Cluster,
        r#"{"name": "eds", "type": "EDS", "edsClusterConfig": {"edsConfig": {"ads": {},
          "resourceApiVersion": "V3", "initialFetchTimeout": "0s"}}, "lbPolicy": "MAGLEV",
          "maglevLbConfig": {"tableSize": "65537"}}"#,
        &[],
    );
    same(
        Kind::Cluster,
        r#"{"name": "pass", "type": "ORIGINAL_DST", "lbPolicy": "CLUSTER_PROVIDED",
          "cleanupInterval": "1.5s", "originalDstLbConfig": {"useHttpHeader": true, "httpHeaderName": "x-dst",
          "upstreamPortOverride": 8080}}"#,
        &[],
    );
}

#[test]
fn endpoints_read_the_same_both_ways() {
    same(
        Kind::ClusterLoadAssignment,
        r#"{"clusterName": "outbound|9080||reviews.default.svc.cluster.local", "endpoints": [
          {"locality": {"region": "us"}, "lbEndpoints": [
            {"endpoint": {"address": {"socketAddress": {"address": "10.0.0.1", "portValue": 9080}}},
             "healthStatus": "HEALTHY", "loadBalancingWeight": 1},
            {"endpoint": {"address": {"socketAddress": {"address": "::1", "portValue": 9080, "protocol": "TCP"}}}}],
           "loadBalancingWeight": 3, "priority": 2}]}"#,
        &[],
    );
}

const ROUTES: &str = r#"{"name": "80", "validateClusters": true,
  "requestHeadersToAdd": [{"header": {"key": "x-rc", "value": "1"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}],
  "responseHeadersToRemove": ["server"],
  "virtualHosts": [
  {"name": "a", "domains": ["a.example", "a.example:80", "*.b", "c*", "*"],
   "requestHeadersToAdd": [{"header": {"key": "x-vh", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}, "append": false}],
   "typedPerFilterConfig": {"envoy.filters.http.cors": {
     "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
     "allowOriginStringMatch": [{"exact": "https://x.example"}, {"safeRegex": {"regex": ".*\\.y\\.example"}}],
     "allowMethods": "GET,POST", "maxAge": "60", "allowCredentials": true}},
   "routes": [
    {"name": "exact", "match": {"path": "/p", "caseSensitive": false,
       "headers": [{"name": "x-h", "stringMatch": {"prefix": "v", "ignoreCase": true}, "invertMatch": true},
                   {"name": "x-present", "presentMatch": true},
                   {"name": "x-re", "safeRegexMatch": {"googleRe2": {}, "regex": "^a+$"}}],
       "queryParameters": [{"name": "q", "stringMatch": {"exact": "1"}}, {"name": "flag", "presentMatch": true}],
       "runtimeFraction": {"defaultValue": {"numerator": 30, "denominator": "TEN_THOUSAND"}, "runtimeKey": "k"}},
     "route": {"cluster": "c1", "timeout": "0s", "idleTimeout": "2.5s", "prefixRewrite": "/q",
       "retryPolicy": {"retryOn": "5xx,retriable-status-codes", "numRetries": 2, "perTryTimeout": "0.100s",
         "retriableStatusCodes": [409, 418], "hostSelectionRetryMaxAttempts": "5",
         "retryBackOff": {"baseInterval": "0.025s", "maxInterval": "0.250s"},
         "retryHostPredicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typedConfig": {
           "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}]},
       "hashPolicy": [{"header": {"headerName": "x-user"}}, {"cookie": {"name": "s", "ttl": "3600s", "path": "/"}, "terminal": true},
         {"connectionProperties": {"sourceIp": true}}, {"queryParameter": {"name": "u"}}],
       "requestMirrorPolicies": [{"cluster": "c2", "runtimeFraction": {"defaultValue": {"numerator": 50}}}],
       "maxStreamDuration": {"grpcTimeoutHeaderMax": "0s"},
       "upgradeConfigs": [{"upgradeType": "websocket"}]}},
    {"match": {"prefix": "/grpc", "grpc": {}}, "route": {"weightedClusters": {"clusters": [
       {"name": "c1", "weight": 30, "requestHeadersToAdd": [{"header": {"key": "x-w", "value": "1"}}]},
       {"name": "c2", "weight": 70}], "totalWeight": 100}, "regexRewrite": {"pattern": {"regex": "^/grpc/(.*)$"},
       "substitution": "/\\1"}, "autoHostRewrite": true}},
    {"match": {"safeRegex": {"regex": "/r/[0-9]+"}}, "redirect": {"schemeRedirect": "https", "hostRedirect": "h",
       "portRedirect": 8443, "prefixRewrite": "/n", "responseCode": "PERMANENT_REDIRECT", "stripQuery": true}},
    {"match": {"pathSeparatedPrefix": "/d"}, "directResponse": {"status": 503, "body": {"inlineBytes": "AAEC/w=="}},
       "responseHeadersToAdd": [{"header": {"key": "x-d", "value": "2"}, "keepEmptyValue": true}]},
    {"match": {"prefix": "/s"}, "directResponse": {"status": 200, "body": {"inlineString": "ok"}},
       "typedPerFilterConfig": {"envoy.filters.http.fault": {
         "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
         "delay": {"fixedDelay": "0.5s", "percentage": {"numerator": 10, "denominator": "HUNDRED"}},
         "abort": {"grpcStatus": 14, "percentage": {"numerator": 1, "denominator": "MILLION"}}}}},
    {"match": {"prefix": "/"}, "route": {"cluster": "c2", "hostRewriteLiteral": "h2"}}]}]}"#;

#[test]
fn route_tables_read_the_same_both_ways() {
    same(Kind::RouteConfiguration, ROUTES, &["c1", "c2"]);
    // The same table refused by its own check (validate_clusters): the
    // same error both ways.
    refused(
        Kind::RouteConfiguration,
        ROUTES,
        &["c1"],
        "unknown cluster \"c2\"",
    );
}

#[test]
fn listeners_read_the_same_both_ways() {
    same(Kind::Listener, super::tests::LISTENER, &["backend"]);
    same(
        Kind::Listener,
        r#"{"name": "virtualOutbound", "address": {"socketAddress": {"address": "0.0.0.0", "portValue": 15001}},
          "useOriginalDst": true, "trafficDirection": "OUTBOUND", "continueOnListenerFiltersTimeout": true,
          "listenerFiltersTimeout": "0s",
          "listenerFilters": [{"name": "envoy.filters.listener.tls_inspector", "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
          "filterChains": [{"filterChainMatch": {"destinationPort": 443, "serverNames": ["a.example"],
              "transportProtocol": "tls", "applicationProtocols": ["h2"],
              "prefixRanges": [{"addressPrefix": "10.0.0.0", "prefixLen": 8}]},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typedConfig": {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
              "statPrefix": "t", "cluster": "backend", "idleTimeout": "3600s"}}]}],
          "defaultFilterChain": {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typedConfig": {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
              "statPrefix": "p", "weightedClusters": {"clusters": [{"name": "backend", "weight": 1}]}}}]}}"#,
        &["backend"],
    );
}

#[test]
fn refusals_are_refusals_both_ways() {
    // An enum number no name is known for, a field the model does not
    // have, an extension weft does not implement.
    refused(
        Kind::Cluster,
        r#"{"name": "c", "lbPolicy": 99}"#,
        &[],
        "lb_policy",
    );
    refused(
        Kind::Cluster,
        r#"{"name": "c", "preconnectPolicy": {"perUpstreamPreconnectRatio": 2}}"#,
        &[],
        "preconnect_policy",
    );
    refused(
        Kind::Listener,
        &super::tests::LISTENER.replace(
            r#""httpFilters": ["#,
            r#""httpFilters": [{"name": "envoy.filters.http.fault", "typedConfig": {
              "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
              "responseRateLimit": {"fixedLimit": {"limitKbps": "1"}}}},"#,
        ),
        &["backend"],
        "response_rate_limit",
    );
    refused(
        Kind::RouteConfiguration,
        r#"{"name": "r", "virtualHosts": [{"name": "v", "domains": ["*"], "routes": [
          {"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "-1s"}}]}]}"#,
        &[],
        "timeout",
    );
}
