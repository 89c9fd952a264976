//! Mesh settings from the `istio` ConfigMap, whatever source it came
//! from.

use serde_json::Value;
use weft_api::sidecar::OutboundMode;
use weft_api::Spec;
use weft_config::Resource;

use crate::context::{Mesh, PathNormalization};

/// Mesh settings from the `istio` ConfigMap's `mesh` key (in the root
/// namespace, as Istio keeps them), with Istio's defaults for what it
/// does not set. Settings weft does not act on are reported.
pub fn mesh_config<R: AsRef<Resource>>(resources: &[R], problems: &mut Vec<String>) -> Mesh {
    let mut mesh = Mesh::default();
    let Some((r, text)) = resources
        .iter()
        .map(AsRef::as_ref)
        .find_map(|r| match &r.object.spec {
            Spec::ConfigMap(cm) if r.object.name() == "istio" => {
                Some((r, cm.data.as_ref()?.get("mesh")?.clone()))
            }
            _ => None,
        })
    else {
        return mesh;
    };
    let doc = match weft_yaml::parse_document(&text, &Default::default()) {
        Ok(Some(node)) => node.to_json(),
        Ok(None) => return mesh,
        Err(e) => {
            problems.push(format!("{} (ConfigMap istio) data.mesh: {e}", r.origin));
            return mesh;
        }
    };
    let Value::Object(fields) = doc else {
        problems.push(format!(
            "{} (ConfigMap istio) data.mesh: expected a mapping",
            r.origin
        ));
        return mesh;
    };
    for (k, v) in fields {
        match (k.as_str(), &v) {
            ("rootNamespace", Value::String(s)) => mesh.root_namespace = s.clone(),
            ("accessLogFile", Value::String(s)) => mesh.access_log_file = s.clone(),
            ("trustDomain", Value::String(s)) if !s.is_empty() => mesh.trust_domain = s.clone(),
            ("enableAutoMtls", Value::Bool(b)) => mesh.enable_auto_mtls = *b,
            ("connectTimeout", Value::String(s)) => match weft_api::Duration::parse(s) {
                Ok(d) => mesh.connect_timeout = crate::gen::dur(&d),
                Err(e) => problems.push(format!("{} (ConfigMap istio) data.mesh.connectTimeout: {e}", r.origin)),
            },
            ("outboundTrafficPolicy", _) => match v.get("mode").and_then(Value::as_str) {
                Some("REGISTRY_ONLY") => mesh.outbound_mode = OutboundMode::REGISTRY_ONLY,
                Some("ALLOW_ANY") | None => mesh.outbound_mode = OutboundMode::ALLOW_ANY,
                Some(other) => problems.push(format!(
                    "{} (ConfigMap istio) data.mesh.outboundTrafficPolicy.mode: {other:?} is not ALLOW_ANY or REGISTRY_ONLY",
                    r.origin
                )),
            },
            ("pathNormalization", _) => path_normalization(&v, &mut mesh, &mut |at, message| {
                problems.push(format!(
                    "{} (ConfigMap istio) data.mesh.pathNormalization{at}: {message}",
                    r.origin
                ))
            }),
            ("extensionProviders", _) => {
                match serde_path_to_error::deserialize::<_, Vec<weft_api::mesh_config::MeshExtensionProvider>>(v.clone()) {
                    Ok(providers) => mesh.extension_providers = providers,
                    Err(e) => problems.push(format!(
                        "{} (ConfigMap istio) data.mesh.extensionProviders.{}: {}",
                        r.origin,
                        e.path(),
                        e.inner()
                    )),
                }
            }
            ("defaultConfig", Value::Object(config)) => {
                default_config(config, &mut mesh, &mut |at, message| {
                    problems.push(format!(
                        "{} (ConfigMap istio) data.mesh.defaultConfig.{at}: {message}",
                        r.origin
                    ))
                })
            }
            (other, _) => problems.push(format!(
                "{} (ConfigMap istio) data.mesh.{other}: not acted on by weft yet",
                r.origin
            )),
        }
    }
    mesh
}

