//! Envoy parity for TLS: the same bootstraps run under Envoy and weft,
//! and each client proxy (Envoy, weft) talks to each server proxy
//! (Envoy, weft), so weft's client is checked against Envoy's server and
//! weft's server against Envoy's client. The server proxies choose a
//! filter chain by SNI (`server_names`, wildcards included), each chain
//! with its own certificate: current, expired, not yet valid, from
//! another root, a wildcard, from a static secret. The client proxies'
//! clusters each try one case: mutual TLS, SAN matchers (DNS, URI),
//! a missing client certificate, no validation, no SNI, TLS 1.3, h2 by
//! ALPN. Every pairing must give the status Envoy gives with itself.
//! Configuration errors (malformed PEM, a key that is not the
//! certificate's) are refused naming the field.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::pair::{socket, HCM, HTTP_OPTIONS, ROUTER};
use support::*;
use weft_testkit::ca::{Ca, LeafFiles, Validity};

const TLS_INSPECTOR: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// The certificates of a test, as files.
struct Pki {
    _dir: TempDir,
    root: String,
    good: LeafFiles,
    expired: LeafFiles,
    not_yet: LeafFiles,
    other_root: LeafFiles,
    wild: LeafFiles,
    client: LeafFiles,
    /// A key that belongs to no certificate here.
    stray_key: String,
}

fn pki() -> Pki {
    let dir = TempDir::new("tls");
    let d = &dir.0;
    let root = Ca::root("weft test root");
    let inter = root.intermediate("weft test intermediate");
    let other = Ca::root("another root");
    let spiffe = "spiffe://cluster.local/ns/default/sa/back";
    let f = |l: weft_testkit::ca::Leaf, name: &str| l.write(d, name);
    Pki {
        root: root.write(d, "root").display().to_string(),
        good: f(
            inter.leaf(&["good.test", "secret.test"], &[spiffe], Validity::Current),
            "good",
        ),
        expired: f(
            inter.leaf(&["expired.test"], &[], Validity::Expired),
            "expired",
        ),
        not_yet: f(
            inter.leaf(&["notyet.test"], &[], Validity::NotYetValid),
            "notyet",
        ),
        other_root: f(
            other.leaf(&["otherroot.test"], &[], Validity::Current),
            "other",
        ),
        wild: f(inter.leaf(&["*.wild.test"], &[], Validity::Current), "wild"),
        client: f(
            root.leaf(
                &[],
                &["spiffe://cluster.local/ns/default/sa/front"],
                Validity::Current,
            ),
            "client",
        ),
        stray_key: root.leaf(&["x.test"], &[], Validity::Current).key_pem,
        _dir: dir,
    }
}

fn file(p: &Path) -> Value {
    json!({"filename": p.display().to_string()})
}

fn cert(l: &LeafFiles) -> Value {
    json!({"certificate_chain": file(&l.cert), "private_key": file(&l.key)})
}

fn hcm_to(cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": "tls",
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]}
        }
    })
}

fn plain_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(port)}}]}]}
    })
}

/// The server side: a TLS listener whose chains are chosen by SNI.
fn server_bootstrap(p: &Pki, listen: u16, admin: u16, echo: u16) -> String {
    let ca = json!({"trusted_ca": {"filename": p.root}});
    let chain = |names: &[&str], ctx: Value| {
        json!({
            "filter_chain_match": {"server_names": names},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": ctx},
            "filters": [hcm_to("echo")]
        })
    };
    let mtls = |leaf: &LeafFiles| {
        json!({
            "@type": DOWNSTREAM_TLS,
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_certificates": [cert(leaf)],
                "validation_context": ca,
                "alpn_protocols": ["h2", "http/1.1"]
            }
        })
    };
    let chains = vec![
        chain(&["good.test"], mtls(&p.good)),
        chain(&["expired.test"], mtls(&p.expired)),
        chain(&["notyet.test"], mtls(&p.not_yet)),
        chain(&["otherroot.test"], mtls(&p.other_root)),
        // No validation context: no client certificate asked for.
        chain(
            &["*.wild.test"],
            json!({"@type": DOWNSTREAM_TLS, "common_tls_context": {"tls_certificates": [cert(&p.wild)]}}),
        ),
        // The certificate and the root by static secret, and the client's
        // identity checked by a URI SAN matcher (Istio's shape).
        chain(
            &["secret.test"],
            json!({
                "@type": DOWNSTREAM_TLS,
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [{"name": "default"}],
                    "combined_validation_context": {
                        "default_validation_context": {"match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]},
                        "validation_context_sds_secret_config": {"name": "ROOTCA"}
                    }
                }
            }),
        ),
    ];
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{
                "name": "tls",
                "address": socket(listen),
                "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": TLS_INSPECTOR}}],
                "filter_chains": chains
            }],
            "clusters": [plain_cluster("echo", echo)],
            "secrets": [
                {"name": "default", "tls_certificate": cert(&p.good)},
                {"name": "ROOTCA", "validation_context": {"trusted_ca": {"filename": p.root}}}
            ]
        }
    })
    .to_string()
}

