//! One xDS resource from protobuf to weft-envoy's model.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use weft_envoy::cluster::{Cluster, ClusterLoadAssignment};
use weft_envoy::listener::Listener;
use weft_envoy::route::RouteConfiguration;

const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy.descriptor.bin"));

pub(crate) static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // Built from Envoy's protos by build.rs; a failure here is a build bug.
    DescriptorPool::decode(DESCRIPTORS).expect("build.rs wrote a valid descriptor set")
});

/// The resource types weft's proxy subscribes to, declared in the order
/// Envoy asks for them on a new stream (clusters and their endpoints
/// before the listeners and routes that use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Cluster,
    ClusterLoadAssignment,
    Listener,
    RouteConfiguration,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Cluster,
        Kind::ClusterLoadAssignment,
        Kind::Listener,
        Kind::RouteConfiguration,
        Kind::Secret,
    ];

    /// The protobuf message's full name.
    pub fn message(self) -> &'static str {
        match self {
            Kind::Listener => "envoy.config.listener.v3.Listener",
            Kind::RouteConfiguration => "envoy.config.route.v3.RouteConfiguration",
            Kind::Cluster => "envoy.config.cluster.v3.Cluster",
            Kind::ClusterLoadAssignment => "envoy.config.endpoint.v3.ClusterLoadAssignment",
            Kind::Secret => "envoy.extensions.transport_sockets.tls.v3.Secret",
        }
    }

    pub fn type_url(self) -> String {
        format!("type.googleapis.com/{}", self.message())
    }

    pub fn from_type_url(url: &str) -> Option<Kind> {
        let name = url.rsplit('/').next()?;
        Kind::ALL.into_iter().find(|k| k.message() == name)
    }

    /// Envoy's short name for the type (`LDS`, `CDS`, ...).
    pub fn xds(self) -> &'static str {
        match self {
            Kind::Listener => "LDS",
            Kind::RouteConfiguration => "RDS",
            Kind::Cluster => "CDS",
            Kind::ClusterLoadAssignment => "EDS",
            Kind::Secret => "SDS",
        }
    }
}

/// Why a resource was refused. Always the control plane's input, never
/// retryable: the same bytes fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("resource type {0:?} is not one weft subscribes to")]
    UnknownType(String),
    #[error("{kind:?}: not a valid protobuf message: {reason}")]
    Protobuf { kind: Kind, reason: String },
    /// A nested `Any` of a type weft does not know, a value out of range.
    #[error("{kind:?} {name:?}: {reason}")]
    Json {
        kind: Kind,
        name: String,
        reason: String,
    },
    /// The model refused a field: `field` is the path inside the resource.
    #[error("{kind:?} {name:?}: {field}: {message}")]
    Field {
        kind: Kind,
        name: String,
        field: String,
        message: String,
    },
}

/// A decoded, checked resource.
#[derive(Clone, Debug)]
pub enum Resource {
    Listener(Listener),
    RouteConfiguration(RouteConfiguration),
    Cluster(Cluster),
    ClusterLoadAssignment(ClusterLoadAssignment),
    Secret(Box<weft_envoy::tls::Secret>),
}

/// The resource's decoded message, its kind and its name.
pub(crate) fn message(
    type_url: &str,
    bytes: &[u8],
) -> Result<(Kind, String, DynamicMessage), DecodeError> {
    let kind =
        Kind::from_type_url(type_url).ok_or_else(|| DecodeError::UnknownType(type_url.into()))?;
    let desc = POOL
        .get_message_by_name(kind.message())
        .expect("build.rs compiles every Kind's message");
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| DecodeError::Protobuf {
        kind,
        reason: e.to_string(),
    })?;
    let name_field = if kind == Kind::ClusterLoadAssignment {
        "cluster_name"
    } else {
        "name"
    };
    let name = msg
        .get_field_by_name(name_field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((kind, name, msg))
}

