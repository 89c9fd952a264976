use std::collections::{BTreeSet, HashSet};

use prost_reflect::DynamicMessage;

use super::*;
use crate::decode::POOL;

fn any(kind: Kind, json: &str) -> envoy_types::pb::google::protobuf::Any {
    let desc = POOL.get_message_by_name(kind.message()).unwrap();
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(desc, &mut de).unwrap();
    envoy_types::pb::google::protobuf::Any {
        type_url: kind.type_url(),
        value: prost_reflect::prost::Message::encode_to_vec(&msg),
    }
}

fn cluster(name: &str, kind: &str) -> envoy_types::pb::google::protobuf::Any {
    let extra = if kind == "EDS" {
        r#", "edsClusterConfig": {"edsConfig": {"ads": {}}}"#.to_string()
    } else {
        format!(
            r#", "loadAssignment": {{"clusterName": "{name}", "endpoints": [{{"lbEndpoints": [{{"endpoint": {{"address": {{"socketAddress": {{"address": "127.0.0.1", "portValue": 9}}}}}}}}]}}]}}"#
        )
    };
    any(
        Kind::Cluster,
        &format!(r#"{{"name": "{name}", "type": "{kind}", "connectTimeout": "1s"{extra}}}"#),
    )
}

fn response(
    kind: Kind,
    version: &str,
    nonce: &str,
    resources: Vec<envoy_types::pb::google::protobuf::Any>,
) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        nonce: nonce.into(),
        type_url: kind.type_url(),
        resources,
        ..Default::default()
    }
}

fn node() -> Node {
    Node {
        id: "sidecar~127.0.0.1~a.default~default.svc.cluster.local".into(),
        ..Default::default()
    }
}

#[test]
fn connect_asks_for_clusters_then_listeners_with_the_node_once() {
    let mut ads = Ads::new(node());
    let reqs = ads.on_connect();
    let types: Vec<&str> = reqs.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [Kind::Cluster.type_url(), Kind::Listener.type_url()]);
    assert_eq!(reqs[0].node.as_ref().unwrap().id, node().id);
    assert!(reqs[1].node.is_none());
    assert!(reqs
        .iter()
        .all(|r| r.version_info.is_empty() && r.response_nonce.is_empty()));
}

#[test]
fn ack_nack_and_removal() {
    let mut ads = Ads::new(node());
    ads.on_connect();
    let none = HashSet::new();
    let (ack, got) = ads.on_response(
        &response(
            Kind::Cluster,
            "1",
            "n1",
            vec![cluster("a", "STATIC"), cluster("b", "STATIC")],
        ),
        &none,
    );
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("1", "n1")
    );
    assert!(ack.error_detail.is_none());
    assert_eq!(got.unwrap().resources.len(), 2);

    // One bad cluster refuses the whole response: NACK with the old
    // version, the new nonce, and the resource and field named.
    let bad = any(
        Kind::Cluster,
        r#"{"name": "c", "type": "STATIC", "lbPolicy": "MAGLEV"}"#,
    );
    let (nack, got) = ads.on_response(
        &response(Kind::Cluster, "2", "n2", vec![cluster("a", "STATIC"), bad]),
        &none,
    );
    assert_eq!(
        (nack.version_info.as_str(), nack.response_nonce.as_str()),
        ("1", "n2")
    );
    let detail = nack.error_detail.unwrap();
    assert_eq!(detail.code, 3);
    assert!(
        detail.message.contains("Cluster \"c\": lb_policy"),
        "{}",
        detail.message
    );
    assert!(got.is_err());
    assert_eq!(
        ads.resources(Kind::Cluster).count(),
        2,
        "last good set kept"
    );

    // A state-of-the-world CDS response without "b" removes it.
    let (ack, got) = ads.on_response(
        &response(Kind::Cluster, "3", "n3", vec![cluster("a", "STATIC")]),
        &none,
    );
    assert_eq!(ack.version_info, "3");
    let got = got.unwrap();
    assert_eq!(got.removed, ["b"]);
    assert_eq!(got.resources.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn named_subscriptions() {
    let mut ads = Ads::new(node());
    ads.on_connect();
    let names: BTreeSet<String> = ["a".to_string()].into();
    let req = ads
        .subscribe(Kind::ClusterLoadAssignment, names.clone())
        .unwrap();
    assert_eq!(req.resource_names, ["a"]);
    assert!(
        ads.subscribe(Kind::ClusterLoadAssignment, names).is_none(),
        "unchanged"
    );
    let cla = |n: &str| {
        any(
            Kind::ClusterLoadAssignment,
            &format!(r#"{{"clusterName": "{n}"}}"#),
        )
    };
    let (ack, got) = ads.on_response(
        &response(
            Kind::ClusterLoadAssignment,
            "1",
            "e1",
            vec![cla("a"), cla("z")],
        ),
        &HashSet::new(),
    );
    assert_eq!(ack.resource_names, ["a"]);
    assert_eq!(
        got.unwrap().resources.keys().collect::<Vec<_>>(),
        ["a"],
        "unsubscribed z is not kept"
    );

    // A new stream re-sends every subscription with the versions held.
    let reqs = ads.on_connect();
    let eds = reqs
        .iter()
        .find(|r| r.type_url == Kind::ClusterLoadAssignment.type_url())
        .unwrap();
    assert_eq!(
        (eds.version_info.as_str(), eds.resource_names.as_slice()),
        ("1", &["a".to_string()][..])
    );
    assert!(eds.response_nonce.is_empty());
}

#[test]
fn an_unknown_type_is_nacked_on_its_own_url() {
    let mut ads = Ads::new(node());
    ads.on_connect();
    let resp = DiscoveryResponse {
        type_url: "type.googleapis.com/envoy.config.core.v3.Node".into(),
        nonce: "x".into(),
        ..Default::default()
    };
    let (nack, got) = ads.on_response(&resp, &HashSet::new());
    assert_eq!(nack.type_url, resp.type_url);
    assert_eq!(nack.response_nonce, "x");
    assert!(nack.error_detail.is_some() && got.is_err());
}