/// One client case: its cluster's TLS context and the status expected.
struct Case {
    name: &'static str,
    expect: u16,
    tls: Value,
    h2: bool,
}

fn cases(p: &Pki) -> Vec<Case> {
    let ca = |sans: Value| json!({"trusted_ca": {"filename": p.root}, "match_typed_subject_alt_names": sans});
    let ctx = |sni: Option<&str>, client: bool, validation: Option<Value>, extra: Value| {
        let mut common = json!({});
        if client {
            common["tls_certificates"] = json!([cert(&p.client)]);
        }
        if let Some(v) = validation {
            common["validation_context"] = v;
        }
        if let Value::Object(m) = extra {
            for (k, v) in m {
                common[k] = v;
            }
        }
        let mut c = json!({"@type": UPSTREAM_TLS, "common_tls_context": common});
        if let Some(s) = sni {
            c["sni"] = json!(s);
        }
        c
    };
    let dns = |name: &str| json!([{"san_type": "DNS", "matcher": {"exact": name}}]);
    let case = |name, expect, tls| Case {
        name,
        expect,
        tls,
        h2: false,
    };
    vec![
        case(
            "good",
            200,
            ctx(
                Some("good.test"),
                true,
                Some(ca(dns("good.test"))),
                json!({}),
            ),
        ),
        case(
            "spiffe",
            200,
            ctx(
                Some("good.test"),
                true,
                Some(ca(json!([{"san_type": "URI",
                    "matcher": {"exact": "spiffe://cluster.local/ns/default/sa/back"}}]))),
                json!({}),
            ),
        ),
        case(
            "wrongsan",
            503,
            ctx(
                Some("good.test"),
                true,
                Some(ca(dns("bad.test"))),
                json!({}),
            ),
        ),
        case(
            "nocert",
            503,
            ctx(Some("good.test"), false, Some(ca(json!([]))), json!({})),
        ),
        case(
            "expired",
            503,
            ctx(Some("expired.test"), true, Some(ca(json!([]))), json!({})),
        ),
        case(
            "notyet",
            503,
            ctx(Some("notyet.test"), true, Some(ca(json!([]))), json!({})),
        ),
        case(
            "otherroot",
            503,
            ctx(Some("otherroot.test"), true, Some(ca(json!([]))), json!({})),
        ),
        // Without a validation context nothing is verified.
        case(
            "noverify",
            200,
            ctx(Some("otherroot.test"), true, None, json!({})),
        ),
        // A `*.wild.test` certificate for a.wild.test, chosen by the
        // wildcard chain; no client certificate asked for.
        case(
            "wild",
            200,
            ctx(
                Some("a.wild.test"),
                false,
                Some(ca(dns("a.wild.test"))),
                json!({}),
            ),
        ),
        case(
            "secret",
            200,
            ctx(Some("secret.test"), true, Some(ca(json!([]))), json!({})),
        ),
        // No SNI: no chain's server_names match, the connection closes.
        case(
            "nosni",
            503,
            ctx(None, true, Some(ca(json!([]))), json!({})),
        ),
        case(
            "tls13",
            200,
            ctx(
                Some("good.test"),
                true,
                Some(ca(json!([]))),
                json!({"tls_params": {"tls_minimum_protocol_version": "TLSv1_3",
                    "tls_maximum_protocol_version": "TLSv1_3"}}),
            ),
        ),
        Case {
            h2: true,
            ..case(
                "h2",
                200,
                ctx(
                    Some("good.test"),
                    true,
                    Some(ca(json!([]))),
                    json!({"alpn_protocols": ["h2"]}),
                ),
            )
        },
    ]
}

/// The client side: a plain HTTP listener; `/CASE/e` goes to the Envoy
/// server and `/CASE/w` to weft's, each over the case's TLS context.
fn client_bootstrap(cases: &[Case], listen: u16, admin: u16, servers: [u16; 2]) -> String {
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    for c in cases {
        for (side, port) in ["e", "w"].iter().zip(servers) {
            let name = format!("{}_{side}", c.name);
            routes.push(json!({"match": {"prefix": format!("/{}/{side}", c.name)}, "route": {"cluster": name}}));
            let mut cl = plain_cluster(&name, port);
            cl["transport_socket"] =
                json!({"name": "envoy.transport_sockets.tls", "typed_config": c.tls});
            if c.h2 {
                cl["typed_extension_protocol_options"] = json!({
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": HTTP_OPTIONS,
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                });
            }
            clusters.push(cl);
        }
    }
    let mut hcm = hcm_to("unused");
    hcm["typed_config"]["route_config"] =
        json!({"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]});
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{"name": "front", "address": socket(listen), "filter_chains": [{"filters": [hcm]}]}],
            "clusters": clusters
        }
    })
    .to_string()
}

