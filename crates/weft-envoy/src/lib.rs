//! Envoy's v3 configuration model — the subset weft's proxy implements —
//! as strict serde types.
//!
//! The same bootstrap file must run under `envoy -c` and `weft proxy -c`,
//! so this crate reads Envoy's own format: proto3 JSON (or YAML), with
//! `snake_case` or `lowerCamelCase` field names, durations as `"1.5s"`, and
//! `typed_config` selected by `@type`. Every struct denies unknown fields:
//! a field Envoy knows and weft does not implement is an error that names
//! the field, never silently ignored. Semantic checks (exactly one of a
//! oneof, references between clusters and routes) live in [`check`].

pub mod access_log;
mod any;
pub mod check;
pub mod cluster;
mod core;
pub mod ext_authz;
pub mod filters;
pub mod istio;
pub mod jwt;
pub mod listener;
mod normalize;
pub mod rbac;
pub mod resource;
pub mod route;
pub mod tls;
pub mod xds;

use std::path::Path;

pub use any::TypedConfig;
pub use core::*;

use serde::Deserialize;

/// A bootstrap: what `envoy -c FILE` reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bootstrap {
    pub node: Option<Node>,
    pub admin: Option<Admin>,
    pub static_resources: StaticResources,
    pub dynamic_resources: Option<xds::DynamicResources>,
    /// The bootstrap as read (keys in snake_case), for the admin
    /// endpoint's /config_dump.
    #[serde(skip)]
    pub source: serde_json::Value,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    pub address: Option<Address>,
    /// Deprecated in Envoy but still accepted; weft writes no admin log.
    pub access_log_path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticResources {
    pub listeners: Vec<listener::Listener>,
    pub clusters: Vec<cluster::Cluster>,
    /// Secrets that TLS contexts name without an `sds_config`.
    pub secrets: Vec<tls::Secret>,
}

/// Why a configuration was not accepted. Always a configuration error,
/// never retryable: the same input fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: u32,
        message: String,
    },
    /// A field with the wrong name, type or value; `field` is a path such
    /// as `static_resources.listeners[0].address.socket_address.port_value`.
    #[error("{file}:{line}: {field}: {message}")]
    Field {
        file: String,
        line: u32,
        field: String,
        message: String,
    },
}

/// A key as this model normalizes field names (`tlsMode` → `tls_mode`),
/// for data maps (metadata) that went through that normalization and
/// are compared with keys that did not.
pub fn snake_case(key: &str) -> String {
    normalize::to_snake(key)
}

/// Reads a bootstrap from a YAML or JSON file.
pub fn load_bootstrap(path: &Path) -> Result<Bootstrap, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    parse_bootstrap(&file, &text)
}

/// Parses a bootstrap from text (YAML is a superset of JSON) and runs the
/// semantic checks.
pub fn parse_bootstrap(file: &str, text: &str) -> Result<Bootstrap, ConfigError> {
    let node = weft_yaml::parse_document(text, &weft_yaml::Limits::default()).map_err(|e| {
        ConfigError::Syntax {
            file: file.to_string(),
            line: e.line().unwrap_or(1),
            message: e.to_string(),
        }
    })?;
    let Some(node) = node else {
        return Err(ConfigError::Syntax {
            file: file.to_string(),
            line: 1,
            message: "empty bootstrap".into(),
        });
    };
    let json = normalize::snake_case_keys(node.to_json());
    // Keys may be written in camelCase; paths are in snake_case.
    let locate = |path: &[weft_yaml::PathSeg]| {
        node.locate_with(path, |written, wanted| {
            written == wanted || normalize::to_snake(written) == wanted
        })
        .line
    };
    let mut bootstrap: Bootstrap = decode(json.clone()).map_err(|e| e.in_file(file, &locate))?;
    bootstrap.source = json;
    check::bootstrap(&bootstrap).map_err(|e| e.in_file(file, &locate))?;
    Ok(bootstrap)
}

/// A decoding error before it knows its file: a path and a message.
#[derive(Debug)]
pub struct FieldError {
    pub path: Vec<weft_yaml::PathSeg>,
    pub message: String,
}

impl FieldError {
    pub fn new(path: Vec<weft_yaml::PathSeg>, message: impl Into<String>) -> Self {
        FieldError {
            path,
            message: message.into(),
        }
    }

    fn in_file(self, file: &str, locate: &dyn Fn(&[weft_yaml::PathSeg]) -> u32) -> ConfigError {
        ConfigError::Field {
            file: file.to_string(),
            line: locate(&self.path),
            field: display_path(&self.path),
            message: self.message,
        }
    }
}

pub fn display_path(path: &[weft_yaml::PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            weft_yaml::PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            weft_yaml::PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Deserializes `value` into `T`; the error's path is relative to
/// `value` and reaches into nested `typed_config`s.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = weft_yaml::path_of_serde_error(err.path());
        match any::take_nested_error() {
            // A typed_config failed inside: its path continues ours.
            Some(nested) => {
                path.extend(nested.path);
                FieldError::new(path, nested.message)
            }
            None => FieldError::new(path, err.into_inner().to_string()),
        }
    })
}

#[cfg(test)]
mod tests;
