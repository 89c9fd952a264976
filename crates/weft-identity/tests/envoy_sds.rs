//! A real Envoy takes its certificate from the agent's SDS socket, as an
//! Istio sidecar does: the `sds-grpc` cluster on the agent's Unix socket,
//! a listener whose DownstreamTlsContext asks `default` and `ROOTCA`.
//! Envoy's admin `/certs` shows the SPIFFE id and serial the CA issued,
//! and a client with another mesh identity completes mutual TLS with it.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_identity::agent::{self, AgentOptions};
use weft_identity::client::{fetch, CaClientOptions, LocalCa, RotationOptions};
use weft_identity::Identity;
use weft_testkit::envoy::{free_port, start_envoy, TempDir};
use weft_testkit::http::get;
use weft_testkit::wait::{wait_for, PATIENCE};

/// `api_type`: GRPC (state of the world) or DELTA_GRPC.
fn bootstrap(admin: u16, listener: u16, socket: &str, api_type: &str) -> String {
    let sds = |name: &str| {
        format!(
            "{{name: {name}, sds_config: {{resource_api_version: V3, api_config_source: \
             {{api_type: {api_type}, transport_api_version: V3, \
             grpc_services: [{{envoy_grpc: {{cluster_name: sds-grpc}}}}]}}}}}}"
        )
    };
    format!(
        r#"
node: {{id: "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local", cluster: reviews.default}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: mtls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mtls
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "hello over mutual TLS\n"}}}}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - {default}
            combined_validation_context:
              default_validation_context: {{}}
              validation_context_sds_secret_config:
                {rootca}
  clusters:
  - name: sds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: sds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              pipe: {{path: "{socket}"}}
"#,
        default = sds("default"),
        rootca = sds("ROOTCA"),
    )
}

/// The serial (lower-case hex) of the certificate Envoy's admin
/// `/certs` lists with `uri` among its SANs.
async fn envoy_serial(admin: u16, uri: &str) -> Result<String, String> {
    let r = get(&format!("http://127.0.0.1:{admin}/certs"), &[]).await?;
    let doc: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    let chains = doc["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten());
    for c in chains {
        let serial = c["serial_number"].as_str().unwrap_or_default();
        if c["subject_alt_names"].to_string().contains(uri) {
            return Ok(serial.to_ascii_lowercase());
        }
    }
    Err(r.body)
}

fn agent_options(server: &common::CaServer, id: &Identity, socket: &Path) -> AgentOptions {
    AgentOptions {
        ca: CaClientOptions {
            address: server.addr,
            server_name: Some("istiod.istio-system.svc".into()),
            root_pem: server.ca.root_pem().to_string(),
            token: server.token.clone(),
        },
        identity: id.clone(),
        sds_socket: socket.to_path_buf(),
        rotation: RotationOptions::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_takes_each_rotated_certificate() {
    for api_type in ["GRPC", "DELTA_GRPC"] {
        takes_each_rotated_certificate(api_type).await;
    }
}

async fn takes_each_rotated_certificate(api_type: &str) {
    let dir = TempDir::new("envoy-sds");
    let server = common::serve_ca(&dir.0.join("state")).await;
    let id = Identity::in_cluster_local("default", "ratings").unwrap();
    let socket = dir.0.join("sds.sock");
    let mut opts = agent_options(&server, &id, &socket);
    // Renewed every two seconds or so.
    opts.rotation.ttl = Some(Duration::from_secs(4));
    let agent = agent::start(opts).await.unwrap();
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut certs = agent.rotation.certs.clone();
    let collect = {
        let issued = issued.clone();
        tokio::spawn(async move {
            loop {
                if let Some(c) = certs.borrow_and_update().clone() {
                    issued.lock().unwrap().push(c.serial.clone());
                }
                if certs.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let (admin, port) = (free_port(), free_port());
    let boot = bootstrap(admin, port, socket.to_str().unwrap(), api_type);
    let _envoy = start_envoy(&boot, admin).await;
    let uri = id.uri();
    let held = async || match envoy_serial(admin, &uri).await {
        Ok(s) if issued.lock().unwrap().contains(&s) => Ok(s),
        other => Err(other),
    };
    let what = format!("Envoy ({api_type}) to hold an issued certificate");
    let first = wait_for(&what, PATIENCE, async || held().await).await;
    let what = format!("Envoy ({api_type}) to take a renewed certificate");
    let next = wait_for(&what, PATIENCE, async || match held().await {
        Ok(s) if s != first => Ok(s),
        other => Err(other),
    })
    .await;
    assert_ne!(first, next);
    collect.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_serves_the_agents_certificate_over_sds() {
    let dir = TempDir::new("envoy-sds");
    let server = common::serve_ca(&dir.0.join("state")).await;
    let id = Identity::in_cluster_local("default", "reviews").unwrap();
    let socket = dir.0.join("var/run/secrets/workload-spiffe-uds/socket");
    let agent = agent::start(agent_options(&server, &id, &socket))
        .await
        .unwrap();

    let (admin, port) = (free_port(), free_port());
    let _envoy = start_envoy(
        &bootstrap(admin, port, socket.to_str().unwrap(), "GRPC"),
        admin,
    )
    .await;
    let cert = agent
        .rotation
        .certs
        .clone()
        .wait_for(Option::is_some)
        .await
        .unwrap()
        .clone()
        .unwrap();

    // Envoy's admin shows the certificate the CA issued.
    let uri = id.uri();
    wait_for(
        "Envoy's /certs to show the workload certificate",
        PATIENCE,
        async || match envoy_serial(admin, &uri).await {
            Ok(serial) if serial == cert.serial => Ok(()),
            other => Err(other),
        },
    )
    .await;

    // A client of the mesh (another identity, same CA) completes mutual
    // TLS with Envoy, which presents the agent's certificate.
    let client_id = Identity::in_cluster_local("default", "productpage").unwrap();
    let client_cert = fetch(&client_id, &LocalCa(server.ca.clone()), None)
        .await
        .unwrap();
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> =
        rustls::pki_types::CertificateDer::pem_slice_iter(client_cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(client_cert.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(weft_identity::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(common::SpiffeVerifier::new(server.ca.root_pem(), &uri))
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name =
        rustls::pki_types::ServerName::try_from("reviews.default.svc.cluster.local").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("mutual TLS with Envoy");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let info = weft_identity::x509::Info::read("Envoy's certificate", &presented).unwrap();
    assert_eq!(info.serial, cert.serial);
    assert_eq!(info.uri_sans, vec![uri.clone()]);
    tls.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // Envoy answers and closes, maybe without close_notify.
    let mut said = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = tls.read(&mut buf).await {
        said.extend_from_slice(&buf[..n]);
    }
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    assert!(said.ends_with("hello over mutual TLS\n"), "{said}");
}
