//! Analyzers about services, workloads, namespaces, annotations, policies
//! and EnvoyFilters.

mod common;
use common::*;

fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n")
}

fn pod(name: &str, extra_meta: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}{extra_meta}}}\nspec:\n  containers: {containers}\n"
    )
}

#[test]
fn ist0118_port_names_outside_the_convention() {
    let svc = REVIEWS_SVC.replace("name: http, port: 9080", "name: web, port: 9080");
    expect(&svc, &["IST0118 Service default/reviews"]);
    let d = diagnostics(&svc, &Default::default());
    assert_eq!(
        d[0].text(),
        "Port name web (port: 9080, targetPort: 9080) doesn't follow the naming convention of Istio port."
    );
    // appProtocol settles the protocol; http-suffix names are fine.
    expect(
        &REVIEWS_SVC.replace("name: http,", "name: web, appProtocol: http,"),
        &[],
    );
    expect(&REVIEWS_SVC.replace("name: http,", "name: http-web,"), &[]);
    // System namespaces are not checked.
    expect(
        &svc.replace(
            "{name: reviews}\nspec:\n  selector",
            "{name: reviews, namespace: kube-system}\nspec:\n  selector",
        ),
        &[],
    );
}

#[test]
fn ist0102_and_ist0123_namespace_injection_labels() {
    expect(&namespace("shop", "{}"), &["IST0102 Namespace shop"]);
    expect(&namespace("shop", "{istio-injection: enabled}"), &[]);
    expect(&namespace("shop", "{istio-injection: disabled}"), &[]);
    expect(&namespace("istio-system", "{}"), &[]);
    expect(
        &namespace("shop", "{istio-injection: enabled, istio.io/rev: canary}"),
        &["IST0123 Namespace shop"],
    );
}

#[test]
fn ist0103_pod_without_proxy_in_injected_namespace() {
    let ns = namespace("default", "{istio-injection: enabled}");
    let app = "[{name: app, image: app}]";
    expect(
        &docs(&[&ns, &pod("p", "", app)]),
        &["IST0103 Pod default/p"],
    );
    let with_proxy = "[{name: app, image: app}, {name: istio-proxy, image: proxy}]";
    expect(&docs(&[&ns, &pod("p", "", with_proxy)]), &[]);
    let opted_out = pod(
        "p",
        ", annotations: {sidecar.istio.io/inject: \"false\"}",
        app,
    );
    expect(&docs(&[&ns, &opted_out]), &[]);
    // Not injected namespace: nothing is expected of the pod.
    expect(
        &docs(&[
            &namespace("default", "{istio-injection: disabled}"),
            &pod("p", "", app),
        ]),
        &[],
    );
}

#[test]
fn ist0108_ist0107_ist0125_annotations() {
    let app = "[{name: app, image: app}]";
    expect(
        &pod("p", ", annotations: {sidecar.istio.io/proxyCPU: 100m}", app),
        &[],
    );
    expect(
        &pod(
            "p",
            ", annotations: {sidecar.istio.io/proxyCPUs: 100m}",
            app,
        ),
        &["IST0108 Pod default/p"],
    );
    expect(
        &docs(&[
            REVIEWS_SVC,
            &REVIEWS_DR.replace(
                "{name: reviews}",
                "{name: reviews, annotations: {sidecar.istio.io/proxyCPU: 100m}}",
            ),
        ]),
        &["IST0107 DestinationRule default/reviews"],
    );
    expect(
        &pod(
            "p",
            ", annotations: {sidecar.istio.io/inject: \"maybe\"}",
            app,
        ),
        &["IST0125 Pod default/p"],
    );
    // Annotations outside istio.io are none of our business.
    expect(
        &pod("p", ", annotations: {example.com/anything: x}", app),
        &[],
    );
}