/// The resource's proto3 JSON (proto field names, defaults left out,
/// nested `Any`s expanded with `@type`), and its name.
pub fn to_json(type_url: &str, bytes: &[u8]) -> Result<(Kind, String, Value), DecodeError> {
    let (kind, name, msg) = message(type_url, bytes)?;
    let json = message_json(&msg, kind, &name)?;
    Ok((kind, name, json))
}

/// A decoded message as proto3 JSON with proto field names.
pub(crate) fn message_json(
    msg: &DynamicMessage,
    kind: Kind,
    name: &str,
) -> Result<Value, DecodeError> {
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| DecodeError::Json {
            kind,
            name: name.to_string(),
            // In practice: a nested Any whose type is not among the
            // extensions weft knows.
            reason: format!("{e} (an extension weft does not implement)"),
        })
}

/// The other direction, for control planes and tests: a resource written
/// in proto3 JSON (Envoy's YAML/JSON config form, nested `typed_config`s
/// with `@type`) as the `Any` xDS carries.
pub fn encode(
    kind: Kind,
    json: &Value,
) -> Result<envoy_types::pb::google::protobuf::Any, DecodeError> {
    let desc = POOL
        .get_message_by_name(kind.message())
        .expect("build.rs compiles every Kind's message");
    let msg = DynamicMessage::deserialize(desc, json).map_err(|e| DecodeError::Json {
        kind,
        name: json
            .get("name")
            .or_else(|| json.get("cluster_name"))
            .or_else(|| json.get("clusterName"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        reason: e.to_string(),
    })?;
    Ok(envoy_types::pb::google::protobuf::Any {
        type_url: kind.type_url(),
        value: prost_reflect::prost::Message::encode_to_vec(&msg),
    })
}

/// One `VirtualHost` of a route table (proto3 JSON) in its wire form: a
/// control plane that keeps a table's virtual hosts encoded can assemble
/// the table from them (a repeated field's entries may be written one
/// after another anywhere in a message). Errors name the route table's
/// kind and the virtual host.
pub fn encode_virtual_host(json: &Value) -> Result<Vec<u8>, DecodeError> {
    let desc = POOL
        .get_message_by_name("envoy.config.route.v3.VirtualHost")
        .expect("RouteConfiguration imports VirtualHost");
    let msg = DynamicMessage::deserialize(desc, json).map_err(|e| DecodeError::Json {
        kind: Kind::RouteConfiguration,
        name: json
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        reason: e.to_string(),
    })?;
    Ok(prost_reflect::prost::Message::encode_to_vec(&msg))
}

/// The bootstrap's `node` (proto3 JSON) as the message the first ADS
/// request carries.
pub fn node(json: &Value) -> Result<crate::ads::Node, DecodeError> {
    let desc = POOL
        .get_message_by_name("envoy.config.core.v3.Node")
        .expect("discovery.proto imports Node");
    let bad = |reason: String| DecodeError::Json {
        kind: Kind::Listener,
        name: "node".into(),
        reason,
    };
    let msg = DynamicMessage::deserialize(desc, json).map_err(|e| bad(e.to_string()))?;
    let bytes = prost_reflect::prost::Message::encode_to_vec(&msg);
    prost_reflect::prost::Message::decode(bytes.as_slice()).map_err(|e| bad(e.to_string()))
}

/// Decodes and checks one resource. `clusters` are the cluster names
/// known now, for the route tables that validate their references.
pub fn decode(
    type_url: &str,
    bytes: &[u8],
    clusters: &HashSet<&str>,
) -> Result<(String, Resource), DecodeError> {
    decode_against(type_url, bytes, clusters, &Default::default())
}

/// [`decode`], given the resources of the type held now: a route table
/// delivered again keeps the virtual hosts whose bytes did not change
/// (decoded once, shared) and decodes only the others.
pub fn decode_against(
    type_url: &str,
    bytes: &[u8],
    clusters: &HashSet<&str>,
    held: &BTreeMap<String, crate::ads::Held>,
) -> Result<(String, Resource), DecodeError> {
    if Kind::from_type_url(type_url) == Some(Kind::RouteConfiguration) {
        if let Some(decoded) = rds::decode(bytes, clusters, held) {
            return decoded;
        }
    }
    let (kind, name, msg) = message(type_url, bytes)?;
    let field = |e: weft_envoy::FieldError| DecodeError::Field {
        kind,
        name: name.clone(),
        field: weft_envoy::display_path(&e.path),
        message: e.message,
    };
    // Read straight from the message; what does not read that way is
    // decoded from its JSON form, whose errors name the field.
    let resource = match read_direct(kind, &msg, clusters) {
        Some(decoded) => decoded.map_err(field)?,
        None => read_json(kind, message_json(&msg, kind, &name)?, clusters).map_err(field)?,
    };
    Ok((name, resource))
}

/// The model read straight from the message (`decode::de`); `None` when
/// it does not read that way (Secrets, few and small, take the JSON form).
fn read_direct(
    kind: Kind,
    msg: &DynamicMessage,
    clusters: &HashSet<&str>,
) -> Option<Result<Resource, weft_envoy::FieldError>> {
    use weft_envoy::resource::direct as r;
    let d = de::MessageDe(msg);
    match kind {
        Kind::Listener => r::listener(d, clusters).map(|l| l.map(Resource::Listener)),
        Kind::RouteConfiguration => {
            r::route_configuration(d, clusters).map(|rc| rc.map(Resource::RouteConfiguration))
        }
        Kind::Cluster => r::cluster(d).map(|c| c.map(Resource::Cluster)),
        Kind::ClusterLoadAssignment => {
            r::cluster_load_assignment(d).map(|a| Ok(Resource::ClusterLoadAssignment(a)))
        }
        Kind::Secret => None,
    }
}

/// The model decoded from the resource's proto3 JSON form.
fn read_json(
    kind: Kind,
    json: Value,
    clusters: &HashSet<&str>,
) -> Result<Resource, weft_envoy::FieldError> {
    use weft_envoy::resource as r;
    Ok(match kind {
        Kind::Listener => Resource::Listener(r::listener(json, clusters)?),
        Kind::RouteConfiguration => {
            Resource::RouteConfiguration(r::route_configuration(json, clusters)?)
        }
        Kind::Cluster => Resource::Cluster(r::cluster(json)?),
        Kind::ClusterLoadAssignment => {
            Resource::ClusterLoadAssignment(r::cluster_load_assignment(json)?)
        }
        Kind::Secret => Resource::Secret(Box::new(r::secret(json)?)),
    })
}

/// For tests: reads a resource both ways, straight from its message and
/// from its JSON form, and says how they differ. `Err` when the direct
/// read cannot take a resource the JSON form takes (a performance bug
/// the fallback would hide), or when the two results or errors are not
/// the same. `Ok` holds what both gave: the model's `Debug` form, or
/// `error at PATH: MESSAGE`.
#[doc(hidden)]
pub fn compare_decoders(
    type_url: &str,
    bytes: &[u8],
    clusters: &HashSet<&str>,
) -> Result<String, String> {
    let (kind, name, msg) = message(type_url, bytes).map_err(|e| e.to_string())?;
    if kind == Kind::Secret {
        return Ok(String::new());
    }
    let show = |r: Result<Resource, weft_envoy::FieldError>| match r {
        Ok(r) => format!("{r:?}"),
        Err(e) => format!(
            "error at {}: {}",
            weft_envoy::display_path(&e.path),
            e.message
        ),
    };
    let json = message_json(&msg, kind, &name).map_err(|e| e.to_string())?;
    let direct = read_direct(kind, &msg, clusters).map(show);
    let from_json = show(read_json(kind, json, clusters));
    match direct {
        None if from_json.starts_with("error at ") => Ok(from_json),
        None => Err(format!(
            "{kind:?} {name:?}: read directly: refused; from JSON: {from_json}"
        )),
        Some(d) if d == from_json => Ok(d),
        Some(d) => Err(format!(
            "{kind:?} {name:?}:\n  read directly: {d}\n  from JSON:     {from_json}"
        )),
    }
}

mod de;
#[cfg(test)]
mod de_tests;
mod rds;
#[cfg(test)]
mod tests;
