//! Who a workload is, as Istio's telemetry names it: this proxy's own
//! workload (from its bootstrap node metadata) and a peer's (from the
//! `x-envoy-peer-metadata` header another proxy sends).
//!
//! The header is what Istio's proxies exchange: the base64 of a
//! protobuf `Struct` with `NAME`, `NAMESPACE`, `WORKLOAD_NAME`,
//! `CLUSTER_ID`, `OWNER` and `LABELS` (only the canonical service and
//! revision, `app`, `version` and any labels the filter is told to add),
//! each key present only when it has a value; `x-envoy-peer-metadata-id`
//! carries the sender's node id.

use base64::Engine;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use http::HeaderValue;
use prost::Message;

pub(crate) const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
pub(crate) const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// A workload's telemetry attributes. Empty strings are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The instance (pod) name.
    pub name: String,
    pub namespace: String,
    pub workload: String,
    pub cluster: String,
    /// `kubernetes://apis/apps/v1/namespaces/NS/deployments/NAME`.
    pub owner: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    /// The labels the exchange carries beyond those four, sorted.
    pub extra: Vec<(String, String)>,
    /// Node metadata `ISTIO_VERSION` (the local proxy's only).
    pub istio_version: String,
}

fn string(v: Option<&serde_json::Value>) -> String {
    v.and_then(|v| v.as_str()).unwrap_or_default().to_string()
}

impl Peer {
    /// This proxy's workload from its node metadata, Istio's keys:
    /// `NAME`, `NAMESPACE`, `WORKLOAD_NAME`, `CLUSTER_ID`, `OWNER`,
    /// `ISTIO_VERSION` and `LABELS`; `additional` names labels to carry
    /// beyond the four Istio always does.
    pub fn from_node_metadata(meta: Option<&serde_json::Value>, additional: &[String]) -> Peer {
        let get = |k: &str| string(meta.and_then(|m| m.get(k)));
        let labels = meta.and_then(|m| m.get("LABELS"));
        let label = |k: &str| string(labels.and_then(|l| l.get(k)));
        Peer {
            name: get("NAME"),
            namespace: get("NAMESPACE"),
            workload: get("WORKLOAD_NAME"),
            cluster: get("CLUSTER_ID"),
            owner: get("OWNER"),
            app: label("app"),
            version: label("version"),
            canonical_service: label(CANONICAL_NAME),
            canonical_revision: label(CANONICAL_REVISION),
            extra: additional
                .iter()
                .map(|k| (k.clone(), label(k)))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            istio_version: get("ISTIO_VERSION"),
        }
    }

    /// The `x-envoy-peer-metadata` value: base64 of the protobuf
    /// `Struct`, keys sorted (deterministic, as Istio serializes it).
    pub fn encode(&self) -> HeaderValue {
        fn s(v: &str) -> Value {
            Value {
                kind: Some(Kind::StringValue(v.to_string())),
            }
        }
        let mut labels = Struct::default();
        for (k, v) in [
            (CANONICAL_NAME, &self.canonical_service),
            (CANONICAL_REVISION, &self.canonical_revision),
            ("app", &self.app),
            ("version", &self.version),
        ]
        .into_iter()
        .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if !v.is_empty() {
                labels.fields.insert(k.to_string(), s(v));
            }
        }
        let mut top = Struct::default();
        for (k, v) in [
            ("NAME", &self.name),
            ("NAMESPACE", &self.namespace),
            ("WORKLOAD_NAME", &self.workload),
            ("CLUSTER_ID", &self.cluster),
            ("OWNER", &self.owner),
        ] {
            if !v.is_empty() {
                top.fields.insert(k.to_string(), s(v));
            }
        }
        if !labels.fields.is_empty() {
            top.fields.insert(
                "LABELS".into(),
                Value {
                    kind: Some(Kind::StructValue(labels)),
                },
            );
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(top.encode_to_vec());
        HeaderValue::from_str(&b64).expect("base64 is a valid header value")
    }

    /// A peer from an `x-envoy-peer-metadata` value; `None` when it is
    /// not base64 of a `Struct` (the peer is then unknown, as in Istio).
    /// `additional` names the extra labels to read.
    pub fn decode(value: &[u8], additional: &[String]) -> Option<Peer> {
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(
                value
                    .strip_suffix(b"==")
                    .or(value.strip_suffix(b"="))
                    .unwrap_or(value),
            )
            .ok()?;
        let top = Struct::decode(raw.as_slice()).ok()?;
        let get = |s: &Struct, k: &str| match s.fields.get(k).and_then(|v| v.kind.as_ref()) {
            Some(Kind::StringValue(v)) => v.clone(),
            _ => String::new(),
        };
        let labels = match top.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(l)) => l.clone(),
            _ => Struct::default(),
        };
        Some(Peer {
            name: get(&top, "NAME"),
            namespace: get(&top, "NAMESPACE"),
            workload: get(&top, "WORKLOAD_NAME"),
            cluster: get(&top, "CLUSTER_ID"),
            owner: get(&top, "OWNER"),
            app: get(&labels, "app"),
            version: get(&labels, "version"),
            canonical_service: get(&labels, CANONICAL_NAME),
            canonical_revision: get(&labels, CANONICAL_REVISION),
            extra: additional
                .iter()
                .map(|k| (k.clone(), get(&labels, k)))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            istio_version: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_peer_survives_the_header_and_leaves_out_what_it_does_not_know() {
        let meta = json!({
            "NAME": "reviews-v2-abc", "NAMESPACE": "default", "WORKLOAD_NAME": "reviews-v2",
            "CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.24.0",
            "LABELS": {"app": "reviews", "version": "v2", "role": "backend",
                       "service.istio.io/canonical-name": "reviews",
                       "service.istio.io/canonical-revision": "v2", "team": "x"}
        });
        let extra = vec!["role".to_string()];
        let me = Peer::from_node_metadata(Some(&meta), &extra);
        assert_eq!(me.workload, "reviews-v2");
        assert_eq!(me.extra, vec![("role".to_string(), "backend".to_string())]);
        let h = me.encode();
        let back = Peer::decode(h.as_bytes(), &extra).unwrap();
        assert_eq!(
            back,
            Peer {
                istio_version: String::new(),
                ..me.clone()
            }
        );
        // `team` is not carried; a peer without a cluster has none.
        let lean = Peer::decode(
            Peer {
                cluster: String::new(),
                ..me
            }
            .encode()
            .as_bytes(),
            &[],
        )
        .unwrap();
        assert_eq!(lean.cluster, "");
        assert!(lean.extra.is_empty());
        assert_eq!(Peer::decode(b"not base64!", &[]), None);
        // Without padding, as Istio's decoder also accepts.
        let unpadded = h.to_str().unwrap().trim_end_matches('=').to_string();
        assert_eq!(
            Peer::decode(unpadded.as_bytes(), &[]).unwrap().namespace,
            "default"
        );
    }
}
