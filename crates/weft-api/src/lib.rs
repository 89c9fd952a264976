//! The typed model of the configuration weft reads: Istio's kinds in every
//! API version Istio serves, the Gateway API kinds Istio implements, and the
//! Kubernetes kinds a mesh needs (services, workloads, namespaces, ...).
//!
//! Field names, enums and defaults follow Istio's CRD schemas. Istio kinds
//! reject unknown fields, so a misspelt field is an error rather than a
//! setting that silently does nothing.
//!
//! [`decode`] turns a generic JSON value (as produced by `weft-yaml`) into
//! an [`Object`]; its errors carry the field path so callers can point at
//! the line.

#[macro_use]
mod macros;

pub mod common;
pub mod destination_rule;
mod duration;
pub mod gateway;
pub mod gateway_api;
mod kinds;
mod map;
pub mod mesh_config;
pub mod security;
pub mod service_entry;
pub mod sidecar;
pub mod telemetry;
pub mod virtual_service;

pub use duration::{Duration, DurationError};
pub use kinds::{lookup as lookup_kind, Kind, KindInfo, Scope, KINDS};
pub use map::Map;

pub use k8s_openapi;
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::{CronJob, Job},
    core::v1::{ConfigMap, Endpoints, Namespace, Pod, Secret, Service, ServiceAccount},
    discovery::v1::EndpointSlice,
    networking::v1::Ingress,
};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weft_yaml::PathSeg;

/// A decoded configuration object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub api_version: String,
    pub meta: Meta,
    pub spec: Spec,
}

/// An object's metadata: its name and namespace, and the rest of what
/// was written (labels, annotations, ...) boxed, when there is any. A
/// Kubernetes `ObjectMeta` is 360 bytes of mostly empty fields, and a
/// mesh at scale holds a hundred thousand WorkloadEntries that give just
/// a name and a namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Everything else; its name and namespace are always unset.
    rest: Option<Box<ObjectMeta>>,
}

impl Meta {
    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.rest.as_ref()?.labels.as_ref()
    }

    pub fn annotations(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.rest.as_ref()?.annotations.as_ref()
    }

    pub fn generate_name(&self) -> Option<&str> {
        self.rest.as_ref()?.generate_name.as_deref()
    }

    /// The whole metadata, as Kubernetes types it.
    pub fn to_object_meta(&self) -> ObjectMeta {
        let mut m = self.rest.as_deref().cloned().unwrap_or_default();
        m.name.clone_from(&self.name);
        m.namespace.clone_from(&self.namespace);
        m
    }
}

impl From<ObjectMeta> for Meta {
    fn from(mut m: ObjectMeta) -> Meta {
        let name = m.name.take();
        let namespace = m.namespace.take();
        Meta {
            name,
            namespace,
            rest: (m != ObjectMeta::default()).then(|| Box::new(m)),
        }
    }
}

