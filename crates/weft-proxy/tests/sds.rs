//! SDS over ADS: a listener whose certificate is an SDS secret warms
//! until the secret arrives, then serves; a new version of the secret
//! is used by new handshakes while a stream of requests goes on without
//! one failing; a bad secret (a key that is not the certificate's) is
//! NACKed naming it and the last good one keeps serving. The client is
//! a real Envoy verifying weft's certificate by its SANs. A cluster
//! whose trusted CA is an SDS secret warms until it comes.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use support::pair::{socket, HCM, ROUTER};
use support::xds::{ads_bootstrap, start_weft_xds, WAIT};
use support::*;
use weft_testkit::ca::{Ca, Leaf, Validity};
use weft_testkit::wait::wait_until;
use weft_testkit::xds::FakeXds;
use weft_xds::Kind;

const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

fn hcm(routes: Value) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": "sds",
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}
        }
    })
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(port)}}]}]}
    })
}

fn secret(leaf_chain: &str, key: &str) -> Value {
    json!({"name": "default", "tls_certificate": {
        "certificate_chain": {"inline_string": leaf_chain},
        "private_key": {"inline_string": key}
    }})
}

fn secret_of(l: &Leaf) -> Value {
    secret(&l.chain_pem, &l.key_pem)
}

/// Envoy in front: `/a` expects weft's certificate to name good.test,
/// `/r` rotated.test (only the second certificate does).
fn client_bootstrap(listen: u16, admin: u16, weft: u16, root: &str) -> String {
    let tls = |san: &str| {
        json!({"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": UPSTREAM_TLS,
            "sni": "good.test",
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": root},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": san}}]
            }}
        }})
    };
    let mut a = cluster("a", weft);
    a["transport_socket"] = tls("good.test");
    let mut r = cluster("r", weft);
    r["transport_socket"] = tls("rotated.test");
    json!({
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{"name": "front", "address": socket(listen), "filter_chains": [{"filters": [hcm(json!([
                {"match": {"prefix": "/a"}, "route": {"cluster": "a"}},
                {"match": {"prefix": "/r"}, "route": {"cluster": "r"}}
            ]))]}]}],
            "clusters": [a, r]
        }
    })
    .to_string()
}