const SIDECAR: &str = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: NAME}\nspec:\n  egress: [{hosts: [\"./*\"]}]\n";

fn sidecar(name: &str, selector: Option<&str>) -> String {
    let s = SIDECAR.replace("NAME", name);
    match selector {
        Some(sel) => s.replace(
            "spec:\n",
            &format!("spec:\n  workloadSelector: {{labels: {sel}}}\n"),
        ),
        None => s,
    }
}

#[test]
fn sidecar_selectors_ist0127_ist0111_ist0110() {
    let ns = namespace("default", "{istio-injection: enabled}");
    let p = pod(
        "reviews",
        "",
        "[{name: app, image: a}, {name: istio-proxy, image: p}]",
    );
    expect(
        &docs(&[&ns, &p, &sidecar("a", Some("{app: reviews}"))]),
        &[],
    );
    expect(
        &docs(&[&ns, &p, &sidecar("a", Some("{app: ratings}"))]),
        &["IST0127 Sidecar default/a"],
    );
    expect(
        &docs(&[&ns, &p, &sidecar("a", None), &sidecar("b", None)]),
        &["IST0111 Sidecar default/a", "IST0111 Sidecar default/b"],
    );
    expect(
        &docs(&[
            &ns,
            &p,
            &sidecar("a", Some("{app: reviews}")),
            &sidecar("b", Some("{app: reviews}")),
        ]),
        &["IST0110 Sidecar default/a", "IST0110 Sidecar default/b"],
    );
}

#[test]
fn ist0167_sidecar_in_ambient_mode() {
    let ambient = namespace("default", "{istio.io/dataplane-mode: ambient}");
    expect(
        &docs(&[&ambient, &sidecar("a", None)]),
        &["IST0167 Sidecar default/a"],
    );
    let d = diagnostics(&docs(&[&ambient, &sidecar("a", None)]), &Default::default());
    assert_eq!(
        d[0].text(),
        "The policy has no impact: namespace is in ambient mode, the policy has no impact."
    );
    let p = pod(
        "reviews",
        ", labels: {app: reviews, istio.io/dataplane-mode: ambient}",
        "[{name: app, image: a}]",
    )
    .replace("labels: {app: reviews}, ", "");
    expect(
        &docs(&[
            &namespace("default", "{istio-injection: disabled}"),
            &p,
            &sidecar("a", Some("{app: reviews}")),
        ]),
        &["IST0167 Sidecar default/a"],
    );
    expect(
        &docs(&[
            &namespace("default", "{istio-injection: enabled}"),
            &sidecar("a", None),
        ]),
        &[],
    );
}

fn policy(kind: &str, name: &str, body: &str) -> String {
    let api = if kind == "Telemetry" {
        "telemetry.istio.io/v1"
    } else {
        "security.istio.io/v1"
    };
    format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{body}")
}

#[test]
fn policy_selectors_ist0127_ist0160_ist0159_ist0157() {
    let p = pod("reviews", "", "[{name: app, image: a}]");
    for kind in [
        "AuthorizationPolicy",
        "PeerAuthentication",
        "RequestAuthentication",
        "Telemetry",
    ] {
        let hits = policy(kind, "x", "  selector: {matchLabels: {app: reviews}}\n");
        expect(&docs(&[&p, &hits]), &[]);
        let misses = policy(kind, "x", "  selector: {matchLabels: {app: ratings}}\n");
        expect(
            &docs(&[&p, &misses]),
            &[&format!("IST0127 {kind} default/x")],
        );
    }
    let mesh_wide = "  metrics: [{providers: [{name: prometheus}]}]\n";
    expect(
        &docs(&[
            &policy("Telemetry", "a", mesh_wide),
            &policy("Telemetry", "b", mesh_wide),
        ]),
        &["IST0160 Telemetry default/a", "IST0160 Telemetry default/b"],
    );
    let selecting = "  selector: {matchLabels: {app: reviews}}\n";
    expect(
        &docs(&[
            &p,
            &policy("Telemetry", "a", selecting),
            &policy("Telemetry", "b", selecting),
        ]),
        &["IST0159 Telemetry default/a", "IST0159 Telemetry default/b"],
    );
    expect(
        &policy(
            "Telemetry",
            "a",
            "  tracing: [{providers: [{name: \"\"}]}]\n",
        ),
        &["IST0157 Telemetry default/a"],
    );
}

#[test]
fn ist0116_and_ist0137_deployment_behind_several_services() {
    let second = |ports: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: reviews-2}}\nspec:\n  selector: {{app: reviews}}\n  ports: {ports}\n")
    };
    // Same port number, different protocols.
    let tcp = second("[{name: tcp, port: 9080}]");
    expect(
        &docs(&[REVIEWS_SVC, &tcp]),
        &[
            "IST0116 Deployment default/reviews-v1",
            "IST0116 Deployment default/reviews-v2",
        ],
    );
    // Same target port behind different service ports.
    let other_port = second("[{name: http, port: 80, targetPort: 9080}]");
    expect(
        &docs(&[REVIEWS_SVC, &other_port]),
        &[
            "IST0137 Deployment default/reviews-v1",
            "IST0137 Deployment default/reviews-v2",
        ],
    );
    let d = diagnostics(&docs(&[REVIEWS_SVC, &other_port]), &Default::default());
    assert_eq!(
        d[0].text(),
        "This deployment default/reviews-v1 is associated with multiple services [reviews reviews-2] using targetPort \"9080\" but different ports: [9080 80]."
    );
    expect(
        &docs(&[REVIEWS_SVC, &second("[{name: http, port: 9080}]")]),
        &[],
    );
}

