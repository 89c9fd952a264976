use std::collections::{BTreeSet, HashSet};

use super::*;

fn any(kind: Kind, json: &str) -> envoy_types::pb::google::protobuf::Any {
    crate::encode(kind, &serde_json::from_str(json).unwrap()).unwrap()
}

/// Handles a response the proxy can apply: the update and its ACK.
fn accept(ads: &mut Ads, resp: &DiscoveryResponse) -> (DiscoveryRequest, Update) {
    match ads.on_response(resp, &HashSet::new()) {
        Outcome::Update(u) => (ads.ack(u.clone()).remove(0), u),
        Outcome::Refused(_, msg) => panic!("refused: {msg}"),
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
    assert_eq!(types, [Kind::Cluster.type_url()], "LDS waits for clusters");
    assert_eq!(reqs[0].node.as_ref().unwrap().id, node().id);
    assert!(reqs
        .iter()
        .all(|r| r.version_info.is_empty() && r.response_nonce.is_empty()));
    let Outcome::Update(u) =
        ads.on_response(&response(Kind::Cluster, "1", "n1", vec![]), &HashSet::new())
    else {
        panic!("refused")
    };
    let reqs = ads.ack(u);
    let types: Vec<&str> = reqs.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [Kind::Cluster.type_url(), Kind::Listener.type_url()]);
    assert!(reqs.iter().all(|r| r.node.is_none()));
    // A later stream asks for both at once, with the versions held.
    let reqs = ads.on_connect();
    let types: Vec<&str> = reqs.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [Kind::Cluster.type_url(), Kind::Listener.type_url()]);
    assert_eq!(reqs[0].version_info, "1");
    // Only what the bootstrap asks for.
    let mut lds_only = Ads::with_types(node(), true, false);
    let reqs = lds_only.on_connect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].type_url, Kind::Listener.type_url());
}

