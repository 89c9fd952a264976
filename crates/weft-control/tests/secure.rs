//! `weft control`'s secure port: the CA's CreateCertificate and ADS on
//! one TLS port presenting a certificate the mesh CA issued; the root
//! and join token where `MeshCa` says; the root kept across a restart.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use weft_identity::client::{fetch, CaClient, CaClientOptions};
use weft_identity::Identity;
use weft_testkit::envoy::TempDir;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn options(config: &std::path::Path, state: &std::path::Path) -> weft_control::run::Options {
    let mut opts = weft_control::run::Options::new(config);
    opts.xds = "127.0.0.1:0".parse().unwrap();
    opts.debug = "127.0.0.1:0".parse().unwrap();
    let mut secure = weft_control::ca::SecureOptions::new(state);
    secure.address = "127.0.0.1:0".parse().unwrap();
    opts.ca = Some(secure);
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_port_serves_the_ca_and_xds_over_tls() {
    let dir = TempDir::new("secure");
    let config = dir.0.join("mesh");
    std::fs::create_dir_all(&config).unwrap();
    let state = dir.0.join("state");
    let control = weft_control::run::start(options(&config, &state))
        .await
        .unwrap();
    let ca = control.ca.clone().expect("the CA runs");
    assert_eq!(ca.trust_domain(), "cluster.local");
    assert_eq!(
        std::fs::read_to_string(ca.root_cert_path()).unwrap(),
        ca.root_pem()
    );
    let token = std::fs::read_to_string(ca.join_token_path()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca.join_token_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // An agent gets a certificate, verifying istiod's name.
    let client = CaClient::new(&CaClientOptions {
        address: ca.address,
        server_name: Some("istiod.istio-system.svc".into()),
        root_pem: ca.root_pem().to_string(),
        token,
    })
    .unwrap();
    let id = Identity::in_cluster_local("default", "reviews").unwrap();
    let cert = fetch(&id, &client, None).await.unwrap();
    assert_eq!(cert.root_pem, ca.root_pem());

    // A proxy gets its configuration over TLS on the same port.
    let channel = weft_identity::tls::channel(
        ca.address,
        Some("istiod.istio-system.svc"),
        ca.root_pem(),
        Duration::from_secs(30),
    )
    .unwrap();
    let mut ads = AggregatedDiscoveryServiceClient::new(channel);
    let request = DiscoveryRequest {
        node: Some(Node {
            id: "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local".into(),
            cluster: "reviews.default".into(),
            ..Default::default()
        }),
        type_url: CDS.into(),
        ..Default::default()
    };
    // The request stream stays open, as a proxy's does.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests.send(request).await.unwrap();
    let mut responses = ads
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().expect("a CDS response");
    assert_eq!(first.type_url, CDS);
    assert!(!first.resources.is_empty());
    drop(requests);

    // A restart on the same state directory keeps the root.
    let root = ca.root_pem().to_string();
    drop(control);
    let again = weft_control::run::start(options(&config, &state))
        .await
        .unwrap();
    assert_eq!(again.ca.as_ref().unwrap().root_pem(), root);
}

#[tokio::test]
async fn a_state_directory_inside_the_configuration_is_refused() {
    let dir = TempDir::new("secure");
    let state = dir.0.join(".weft-state");
    let e = match weft_control::run::start(options(&dir.0, &state)).await {
        Ok(_) => panic!("started with the state inside the configuration"),
        Err(e) => e,
    };
    assert!(
        matches!(e, weft_control::server::ServeError::StateInConfig { .. }),
        "{e}"
    );
    assert!(!state.exists(), "nothing was written there");
}

/// What an Istio sidecar's bootstrap does: xDS from istiod's secure
/// port, verifying its certificate against the mesh root and its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gets_its_configuration_over_tls_on_the_secure_port() {
    let dir = TempDir::new("secure");
    let config = dir.0.join("mesh");
    std::fs::create_dir_all(&config).unwrap();
    let control = weft_control::run::start(options(&config, &dir.0.join("state")))
        .await
        .unwrap();
    let ca = control.ca.clone().unwrap();
    let admin = weft_testkit::envoy::free_port();
    let node = "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local";
    let mut bootstrap: serde_json::Value =
        serde_json::from_str(&weft_testkit::xds::ads_bootstrap(node, admin, ca.address)).unwrap();
    bootstrap["static_resources"]["clusters"][0]["transport_socket"] = serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "istiod.istio-system.svc",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "validation_context": {
                    "trusted_ca": {"inline_string": ca.root_pem()},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": "istiod.istio-system.svc"}}
                    ]
                }
            }
        }
    });
    let _envoy = weft_testkit::envoy::start_envoy(&bootstrap.to_string(), admin).await;
    weft_testkit::wait::wait_for(
        "Envoy to accept clusters and listeners sent over TLS",
        weft_testkit::wait::PATIENCE,
        async || {
            let cds = weft_testkit::envoy::admin_stat(admin, "cluster_manager.cds.update_success")
                .await?;
            let lds = weft_testkit::envoy::admin_stat(admin, "listener_manager.lds.update_success")
                .await?;
            if cds >= 1 && lds >= 1 {
                Ok(())
            } else {
                Err(format!("cds {cds}, lds {lds}"))
            }
        },
    )
    .await;
    let proxy = control
        .server
        .status()
        .into_iter()
        .find(|p| p.id == node)
        .expect("the proxy is connected");
    assert!(proxy.types.values().all(|t| t.nack.is_none()), "{proxy:?}");
}
