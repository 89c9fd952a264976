//! SDS over a real Unix socket with a gRPC client in the test: the
//! secrets served, ACKs and NACKs, and a rotation pushed.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio_stream::StreamExt;
use weft_testkit::envoy::TempDir;

use super::*;
use crate::ca::{Ca, CaOptions, CaSource};
use crate::client::{fetch, LocalCa};
use crate::identity::Identity;

async fn cert(ca: &LocalCa) -> Arc<WorkloadCert> {
    let id = Identity::in_cluster_local("default", "reviews").unwrap();
    Arc::new(fetch(&id, ca, None).await.unwrap())
}

async fn client(socket: PathBuf) -> SecretDiscoveryServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_static("http://sds")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                let s = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .unwrap();
    SecretDiscoveryServiceClient::new(channel)
}

fn request(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "sidecar~127.0.0.1~reviews.default~default.svc.cluster.local".into(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: SECRET_TYPE.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn secrets(r: &DiscoveryResponse) -> Vec<Secret> {
    r.resources
        .iter()
        .map(|a| {
            assert_eq!(a.type_url, SECRET_TYPE);
            Secret::decode(a.value.as_slice()).unwrap()
        })
        .collect()
}

fn inline(d: &Option<DataSource>) -> String {
    match d.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(data_source::Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not inline bytes: {other:?}"),
    }
}

#[tokio::test]
async fn serves_default_and_rootca_and_pushes_rotations() {
    let dir = TempDir::new("sds");
    let ca = LocalCa(Arc::new(
        Ca::open(
            &CaSource::SelfSigned {
                state_dir: dir.0.join("state"),
            },
            CaOptions::default(),
        )
        .unwrap(),
    ));
    let (tx, rx) = watch::channel(None);
    let socket = dir.0.join("var/run/secrets/workload-spiffe-uds/socket");
    let _sds = serve(&socket, rx).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may connect");
    let mut client = client(socket).await;

    // Asked before there is a certificate: answered once there is one.
    let (req_tx, req_rx) = mpsc::channel(4);
    req_tx
        .send(request(&[DEFAULT_SECRET, ROOT_SECRET], "", ""))
        .await
        .unwrap();
    let mut responses = client
        .stream_secrets(ReceiverStream::new(req_rx))
        .await
        .unwrap()
        .into_inner();
    let first = cert(&ca).await;
    tx.send_replace(Some(first.clone()));
    let r = responses.next().await.unwrap().unwrap();
    assert_eq!(r.version_info, first.serial);
    let got = secrets(&r);
    assert_eq!(got.len(), 2);
    let by_name = |n: &str| got.iter().find(|s| s.name == n).unwrap().clone();
    match by_name(DEFAULT_SECRET).r#type {
        Some(secret::Type::TlsCertificate(t)) => {
            assert_eq!(inline(&t.certificate_chain), first.chain_pem);
            assert_eq!(inline(&t.private_key), first.key_pem);
        }
        other => panic!("default is {other:?}"),
    }
    match by_name(ROOT_SECRET).r#type {
        Some(secret::Type::ValidationContext(v)) => {
            assert_eq!(inline(&v.trusted_ca), ca.0.root_pem());
        }
        other => panic!("ROOTCA is {other:?}"),
    }

    // ACK; then a rotation is pushed as a new version.
    req_tx
        .send(request(
            &[DEFAULT_SECRET, ROOT_SECRET],
            &r.version_info,
            &r.nonce,
        ))
        .await
        .unwrap();
    let second = cert(&ca).await;
    tx.send_replace(Some(second.clone()));
    let r2 = responses.next().await.unwrap().unwrap();
    assert_eq!(r2.version_info, second.serial);
    assert_ne!(r2.nonce, r.nonce);

    // A NACK is not answered with the same secrets again; the next
    // rotation is sent.
    let mut nack = request(&[DEFAULT_SECRET, ROOT_SECRET], &r.version_info, &r2.nonce);
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad key".into(),
        ..Default::default()
    });
    req_tx.send(nack).await.unwrap();
    let third = cert(&ca).await;
    tx.send_replace(Some(third.clone()));
    let r3 = responses.next().await.unwrap().unwrap();
    assert_eq!(r3.version_info, third.serial);

    // Only what is named is sent.
    req_tx
        .send(request(&[ROOT_SECRET], &r3.version_info, &r3.nonce))
        .await
        .unwrap();
    let r4 = responses.next().await.unwrap().unwrap();
    let only: Vec<String> = secrets(&r4).into_iter().map(|s| s.name).collect();
    assert_eq!(only, vec![ROOT_SECRET.to_string()]);

    // FetchSecrets answers at once.
    let fetched = client
        .fetch_secrets(request(&[DEFAULT_SECRET], "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.version_info, third.serial);

    // Nothing else was sent.
    drop(req_tx);
    let rest = tokio::time::timeout(Duration::from_secs(30), responses.next())
        .await
        .expect("the stream ends when the client's requests end");
    assert!(rest.is_none() || rest.unwrap().is_err());
}

#[tokio::test]
async fn delta_secrets_sends_what_is_subscribed_and_each_rotation() {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    let dir = TempDir::new("sds");
    let ca = LocalCa(Arc::new(
        Ca::open(
            &CaSource::SelfSigned {
                state_dir: dir.0.join("state"),
            },
            CaOptions::default(),
        )
        .unwrap(),
    ));
    let first = cert(&ca).await;
    let (tx, rx) = watch::channel(Some(first.clone()));
    let socket = dir.0.join("sds.sock");
    let _sds = serve(&socket, rx).unwrap();
    let mut client = client(socket).await;
    let delta = |subscribe: &[&str], unsubscribe: &[&str], nonce: &str| DeltaDiscoveryRequest {
        type_url: SECRET_TYPE.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    let (req_tx, req_rx) = mpsc::channel(4);
    req_tx
        .send(delta(&[DEFAULT_SECRET], &[], ""))
        .await
        .unwrap();
    let mut responses = client
        .delta_secrets(ReceiverStream::new(req_rx))
        .await
        .unwrap()
        .into_inner();
    let names = |r: &DeltaDiscoveryResponse| -> Vec<String> {
        r.resources.iter().map(|r| r.name.clone()).collect()
    };
    let r1 = responses.next().await.unwrap().unwrap();
    assert_eq!(names(&r1), vec![DEFAULT_SECRET.to_string()]);
    assert_eq!(r1.resources[0].version, first.serial);

    // Subscribing ROOTCA (and ACKing) sends only ROOTCA.
    req_tx
        .send(delta(&[ROOT_SECRET], &[], &r1.nonce))
        .await
        .unwrap();
    let r2 = responses.next().await.unwrap().unwrap();
    assert_eq!(names(&r2), vec![ROOT_SECRET.to_string()]);
    let decoded =
        Secret::decode(r2.resources[0].resource.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(decoded.name, ROOT_SECRET);

    // Unsubscribed, default is not sent on rotation; ROOTCA is. (Both
    // unsubscribed, then ROOTCA again: its answer says both requests
    // were read before the rotation.)
    req_tx
        .send(delta(&[], &[DEFAULT_SECRET, ROOT_SECRET], &r2.nonce))
        .await
        .unwrap();
    req_tx
        .send(delta(&[ROOT_SECRET], &[], &r2.nonce))
        .await
        .unwrap();
    let r3 = responses.next().await.unwrap().unwrap();
    assert_eq!(names(&r3), vec![ROOT_SECRET.to_string()]);
    let second = cert(&ca).await;
    tx.send_replace(Some(second.clone()));
    let r4 = responses.next().await.unwrap().unwrap();
    assert_eq!(names(&r4), vec![ROOT_SECRET.to_string()]);
    assert_eq!(r4.system_version_info, second.serial);
}