#[test]
fn ist0144_application_running_as_proxy_uid() {
    let as_proxy = "[{name: app, image: a, securityContext: {runAsUser: 1337}}]";
    expect(&pod("p", "", as_proxy), &["IST0144 Pod default/p"]);
    let pod_level = pod("p", "", "[{name: app, image: a}]")
        .replace("spec:\n", "spec:\n  securityContext: {runAsUser: 1337}\n");
    expect(&pod_level, &["IST0144 Pod default/p"]);
    expect(
        &pod(
            "p",
            "",
            "[{name: app, image: a, securityContext: {runAsUser: 1000}}]",
        ),
        &[],
    );
    // The proxy itself runs as 1337 by design.
    expect(
        &pod("p", "", "[{name: app, image: a}, {name: istio-proxy, image: p, securityContext: {runAsUser: 1337}}]"),
        &[],
    );
}

#[test]
fn ist0150_external_name_service_ports() {
    let svc = |port: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: nginx}}\nspec:\n  type: ExternalName\n  externalName: nginx.example.com\n  ports: [{port}]\n")
    };
    expect(
        &svc("{name: tcp, port: 443}"),
        &["IST0150 Service default/nginx"],
    );
    // An unnamed port is also IST0118, as istioctl reports it.
    expect(
        &svc("{port: 443}"),
        &[
            "IST0118 Service default/nginx",
            "IST0150 Service default/nginx",
        ],
    );
    expect(&svc("{name: https, port: 443}"), &[]);
    expect(&svc("{name: tls-db, port: 5432}"), &[]);
}

#[test]
fn service_entries_ist0134_and_ist0177() {
    let se = |name: &str, proto: &str, extra: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [db.example.com]\n  ports: [{{number: 5432, name: db, protocol: {proto}}}]\n  resolution: DNS\n{extra}")
    };
    expect(&se("db", "TCP", ""), &["IST0134 ServiceEntry default/db"]);
    expect(&se("db", "TCP", "  addresses: [10.0.0.1]\n"), &[]);
    expect(&se("db", "TLS", ""), &[]);
    expect(
        &docs(&[&se("a", "TLS", ""), &se("b", "HTTPS", "")]),
        &[
            "IST0177 ServiceEntry default/a",
            "IST0177 ServiceEntry default/b",
        ],
    );
}

fn envoy_filter(extra: &str, apply_to: &str, op: &str, proxy_version: bool) -> String {
    let pv = if proxy_version {
        "      proxy: {proxyVersion: '^1\\.2.*'}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: f}}\nspec:\n{extra}  configPatches:\n  - applyTo: {apply_to}\n    match:\n      context: SIDECAR_INBOUND\n{pv}    patch: {{operation: {op}, value: {{name: x}}}}\n"
    )
}

#[test]
fn envoy_filter_patch_operations() {
    expect(&envoy_filter("", "HTTP_FILTER", "INSERT_FIRST", false), &[]);
    expect(
        &envoy_filter("", "HTTP_FILTER", "INSERT_BEFORE", false),
        &["IST0151 EnvoyFilter default/f"],
    );
    expect(
        &envoy_filter("  priority: 10\n", "HTTP_FILTER", "INSERT_BEFORE", false),
        &[],
    );
    expect(
        &envoy_filter("", "HTTP_FILTER", "MERGE", true),
        &["IST0155 EnvoyFilter default/f"],
    );
    expect(
        &envoy_filter("  priority: 1\n", "CLUSTER", "REPLACE", false),
        &["IST0152 EnvoyFilter default/f"],
    );
    expect(
        &envoy_filter("", "HTTP_ROUTE", "ADD", false),
        &["IST0153 EnvoyFilter default/f"],
    );
    expect(
        &envoy_filter("  priority: 1\n", "ROUTE_CONFIGURATION", "REMOVE", false),
        &["IST0154 EnvoyFilter default/f"],
    );
}

#[test]
fn schema_findings_ist0106_ist0002() {
    // Wrong type: load-time schema error, reported as IST0106.
    let bad = REVIEWS_DR.replace("subsets:", "subsets: 3\n  x:");
    let found = findings(&bad);
    assert!(found.iter().all(|f| f.starts_with("IST0106")), "{found:?}");
    assert!(!found.is_empty());
    // Semantic error from admission rules, and a deprecated field.
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection: {consecutiveErrors: 5}\n";
    expect(
        &docs(&[REVIEWS_SVC, dr]),
        &["IST0002 DestinationRule default/r"],
    );
    let no_action = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /}}]\n";
    expect(
        &docs(&[REVIEWS_SVC, no_action]),
        &["IST0106 VirtualService default/r"],
    );
    // Weights that do not add up to 100 are accepted with a warning.
    let weights = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews}, weight: 30}\n    - {destination: {host: reviews}, weight: 30}\n";
    expect(
        &docs(&[REVIEWS_SVC, weights]),
        &["IST0133 VirtualService default/r"],
    );
}
