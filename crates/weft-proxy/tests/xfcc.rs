//! Envoy parity for `x-forwarded-client-cert`: the same bootstraps run
//! under Envoy and weft, and each client proxy (Envoy, weft) sends each
//! case to each server proxy (Envoy, weft) over mutual TLS; what the
//! backend receives must be what it receives with Envoy on both sides.
//!
//! The server proxies choose a connection manager by SNI, one per
//! `forward_client_cert_details` case (SANITIZE_SET, APPEND_FORWARD,
//! SANITIZE, FORWARD_ONLY, ALWAYS_FORWARD_ONLY, the certificate and
//! chain, a TLS client without a certificate), and serve plaintext
//! connections with APPEND_FORWARD (which must remove the header). The
//! client proxies pass the application's header on untouched
//! (ALWAYS_FORWARD_ONLY on their plaintext listener).

mod support;

use serde_json::{json, Value};
use support::pair::{socket, HCM, ROUTER};
use support::*;
use weft_testkit::ca::{Ca, LeafFiles, Validity};

const TLS_INSPECTOR: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/front";
/// What the application sends: an element some proxy before added.
const INCOMING: &str = "By=spiffe://cluster.local/ns/edge/sa/gw;Hash=00ff;URI=spiffe://x/y";

struct Pki {
    _dir: TempDir,
    root: String,
    server: LeafFiles,
    client: LeafFiles,
    /// A client certificate with no SAN at all.
    bare: LeafFiles,
}

fn pki() -> Pki {
    let dir = TempDir::new("xfcc");
    let d = &dir.0;
    let root = Ca::root("weft xfcc root");
    let inter = root.intermediate("weft xfcc intermediate");
    Pki {
        root: root.write(d, "root").display().to_string(),
        server: inter
            .leaf(&["server.test"], &[SERVER_ID], Validity::Current)
            .write(d, "server"),
        // Specials in the subject, so its escaping is compared too.
        client: inter
            .leaf_with_subject(
                &[
                    ("C", "US"),
                    ("O", "weft, tests"),
                    ("OU", "#front end "),
                    ("CN", "front \"1\""),
                ],
                &["front.test", "front.default.svc"],
                &[CLIENT_ID],
                Validity::Current,
            )
            .write(d, "client"),
        bare: root
            .leaf_with_subject(&[("CN", "bare")], &[], &[], Validity::Current)
            .write(d, "bare"),
        _dir: dir,
    }
}

fn file(p: &str) -> Value {
    json!({"filename": p})
}

fn cert(l: &LeafFiles) -> Value {
    json!({
        "certificate_chain": file(&l.cert.display().to_string()),
        "private_key": file(&l.key.display().to_string())
    })
}

/// A connection manager to the echo cluster with these XFCC settings.
fn hcm(xfcc: Value) -> Value {
    let mut config = json!({
        "@type": HCM,
        "stat_prefix": "xfcc",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]}]}
    });
    if let Value::Object(m) = xfcc {
        for (k, v) in m {
            config[k] = v;
        }
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": config})
}

/// One case: the server chain's SNI and XFCC settings, the client's
/// certificate (none: no client certificate), and the incoming header
/// lines the application sends.
struct Case {
    name: &'static str,
    xfcc: Value,
    client: Option<&'static str>,
    incoming: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let details = json!({"subject": true, "uri": true, "dns": true});
    let case = |name, xfcc| Case {
        name,
        xfcc,
        client: Some("client"),
        incoming: &[INCOMING],
    };
    vec![
        case(
            "set",
            json!({"forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": details}),
        ),
        case(
            "append",
            json!({"forward_client_cert_details": "APPEND_FORWARD", "set_current_client_cert_details": details}),
        ),
        // No details asked for: By and Hash only.
        case(
            "append-plain",
            json!({"forward_client_cert_details": "APPEND_FORWARD"}),
        ),
        Case {
            incoming: &[INCOMING, "By=spiffe://second/line;Hash=11"],
            ..case(
                "append-two-lines",
                json!({"forward_client_cert_details": "APPEND_FORWARD", "set_current_client_cert_details": details}),
            )
        },
        Case {
            incoming: &[],
            ..case(
                "append-none",
                json!({"forward_client_cert_details": "APPEND_FORWARD", "set_current_client_cert_details": details}),
            )
        },
        case("sanitize", json!({})),
        case(
            "forward",
            json!({"forward_client_cert_details": "FORWARD_ONLY"}),
        ),
        case(
            "always",
            json!({"forward_client_cert_details": "ALWAYS_FORWARD_ONLY"}),
        ),
        case(
            "cert",
            json!({"forward_client_cert_details": "SANITIZE_SET",
                "set_current_client_cert_details": {"cert": true, "chain": true, "subject": false}}),
        ),
        Case {
            client: Some("bare"),
            ..case(
                "bare",
                json!({"forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": details}),
            )
        },
        // TLS, and no client certificate: as plaintext, removed.
        Case {
            client: None,
            ..case(
                "nocert",
                json!({"forward_client_cert_details": "APPEND_FORWARD", "set_current_client_cert_details": details}),
            )
        },
    ]
}

/// The server side: a TLS chain per case, chosen by SNI `CASE.test`,
/// and a plaintext chain for the rest, all to the echo backend.
fn server_bootstrap(p: &Pki, cases: &[Case], listen: u16, admin: u16, echo: u16) -> String {
    let mut chains: Vec<Value> = cases
        .iter()
        .map(|c| {
            let mut ctx = json!({
                "@type": DOWNSTREAM_TLS,
                "common_tls_context": {"tls_certificates": [cert(&p.server)]}
            });
            if c.client.is_some() {
                ctx["require_client_certificate"] = json!(true);
                ctx["common_tls_context"]["validation_context"] =
                    json!({"trusted_ca": file(&p.root)});
            }
            json!({
                "filter_chain_match": {"server_names": [format!("{}.test", c.name)]},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": ctx},
                "filters": [hcm(c.xfcc.clone())]
            })
        })
        .collect();
    chains.push(json!({"filters": [hcm(json!({
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"subject": true, "uri": true}
    }))]}));
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{
                "name": "server",
                "address": socket(listen),
                "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": TLS_INSPECTOR}}],
                "filter_chains": chains
            }],
            "clusters": [plain_cluster("echo", echo)]
        }
    })
    .to_string()
}

