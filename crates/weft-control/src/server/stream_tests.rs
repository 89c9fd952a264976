//! What a stream sends as snapshots follow one another: only what
//! changed among what the proxy asked for, removals named (delta), and
//! endpoints of replaced clusters again — with what the proxy holds
//! kept by reference to the published types.

use prost::Message as _;
use weft_xds::discovery::{DeltaDiscoveryResponse, DiscoveryResponse};

use super::*;
use crate::server::encode::{Any, ByKind, Cache, Res};

/// The published resources: kind → (name, content).
fn publish(cache: &mut Cache, version: u64, types: &[(Kind, &[(&str, u8)])]) -> Arc<Encoded> {
    let mut by_kind = ByKind::new();
    for (kind, resources) in types {
        let t = by_kind.entry(*kind).or_default();
        for (name, fill) in *resources {
            let value = [name.as_bytes(), &[*fill]].concat();
            let res = Res::new(Any {
                type_url: String::new(),
                value,
            });
            t.insert(name.to_string(), res);
        }
    }
    cache.finish("shape", version, by_kind)
}

fn stream(delta: bool, encoded: Arc<Encoded>) -> StreamState {
    StreamState {
        id: 1,
        delta,
        proxy: None,
        encoded,
        version: 1,
        subs: BTreeMap::new(),
        nonce: 0,
        connected: None,
    }
}

fn body(m: &Out) -> Vec<u8> {
    let all: Vec<u8> = m.chunks.iter().flat_map(|c| c.iter().copied()).collect();
    all[5..].to_vec()
}

/// Names in a state-of-the-world response.
fn sotw_names(m: &Out) -> Vec<String> {
    let r = DiscoveryResponse::decode(body(m).as_slice()).unwrap();
    r.resources
        .iter()
        .map(|a| {
            let v = &a.value;
            String::from_utf8_lossy(&v[..v.len() - 1]).into_owned()
        })
        .collect()
}

/// (names sent, names removed) in a delta response.
fn delta_names(m: &Out) -> (Vec<String>, Vec<String>) {
    let r = DeltaDiscoveryResponse::decode(body(m).as_slice()).unwrap();
    (
        r.resources.iter().map(|r| r.name.clone()).collect(),
        r.removed_resources,
    )
}

fn keys(names: &[&str]) -> KeySet {
    names.iter().map(name_key).collect()
}

const EDS: Kind = Kind::ClusterLoadAssignment;

#[test]
fn delta_sends_changes_among_subscribed_names_and_names_removals() {
    let mut cache = Cache::default();
    let v1 = publish(&mut cache, 1, &[(EDS, &[("a", 1), ("b", 1), ("c", 1)])]);
    let mut st = stream(true, v1);
    let te = Arc::clone(&st.encoded[&EDS]);
    st.subs.insert(
        EDS,
        Subscription {
            names: Names::of(keys(&["a", "b"]), &te),
            ..Default::default()
        },
    );
    let first = st.respond(EDS, true).expect("first response");
    assert_eq!(delta_names(&first), (vec!["a".into(), "b".into()], vec![]));

    // a changes, b goes away, c (not subscribed) changes, d appears.
    st.encoded = publish(&mut cache, 2, &[(EDS, &[("a", 2), ("c", 2), ("d", 1)])]);
    let next = st.respond(EDS, false).expect("a changed");
    assert_eq!(delta_names(&next), (vec!["a".into()], vec!["b".into()]));
    // Nothing more to say about the same snapshot.
    assert!(st.respond(EDS, false).is_none());
}

#[test]
fn delta_initial_versions_spare_what_the_proxy_already_holds() {
    let mut cache = Cache::default();
    let v1 = publish(&mut cache, 1, &[(EDS, &[("a", 1), ("b", 1)])]);
    let digest_a = v1[&EDS].digest(name_key("a")).unwrap();
    let mut st = stream(true, v1);
    let te = Arc::clone(&st.encoded[&EDS]);
    let mut sub = Subscription {
        names: Names::of(keys(&["a", "b", "gone"]), &te),
        ..Default::default()
    };
    sub.initial
        .insert(name_key("a"), (digest_a, "a".to_string()));
    sub.initial
        .insert(name_key("gone"), (7, "gone".to_string()));
    st.subs.insert(EDS, sub);
    let first = st.respond(EDS, true).unwrap();
    assert_eq!(delta_names(&first), (vec!["b".into()], vec!["gone".into()]));
}

#[test]
fn sotw_endpoints_follow_changes_and_replaced_clusters_by_reference() {
    let mut cache = Cache::default();
    let cds: &[(&str, u8)] = &[("a", 1), ("b", 1)];
    let v1 = publish(
        &mut cache,
        1,
        &[(Kind::Cluster, cds), (EDS, &[("a", 1), ("b", 1)])],
    );
    let mut st = stream(false, v1);
    let te = Arc::clone(&st.encoded[&EDS]);
    st.subs.insert(Kind::Cluster, Subscription::default());
    st.subs.insert(
        EDS,
        Subscription {
            names: Names::of(keys(&["a", "b"]), &te),
            ..Default::default()
        },
    );
    // Every endpoint set asked for: the names are the type's, by reference.
    assert!(matches!(st.subs[&EDS].names, Names::Like(_)));
    assert_eq!(
        sotw_names(&st.respond(Kind::Cluster, true).unwrap()),
        ["a", "b"]
    );
    assert_eq!(sotw_names(&st.respond(EDS, true).unwrap()), ["a", "b"]);

    // Only b's endpoints change: only b goes out, and the stream's
    // names now refer to the new type (same names).
    st.encoded = publish(
        &mut cache,
        2,
        &[(Kind::Cluster, cds), (EDS, &[("a", 1), ("b", 2)])],
    );
    assert!(
        st.respond(Kind::Cluster, false).is_none(),
        "clusters unchanged"
    );
    assert_eq!(sotw_names(&st.respond(EDS, false).unwrap()), ["b"]);
    match &st.subs[&EDS].names {
        Names::Like(t) => assert!(Arc::ptr_eq(t, &st.encoded[&EDS])),
        _ => panic!("names copied"),
    }

    // Cluster a is replaced, its endpoints are not: Envoy warms it again
    // and waits for them, so they go out again.
    st.encoded = publish(
        &mut cache,
        3,
        &[
            (Kind::Cluster, &[("a", 9), ("b", 1)]),
            (EDS, &[("a", 1), ("b", 2)]),
        ],
    );
    assert_eq!(
        sotw_names(&st.respond(Kind::Cluster, false).unwrap()),
        ["a", "b"]
    );
    assert_eq!(sotw_names(&st.respond(EDS, false).unwrap()), ["a"]);
    assert!(st.respond(EDS, false).is_none());
}

#[test]
fn a_name_list_is_the_whole_type_only_with_each_name_once() {
    let mut cache = Cache::default();
    let v1 = publish(&mut cache, 1, &[(EDS, &[("a", 1), ("b", 1)])]);
    let te = &v1[&EDS];
    let k = |names: &[&str]| names.iter().map(name_key).collect::<Vec<_>>();
    assert!(exactly(te, k(&["a", "b"]).into_iter()));
    assert!(exactly(te, k(&["b", "a"]).into_iter()));
    // As many names as the type has, but b repeated and a left out.
    assert!(!exactly(te, k(&["b", "b"]).into_iter()));
    assert!(!exactly(te, k(&["a"]).into_iter()));
    assert!(!exactly(te, k(&["a", "b", "c"]).into_iter()));
    assert!(!exactly(te, k(&["a", "c"]).into_iter()));
}