#[tokio::test]
async fn sds_secrets_warm_rotate_without_losing_requests_and_bad_ones_are_refused() {
    let dir = TempDir::new("sds");
    let root = Ca::root("sds root");
    let inter = root.intermediate("sds intermediate");
    let first = inter.leaf(&["good.test"], &[], Validity::Current);
    let second = inter.leaf(&["good.test", "rotated.test"], &[], Validity::Current);
    let stray = root.leaf(&["x.test"], &[], Validity::Current);
    let root_pem = root.write(&dir.0, "root").display().to_string();
    let echo = echo_backend("echo").await.port();

    let xds = FakeXds::start().await;
    let port = free_port();
    xds.set(Kind::Cluster, cluster("echo", echo));
    xds.set(
        Kind::Listener,
        json!({
            "name": "tls",
            "address": socket(port),
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": DOWNSTREAM_TLS,
                    "common_tls_context": {"tls_certificate_sds_secret_configs": [
                        {"name": "default", "sds_config": {"ads": {}, "resource_api_version": "V3"}}
                    ]}
                }},
                "filters": [hcm(json!([{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]))]
            }]
        }),
    );
    let weft = start_weft_xds(&ads_bootstrap("weft", free_port(), xds.addr)).await;
    let v = xds.push();
    xds.wait_ack("weft", Kind::Listener, &v, WAIT)
        .await
        .unwrap();
    let bound = |name: &str| weft.shared.bound().iter().any(|(n, _)| n == name);
    // Warming: the secret is asked for, the listener not bound yet.
    wait_until("weft subscribes to secret \"default\"", WAIT, async || {
        xds.received().iter().any(|r| {
            r.request.type_url == Kind::Secret.type_url()
                && r.request.resource_names.iter().any(|n| n == "default")
        })
    })
    .await;
    assert!(!bound("tls"), "the listener went live without its secret");

    xds.set(Kind::Secret, secret_of(&first));
    let v = xds.push();
    xds.wait_ack("weft", Kind::Secret, &v, WAIT).await.unwrap();
    wait_until("the listener goes live", WAIT, async || bound("tls")).await;

    let (listen, admin) = (free_port(), free_port());
    let envoy = start_envoy(&client_bootstrap(listen, admin, port, &root_pem), admin).await;
    let url = |p: &str| format!("http://127.0.0.1:{listen}{p}");
    assert_eq!(get(&url("/a"), &[]).await.map(|r| r.status), Ok(200));
    assert_eq!(get(&url("/r"), &[]).await.map(|r| r.status), Ok(503));

    // Rotation under a running stream of requests.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stream = {
        let (stop, served, failed, url) = (
            Arc::clone(&stop),
            Arc::clone(&served),
            Arc::clone(&failed),
            url("/a"),
        );
        tokio::spawn(async move {
            for _ in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get(&url, &[]).await {
                    Ok(r) if r.status == 200 => served.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    wait_until("requests flow", WAIT, async || {
        served.load(Ordering::Relaxed) > 0
    })
    .await;
    xds.set(Kind::Secret, secret_of(&second));
    let v = xds.push();
    xds.wait_ack("weft", Kind::Secret, &v, WAIT).await.unwrap();
    // A new handshake gets the new certificate.
    wait_until(
        "a new handshake sees the rotated certificate",
        WAIT,
        async || get(&url("/r"), &[]).await.map(|r| r.status) == Ok(200),
    )
    .await;
    let before = served.load(Ordering::Relaxed);
    wait_until("requests flow after the rotation", WAIT, async || {
        served.load(Ordering::Relaxed) > before
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    stream.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the rotation"
    );

    // A bad secret is refused by name; the last good one keeps serving.
    xds.set(Kind::Secret, secret(&second.chain_pem, &stray.key_pem));
    xds.push();
    let nack = xds.wait_nack("weft", Kind::Secret, WAIT).await.unwrap();
    assert!(
        nack.contains("\"default\"") && nack.contains("private_key"),
        "{nack}"
    );
    assert_eq!(get(&url("/r"), &[]).await.map(|r| r.status), Ok(200));
    assert_eq!(get(&url("/a"), &[]).await.map(|r| r.status), Ok(200));
    drop(envoy);

    // Upstream: a cluster whose trusted CA is an SDS secret (Istio's
    // combined validation context) warms until the secret comes, then
    // carries weft's own requests to its TLS listener.
    xds.set(Kind::Secret, secret_of(&second));
    let mut up = cluster("loop", port);
    up["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS,
        "sni": "good.test",
        "common_tls_context": {"combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": [
                {"san_type": "DNS", "matcher": {"exact": "rotated.test"}}]},
            "validation_context_sds_secret_config": {
                "name": "ROOTCA", "sds_config": {"ads": {}, "resource_api_version": "V3"}}
        }}
    }});
    xds.set(Kind::Cluster, up);
    // The cluster first: a listener naming a cluster not yet known is
    // refused, and one push may deliver listeners before clusters.
    let v = xds.push();
    xds.wait_ack("weft", Kind::Cluster, &v, WAIT).await.unwrap();
    let front = free_port();
    xds.set(
        Kind::Listener,
        json!({"name": "front", "address": socket(front), "filter_chains": [{"filters": [
            hcm(json!([{"match": {"prefix": "/"}, "route": {"cluster": "loop"}}]))]}]}),
    );
    let v = xds.push();
    xds.wait_ack("weft", Kind::Listener, &v, WAIT)
        .await
        .unwrap();
    wait_until("the front listener goes live", WAIT, async || {
        bound("front")
    })
    .await;
    assert!(
        !weft.shared.snapshot.load().clusters.contains_key("loop"),
        "the cluster went live without its secret"
    );
    let via_front = format!("http://127.0.0.1:{front}/");
    assert_eq!(get(&via_front, &[]).await.map(|r| r.status), Ok(503));
    xds.set(
        Kind::Secret,
        json!({"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": root.cert_pem()}}}),
    );
    let v = xds.push();
    xds.wait_ack("weft", Kind::Secret, &v, WAIT).await.unwrap();
    wait_until("the cluster goes live with its CA", WAIT, async || {
        get(&via_front, &[]).await.map(|r| r.status) == Ok(200)
    })
    .await;
    weft.shared.shutdown();
}