fn plain_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(port)}}]}]}
    })
}

/// The client side: a plaintext listener that passes the header on
/// untouched; `/CASE/e` goes to the Envoy server and `/CASE/w` to
/// weft's, over TLS with SNI `CASE.test` and the case's certificate.
fn client_bootstrap(p: &Pki, cases: &[Case], listen: u16, admin: u16, servers: [u16; 2]) -> String {
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    for c in cases {
        for (side, port) in ["e", "w"].iter().zip(servers) {
            let name = format!("{}_{side}", c.name);
            routes.push(json!({"match": {"prefix": format!("/{}/{side}", c.name)}, "route": {"cluster": name}}));
            let mut common = json!({"validation_context": {"trusted_ca": file(&p.root)}});
            match c.client {
                Some("client") => common["tls_certificates"] = json!([cert(&p.client)]),
                Some(_) => common["tls_certificates"] = json!([cert(&p.bare)]),
                None => {}
            }
            let mut cl = plain_cluster(&name, port);
            cl["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": UPSTREAM_TLS, "sni": format!("{}.test", c.name), "common_tls_context": common}});
            clusters.push(cl);
        }
    }
    let mut front = hcm(json!({"forward_client_cert_details": "ALWAYS_FORWARD_ONLY"}));
    front["typed_config"]["route_config"] =
        json!({"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]});
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{"name": "front", "address": socket(listen), "filter_chains": [{"filters": [front]}]}],
            "clusters": clusters
        }
    })
    .to_string()
}

/// The XFCC header lines the backend received for this request.
async fn received(port: u16, path: &str, incoming: &[&str]) -> Result<Vec<String>, String> {
    let headers: Vec<(&str, &str)> = incoming
        .iter()
        .map(|v| ("x-forwarded-client-cert", *v))
        .collect();
    let r = get(&format!("http://127.0.0.1:{port}{path}"), &headers).await?;
    let seen = r
        .seen()
        .ok_or_else(|| format!("status {}: {}", r.status, r.body))?;
    Ok(seen["headers"]["x-forwarded-client-cert"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn forwarded_client_cert_is_what_envoy_sends() {
    let p = pki();
    let cases = cases();
    let echo = echo_backend("echo").await.port();
    let servers = support::pair::Pair::start(|listen, admin| {
        server_bootstrap(&p, &cases, listen, admin, echo)
    })
    .await;
    let ports = [servers.envoy_port, servers.weft_port];
    let clients = support::pair::Pair::start(|listen, admin| {
        client_bootstrap(&p, &cases, listen, admin, ports)
    })
    .await;
    let mut wrong = Vec::new();
    let mut reference = std::collections::BTreeMap::new();
    for c in &cases {
        let path = |side: &str| format!("/{}/{side}", c.name);
        let envoy = received(clients.envoy_port, &path("e"), c.incoming).await;
        let Ok(envoy) = envoy else {
            wrong.push(format!("{}: Envoy to Envoy: {envoy:?}", c.name));
            continue;
        };
        for (client, port) in [("envoy", clients.envoy_port), ("weft", clients.weft_port)] {
            for (side, server) in [("e", "envoy"), ("w", "weft")] {
                if (client, server) == ("envoy", "envoy") {
                    continue;
                }
                let got = received(port, &path(side), c.incoming).await;
                if got.as_ref() != Ok(&envoy) {
                    wrong.push(format!(
                        "{}: {client} client → {server} server: {got:?}\n  Envoy's: {envoy:?}",
                        c.name
                    ));
                }
            }
        }
        reference.insert(c.name, envoy);
    }
    // Plaintext straight to the servers: APPEND_FORWARD removes it.
    for (server, port) in [("envoy", servers.envoy_port), ("weft", servers.weft_port)] {
        let got = received(port, "/", &[INCOMING]).await;
        if got != Ok(Vec::new()) {
            wrong.push(format!(
                "plaintext to {server}: {got:?}, expected no header"
            ));
        }
    }
    clients.stop();
    servers.stop();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What Envoy sent, as its documentation describes it.
    let one = |name: &str| -> String {
        let lines = &reference[name];
        assert!(lines.len() <= 1, "{name}: {lines:?}");
        lines.first().cloned().unwrap_or_default()
    };
    let set = one("set");
    assert!(set.starts_with(&format!("By={SERVER_ID};Hash=")), "{set}");
    assert!(
        set.ends_with(&format!(
            ";URI={CLIENT_ID};DNS=front.test;DNS=front.default.svc"
        )),
        "{set}"
    );
    assert!(set.contains(";Subject=\""), "{set}");
    assert_eq!(one("append"), format!("{INCOMING},{set}"));
    assert_eq!(one("append-none"), set);
    assert_eq!(one("sanitize"), "");
    assert_eq!(one("nocert"), "");
    assert_eq!(one("forward"), INCOMING);
    assert_eq!(one("always"), INCOMING);
    assert!(
        one("bare").ends_with(";Subject=\"CN=bare\";URI="),
        "{}",
        one("bare")
    );
    assert!(
        one("cert").contains(";Cert=\"-----BEGIN%20CERTIFICATE-----%0A"),
        "{}",
        one("cert")
    );
}