/// The typed body of an object, one variant per kind. The networking
/// kinds a control plane keeps in every snapshot are shared (`Arc`), the
/// rest boxed.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    VirtualService(std::sync::Arc<virtual_service::VirtualService>),
    DestinationRule(std::sync::Arc<destination_rule::DestinationRule>),
    Gateway(std::sync::Arc<gateway::Gateway>),
    ServiceEntry(Box<service_entry::ServiceEntry>),
    WorkloadEntry(Box<service_entry::WorkloadEntry>),
    WorkloadGroup(Box<service_entry::WorkloadGroup>),
    Sidecar(std::sync::Arc<sidecar::Sidecar>),
    PeerAuthentication(Box<security::PeerAuthentication>),
    AuthorizationPolicy(Box<security::AuthorizationPolicy>),
    RequestAuthentication(Box<security::RequestAuthentication>),
    Telemetry(Box<telemetry::Telemetry>),
    /// Istio kinds weft recognises but does not model field by field
    /// (EnvoyFilter, ProxyConfig, WasmPlugin, ...): kept as raw JSON.
    Unmodelled(serde_json::Value),
    K8sGateway(Box<gateway_api::GatewaySpec>),
    HttpRoute(Box<gateway_api::RouteSpec>),
    GrpcRoute(Box<gateway_api::RouteSpec>),
    GatewayClass(Box<gateway_api::GatewayClassSpec>),
    ReferenceGrant(Box<gateway_api::ReferenceGrantSpec>),
    Namespace(Box<Namespace>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    ReplicaSet(Box<ReplicaSet>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    ServiceAccount(Box<ServiceAccount>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    Ingress(Box<Ingress>),
    MutatingWebhookConfiguration(Box<MutatingWebhookConfiguration>),
}

impl Object {
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// The namespace; empty for cluster-scoped kinds.
    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    /// `Kind namespace/name`, the way istioctl names a resource.
    pub fn display_name(&self) -> String {
        match self.kind.info().scope {
            Scope::Namespaced => format!("{} {}/{}", self.kind, self.namespace(), self.name()),
            Scope::Cluster => format!("{} {}", self.kind, self.name()),
        }
    }

    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        self.meta.labels().unwrap_or(&EMPTY)
    }

    pub fn annotations(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        self.meta.annotations().unwrap_or(&EMPTY)
    }
}

impl Spec {
    /// The spec as JSON (for native Kubernetes kinds, the whole object).
    pub fn to_json(&self) -> serde_json::Value {
        fn j<T: serde::Serialize>(v: &T) -> serde_json::Value {
            // Serializing plain data structs to a JSON value cannot fail.
            serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
        }
        match self {
            Spec::VirtualService(s) => j(s),
            Spec::DestinationRule(s) => j(s),
            Spec::Gateway(s) => j(s),
            Spec::ServiceEntry(s) => j(s),
            Spec::WorkloadEntry(s) => j(s),
            Spec::WorkloadGroup(s) => j(s),
            Spec::Sidecar(s) => j(s),
            Spec::PeerAuthentication(s) => j(s),
            Spec::AuthorizationPolicy(s) => j(s),
            Spec::RequestAuthentication(s) => j(s),
            Spec::Telemetry(s) => j(s),
            Spec::Unmodelled(v) => v.clone(),
            Spec::K8sGateway(s) => j(s),
            Spec::HttpRoute(s) | Spec::GrpcRoute(s) => j(s),
            Spec::GatewayClass(s) => j(s),
            Spec::ReferenceGrant(s) => j(s),
            Spec::Namespace(o) => j(o),
            Spec::Service(o) => j(o),
            Spec::Endpoints(o) => j(o),
            Spec::EndpointSlice(o) => j(o),
            Spec::Pod(o) => j(o),
            Spec::Deployment(o) => j(o),
            Spec::StatefulSet(o) => j(o),
            Spec::DaemonSet(o) => j(o),
            Spec::ReplicaSet(o) => j(o),
            Spec::Job(o) => j(o),
            Spec::CronJob(o) => j(o),
            Spec::ServiceAccount(o) => j(o),
            Spec::ConfigMap(o) => j(o),
            Spec::Secret(o) => j(o),
            Spec::Ingress(o) => j(o),
            Spec::MutatingWebhookConfiguration(o) => j(o),
        }
    }
}

/// Why an object could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{field}: {message}")]
    Field {
        /// Display form, e.g. `spec.http[0].route[0].weight`.
        field: String,
        /// The same path as segments, for locating the line.
        path: Vec<PathSeg>,
        message: String,
    },
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0}")]
    UnknownKind(String),
    /// A kind weft knows, in an API version or group that does not serve
    /// it (e.g. a Deployment in extensions/v1beta1): the API server would
    /// reject it, so it is an error rather than something to skip.
    #[error("{0}")]
    UnservedVersion(String),
}

impl DecodeError {
    fn field(path: Vec<PathSeg>, message: impl Into<String>) -> Self {
        DecodeError::Field {
            field: display_path(&path),
            path,
            message: message.into(),
        }
    }
}