/// Istio's shape: secrets `default` (certificate) and `ROOTCA` (trusted
/// CA) from the node agent's Unix socket through a static `sds-grpc`
/// cluster. Envoy and weft run the same server bootstrap against the
/// same fake agent; an Envoy client checks both, before and after a
/// rotation; a bad secret is NACKed by both and weft names it.
#[tokio::test]
async fn sds_from_an_agent_socket_serves_rotates_and_refuses_as_envoy_does() {
    let dir = TempDir::new("sds-agent");
    let root = Ca::root("agent root");
    let inter = root.intermediate("agent intermediate");
    let spiffe = "spiffe://cluster.local/ns/default/sa/client";
    let first = inter.leaf(&["good.test"], &[], Validity::Current);
    let second = inter.leaf(&["good.test", "rotated.test"], &[], Validity::Current);
    let client_cert = root
        .leaf(&[], &[spiffe], Validity::Current)
        .write(&dir.0, "client");
    let stray = root.leaf(&["x.test"], &[], Validity::Current);
    let root_pem = root.write(&dir.0, "root").display().to_string();
    let echo = echo_backend("echo").await.port();

    let sock = dir.0.join("sds.sock");
    let agent = FakeXds::start_unix(&sock).await;
    agent.set(Kind::Secret, secret_of(&first));
    agent.set(
        Kind::Secret,
        json!({"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": root.cert_pem()}}}),
    );
    let sds = json!({
        "api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
        "resource_api_version": "V3"
    });
    let server = |node: &str, listen: u16, admin: u16| {
        let mut sds_cluster = json!({
            "name": "sds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            }
        });
        sds_cluster["load_assignment"] = json!({"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"pipe": {"path": sock.display().to_string()}}}}]}]});
        json!({
            "node": {"id": node, "cluster": "test"},
            "admin": {"address": socket(admin)},
            "static_resources": {
                "listeners": [{
                    "name": "tls", "address": socket(listen),
                    "filter_chains": [{
                        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                            "@type": DOWNSTREAM_TLS,
                            "require_client_certificate": true,
                            "common_tls_context": {
                                "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": sds}],
                                "combined_validation_context": {
                                    "default_validation_context": {"match_typed_subject_alt_names": [
                                        {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]},
                                    "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": sds}
                                }
                            }
                        }},
                        "filters": [hcm(json!([{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]))]
                    }]
                }],
                "clusters": [cluster("echo", echo), sds_cluster]
            }
        })
        .to_string()
    };
    let (ep, ea) = (free_port(), free_port());
    let envoy_server = start_envoy(&server("envoy", ep, ea), ea).await;
    let (wp, wa) = (free_port(), free_port());
    let text = server("weft", wp, wa);
    let boot = weft_envoy::parse_bootstrap("agent", &text).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = weft_proxy::Snapshot::compile(&boot).await.unwrap();
    let weft = weft_proxy::start(snapshot).await.unwrap();
    weft_proxy::xds::spawn(&weft.shared, &boot).unwrap();

    // The client: to each server, verifying good.test (/a) or
    // rotated.test (/r), with a SPIFFE client certificate.
    let tls = |san: &str| {
        json!({"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": UPSTREAM_TLS,
            "sni": "good.test",
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": client_cert.cert.display().to_string()},
                    "private_key": {"filename": client_cert.key.display().to_string()}}],
                "validation_context": {
                    "trusted_ca": {"filename": root_pem},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": san}}]
                }
            }
        }})
    };
    let mut clusters = Vec::new();
    let mut routes = Vec::new();
    for (side, port) in [("e", ep), ("w", wp)] {
        for san in ["good.test", "rotated.test"] {
            let name = format!("{}_{side}", &san[..1]);
            let mut c = cluster(&name, port);
            c["transport_socket"] = tls(san);
            clusters.push(c);
            routes.push(json!({"match": {"prefix": format!("/{}/{side}", &san[..1])}, "route": {"cluster": name}}));
        }
    }
    let (cp, ca) = (free_port(), free_port());
    let client_text = json!({
        "admin": {"address": socket(ca)},
        "static_resources": {
            "listeners": [{"name": "front", "address": socket(cp), "filter_chains": [{"filters": [hcm(json!(routes))]}]}],
            "clusters": clusters
        }
    })
    .to_string();
    let client = start_envoy(&client_text, ca).await;
    let status = async |path: &str| {
        get(&format!("http://127.0.0.1:{cp}{path}"), &[])
            .await
            .map(|r| r.status)
    };
    for side in ["e", "w"] {
        let path = format!("/g/{side}");
        wait_until(
            &format!("{path} serves with the agent's secrets"),
            WAIT,
            async || status(&path).await == Ok(200),
        )
        .await;
        assert_eq!(
            status(&format!("/r/{side}")).await,
            Ok(503),
            "{side}: not rotated yet"
        );
    }

    agent.set(Kind::Secret, secret_of(&second));
    agent.push();
    for side in ["e", "w"] {
        let path = format!("/r/{side}");
        wait_until(
            &format!("{path}: a new handshake sees the rotated certificate"),
            WAIT,
            async || status(&path).await == Ok(200),
        )
        .await;
    }

    // /config_dump's SecretsConfigDump lists the agent's secrets as
    // Envoy's does: the versions in use, private key redacted.
    let secrets_dump = async |admin: u16| {
        let r = get(&format!("http://127.0.0.1:{admin}/config_dump"), &[])
            .await
            .unwrap();
        let dump: Value = serde_json::from_str(&r.body).unwrap();
        let mut secrets = dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("SecretsConfigDump"))
            })
            .expect("a SecretsConfigDump")["dynamic_active_secrets"]
            .clone();
        let list = secrets.as_array_mut().unwrap();
        for s in list.iter_mut() {
            s.as_object_mut().unwrap().remove("last_updated");
        }
        list.sort_by_key(|s| s["name"].to_string());
        secrets
    };
    let (e, w) = (secrets_dump(ea).await, secrets_dump(wa).await);
    assert_eq!(w, e, "dynamic_active_secrets: weft ≠ envoy");
    let names: Vec<&str> = w
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["ROOTCA", "default"], "{w:#}");
    assert!(!w.to_string().contains("PRIVATE KEY"), "{w:#}");
    let version_of = |dump: &Value, name: &str| {
        dump.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["version_info"]
            .clone()
    };
    let rotated = version_of(&w, "default");
    agent.set(Kind::Secret, secret(&second.chain_pem, &stray.key_pem));
    agent.push();
    let nack = agent.wait_nack("weft", Kind::Secret, WAIT).await.unwrap();
    assert!(
        nack.contains("\"default\"") && nack.contains("private_key"),
        "{nack}"
    );
    agent.wait_nack("envoy", Kind::Secret, WAIT).await.unwrap();
    for side in ["e", "w"] {
        assert_eq!(
            status(&format!("/g/{side}")).await,
            Ok(200),
            "{side}: the last good secret"
        );
    }
    // weft's dump shows the secret in use, with its version; Envoy's
    // lists the refused one's version (it records what arrived before
    // its contexts refuse it), so here they are not compared.
    assert_eq!(version_of(&secrets_dump(wa).await, "default"), rotated);
    drop(client);
    drop(envoy_server);
    weft.shared.shutdown();
}

