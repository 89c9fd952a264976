//! `Gateway` (networking.istio.io): a load balancer at the edge of the mesh
//! and the ports, protocols and hosts it exposes.

use crate::Map;

use crate::common::Port;

model! {
    pub struct Gateway {
        pub servers: Vec<Server>,
        pub selector: Map<String, String>,
    }
}

model! {
    pub struct Server {
        pub port: Port,
        pub bind: Option<String>,
        pub hosts: Vec<String>,
        pub tls: Option<ServerTlsSettings>,
        pub default_endpoint: Option<String>,
        pub name: Option<String>,
    }
}

model! {
    /// `ServerTLSSettings`, also used by Sidecar ingress listeners.
    pub struct ServerTlsSettings {
        pub https_redirect: Option<bool>,
        pub mode: Option<ServerTlsMode>,
        pub server_certificate: Option<String>,
        pub private_key: Option<String>,
        pub ca_certificates: Option<String>,
        pub ca_crl: Option<String>,
        pub credential_name: Option<String>,
        pub credential_names: Vec<String>,
        pub tls_certificates: Vec<TlsCertificate>,
        pub ca_cert_credential_name: Option<String>,
        pub subject_alt_names: Vec<String>,
        pub verify_certificate_spki: Vec<String>,
        pub verify_certificate_hash: Vec<String>,
        pub min_protocol_version: Option<TlsProtocol>,
        pub max_protocol_version: Option<TlsProtocol>,
        pub cipher_suites: Vec<String>,
        pub ecdh_curves: Vec<String>,
        pub insecure_skip_verify: Option<bool>,
    }
}

model! {
    pub struct TlsCertificate {
        pub server_certificate: Option<String>,
        pub private_key: Option<String>,
        pub ca_certificates: Option<String>,
    }
}

proto_enum! {
    pub enum ServerTlsMode { PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL }
}

proto_enum! {
    pub enum TlsProtocol { TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3 }
}