/// The proxies' default `ProxyConfig`: of it weft acts on the gateways'
/// `gatewayTopology.forwardClientCertDetails`; the rest is reported.
fn default_config(
    config: &serde_json::Map<String, Value>,
    mesh: &mut Mesh,
    problem: &mut dyn FnMut(String, String),
) {
    const NOT_YET: &str = "not acted on by weft yet";
    for (k, v) in config {
        let Value::Object(topology) = v else {
            problem(k.clone(), NOT_YET.into());
            continue;
        };
        if k != "gatewayTopology" {
            problem(k.clone(), NOT_YET.into());
            continue;
        }
        for (k, v) in topology {
            let at = format!("gatewayTopology.{k}");
            match (k.as_str(), v.as_str()) {
                // UNDEFINED leaves Istio's default for gateways.
                ("forwardClientCertDetails", Some("UNDEFINED")) => {}
                ("forwardClientCertDetails", Some(name)) if FORWARD_CLIENT_CERT.contains(&name) => {
                    mesh.gateway_forward_client_cert = name.to_string()
                }
                ("forwardClientCertDetails", _) => problem(
                    at,
                    format!(
                        "{v}: expected one of UNDEFINED, {}",
                        FORWARD_CLIENT_CERT.join(", ")
                    ),
                ),
                _ => problem(at, NOT_YET.into()),
            }
        }
    }
}

/// `pathNormalization: {normalization: LEVEL}`; a level Istio does not
/// have leaves BASE, and says so.
fn path_normalization(v: &Value, mesh: &mut Mesh, problem: &mut dyn FnMut(String, String)) {
    let Value::Object(fields) = v else {
        problem(String::new(), "expected a mapping".into());
        return;
    };
    for (k, v) in fields {
        match (k.as_str(), v.as_str()) {
            ("normalization", Some(name)) => match PathNormalization::from_name(name) {
                Some(level) => mesh.path_normalization = level,
                None => problem(
                    ".normalization".into(),
                    format!("{v}: expected one of DEFAULT, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES"),
                ),
            },
            ("normalization", None) => problem(".normalization".into(), format!("{v}: expected a name")),
            (other, _) => problem(format!(".{other}"), "not acted on by weft yet".into()),
        }
    }
}

/// Istio's `ForwardClientCertDetails` names, the same as Envoy's.
const FORWARD_CLIENT_CERT: [&str; 5] = [
    "SANITIZE",
    "FORWARD_ONLY",
    "APPEND_FORWARD",
    "SANITIZE_SET",
    "ALWAYS_FORWARD_ONLY",
];

#[cfg(test)]
mod tests {
    use super::*;
    use weft_config::LoadOptions;