/// Istio's listeners come over xDS and name the agent's secrets: the
/// SDS client starts when a context first names its source, and the
/// listener warms until the secret arrives from the agent socket.
#[tokio::test]
async fn an_xds_listener_naming_the_agents_secret_warms_until_the_agent_delivers_it() {
    let dir = TempDir::new("sds-lds");
    let root = Ca::root("lds root");
    let leaf = root.leaf(&["good.test"], &[], Validity::Current);
    let root_pem = root.write(&dir.0, "root").display().to_string();
    let echo = echo_backend("echo").await.port();
    let sock = dir.0.join("agent.sock");
    let agent = FakeXds::start_unix(&sock).await;
    let xds = FakeXds::start().await;
    let port = free_port();
    xds.set(Kind::Cluster, cluster("echo", echo));
    xds.set(
        Kind::Listener,
        json!({
            "name": "tls", "address": socket(port),
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": DOWNSTREAM_TLS,
                    "common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {
                        "api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                            "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
                        "resource_api_version": "V3"}}]}
                }},
                "filters": [hcm(json!([{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]))]
            }]
        }),
    );
    let mut boot: Value =
        serde_json::from_str(&ads_bootstrap("weft", free_port(), xds.addr)).unwrap();
    boot["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "sds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            },
            "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": sock.display().to_string()}}}}]}]}
        }));
    let weft = start_weft_xds(&boot.to_string()).await;
    let v = xds.push();
    xds.wait_ack("weft", Kind::Listener, &v, WAIT)
        .await
        .unwrap();
    let bound = || weft.shared.bound().iter().any(|(n, _)| n == "tls");
    wait_until("weft asks the agent for \"default\"", WAIT, async || {
        agent.received().iter().any(|r| {
            r.request.type_url == Kind::Secret.type_url()
                && r.request.resource_names.iter().any(|n| n == "default")
        })
    })
    .await;
    assert!(!bound(), "the listener went live without its secret");
    agent.set(Kind::Secret, secret_of(&leaf));
    agent.push();
    wait_until("the listener goes live", WAIT, async || bound()).await;
    let (cp, ca) = (free_port(), free_port());
    let mut up = cluster("weft", port);
    up["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "good.test",
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": root_pem},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "good.test"}}]}}
    }});
    let client_text = json!({
        "admin": {"address": socket(ca)},
        "static_resources": {
            "listeners": [{"name": "front", "address": socket(cp), "filter_chains": [{"filters": [
                hcm(json!([{"match": {"prefix": "/"}, "route": {"cluster": "weft"}}]))]}]}],
            "clusters": [up]
        }
    })
    .to_string();
    let client = start_envoy(&client_text, ca).await;
    assert_eq!(
        get(&format!("http://127.0.0.1:{cp}/"), &[])
            .await
            .map(|r| r.status),
        Ok(200)
    );
    drop(client);
    weft.shared.shutdown();
}
