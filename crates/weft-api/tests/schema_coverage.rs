//! Holds the typed model against Istio's published CRD schemas
//! (`shared/reference/istio/crd-all.gen.yaml`, beside the repository).
//!
//! For every Istio kind weft models and every version Istio serves, a
//! maximal object is generated from the OpenAPI schema — every property
//! present, every enum value tried — decoded, serialized back and compared
//! with the input. A field the model lacks fails the decode (unknown
//! field); a field with another name or type fails the comparison.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("WEFT_SHARED") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn load_crds() -> Vec<Value> {
    let path = shared_dir().join("reference/istio/crd-all.gen.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); set WEFT_SHARED to the shared/ directory",
            path.display()
        )
    });
    weft_yaml::parse_stream(&text, &weft_yaml::Limits::default())
        .filter_map(|d| d.result.expect("CRD file parses"))
        .map(|n| n.to_json())
        .collect()
}

/// Builds a value with every property of `schema`; enum strings take their
/// `pick`-th value (modulo the enum's size).
fn sample(schema: &Value, pick: usize) -> Value {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values[pick % values.len()].clone();
    }
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), sample(v, pick));
                }
            }
            if let Some(ap) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                out.insert("key1".into(), sample(ap, pick));
            }
            Value::Object(out)
        }
        "array" => json!([sample(&schema["items"], pick)]),
        "string" if schema.get("format").and_then(Value::as_str) == Some("byte") => json!("aGk="),
        // Parses both as a plain string and as a duration.
        "string" => json!("1s"),
        "integer" => {
            let min = schema
                .get("minimum")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(1);
            json!(min)
        }
        "number" => json!(1.5),
        "boolean" => json!(true),
        // Untyped (x-kubernetes-preserve-unknown-fields) values.
        _ => json!({}),
    }
}

/// Drops nulls, empty strings, arrays and objects: what a default-valued
/// field serializes to.
fn prune(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) => {
            let items: Vec<Value> = items.into_iter().filter_map(prune).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other),
    }
}

fn max_enum_len(schema: &Value) -> usize {
    let own = schema
        .get("enum")
        .and_then(Value::as_array)
        .map_or(1, Vec::len);
    let children = match schema {
        Value::Object(m) => m.values().map(max_enum_len).max().unwrap_or(1),
        Value::Array(a) => a.iter().map(max_enum_len).max().unwrap_or(1),
        _ => 1,
    };
    own.max(children)
}

#[test]
fn every_schema_field_round_trips_through_the_model() {
    let modelled = [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "WorkloadEntry",
        "WorkloadGroup",
        "Sidecar",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
    ];
    let mut checked = 0;
    for crd in load_crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        if !modelled.contains(&kind.as_str()) {
            continue;
        }
        let group = crd["spec"]["group"].as_str().unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            let vname = version["name"].as_str().unwrap();
            let spec_schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            for pick in 0..max_enum_len(spec_schema) {
                let spec = sample(spec_schema, pick);
                let obj = json!({
                    "apiVersion": format!("{group}/{vname}"),
                    "kind": kind,
                    "metadata": {"name": "x", "namespace": "default"},
                    "spec": spec.clone(),
                });
                let decoded = weft_api::decode(obj)
                    .unwrap_or_else(|e| panic!("{kind} {vname} (enum pick {pick}): {e}"));
                let back = prune(decoded.spec.to_json()).unwrap_or(json!({}));
                let want = prune(spec).unwrap_or(json!({}));
                assert_eq!(
                    back, want,
                    "{kind} {vname}: the model changed the document (missing, renamed or retyped field)"
                );
                checked += 1;
            }
        }
        eprintln!("{kind}: ok");
    }
    // 11 kinds; every one in at least two versions.
    assert!(checked >= 22, "only {checked} kind/version samples checked");
}

#[test]
fn every_istio_kind_and_version_in_the_schema_is_registered() {
    for crd in load_crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        let group = crd["spec"]["group"].as_str().unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            if version["served"] != json!(true) {
                continue;
            }
            let v = version["name"].as_str().unwrap();
            let registered = weft_api::KINDS
                .iter()
                .any(|k| k.name == kind && k.group == group && k.versions.contains(&v));
            let untracked = ["TrafficExtension"]; // too new to model; reported as unknown
            assert!(
                registered || untracked.contains(&kind),
                "{kind} {group}/{v} is served by Istio but not registered"
            );
        }
    }
}
