//! Each rule with an invalid example (and the valid twin where useful).

use super::*;
use crate::{load_str, LoadOptions};

fn violations(yaml: &str) -> Vec<Violation> {
    let loaded = load_str("t.yaml", yaml, &LoadOptions::default());
    assert!(loaded.issues.is_empty(), "load issues: {:?}", loaded.issues);
    assert_eq!(loaded.resources.len(), 1);
    validate(&loaded.resources[0].object)
}

fn vs(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n{spec}")
}
fn dr(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\nspec:\n{spec}")
}
fn kind(kind: &str, group: &str, spec: &str) -> String {
    format!("apiVersion: {group}\nkind: {kind}\nmetadata:\n  name: x\nspec:\n{spec}")
}

/// (document, field the error must name, words the message must contain)
fn cases() -> Vec<(String, &'static str, &'static str)> {
    let route = "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n";
    vec![
        (vs("  hosts: [r]\n"), "spec", "http, tcp or tls"),
        (vs("  hosts: [\"a*b.com\"]\n  http:\n  - route:\n    - destination: {host: r}\n"), "spec.hosts[0]", "wildcard"),
        (vs("  hosts: [r, r]\n  http:\n  - route:\n    - destination: {host: r}\n"), "spec.hosts[1]", "duplicate"),
        (vs("  hosts: [r]\n  gateways: [\"a/b/c\"]\n  http:\n  - route:\n    - destination: {host: r}\n"), "spec.gateways[0]", "invalid gateway"),
        (vs("  http:\n  - route:\n    - destination: {host: r}\n  gateways: [g]\n"), "spec.gateways", "delegate"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - uri: {prefix: /a}\n"), "spec.http[0]", "must set one of"),
        (vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    redirect: {uri: /x}\n"), "spec.http[0]", "mutually exclusive"),
        (vs("  hosts: [r]\n  http:\n  - redirect: {uri: /x}\n    rewrite: {uri: /y}\n"), "spec.http[0].rewrite", "cannot be used with redirect"),
        (vs("  hosts: [r]\n  http:\n  - redirect: {uri: /x, redirectCode: 200}\n"), "spec.http[0].redirect.redirectCode", "301"),
        (vs("  hosts: [r]\n  http:\n  - redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}\n"), "spec.http[0].redirect", "port or derivePort"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: r}\n"), "spec.http[0].match[0].uri", "only one of"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - uri: {regex: \"(a\"}\n    route:\n    - destination: {host: r}\n"), "spec.http[0].match[0].uri.regex", "invalid RE2"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - uri: {regex: \"(?=a)\"}\n    route:\n    - destination: {host: r}\n"), "spec.http[0].match[0].uri.regex", "invalid RE2"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - headers:\n        End-User: {exact: jason}\n    route:\n    - destination: {host: r}\n"), "spec.http[0].match[0].headers[\"End-User\"]", "lowercase"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - headers:\n        \"bad header\": {exact: x}\n    route:\n    - destination: {host: r}\n"), "spec.http[0].match[0].headers[\"bad header\"]", "invalid header name"),
        (vs("  hosts: [r]\n  http:\n  - match:\n    - port: 70000\n    route:\n    - destination: {host: r}\n"), "spec.http[0].match[0].port", "out of range"),
        (vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: v1}\n      weight: -1\n    - destination: {host: r, subset: v2}\n      weight: 101\n"), "spec.http[0].route[0].weight", "negative"),
        (vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: v1}\n      weight: 0\n    - destination: {host: r, subset: v2}\n      weight: 0\n"), "spec.http[0].route", "total destination weight is 0"),
        (vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: v1}\n      weight: 30\n    - destination: {host: r, subset: v2}\n      weight: 30\n"), "spec.http[0].route", "add up to 60"),
        (vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: \"\"}\n"), "spec.http[0].route[0].destination.host", "required"),
        (vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: V_1}\n"), "spec.http[0].route[0].destination.subset", "invalid subset"),
        (vs(&format!("{route}    timeout: 0s\n")), "spec.http[0].timeout", "at least 1ms"),
        (vs(&format!("{route}    retries: {{attempts: 3, retryOn: \"5xx,bogus\"}}\n")), "spec.http[0].retries.retryOn", "not a retry policy"),
        (vs(&format!("{route}    retries: {{attempts: -1}}\n")), "spec.http[0].retries.attempts", "negative"),
        (vs(&format!("{route}    timeout: 1s\n    retries: {{attempts: 2, perTryTimeout: 5s}}\n")), "spec.http[0].retries.perTryTimeout", "longer than the route timeout"),
        (vs(&format!("{route}    fault:\n      abort: {{httpStatus: 700, percentage: {{value: 10}}}}\n")), "spec.http[0].fault.abort.httpStatus", "out of range"),
        (vs(&format!("{route}    fault:\n      abort: {{grpcStatus: NOPE}}\n")), "spec.http[0].fault.abort.grpcStatus", "not a gRPC status"),
        (vs(&format!("{route}    fault:\n      delay: {{fixedDelay: 5s, percentage: {{value: 150}}}}\n")), "spec.http[0].fault.delay.percentage.value", "0–100"),
        (vs(&format!("{route}    fault:\n      delay: {{percentage: {{value: 50}}}}\n")), "spec.http[0].fault.delay", "fixedDelay"),
        (vs(&format!("{route}    fault: {{}}\n")), "spec.http[0].fault", "delay or abort"),
        (vs("  hosts: [r]\n  http:\n  - directResponse: {status: 99}\n"), "spec.http[0].directResponse.status", "200–599"),
        (vs("  hosts: [r]\n  http:\n  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n"), "spec.http[0].directResponse.body", "only one of"),
        (vs("  hosts: [r]\n  http:\n  - directResponse: {status: 200, body: {bytes: \"!!!\"}}\n"), "spec.http[0].directResponse.body.bytes", "base64"),
        (vs(&format!("{route}    rewrite: {{uri: /a, uriRegexRewrite: {{match: a, rewrite: b}}}}\n")), "spec.http[0].rewrite", "only one of"),
        (vs(&format!("{route}    mirror: {{host: m}}\n    mirrorPercentage: {{value: 101}}\n")), "spec.http[0].mirrorPercentage.value", "0–100"),
        (vs(&format!("{route}    mirror: {{host: m}}\n    mirrors:\n    - destination: {{host: n}}\n")), "spec.http[0].mirrors", "only one of"),
        (vs(&format!("{route}    corsPolicy: {{allowMethods: [FETCH]}}\n")), "spec.http[0].corsPolicy.allowMethods[0]", "not an HTTP method"),
        (vs(&format!("{route}    headers:\n      request:\n        set: {{\":authority\": x}}\n")), "spec.http[0].headers.request.set[\":authority\"]", "cannot be modified"),
        (vs("  hosts: [r]\n  exportTo: [\"*\", \".\"]\n  http:\n  - route:\n    - destination: {host: r}\n"), "spec.exportTo[0]", "cannot be combined"),
        (vs("  hosts: [r]\n  tcp:\n  - match:\n    - destinationSubnets: [\"10.0.0.0/33\"]\n    route:\n    - destination: {host: r}\n"), "spec.tcp[0].match[0].destinationSubnets[0]", "invalid IP"),
        (vs("  hosts: [a.com]\n  tls:\n  - match:\n    - sniHosts: [b.com]\n    route:\n    - destination: {host: r}\n"), "spec.tls[0].match[0].sniHosts[0]", "not a match"),
        (vs("  hosts: [r]\n  tls:\n  - route:\n    - destination: {host: r}\n"), "spec.tls[0].match", "at least one match"),
        (dr("  host: \"\"\n"), "spec.host", "required"),
        (dr("  host: r\n  subsets:\n  - name: v1\n  - name: v1\n"), "spec.subsets[1].name", "duplicate"),
        (dr("  host: r\n  subsets:\n  - name: V1\n"), "spec.subsets[0].name", "invalid subset"),
        (dr("  host: r\n  subsets:\n  - name: v1\n    labels: {version: \"v 1\"}\n"), "spec.subsets[0].labels[\"version\"]", "invalid label value"),
        (dr("  host: r\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}\n"), "spec.trafficPolicy.loadBalancer", "only one of"),
        (dr("  host: r\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {useSourceIp: true, httpHeaderName: x}\n"), "spec.trafficPolicy.loadBalancer.consistentHash", "exactly one"),
        (dr("  host: r\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {useSourceIp: true, maglev: {tableSize: 100}}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime"),
        (dr("  host: r\n  trafficPolicy:\n    connectionPool: {}\n"), "spec.trafficPolicy.connectionPool", "tcp or http"),
        (dr("  host: r\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: -1}\n"), "spec.trafficPolicy.connectionPool.tcp.maxConnections", "negative"),
        (dr("  host: r\n  trafficPolicy:\n    connectionPool:\n      http: {http1MaxPendingRequests: -5}\n"), "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "negative"),
        (dr("  host: r\n  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 150}\n"), "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "0–100"),
        (dr("  host: r\n  trafficPolicy:\n    outlierDetection: {interval: 0s}\n"), "spec.trafficPolicy.outlierDetection.interval", "1ms"),
        (dr("  host: r\n  trafficPolicy:\n    outlierDetection: {consecutiveErrors: 5}\n"), "spec.trafficPolicy.outlierDetection.consecutiveErrors", "deprecated"),
        (dr("  host: r\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, clientCertificate: /a}\n"), "spec.trafficPolicy.tls", "ISTIO_MUTUAL"),
        (dr("  host: r\n  trafficPolicy:\n    tls: {mode: MUTUAL}\n"), "spec.trafficPolicy.tls", "MUTUAL requires"),
        (dr("  host: r\n  trafficPolicy:\n    portLevelSettings:\n    - loadBalancer: {simple: RANDOM}\n"), "spec.trafficPolicy.portLevelSettings[0].port", "required"),
        (dr("  host: r\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: a/*\n          to: {\"b/*\": 60}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "add up to 100"),
        (kind("Gateway", "networking.istio.io/v1", "  servers: []\n"), "spec.servers", "at least one server"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 80, name: http, protocol: FTP}\n    hosts: [\"*\"]\n"), "spec.servers[0].port.protocol", "unknown protocol"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n"), "spec.servers[0].tls", "requires tls"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE}\n"), "spec.servers[0].tls", "credentialName"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 443, name: h, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH}\n"), "spec.servers[0].tls.mode", "requires protocol TLS"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: []\n"), "spec.servers[0].hosts", "at least one host"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"Bad_NS/a.com\"]\n"), "spec.servers[0].hosts[0]", "invalid namespace"),
        (kind("Gateway", "networking.istio.io/v1", "  servers:\n  - port: {number: 0, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"), "spec.servers[0].port.number", "out of range"),
        (kind("Sidecar", "networking.istio.io/v1", "  egress:\n  - hosts: [\"reviews.default\"]\n"), "spec.egress[0].hosts[0]", "namespace/dnsName"),
        (kind("Sidecar", "networking.istio.io/v1", "  egress:\n  - hosts: [\"./*\"]\n  - port: {number: 80, protocol: HTTP, name: h}\n    hosts: [\"./*\"]\n"), "spec.egress[0]", "must be the last"),
        (kind("Sidecar", "networking.istio.io/v1", "  egress:\n  - port: {number: 80, protocol: HTTP, name: h}\n    bind: localhost\n    hosts: [\"./*\"]\n"), "spec.egress[0].bind", "invalid bind"),
        (kind("Sidecar", "networking.istio.io/v1", "  ingress:\n  - port: {number: 80, protocol: HTTP, name: h}\n    defaultEndpoint: 10.0.0.1:80\n"), "spec.ingress[0].defaultEndpoint", "invalid defaultEndpoint"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [\"*\"]\n"), "spec.hosts[0]", "not allowed"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [\"*.a.com\"]\n  resolution: DNS\n"), "spec.hosts[0]", "cannot use DNS"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  addresses: [10.0.0.0/8]\n  resolution: DNS\n"), "spec.addresses[0]", "CIDR"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  ports:\n  - {number: 80, name: http}\n  - {number: 80, name: http2}\n"), "spec.ports[1].number", "duplicated"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  endpoints:\n  - address: 1.2.3.4\n"), "spec.endpoints", "NONE resolution"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  resolution: STATIC\n  endpoints:\n  - address: foo.com\n"), "spec.endpoints[0].address", "IP addresses"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints:\n  - address: a.com\n  - address: b.com\n"), "spec.endpoints", "multiple endpoints"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  resolution: STATIC\n  ports:\n  - {number: 80, name: http}\n  endpoints:\n  - address: 1.2.3.4\n    ports: {grpc: 90}\n"), "spec.endpoints[0].ports[\"grpc\"]", "does not name a port"),
        (kind("ServiceEntry", "networking.istio.io/v1", "  hosts: [a.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints:\n  - address: 1.2.3.4\n"), "spec", "workloadSelector or endpoints"),
        (kind("WorkloadEntry", "networking.istio.io/v1", "  labels: {app: a}\n"), "spec.address", "required"),
        (kind("WorkloadEntry", "networking.istio.io/v1", "  address: unix://rel/path\n"), "spec.address", "absolute path"),
        (kind("WorkloadEntry", "networking.istio.io/v1", "  address: unix:///tmp/s.sock\n  ports: {http: 80}\n"), "spec.ports", "UDS may not include ports"),
        (kind("WorkloadEntry", "networking.istio.io/v1", "  address: 1.2.3.4\n  ports: {http: 0}\n"), "spec.ports[\"http\"]", "out of range"),
        (kind("WorkloadGroup", "networking.istio.io/v1", "  template: {}\n  probe: {httpGet: {port: 80}, tcpSocket: {port: 80}}\n"), "spec.probe", "exactly one"),
        (kind("PeerAuthentication", "security.istio.io/v1", "  portLevelMtls:\n    \"80\": {mode: STRICT}\n"), "spec.portLevelMtls", "requires a selector"),
        (kind("PeerAuthentication", "security.istio.io/v1", "  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    \"0\": {mode: STRICT}\n"), "spec.portLevelMtls[\"0\"]", "between 1 and 65535"),
        (kind("PeerAuthentication", "security.istio.io/v1", "  selector: {matchLabels: {app: \"*\"}}\n"), "spec.selector.matchLabels[\"app\"]", "wildcard"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  action: CUSTOM\n"), "spec.provider", "CUSTOM action requires"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  action: ALLOW\n  provider: {name: x}\n"), "spec.provider", "only be used with the CUSTOM"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  rules:\n  - from:\n    - source: {}\n"), "spec.rules[0].from[0].source", "at least one field"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  rules:\n  - from:\n    - source: {serviceAccounts: [a], namespaces: [b]}\n"), "spec.rules[0].from[0].source", "serviceAccounts"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  rules:\n  - from:\n    - source: {ipBlocks: [\"1.2.3.4/40\"]}\n"), "spec.rules[0].from[0].source.ipBlocks[0]", "invalid IP"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  rules:\n  - to:\n    - operation: {ports: [\"http\"]}\n"), "spec.rules[0].to[0].operation.ports[0]", "invalid port"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  rules:\n  - when:\n    - key: request.bogus\n      values: [a]\n"), "spec.rules[0].when[0].key", "unknown attribute"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  rules:\n  - when:\n    - key: source.ip\n"), "spec.rules[0].when[0]", "values or notValues"),
        (kind("AuthorizationPolicy", "security.istio.io/v1", "  selector: {matchLabels: {a: b}}\n  targetRef: {kind: Gateway, name: g}\n"), "spec", "only one of selector"),
        (kind("RequestAuthentication", "security.istio.io/v1", "  jwtRules:\n  - jwksUri: https://x/jwks\n"), "spec.jwtRules[0].issuer", "required"),
        (kind("RequestAuthentication", "security.istio.io/v1", "  jwtRules:\n  - issuer: me\n    jwksUri: ftp://x\n"), "spec.jwtRules[0].jwksUri", "http"),
        (kind("RequestAuthentication", "security.istio.io/v1", "  jwtRules:\n  - issuer: me\n    jwksUri: https://x\n    jwks: \"{}\"\n"), "spec.jwtRules[0]", "only one of jwks"),
        (kind("Telemetry", "telemetry.istio.io/v1", "  tracing:\n  - randomSamplingPercentage: 120\n"), "spec.tracing[0].randomSamplingPercentage", "0–100"),
        (kind("Telemetry", "telemetry.istio.io/v1", "  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {operation: REMOVE, value: x}\n"), "spec.metrics[0].overrides[0].tagOverrides[\"foo\"]", "must not be set"),
        (kind("Telemetry", "telemetry.istio.io/v1", "  tracing:\n  - customTags:\n      t: {}\n"), "spec.tracing[0].customTags[\"t\"]", "exactly one"),
        ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: Bad_Name\nspec:\n  host: r\n".to_string(), "metadata.name", "not a valid name"),
        ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  labels: {\"-bad\": x}\nspec:\n  host: r\n".to_string(), "metadata.labels[\"-bad\"]", "invalid label key"),
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n  - port: 81\n".to_string(), "spec.ports[0].name", "must be named"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {containers: []}\n".to_string(), "spec.template.metadata.labels", "does not match"),
    ]
}