/// Renders a path as `a.b[0]["x.y"]`: identifiers dotted, other keys quoted.
pub fn display_path(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
            PathSeg::Key(k) => {
                let plain = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                } else {
                    out.push_str(&format!("[{k:?}]"));
                }
            }
        }
    }
    out
}

/// Decodes one object. `value` must be a JSON object with `apiVersion` and
/// `kind`; the kind must be one weft knows (see [`KINDS`]).
pub fn decode(value: serde_json::Value) -> Result<Object, DecodeError> {
    let obj = value.as_object().ok_or(DecodeError::Missing(
        "object: a document must be a mapping with apiVersion and kind",
    ))?;
    let kind_name = obj
        .get("kind")
        .and_then(|v| v.as_str())
        .ok_or(DecodeError::Missing("kind"))?
        .to_string();
    let api_version = obj
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .ok_or(DecodeError::Missing("apiVersion"))?
        .to_string();
    let kind = kinds::lookup(&api_version, &kind_name).map_err(|message| {
        if KINDS.iter().any(|k| k.name == kind_name) {
            DecodeError::UnservedVersion(message)
        } else {
            DecodeError::UnknownKind(message)
        }
    })?;

    if kind.info().k8s_native {
        return decode_native(kind, api_version, value);
    }
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            return Err(DecodeError::field(
                vec![PathSeg::Key(key.clone())],
                format!("unknown field {key:?}, expected one of apiVersion, kind, metadata, spec, status"),
            ));
        }
    }
    let meta: ObjectMeta = typed(obj.get("metadata").cloned(), "metadata")?;
    if let Some(m) = obj.get("metadata") {
        let mut path = vec![PathSeg::Key("metadata".into())];
        reject_dropped_fields(m, &to_json(&meta), &mut path)?;
    }
    let spec_value = obj
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Object(Default::default()));
    let spec = match kind {
        Kind::VirtualService => {
            Spec::VirtualService(std::sync::Arc::new(typed(Some(spec_value), "spec")?))
        }
        Kind::DestinationRule => {
            Spec::DestinationRule(std::sync::Arc::new(typed(Some(spec_value), "spec")?))
        }
        Kind::Gateway => Spec::Gateway(std::sync::Arc::new(typed(Some(spec_value), "spec")?)),
        Kind::ServiceEntry => Spec::ServiceEntry(typed(Some(spec_value), "spec")?),
        Kind::WorkloadEntry => Spec::WorkloadEntry(typed(Some(spec_value), "spec")?),
        Kind::WorkloadGroup => Spec::WorkloadGroup(typed(Some(spec_value), "spec")?),
        Kind::Sidecar => Spec::Sidecar(std::sync::Arc::new(typed(Some(spec_value), "spec")?)),
        Kind::PeerAuthentication => Spec::PeerAuthentication(typed(Some(spec_value), "spec")?),
        Kind::AuthorizationPolicy => Spec::AuthorizationPolicy(typed(Some(spec_value), "spec")?),
        Kind::RequestAuthentication => {
            Spec::RequestAuthentication(typed(Some(spec_value), "spec")?)
        }
        Kind::Telemetry => Spec::Telemetry(typed(Some(spec_value), "spec")?),
        Kind::EnvoyFilter | Kind::ProxyConfig | Kind::WasmPlugin => Spec::Unmodelled(spec_value),
        Kind::K8sGateway => Spec::K8sGateway(typed(Some(spec_value), "spec")?),
        Kind::HttpRoute => Spec::HttpRoute(typed(Some(spec_value), "spec")?),
        Kind::GrpcRoute => Spec::GrpcRoute(typed(Some(spec_value), "spec")?),
        Kind::GatewayClass => Spec::GatewayClass(typed(Some(spec_value), "spec")?),
        Kind::ReferenceGrant => Spec::ReferenceGrant(typed(Some(spec_value), "spec")?),
        _ => unreachable!("native kinds handled above"),
    };
    Ok(Object {
        kind,
        api_version,
        meta: meta.into(),
        spec,
    })
}

