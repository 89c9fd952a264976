//! A decoded protobuf message read through serde as its proto3 JSON
//! form, without building that JSON.
//!
//! weft-envoy's model is written against proto3 JSON (proto field
//! names, enums by name, 64-bit integers as strings, well-known types in
//! their JSON shapes). Serializing every resource to a
//! `serde_json::Value` and deserializing the model from it was most of
//! the cost of applying thousands of clusters and virtual hosts. This
//! deserializer walks the `DynamicMessage` itself and visits what the
//! JSON would have held, value for value:
//!
//! - a message is a map of the fields it has set, under their proto
//!   names, as prost-reflect's serializer lists them;
//! - scalars visit as `serde_json::Value` would visit their JSON: 32-bit
//!   integers as numbers, 64-bit ones and bytes as strings, floats as
//!   numbers or `"NaN"` / `"Infinity"` / `"-Infinity"`, enums by name
//!   (by number when the name is unknown);
//! - a well-known type (Duration, wrappers, Struct, Any, ...) is
//!   serialized by prost-reflect and read from that `Value`, so its
//!   shape and range checks are the serializer's own.
//!
//! An error here is never shown: the caller decodes the JSON form again,
//! and that error names the field.

use std::fmt;

use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, SerializeOptions, Value};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

/// Why a message could not be read; only the caller's fallback sees it.
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// A message read as its proto3 JSON object.
pub(crate) struct MessageDe<'a>(pub &'a DynamicMessage);

/// One field's value, with the kind its descriptor gives it.
struct ValueDe<'a> {
    value: &'a Value,
    kind: Kind,
}

/// The well-known types proto3 JSON writes in a shape of their own.
fn well_known(msg: &DynamicMessage) -> bool {
    msg.descriptor().full_name().starts_with("google.protobuf.")
}

/// A well-known type as prost-reflect's serializer writes it.
fn as_json(msg: &DynamicMessage) -> Result<serde_json::Value, Error> {
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(de::Error::custom)
}

fn from_json<'de, V: Visitor<'de>>(
    msg: &DynamicMessage,
    read: impl FnOnce(serde_json::Value, V) -> Result<V::Value, serde_json::Error>,
    visitor: V,
) -> Result<V::Value, Error> {
    read(as_json(msg)?, visitor).map_err(de::Error::custom)
}

/// What both deserializers do as `serde_json::Value` does: a newtype is
/// its content, an ignored value is skipped, and every typed request is
/// answered by what the value is (`deserialize_any`).
macro_rules! as_json_value {
    () => {
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        }
    };
}

impl<'de> de::Deserializer<'de> for MessageDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if well_known(self.0) {
            return from_json(
                self.0,
                |v, vis| de::Deserializer::deserialize_any(v, vis),
                visitor,
            );
        }
        visitor.visit_map(Fields {
            fields: self.0.fields(),
            value: None,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if well_known(self.0) {
            // google.protobuf.Value can be JSON null.
            return from_json(
                self.0,
                |v, vis| de::Deserializer::deserialize_option(v, vis),
                visitor,
            );
        }
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        from_json(
            self.0,
            |v, vis| de::Deserializer::deserialize_enum(v, name, variants, vis),
            visitor,
        )
    }

    as_json_value!();
}

/// As `serde_json::Value` visits a JSON number made from an integer.
fn visit_int<'de, V: Visitor<'de>>(n: i64, visitor: V) -> Result<V::Value, Error> {
    match u64::try_from(n) {
        Ok(u) => visitor.visit_u64(u),
        Err(_) => visitor.visit_i64(n),
    }
}

fn visit_float<'de, V: Visitor<'de>>(f: f64, visitor: V) -> Result<V::Value, Error> {
    if f.is_finite() {
        visitor.visit_f64(f)
    } else if f.is_nan() {
        visitor.visit_str("NaN")
    } else if f > 0.0 {
        visitor.visit_str("Infinity")
    } else {
        visitor.visit_str("-Infinity")
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        use base64::Engine;
        match self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::I32(n) => visit_int(i64::from(*n), visitor),
            Value::U32(n) => visitor.visit_u64(u64::from(*n)),
            Value::I64(n) => visitor.visit_string(n.to_string()),
            Value::U64(n) => visitor.visit_string(n.to_string()),
            Value::F32(f) => visit_float(f64::from(*f), visitor),
            Value::F64(f) => visit_float(*f, visitor),
            Value::String(s) => visitor.visit_str(s),
            Value::Bytes(b) => {
                visitor.visit_string(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Value::EnumNumber(n) => match &self.kind {
                Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
                    visitor.visit_unit()
                }
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(v) => visitor.visit_str(v.name()),
                    None => visit_int(i64::from(*n), visitor),
                },
                _ => Err(de::Error::custom(
                    "an enum value of a field that is no enum",
                )),
            },
            Value::Message(m) => MessageDe(m).deserialize_any(visitor),
            Value::List(items) => visitor.visit_seq(Items {
                items: items.iter(),
                kind: &self.kind,
            }),
            Value::Map(map) => {
                let Kind::Message(entry) = &self.kind else {
                    return Err(de::Error::custom("a map field that is no map entry"));
                };
                let kind = entry.map_entry_value_field().kind();
                visitor.visit_map(Entries {
                    entries: map.iter(),
                    kind,
                    value: None,
                })
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match (self.value, &self.kind) {
            (Value::EnumNumber(_), Kind::Enum(e))
                if e.full_name() == "google.protobuf.NullValue" =>
            {
                visitor.visit_none()
            }
            (Value::Message(m), _) => MessageDe(m).deserialize_option(visitor),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match (self.value, &self.kind) {
            (Value::String(s), _) => visitor.visit_enum(s.as_str().into_deserializer()),
            (Value::EnumNumber(n), Kind::Enum(e)) if e.get_value(*n).is_some() => {
                let v = e.get_value(*n).expect("checked");
                visitor.visit_enum(v.name().into_deserializer())
            }
            (Value::Message(m), _) => MessageDe(m).deserialize_enum(name, variants, visitor),
            _ => {
                let json = <serde_json::Value as de::Deserialize>::deserialize(self)?;
                de::Deserializer::deserialize_enum(json, name, variants, visitor)
                    .map_err(de::Error::custom)
            }
        }
    }

    as_json_value!();
}

/// A message's set fields, under their proto names.
struct Fields<'a, I> {
    fields: I,
    value: Option<ValueDe<'a>>,
}

impl<'de, 'a, I> MapAccess<'de> for Fields<'a, I>
where
    I: Iterator<Item = (prost_reflect::FieldDescriptor, &'a Value)>,
{
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((field, value)) = self.fields.next() else {
            return Ok(None);
        };
        self.value = Some(ValueDe {
            value,
            kind: field.kind(),
        });
        seed.deserialize(field.name().into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(value)
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Value>,
    kind: &'a Kind,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.items.next() {
            Some(value) => seed
                .deserialize(ValueDe {
                    value,
                    kind: self.kind.clone(),
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A map field's entries, keys as the strings proto3 JSON writes.
struct Entries<'a> {
    entries: std::collections::hash_map::Iter<'a, MapKey, Value>,
    kind: Kind,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key = match key {
            MapKey::String(s) => return seed.deserialize(s.as_str().into_deserializer()).map(Some),
            MapKey::Bool(b) => b.to_string(),
            MapKey::I32(n) => n.to_string(),
            MapKey::I64(n) => n.to_string(),
            MapKey::U32(n) => n.to_string(),
            MapKey::U64(n) => n.to_string(),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(ValueDe {
            value,
            kind: self.kind.clone(),
        })
    }
}