#[test]
fn ack_nack_and_removal() {
    let mut ads = Ads::new(node());
    ads.on_connect();
    let none = HashSet::new();
    let (ack, got) = accept(
        &mut ads,
        &response(
            Kind::Cluster,
            "1",
            "n1",
            vec![cluster("a", "STATIC"), cluster("b", "STATIC")],
        ),
    );
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("1", "n1")
    );
    assert!(ack.error_detail.is_none());
    assert_eq!(got.resources.len(), 2);
    assert_eq!(got.changed.len(), 2);

    // A bad cluster is refused on its own, as Envoy refuses a cluster it
    // cannot build: the rest applies, and the answer is a NACK with the
    // old version, the new nonce, and the resource and field named.
    let bad = |name: &str| {
        any(
            Kind::Cluster,
            &format!(r#"{{"name": "{name}", "type": "STATIC", "lbPolicy": "CLUSTER_PROVIDED"}}"#),
        )
    };
    let Outcome::Update(u) = ads.on_response(
        &response(
            Kind::Cluster,
            "2",
            "n2",
            vec![cluster("a", "STATIC"), cluster("b", "STATIC"), bad("c")],
        ),
        &none,
    ) else {
        panic!("one bad cluster refused the response")
    };
    assert_eq!(u.resources.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(u.changed.is_empty());
    assert_eq!(u.rejected.len(), 1);
    let nack = ads.partial(u, Vec::new()).remove(0);
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
    assert_eq!(ads.version(Kind::Cluster), "1");
    assert_eq!(ads.resources(Kind::Cluster).count(), 2);

    // A held cluster whose new version is refused keeps the old one; it
    // is not removed for being refused.
    let Outcome::Update(u) = ads.on_response(
        &response(
            Kind::Cluster,
            "2b",
            "n2b",
            vec![cluster("a", "STATIC"), bad("b")],
        ),
        &none,
    ) else {
        panic!("refused")
    };
    assert!(u.removed.is_empty() && u.changed.is_empty(), "{u:?}");
    assert!(matches!(
        u.resources.get("b").map(|h| &*h.resource),
        Some(Resource::Cluster(c)) if c.type_ == weft_envoy::cluster::DiscoveryType::STATIC
    ));
    assert!(u.rejection().unwrap().contains("Cluster \"b\""));
    ads.partial(u, Vec::new());

    // Bytes that are not a protobuf message refuse the whole response.
    let mut garbage = cluster("z", "STATIC");
    garbage.value = vec![0xff, 0xff, 0xff];
    let Outcome::Refused(nack, _) = ads.on_response(
        &response(
            Kind::Cluster,
            "2c",
            "n2c",
            vec![cluster("a", "STATIC"), garbage],
        ),
        &none,
    ) else {
        panic!("garbage was accepted")
    };
    assert_eq!(nack.version_info, "1");
    assert_eq!(
        ads.resources(Kind::Cluster).count(),
        2,
        "last good set kept"
    );

    // A state-of-the-world CDS response without "b" removes it; "a" is
    // as it was, so nothing changed.
    let (ack, got) = accept(
        &mut ads,
        &response(Kind::Cluster, "3", "n3", vec![cluster("a", "STATIC")]),
    );
    assert_eq!(ack.version_info, "3");
    assert_eq!(got.removed, ["b"]);
    assert!(got.changed.is_empty());
    assert_eq!(got.resources.keys().collect::<Vec<_>>(), ["a"]);

    // The proxy could not apply an update that decoded: NACK, and the
    // set stays.
    let Outcome::Update(u) = ads.on_response(
        &response(Kind::Cluster, "4", "n4", vec![cluster("a", "EDS")]),
        &none,
    ) else {
        panic!("refused")
    };
    assert_eq!(u.changed.iter().collect::<Vec<_>>(), ["a"]);
    let nack = ads.nack(u.kind, "cannot bind");
    assert_eq!(
        (nack.version_info.as_str(), nack.response_nonce.as_str()),
        ("3", "n4")
    );
    assert_eq!(ads.version(Kind::Cluster), "3");
    assert!(matches!(
        ads.resources(Kind::Cluster).next().map(|(_, r)| r),
        Some(Resource::Cluster(c)) if c.type_ == weft_envoy::cluster::DiscoveryType::STATIC
    ));
}

/// What the proxy refuses while applying (a cluster it cannot build)
/// stays as it was, and the same bytes sent again are tried again: they
/// are not taken for what is held.
#[test]
fn resources_the_proxy_refuses_keep_what_they_were() {
    let mut ads = Ads::new(node());
    ads.on_connect();
    let none = HashSet::new();
    accept(
        &mut ads,
        &response(Kind::Cluster, "1", "n1", vec![cluster("a", "STATIC")]),
    );
    let next = || {
        response(
            Kind::Cluster,
            "2",
            "n2",
            vec![cluster("a", "EDS"), cluster("c", "STATIC")],
        )
    };
    let Outcome::Update(u) = ads.on_response(&next(), &none) else {
        panic!("refused")
    };
    assert_eq!(u.changed.iter().collect::<Vec<_>>(), ["a", "c"]);
    let refused = vec![
        ("a".to_string(), "Cluster \"a\": cannot build".to_string()),
        ("c".to_string(), "Cluster \"c\": cannot build".to_string()),
    ];
    let nack = ads.partial(u, refused).remove(0);
    assert_eq!(nack.version_info, "1");
    let detail = nack.error_detail.unwrap().message;
    assert!(
        detail.contains("\"a\"") && detail.contains("\"c\""),
        "{detail}"
    );
    let held: Vec<(&str, bool)> = ads
        .resources(Kind::Cluster)
        .map(|(n, r)| {
            let is_static = matches!(r, Resource::Cluster(c) if c.type_ == weft_envoy::cluster::DiscoveryType::STATIC);
            (n.as_str(), is_static)
        })
        .collect();
    assert_eq!(held, [("a", true)], "a as it was, c not held");
    let Outcome::Update(u) = ads.on_response(&next(), &none) else {
        panic!("refused")
    };
    assert_eq!(
        u.changed.iter().collect::<Vec<_>>(),
        ["a", "c"],
        "tried again"
    );
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
    let (ack, got) = accept(
        &mut ads,
        &response(
            Kind::ClusterLoadAssignment,
            "1",
            "e1",
            vec![cla("a"), cla("z")],
        ),
    );
    assert_eq!(ack.resource_names, ["a"]);
    assert_eq!(
        got.resources.keys().collect::<Vec<_>>(),
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
    let Outcome::Refused(nack, _) = ads.on_response(&resp, &HashSet::new()) else {
        panic!("accepted")
    };
    assert_eq!(nack.type_url, resp.type_url);
    assert_eq!(nack.response_nonce, "x");
    assert!(nack.error_detail.is_some());
}

mod delta {
    use super::{any, cluster, node};
    use crate::ads::delta::{DeltaAds, DeltaOutcome};
    use crate::ads::Update;
    use crate::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
    use crate::Kind;
    use std::collections::{BTreeSet, HashSet};

    fn delta(
        kind: Kind,
        version: &str,
        nonce: &str,
        resources: Vec<(&str, &str, envoy_types::pb::google::protobuf::Any)>,
        removed: &[&str],
    ) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: version.into(),
            nonce: nonce.into(),
            type_url: kind.type_url(),
            resources: resources
                .into_iter()
                .map(|(name, v, a)| Resource {
                    name: name.into(),
                    version: v.into(),
                    resource: Some(a),
                    ..Default::default()
                })
                .collect(),
            removed_resources: removed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn accept(
        ads: &mut DeltaAds,
        resp: &DeltaDiscoveryResponse,
    ) -> (Vec<DeltaDiscoveryRequest>, Update) {
        match ads.on_response(resp, &HashSet::new()) {
            DeltaOutcome::Update(u) => (ads.ack(u.clone()), u),
            DeltaOutcome::Refused(_, msg) => panic!("refused: {msg}"),
        }
    }

    #[test]
    fn responses_add_change_and_remove_and_reconnects_announce_versions() {
        let mut ads = DeltaAds::with_types(node(), true, true);
        let first = ads.on_connect();
        assert_eq!(first.len(), 1, "LDS waits for clusters");
        assert_eq!(first[0].resource_names_subscribe, ["*"]);
        assert!(first[0].node.is_some());
        let (acks, u) = accept(
            &mut ads,
            &delta(
                Kind::Cluster,
                "1",
                "n1",
                vec![
                    ("a", "va", cluster("a", "STATIC")),
                    ("b", "vb", cluster("b", "STATIC")),
                ],
                &[],
            ),
        );
        assert_eq!(u.resources.len(), 2);
        assert_eq!(acks[0].response_nonce, "n1");
        assert!(acks[0].error_detail.is_none());
        assert_eq!(acks[1].type_url, Kind::Listener.type_url(), "then LDS");
        // Only what changed comes; the rest stays.
        let (_, u) = accept(
            &mut ads,
            &delta(
                Kind::Cluster,
                "2",
                "n2",
                vec![("c", "vc", cluster("c", "STATIC"))],
                &["a"],
            ),
        );
        let names: Vec<&str> = u.resources.keys().map(String::as_str).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(u.removed, ["a"]);
        assert_eq!(u.changed.iter().collect::<Vec<_>>(), ["c"]);
        // A bad resource is refused on its own: the rest applies, the
        // answer is a NACK with the nonce, and the refused one is not held.
        let bad = any(
            Kind::Cluster,
            r#"{"name": "d", "type": "STATIC", "lbPolicy": "CLUSTER_PROVIDED"}"#,
        );
        match ads.on_response(
            &delta(
                Kind::Cluster,
                "3",
                "n3",
                vec![("d", "vd", bad), ("e", "ve", cluster("e", "STATIC"))],
                &[],
            ),
            &HashSet::new(),
        ) {
            DeltaOutcome::Update(u) => {
                assert_eq!(u.changed.iter().collect::<Vec<_>>(), ["e"]);
                let msg = u.rejection().unwrap();
                assert!(msg.contains("Cluster \"d\""), "{msg}");
                let nack = ads.partial(u, Vec::new()).remove(0);
                assert_eq!(nack.response_nonce, "n3");
                assert!(nack.error_detail.unwrap().message.contains("Cluster \"d\""));
            }
            DeltaOutcome::Refused(_, msg) => panic!("one bad cluster refused the response: {msg}"),
        }
        assert_eq!(ads.version(Kind::Cluster), "2");
        // Bytes that are not a protobuf message refuse the whole response.
        let mut garbage = cluster("f", "STATIC");
        garbage.value = vec![0xff, 0xff, 0xff];
        assert!(matches!(
            ads.on_response(
                &delta(Kind::Cluster, "4", "n4", vec![("f", "vf", garbage)], &[]),
                &HashSet::new(),
            ),
            DeltaOutcome::Refused(..)
        ));
        // A resource the proxy refuses keeps its held version.
        let DeltaOutcome::Update(u) = ads.on_response(
            &delta(
                Kind::Cluster,
                "5",
                "n5",
                vec![("b", "vb2", cluster("b", "EDS"))],
                &[],
            ),
            &HashSet::new(),
        ) else {
            panic!("refused")
        };
        ads.partial(
            u,
            vec![("b".to_string(), "Cluster \"b\": cannot build".to_string())],
        );
        // A new stream announces the versions held.
        let again = ads.on_connect();
        let cds = again
            .iter()
            .find(|r| r.type_url == Kind::Cluster.type_url())
            .unwrap();
        let held: BTreeSet<(String, String)> = cds
            .initial_resource_versions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            held,
            [
                ("b".to_string(), "vb".to_string()),
                ("c".to_string(), "vc".to_string()),
                ("e".to_string(), "ve".to_string())
            ]
            .into()
        );
    }

    #[test]
    fn named_subscriptions_send_differences() {
        let mut ads = DeltaAds::with_types(node(), false, true);
        ads.on_connect();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let r = ads
            .subscribe(Kind::ClusterLoadAssignment, names(&["x", "y"]))
            .unwrap();
        assert_eq!(r.resource_names_subscribe, ["x", "y"]);
        assert!(ads
            .subscribe(Kind::ClusterLoadAssignment, names(&["x", "y"]))
            .is_none());
        let r = ads
            .subscribe(Kind::ClusterLoadAssignment, names(&["y", "z"]))
            .unwrap();
        assert_eq!(r.resource_names_subscribe, ["z"]);
        assert_eq!(r.resource_names_unsubscribe, ["x"]);
    }
}