fn decode_native(
    kind: Kind,
    api_version: String,
    value: serde_json::Value,
) -> Result<Object, DecodeError> {
    fn boxed<
        T: serde::de::DeserializeOwned + serde::Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>,
    >(
        value: serde_json::Value,
        wrap: fn(Box<T>) -> Spec,
    ) -> Result<(ObjectMeta, Spec), DecodeError> {
        let obj: T = typed(Some(value.clone()), "")?;
        reject_dropped_fields(&value, &to_json(&obj), &mut Vec::new())?;
        let meta = obj.metadata().clone();
        Ok((meta, wrap(Box::new(obj))))
    }
    let (meta, spec) = match kind {
        Kind::Namespace => boxed(value, Spec::Namespace)?,
        Kind::Service => boxed(value, Spec::Service)?,
        Kind::Endpoints => boxed(value, Spec::Endpoints)?,
        Kind::EndpointSlice => boxed(value, Spec::EndpointSlice)?,
        Kind::Pod => boxed(value, Spec::Pod)?,
        Kind::Deployment => boxed(value, Spec::Deployment)?,
        Kind::StatefulSet => boxed(value, Spec::StatefulSet)?,
        Kind::DaemonSet => boxed(value, Spec::DaemonSet)?,
        Kind::ReplicaSet => boxed(value, Spec::ReplicaSet)?,
        Kind::Job => boxed(value, Spec::Job)?,
        Kind::CronJob => boxed(value, Spec::CronJob)?,
        Kind::ServiceAccount => boxed(value, Spec::ServiceAccount)?,
        Kind::ConfigMap => boxed(value, Spec::ConfigMap)?,
        Kind::Secret => boxed(value, Spec::Secret)?,
        Kind::Ingress => boxed(value, Spec::Ingress)?,
        Kind::MutatingWebhookConfiguration => boxed(value, Spec::MutatingWebhookConfiguration)?,
        _ => unreachable!("only native kinds come here"),
    };
    Ok(Object {
        kind,
        api_version,
        meta: meta.into(),
        spec,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The Kubernetes types (k8s-openapi) ignore fields they do not know, as
/// the API server does without strict validation. kubectl validates
/// strictly, and a misspelt field silently dropped is the worst kind of
/// config bug, so every key of the input must survive a decode/encode
/// round trip; the first that does not is reported as unknown.
fn reject_dropped_fields(
    input: &serde_json::Value,
    decoded: &serde_json::Value,
    path: &mut Vec<PathSeg>,
) -> Result<(), DecodeError> {
    use serde_json::Value;
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                path.push(PathSeg::Key(k.clone()));
                match d.get(k) {
                    Some(dv) => reject_dropped_fields(v, dv, path)?,
                    None => {
                        let known: Vec<&str> = d.keys().map(String::as_str).collect();
                        let hint = if known.is_empty() {
                            String::new()
                        } else {
                            format!(" (fields set here: {})", known.join(", "))
                        };
                        return Err(DecodeError::field(
                            path.clone(),
                            format!("unknown field {k:?}{hint}"),
                        ));
                    }
                }
                path.pop();
            }
            Ok(())
        }
        (Value::Array(i), Value::Array(d)) => {
            for (n, (iv, dv)) in i.iter().zip(d).enumerate() {
                path.push(PathSeg::Index(n));
                reject_dropped_fields(iv, dv, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Deserializes `value` (absent means `{}`) and reports the failing field's
/// path, prefixed by `prefix`.
fn typed<T: serde::de::DeserializeOwned>(
    value: Option<serde_json::Value>,
    prefix: &str,
) -> Result<T, DecodeError> {
    let value = value.unwrap_or(serde_json::Value::Object(Default::default()));
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path: Vec<PathSeg> = Vec::new();
        if !prefix.is_empty() {
            path.push(PathSeg::Key(prefix.to_string()));
        }
        path.extend(weft_yaml::path_of_serde_error(err.path()));
        DecodeError::field(path, err.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests;
