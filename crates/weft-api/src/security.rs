//! security.istio.io: `PeerAuthentication` (mTLS modes),
//! `AuthorizationPolicy` (access control) and `RequestAuthentication` (JWT).

use crate::Map;

use crate::common::{LabelSelector, PolicyTargetReference};
use crate::Duration;

model! {
    pub struct PeerAuthentication {
        pub selector: Option<LabelSelector>,
        pub mtls: Option<MutualTls>,
        pub port_level_mtls: Map<String, MutualTls>,
    }
}

model! {
    pub struct MutualTls {
        pub mode: Option<MtlsMode>,
    }
}

proto_enum! {
    pub enum MtlsMode { UNSET, DISABLE, PERMISSIVE, STRICT }
}

model! {
    pub struct AuthorizationPolicy {
        pub selector: Option<LabelSelector>,
        pub target_ref: Option<PolicyTargetReference>,
        pub target_refs: Vec<PolicyTargetReference>,
        pub rules: Vec<Rule>,
        pub action: Option<AuthorizationAction>,
        pub provider: Option<ExtensionProvider>,
    }
}

proto_enum! {
    pub enum AuthorizationAction { ALLOW, DENY, AUDIT, CUSTOM }
}

model! {
    pub struct ExtensionProvider {
        pub name: Option<String>,
    }
}

model! {
    pub struct Rule {
        pub from: Vec<RuleFrom>,
        pub to: Vec<RuleTo>,
        pub when: Vec<Condition>,
    }
}

model! {
    pub struct RuleFrom {
        pub source: Option<Source>,
    }
}

model! {
    pub struct RuleTo {
        pub operation: Option<Operation>,
    }
}

model! {
    pub struct Source {
        pub principals: Vec<String>,
        pub not_principals: Vec<String>,
        pub request_principals: Vec<String>,
        pub not_request_principals: Vec<String>,
        pub namespaces: Vec<String>,
        pub not_namespaces: Vec<String>,
        pub service_accounts: Vec<String>,
        pub not_service_accounts: Vec<String>,
        pub ip_blocks: Vec<String>,
        pub not_ip_blocks: Vec<String>,
        pub remote_ip_blocks: Vec<String>,
        pub not_remote_ip_blocks: Vec<String>,
        pub trust_domains: Vec<String>,
        pub not_trust_domains: Vec<String>,
    }
}

model! {
    pub struct Operation {
        pub hosts: Vec<String>,
        pub not_hosts: Vec<String>,
        pub ports: Vec<String>,
        pub not_ports: Vec<String>,
        pub methods: Vec<String>,
        pub not_methods: Vec<String>,
        pub paths: Vec<String>,
        pub not_paths: Vec<String>,
    }
}

model! {
    pub struct Condition {
        pub key: String,
        pub values: Vec<String>,
        pub not_values: Vec<String>,
    }
}

model! {
    pub struct RequestAuthentication {
        pub selector: Option<LabelSelector>,
        pub target_ref: Option<PolicyTargetReference>,
        pub target_refs: Vec<PolicyTargetReference>,
        pub jwt_rules: Vec<JwtRule>,
    }
}

model! {
    pub struct JwtRule {
        pub issuer: String,
        pub audiences: Vec<String>,
        pub jwks_uri: Option<String>,
        /// Deprecated snake_case spelling the schema still accepts.
        #[serde(rename = "jwks_uri")]
        pub jwks_uri_snake: Option<String>,
        pub jwks: Option<String>,
        pub from_headers: Vec<JwtHeader>,
        pub from_params: Vec<String>,
        pub from_cookies: Vec<String>,
        pub output_payload_to_header: Option<String>,
        pub forward_original_token: Option<bool>,
        pub output_claim_to_headers: Vec<ClaimToHeader>,
        pub space_delimited_claims: Vec<String>,
        pub timeout: Option<Duration>,
        pub presence: Option<JwtPresence>,
    }
}

proto_enum! {
    pub enum JwtPresence { OPTIONAL, REQUIRED }
}

model! {
    pub struct JwtHeader {
        pub name: String,
        pub prefix: Option<String>,
    }
}

model! {
    pub struct ClaimToHeader {
        pub header: String,
        pub claim: String,
    }
}
