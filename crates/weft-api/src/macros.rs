/// Declares a configuration struct the way every Istio message is read:
/// camelCase field names, unknown fields rejected (a typo is an error, not a
/// silently ignored setting), and absent fields taking their default.
macro_rules! model {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[serde_with::skip_serializing_none]
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
        pub struct $name { $($body)* }
    };
}

/// Declares a protobuf enum as Istio's YAML spells it (the proto value
/// names, upper snake case).
macro_rules! proto_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $first:ident $(, $variant:ident)* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum $name { #[default] $first $(, $variant)* }

        impl $name {
            /// The name as written in YAML.
            pub fn as_str(&self) -> &'static str {
                match self { $name::$first => stringify!($first) $(, $name::$variant => stringify!($variant))* }
            }
        }
    };
}
