//! Istio's CA API (`istio.v1.auth`, security/v1alpha1/ca.proto) as
//! hand-written prost messages: there is no protoc here, and the API is
//! two messages and one method.

/// The gRPC method path of `IstioCertificateService.CreateCertificate`.
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";
/// The service's full name.
pub const SERVICE: &str = "istio.v1.auth.IstioCertificateService";

/// `istio.v1.auth.IstioCertificateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded PKCS#10 request; its public key is certified.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds; 0 for the CA's default.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque node metadata (Istio: WorkloadName, WorkloadIP,
    /// ClusterID); weft's CA does not read it.
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<envoy_types::pb::google::protobuf::Struct>,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM certificates: the leaf first, the root last.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_are_istios() {
        let req = IstioCertificateRequest {
            csr: "x".into(),
            validity_duration: 60,
            metadata: Some(Default::default()),
        };
        // csr: field 1, length-delimited; validity_duration: field 3,
        // varint; metadata: field 4, length-delimited (empty).
        assert_eq!(req.encode_to_vec(), vec![0x0a, 1, b'x', 0x18, 60, 0x22, 0]);
        let resp = IstioCertificateResponse {
            cert_chain: vec!["a".into(), "b".into()],
        };
        assert_eq!(resp.encode_to_vec(), vec![0x0a, 1, b'a', 0x0a, 1, b'b']);
    }
}
