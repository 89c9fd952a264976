//! Envoy messages that are not xDS resources — a bootstrap — turned from
//! their typed (prost) form into the proto3 JSON Envoy reads from a file,
//! with the same descriptors resources are decoded with.

use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::decode::POOL;

/// Why a message could not be written as JSON (not retryable: the
/// message or the descriptor set is wrong).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("{0}: not a message weft's descriptors know")]
    Unknown(String),
    #[error("{message}: {reason}")]
    Invalid { message: String, reason: String },
}

/// `message` (its full protobuf name and bytes) as proto3 JSON with
/// proto field names, nested `Any`s expanded with `@type`.
pub fn to_json<M: prost::Name + prost::Message>(message: &M) -> Result<Value, MessageError> {
    let name = M::full_name();
    let desc = POOL
        .get_message_by_name(&name)
        .ok_or_else(|| MessageError::Unknown(name.clone()))?;
    let invalid = |reason: String| MessageError::Invalid {
        message: name.clone(),
        reason,
    };
    let msg = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .map_err(|e| invalid(e.to_string()))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| invalid(e.to_string()))
}
