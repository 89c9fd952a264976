//! `DeltaSecrets`: SDS incremental. A request subscribes and
//! unsubscribes secret names; the newly subscribed are sent (once there
//! is a certificate), and on rotation every subscribed secret is sent
//! again with the new version. ACKs are noted, NACKs logged with Envoy's
//! error detail and not answered; a request answering a superseded
//! nonce changes subscriptions but is otherwise ignored.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{secret, Certs, SECRET_TYPE};

pub(super) async fn run(
    mut requests: Streaming<DeltaDiscoveryRequest>,
    mut certs: Certs,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
) {
    let mut subscribed = BTreeSet::<String>::new();
    // Subscribed names not yet sent with the current certificate.
    let mut pending = BTreeSet::<String>::new();
    let mut sent_serial: Option<String> = None;
    let mut nonce = 0u64;
    let mut node = String::new();
    loop {
        tokio::select! {
            request = requests.message() => match request {
                Ok(Some(r)) => {
                    if let Some(n) = &r.node {
                        node = n.id.clone();
                    }
                    if !r.type_url.is_empty() && r.type_url != SECRET_TYPE {
                        tracing::warn!(%node, type_url = %r.type_url, "delta SDS request for another type; ignored");
                        continue;
                    }
                    for name in r.resource_names_unsubscribe {
                        subscribed.remove(&name);
                        pending.remove(&name);
                    }
                    for name in r.resource_names_subscribe {
                        if subscribed.insert(name.clone()) {
                            pending.insert(name);
                        }
                    }
                    let answering_current = r.response_nonce == nonce.to_string();
                    if let Some(detail) = r.error_detail.filter(|_| answering_current) {
                        tracing::warn!(%node, "Envoy rejected the secrets (NACK): {}", detail.message);
                    } else if answering_current && !r.response_nonce.is_empty() {
                        tracing::debug!(%node, "secrets accepted (ACK)");
                    }
                }
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(%node, "delta SDS stream ended: {status}");
                    return;
                }
            },
            changed = certs.changed() => {
                if changed.is_err() {
                    let _ = tx.send(Err(Status::unavailable("the agent stopped"))).await;
                    return;
                }
            }
        }
        let Some(cert) = certs.borrow_and_update().clone() else {
            continue;
        };
        if sent_serial.as_deref() != Some(cert.serial.as_str()) {
            // A new certificate: everything subscribed is out of date.
            pending = subscribed.clone();
            sent_serial = Some(cert.serial.clone());
        }
        if pending.is_empty() {
            continue;
        }
        let resources: Vec<Resource> = std::mem::take(&mut pending)
            .into_iter()
            .filter_map(|name| {
                let any = secret(&cert, &name)?;
                Some(Resource {
                    name,
                    version: cert.serial.clone(),
                    resource: Some(any),
                    ..Default::default()
                })
            })
            .collect();
        if resources.is_empty() {
            continue;
        }
        nonce += 1;
        let response = DeltaDiscoveryResponse {
            system_version_info: cert.serial.clone(),
            resources,
            type_url: SECRET_TYPE.into(),
            nonce: nonce.to_string(),
            ..Default::default()
        };
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
    }
}