#[test]
fn every_rule_rejects_its_invalid_example() {
    let mut failures = Vec::new();
    for (doc, field, words) in cases() {
        let v = violations(&doc);
        if !v
            .iter()
            .any(|v| v.field == field && v.message.contains(words))
        {
            failures.push(format!("expected {field}: …{words}… in\n{doc}\ngot {v:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_objects_have_no_violations() {
    for doc in [
        vs("  hosts: [reviews]\n  http:\n  - match:\n    - headers:\n        end-user: {exact: jason}\n    route:\n    - destination: {host: reviews, subset: v2}\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 90\n    - destination: {host: reviews, subset: v3}\n      weight: 10\n    timeout: 10s\n    retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"gateway-error,connect-failure,503\"}\n"),
        dr("  host: ratings\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 3}\n      http: {http1MaxPendingRequests: 1}\n    outlierDetection: {consecutive5xxErrors: 1, interval: 10s, baseEjectionTime: 3m, maxEjectionPercent: 100}\n  subsets:\n  - name: v1\n    labels: {version: v1}\n"),
        kind("Gateway", "networking.istio.io/v1", "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"ns/*.example.com\"]\n    tls: {mode: SIMPLE, credentialName: cert}\n"),
    ] {
        let v = violations(&doc);
        assert!(v.is_empty(), "{doc}\n{v:#?}");
    }
}

#[test]
fn violations_locate_their_line() {
    let doc =
        vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    timeout: 0s\n");
    let loaded = load_str("t.yaml", &doc, &LoadOptions::default());
    let res = &loaded.resources[0];
    let v = validate(&res.object);
    assert_eq!(res.origin_of(&v[0].field).line(), 10);
}
