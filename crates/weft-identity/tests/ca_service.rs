//! The CA's gRPC API end to end, in process: served over TLS on port 0,
//! an agent-side client gets a certificate and renews it (tokio's clock
//! paused, so half a lifetime passes at once), and refusals come back
//! with their gRPC codes.

mod common;

use std::time::Duration;

use weft_identity::client::{
    fetch, CaClient, CaClientOptions, ClientError, Rotation, RotationOptions,
};
use weft_identity::proto::IstioCertificateRequest;
use weft_identity::x509::Info;
use weft_identity::Identity;
use weft_testkit::envoy::TempDir;

const HOUR: Duration = Duration::from_secs(3600);

fn client(server: &common::CaServer, root_pem: &str, token: &str) -> CaClient {
    CaClient::new(&CaClientOptions {
        address: server.addr,
        server_name: None,
        root_pem: root_pem.to_string(),
        token: token.to_string(),
    })
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_workload_gets_its_certificate_over_tls_and_renews_it() {
    let dir = TempDir::new("ca-e2e");
    let server = common::serve_ca(&dir.0.join("state")).await;
    let id = Identity::in_cluster_local("default", "reviews").unwrap();
    let ca_client = client(&server, server.ca.root_pem(), &server.token);
    let mut rotation = Rotation::start(
        id.clone(),
        ca_client,
        RotationOptions {
            ttl: Some(HOUR),
            ..Default::default()
        },
    );
    let first = rotation.first().await;
    assert_eq!(first.identity, id);
    assert_eq!(first.root_pem, server.ca.root_pem());
    let certs = weft_identity::x509::nonempty_certs_from_pem("chain", &first.chain_pem).unwrap();
    let leaf = Info::read("leaf", &certs[0]).unwrap();
    assert_eq!(leaf.uri_sans, vec![id.uri()]);
    assert_eq!(
        leaf.not_after.duration_since(leaf.not_before).unwrap(),
        HOUR + weft_identity::ca::BACKDATE
    );

    // Half a lifetime later (no real wait: the clock is paused), a new
    // certificate, over the same TLS connection or a new one.
    rotation.certs.changed().await.unwrap();
    let second = rotation.certs.borrow_and_update().clone().unwrap();
    assert_ne!(second.serial, first.serial);
    assert_ne!(second.key_pem, first.key_pem);
}

#[tokio::test]
async fn refusals_carry_grpc_codes() {
    let dir = TempDir::new("ca-e2e");
    let server = common::serve_ca(&dir.0.join("state")).await;
    let id = Identity::in_cluster_local("default", "reviews").unwrap();
    let code = |e: ClientError| match e {
        ClientError::Call { code, message } => (code, message),
        other => panic!("not a call error: {other}"),
    };

    // A wrong token.
    let wrong = client(&server, server.ca.root_pem(), "not-the-join-token");
    let (c, m) = code(fetch(&id, &wrong, None).await.unwrap_err());
    assert_eq!(c, tonic::Code::Unauthenticated, "{m}");

    let good = client(&server, server.ca.root_pem(), &server.token);
    // A malformed CSR.
    let (c, m) = code(
        good.create_certificate(IstioCertificateRequest {
            csr: "not a CSR".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("malformed CSR"), "{m}");

    // Another trust domain.
    let foreign = Identity::new("example.org", "default", "reviews").unwrap();
    let (c, m) = code(fetch(&foreign, &good, None).await.unwrap_err());
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("trust domain"), "{m}");

    // A lifetime beyond the maximum.
    let (c, m) = code(
        fetch(&id, &good, Some(Duration::from_secs(365 * 24 * 3600)))
            .await
            .unwrap_err(),
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");

    // A client that trusts another root does not talk to this CA.
    let other = TempDir::new("ca-e2e-other");
    let other_ca = weft_identity::ca::Ca::open(
        &weft_identity::ca::CaSource::SelfSigned {
            state_dir: other.0.clone(),
        },
        Default::default(),
    )
    .unwrap();
    let mistrusting = client(&server, other_ca.root_pem(), &server.token);
    let e = fetch(&id, &mistrusting, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Call {
                code: tonic::Code::Unavailable,
                ..
            }
        ),
        "{e}"
    );

    // And the good one works.
    let cert = fetch(&id, &good, None).await.unwrap();
    assert_eq!(cert.identity, id);
}