    #[test]
    fn mesh_settings_come_from_the_istio_configmap() {
        let text = "apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: /dev/stdout
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    connectTimeout: 1m
    enableTracing: true
";
        let loaded = weft_config::load_str("mesh.yaml", text, &LoadOptions::default());
        let mut problems = Vec::new();
        let mesh = mesh_config(&loaded.resources, &mut problems);
        assert_eq!(mesh.access_log_file, "/dev/stdout");
        assert_eq!(mesh.outbound_mode, OutboundMode::REGISTRY_ONLY);
        assert_eq!(mesh.connect_timeout, "60s");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("enableTracing"), "{problems:?}");
        assert_eq!(mesh.gateway_forward_client_cert, "SANITIZE_SET");
    }

    #[test]
    fn gateways_forward_client_certs_as_the_topology_says() {
        let text = "apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      gatewayTopology: {forwardClientCertDetails: APPEND_FORWARD, numTrustedProxies: 1}
      holdApplicationUntilProxyStarts: true
";
        let loaded = weft_config::load_str("mesh.yaml", text, &LoadOptions::default());
        let mut problems = Vec::new();
        let mesh = mesh_config(&loaded.resources, &mut problems);
        assert_eq!(mesh.gateway_forward_client_cert, "APPEND_FORWARD");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("defaultConfig.gatewayTopology.numTrustedProxies: not acted on"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("defaultConfig.holdApplicationUntilProxyStarts"),
            "{problems:?}"
        );
        let bad = text.replace("APPEND_FORWARD", "SOMETIMES");
        let loaded = weft_config::load_str("mesh.yaml", &bad, &LoadOptions::default());
        let mut problems = Vec::new();
        let mesh = mesh_config(&loaded.resources, &mut problems);
        assert_eq!(mesh.gateway_forward_client_cert, "SANITIZE_SET");
        assert!(
            problems[0].contains("\"SOMETIMES\": expected one of"),
            "{problems:?}"
        );
    }

    #[test]
    fn extension_providers_are_typed_and_a_misspelt_field_is_named() {
        let text = "apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: http
      envoyExtAuthzHttp: {service: authz.foo.svc.cluster.local, port: 8000, timeout: 2s}
    - name: grpc
      envoyExtAuthzGrpc: {service: foo/authz.foo.svc.cluster.local, port: 9000}
    - name: tracing
      zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
";
        let loaded = weft_config::load_str("mesh.yaml", text, &LoadOptions::default());
        let mut problems = Vec::new();
        let mesh = mesh_config(&loaded.resources, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = mesh
            .extension_providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["http", "grpc", "tracing"]);
        let http = mesh.extension_providers[0]
            .envoy_ext_authz_http
            .as_ref()
            .unwrap();
        assert_eq!(
            (
                http.port,
                http.timeout.as_ref().map(|t| t.as_std().as_secs())
            ),
            (8000, Some(2))
        );

        let bad = text.replace("port: 9000", "prot: 9000");
        let loaded = weft_config::load_str("mesh.yaml", &bad, &LoadOptions::default());
        let mut problems = Vec::new();
        let mesh = mesh_config(&loaded.resources, &mut problems);
        assert!(mesh.extension_providers.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("data.mesh.extensionProviders.[1].envoyExtAuthzGrpc")
                && problems[0].contains("prot"),
            "{problems:?}"
        );
    }

    #[test]
    fn path_normalization_comes_from_the_mesh_config() {
        let mesh_with = |level: &str| {
            let text = format!(
                "apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    pathNormalization: {level}
"
            );
            let loaded = weft_config::load_str("mesh.yaml", &text, &LoadOptions::default());
            let mut problems = Vec::new();
            let mesh = mesh_config(&loaded.resources, &mut problems);
            (mesh.path_normalization, problems)
        };
        for (level, want) in [
            ("{normalization: NONE}", PathNormalization::None),
            ("{normalization: DEFAULT}", PathNormalization::Base),
            ("{normalization: BASE}", PathNormalization::Base),
            (
                "{normalization: MERGE_SLASHES}",
                PathNormalization::MergeSlashes,
            ),
            (
                "{normalization: DECODE_AND_MERGE_SLASHES}",
                PathNormalization::DecodeAndMergeSlashes,
            ),
            ("{}", PathNormalization::Base),
        ] {
            let (got, problems) = mesh_with(level);
            assert_eq!(got, want, "{level}");
            assert!(problems.is_empty(), "{level}: {problems:?}");
        }
        let (got, problems) = mesh_with("{normalization: STRICT}");
        assert_eq!(got, PathNormalization::Base);
        assert!(
            problems[0]
                .contains("data.mesh.pathNormalization.normalization: \"STRICT\": expected one of"),
            "{problems:?}"
        );
        let (_, problems) = mesh_with("{normalization: NONE, extra: 1}");
        assert!(
            problems[0].contains("data.mesh.pathNormalization.extra: not acted on"),
            "{problems:?}"
        );
        let (_, problems) = mesh_with("NONE");
        assert!(
            problems[0].contains("data.mesh.pathNormalization: expected a mapping"),
            "{problems:?}"
        );
    }
}