#[tokio::test]
async fn mutual_tls_accepts_and_refuses_as_envoy_does_both_ways() {
    let p = pki();
    let echo = echo_backend("echo").await.port();
    let servers =
        support::pair::Pair::start(|listen, admin| server_bootstrap(&p, listen, admin, echo)).await;
    let cases = cases(&p);
    let ports = [servers.envoy_port, servers.weft_port];
    let clients =
        support::pair::Pair::start(|listen, admin| client_bootstrap(&cases, listen, admin, ports))
            .await;
    let mut wrong = Vec::new();
    for c in &cases {
        for (client, port) in [("envoy", clients.envoy_port), ("weft", clients.weft_port)] {
            for (side, server) in [("e", "envoy"), ("w", "weft")] {
                let url = format!("http://127.0.0.1:{port}/{}/{side}", c.name);
                let status = get(&url, &[]).await.map(|r| r.status);
                if status != Ok(c.expect) {
                    wrong.push(format!(
                        "{}: {client} client → {server} server: {status:?}, Envoy's answer is {}",
                        c.name, c.expect
                    ));
                }
            }
        }
    }
    clients.stop();
    servers.stop();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// weft's compile error for a bootstrap with one TLS cluster whose
/// certificate is `chain` and key `key` (inline PEM), after checking
/// that Envoy (`--mode validate`) accepts or refuses it alike.
async fn cluster_error(chain: &str, key: &str) -> String {
    let text = json!({
        "static_resources": {"clusters": [{
            "name": "c", "type": "STATIC",
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": UPSTREAM_TLS,
                "common_tls_context": {"tls_certificates": [{
                    "certificate_chain": {"inline_string": chain},
                    "private_key": {"inline_string": key}
                }]}
            }}
        }]}
    })
    .to_string();
    let boot = weft_envoy::parse_bootstrap("t", &text).expect("the bootstrap parses");
    let weft = match weft_proxy::Snapshot::compile(&boot).await {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let dir = TempDir::new("tls-validate");
    let path = dir.0.join("bootstrap.json");
    std::fs::write(&path, &text).unwrap();
    let envoy_ok = std::process::Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "critical",
            "-c",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("envoy runs")
        .success();
    assert_eq!(
        envoy_ok,
        weft.is_empty(),
        "Envoy and weft disagree: weft says {weft:?}"
    );
    weft
}

#[tokio::test]
async fn bad_certificates_and_keys_are_refused_naming_the_field() {
    let p = pki();
    let chain = std::fs::read_to_string(&p.good.cert).unwrap();
    let key = std::fs::read_to_string(&p.good.key).unwrap();
    assert_eq!(cluster_error(&chain, &key).await, "");
    let at = "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificates[0]";
    let e = cluster_error(&chain, &p.stray_key).await;
    assert!(
        e.starts_with(&format!("{at}.private_key:")) && e.contains("does not belong"),
        "{e}"
    );
    let e = cluster_error(
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        &key,
    )
    .await;
    assert!(e.starts_with(&format!("{at}.certificate_chain:")), "{e}");
    let e = cluster_error(&chain, "no key here").await;
    assert!(e.starts_with(&format!("{at}.private_key:")), "{e}");
}

/// A cluster's `transport_socket_matches`, as Istio's auto mTLS sends
/// them: endpoints whose metadata says `tlsMode: istio` are dialled with
/// TLS, the others (an empty match) in plaintext. One cluster holds a
/// TLS server (the wildcard chain) and a plain echo backend; every
/// request must succeed, whichever endpoint it goes to.
#[tokio::test]
async fn transport_socket_matches_choose_tls_per_endpoint() {
    let p = pki();
    let echo = echo_backend("echo").await.port();
    let servers =
        support::pair::Pair::start(|listen, admin| server_bootstrap(&p, listen, admin, echo)).await;
    let tls = json!({
        "@type": UPSTREAM_TLS,
        "sni": "a.wild.test",
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": p.root}}}
    });
    let client = |listen: u16, admin: u16, server: u16| {
        let mut cluster = plain_cluster("mixed", server);
        cluster["lb_policy"] = json!("ROUND_ROBIN");
        cluster["load_assignment"]["endpoints"] = json!([{"lb_endpoints": [
            {"endpoint": {"address": socket(server)},
             "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}},
            {"endpoint": {"address": socket(echo)}}
        ]}]);
        cluster["transport_socket_matches"] = json!([
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
             "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls}},
            {"name": "tlsMode-disabled", "match": {},
             "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                 "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}
        ]);
        json!({
            "admin": {"address": socket(admin)},
            "static_resources": {
                "listeners": [{"name": "front", "address": socket(listen),
                    "filter_chains": [{"filters": [hcm_to("mixed")]}]}],
                "clusters": [cluster]
            }
        })
        .to_string()
    };
    // Envoy's client to Envoy's server, weft's to weft's; the cross
    // pairings are the first test's.
    let (ep, ea) = (free_port(), free_port());
    let envoy = start_envoy(&client(ep, ea, servers.envoy_port), ea).await;
    let (wp, wa) = (free_port(), free_port());
    let weft = support::pair::start_weft(&client(wp, wa, servers.weft_port)).await;
    for (who, port) in [("envoy", ep), ("weft", wp)] {
        for i in 0..4 {
            let r = get(&format!("http://127.0.0.1:{port}/{i}"), &[]).await;
            assert_eq!(r.map(|r| r.status), Ok(200), "{who}, request {i}");
        }
    }
    drop(envoy);
    weft.shared.shutdown();
    servers.stop();
}
