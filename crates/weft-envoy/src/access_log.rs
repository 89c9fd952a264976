//! The access loggers' `typed_config`: Envoy's file, stdout and stderr
//! loggers and their `SubstitutionFormatString` (a text or JSON line
//! made of command operators such as `%REQ(:PATH)%`).

use serde::Deserialize;

/// `envoy.extensions.access_loggers.file.v3.FileAccessLog`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileAccessLog {
    pub path: String,
    pub log_format: Option<SubstitutionFormatString>,
    /// Deprecated: a text format (as `log_format.text_format`).
    pub format: Option<String>,
    /// Deprecated: a JSON format (as `log_format.json_format`).
    pub json_format: Option<serde_json::Map<String, serde_json::Value>>,
    /// Deprecated: a JSON format with typed values.
    pub typed_json_format: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `envoy.extensions.access_loggers.stream.v3.StdoutAccessLog` and
/// `StderrAccessLog`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamAccessLog {
    pub log_format: Option<SubstitutionFormatString>,
}

/// `envoy.config.core.v3.SubstitutionFormatString`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubstitutionFormatString {
    /// Deprecated: the text format inline.
    pub text_format: Option<String>,
    pub text_format_source: Option<DataSource>,
    /// A `google.protobuf.Struct`: keys to format strings, numbers,
    /// booleans or nested structs.
    pub json_format: Option<serde_json::Map<String, serde_json::Value>>,
    /// Empty values left out (text: nothing instead of `-`; JSON: the key
    /// left out).
    pub omit_empty_values: bool,
    /// Only used by local replies; access logs ignore it, as Envoy does.
    pub content_type: Option<String>,
    /// Formatter extensions: `envoy.formatter.req_without_query`, which
    /// adds `%REQ_WITHOUT_QUERY(X?Y):Z%` (others fail to decode).
    pub formatters: Vec<Formatter>,
    pub json_format_options: Option<JsonFormatOptions>,
}

/// A formatter extension (`TypedExtensionConfig`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Formatter {
    pub name: String,
    pub typed_config: Option<crate::TypedConfig>,
}

/// `envoy.config.core.v3.DataSource` as a format's source.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSource {
    pub inline_string: Option<String>,
    /// Modelled so that weft can refuse them by name.
    pub inline_bytes: Option<String>,
    pub filename: Option<String>,
    pub environment_variable: Option<String>,
}

/// `envoy.config.core.v3.JsonFormatOptions`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonFormatOptions {
    pub sort_properties: bool,
}
