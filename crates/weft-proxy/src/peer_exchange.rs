//! Istio's HTTP metadata exchange (`istio.metadata_exchange`,
//! `io.istio.http.peer_metadata.Config`): how each proxy of a call learns
//! who the other is, for the standard metrics' peer labels.
//!
//! A client sidecar (upstream propagation) adds `x-envoy-peer-metadata`
//! and `x-envoy-peer-metadata-id` to the requests it sends; the server
//! sidecar (downstream discovery) reads and removes them, so the
//! application never sees them, and (downstream propagation) answers
//! with its own, only when the request carried them; the client
//! (upstream discovery) reads and removes those from the response.
//! `workload_discovery` (a lookup in Istio's workload metadata xDS,
//! which weft does not serve) finds no one in weft: a peer without the
//! headers stays unknown, as it does in Istio when that lookup fails.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::peer::Peer;

pub(crate) static METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
pub(crate) static METADATA_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");

/// The compiled filter.
#[derive(Debug)]
pub struct PeerExchange {
    /// This proxy's headers, made once.
    own: HeaderValue,
    own_id: Option<HeaderValue>,
    downstream_discovery: bool,
    upstream_discovery: bool,
    downstream_propagation: bool,
    upstream_propagation: bool,
    /// Labels the exchange carries beyond Istio's four.
    additional: Vec<String>,
}

/// What the exchange learnt about one request's peers.
#[derive(Debug, Default, Clone)]
pub struct Peers {
    pub downstream: Option<Peer>,
    pub upstream: Option<Peer>,
    /// The request carried the headers: answer with ours.
    echo: bool,
}

impl PeerExchange {
    /// `node` is the bootstrap's node metadata, `node_id` its id.
    pub fn compile(
        c: &weft_envoy::istio::PeerMetadataConfig,
        node: Option<&serde_json::Value>,
        node_id: &str,
    ) -> Self {
        let headers = |list: &[weft_envoy::istio::DiscoveryMethod]| {
            list.iter().any(|d| d.istio_headers.is_some())
        };
        let me = Peer::from_node_metadata(node, &c.additional_labels);
        PeerExchange {
            own: me.encode(),
            own_id: HeaderValue::from_str(node_id)
                .ok()
                .filter(|_| !node_id.is_empty()),
            downstream_discovery: headers(&c.downstream_discovery),
            upstream_discovery: headers(&c.upstream_discovery),
            downstream_propagation: !c.downstream_propagation.is_empty(),
            upstream_propagation: !c.upstream_propagation.is_empty(),
            additional: c.additional_labels.clone(),
        }
    }

    fn take(&self, headers: &mut HeaderMap) -> (bool, Option<Peer>) {
        let found = headers.remove(&METADATA);
        let had_id = headers.remove(&METADATA_ID).is_some();
        let peer = found
            .as_ref()
            .and_then(|v| Peer::decode(v.as_bytes(), &self.additional));
        (found.is_some() || had_id, peer)
    }

    fn put(&self, headers: &mut HeaderMap) {
        headers.insert(METADATA.clone(), self.own.clone());
        if let Some(id) = &self.own_id {
            headers.insert(METADATA_ID.clone(), id.clone());
        }
    }

    /// On the request, before it goes on.
    pub fn on_request(&self, headers: &mut HeaderMap, peers: &mut Peers) {
        if self.downstream_discovery {
            let (had, peer) = self.take(headers);
            peers.echo = had;
            if peers.downstream.is_none() {
                peers.downstream = peer;
            }
        }
        if self.upstream_propagation {
            self.put(headers);
        }
    }

    /// On the response, before it goes back.
    pub fn on_response(&self, headers: &mut HeaderMap, peers: &mut Peers) {
        if self.upstream_discovery {
            let (_, peer) = self.take(headers);
            if peers.upstream.is_none() {
                peers.upstream = peer;
            }
        }
        if self.downstream_propagation && peers.echo {
            self.put(headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(side: &str, meta: serde_json::Value) -> PeerExchange {
        let cfg: weft_envoy::istio::PeerMetadataConfig = serde_json::from_value(match side {
            "outbound" => {
                json!({"upstream_discovery": [{"istio_headers": {}}, {"workload_discovery": {}}],
                                 "upstream_propagation": [{"istio_headers": {}}]})
            }
            _ => {
                json!({"downstream_discovery": [{"istio_headers": {}}, {"workload_discovery": {}}],
                        "downstream_propagation": [{"istio_headers": {}}]})
            }
        })
        .unwrap();
        PeerExchange::compile(
            &cfg,
            Some(&meta),
            &format!("sidecar~10.0.0.1~{side}.ns~ns.svc.cluster.local"),
        )
    }

    #[test]
    fn client_and_server_learn_each_other_and_the_application_sees_nothing() {
        let client = filter(
            "outbound",
            json!({"WORKLOAD_NAME": "productpage-v1", "NAMESPACE": "default"}),
        );
        let server = filter(
            "inbound",
            json!({"WORKLOAD_NAME": "reviews-v2", "NAMESPACE": "default",
                                              "LABELS": {"app": "reviews", "version": "v2"}}),
        );
        let (mut on_client, mut on_server) = (Peers::default(), Peers::default());
        let mut req = HeaderMap::new();
        client.on_request(&mut req, &mut on_client);
        assert!(req.contains_key(&METADATA) && req.contains_key(&METADATA_ID));
        server.on_request(&mut req, &mut on_server);
        assert!(
            !req.contains_key(&METADATA) && !req.contains_key(&METADATA_ID),
            "stripped"
        );
        assert_eq!(
            on_server.downstream.as_ref().unwrap().workload,
            "productpage-v1"
        );
        let mut resp = HeaderMap::new();
        server.on_response(&mut resp, &mut on_server);
        assert!(
            resp.contains_key(&METADATA),
            "answered: the request carried the headers"
        );
        client.on_response(&mut resp, &mut on_client);
        assert!(!resp.contains_key(&METADATA));
        let up = on_client.upstream.unwrap();
        assert_eq!(
            (up.workload.as_str(), up.version.as_str()),
            ("reviews-v2", "v2")
        );
        // A caller outside the mesh sent nothing: no answer either.
        let mut plain = Peers::default();
        server.on_request(&mut HeaderMap::new(), &mut plain);
        let mut resp = HeaderMap::new();
        server.on_response(&mut resp, &mut plain);
        assert!(plain.downstream.is_none() && resp.is_empty());
    }
}
