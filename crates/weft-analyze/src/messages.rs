//! The diagnostic codes weft reports: Istio's codes, names, levels and
//! message templates, so output reads like `istioctl analyze` and tools that
//! filter on codes keep working. (A test compares this table with Istio's
//! `messages.yaml`.)

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// One kind of diagnostic.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageType {
    pub code: &'static str,
    pub name: &'static str,
    pub level: Level,
    /// printf-style: `%s`, `%v`, `%d` insert an argument, `%q` quotes it.
    pub template: &'static str,
}

impl MessageType {
    pub fn format(&self, args: &[String]) -> String {
        let mut out = String::new();
        let mut args = args.iter();
        let mut chars = self.template.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('q') => out.push_str(&format!("{:?}", args.next().map_or("", |s| s))),
                Some('s' | 'v' | 'd') => out.push_str(args.next().map_or("", |s| s)),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }

    pub fn documentation_url(&self) -> String {
        format!(
            "https://istio.io/latest/docs/reference/config/analysis/{}/",
            self.code.to_ascii_lowercase()
        )
    }
}

macro_rules! messages {
    ($($ident:ident $code:literal $level:ident $name:literal $template:literal;)*) => {
        $(pub static $ident: MessageType = MessageType {
            code: $code, name: $name, level: Level::$level, template: $template,
        };)*
        /// Every message type weft can emit.
        pub static ALL: &[&MessageType] = &[$(&$ident),*];
    };
}

messages! {
    INTERNAL_ERROR "IST0001" Error "InternalError" "Internal error: %v";
    DEPRECATED "IST0002" Warning "Deprecated" "Deprecated: %s";
    REFERENCED_RESOURCE_NOT_FOUND "IST0101" Error "ReferencedResourceNotFound" "Referenced %s not found: %q";
    NAMESPACE_NOT_INJECTED "IST0102" Info "NamespaceNotInjected" "The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection.";
    POD_MISSING_PROXY "IST0103" Warning "PodMissingProxy" "The pod %s is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.";
    SCHEMA_VALIDATION_ERROR "IST0106" Error "SchemaValidationError" "Schema validation error: %v";
    MISPLACED_ANNOTATION "IST0107" Warning "MisplacedAnnotation" "Misplaced annotation: %s can only be applied to %s";
    UNKNOWN_ANNOTATION "IST0108" Warning "UnknownAnnotation" "Unknown annotation: %s";
    CONFLICTING_MESH_GATEWAY_VS_HOSTS "IST0109" Error "ConflictingMeshGatewayVirtualServiceHosts" "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.";
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS "IST0110" Error "ConflictingSidecarWorkloadSelectors" "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.";
    MULTIPLE_SIDECARS_WITHOUT_SELECTORS "IST0111" Error "MultipleSidecarsWithoutWorkloadSelectors" "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior.";
    VS_DESTINATION_PORT_SELECTOR_REQUIRED "IST0112" Error "VirtualServiceDestinationPortSelectorRequired" "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate.";
    DEPLOYMENT_MULTIPLE_SERVICES "IST0116" Warning "DeploymentAssociatedToMultipleServices" "This deployment %s is associated with multiple services using port %d but different protocols: %v";
    PORT_NAME_NOT_UNDER_CONVENTION "IST0118" Info "PortNameIsNotUnderNamingConvention" "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.";
    NAMESPACE_MULTIPLE_INJECTION_LABELS "IST0123" Warning "NamespaceMultipleInjectionLabels" "The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists.";
    INVALID_ANNOTATION "IST0125" Warning "InvalidAnnotation" "Invalid annotation %s: %s";
    NO_MATCHING_WORKLOADS "IST0127" Warning "NoMatchingWorkloadsFound" "No matching workloads for this resource with the following labels: %s";
    NO_SERVER_CERT_VERIFICATION_DR "IST0128" Warning "NoServerCertificateVerificationDestinationLevel" "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s";
    NO_SERVER_CERT_VERIFICATION_PORT "IST0129" Warning "NoServerCertificateVerificationPortLevel" "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s";
    VS_UNREACHABLE_RULE "IST0130" Warning "VirtualServiceUnreachableRule" "VirtualService rule %v not used (%s).";
    VS_INEFFECTIVE_MATCH "IST0131" Info "VirtualServiceIneffectiveMatch" "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).";
    VS_HOST_NOT_IN_GATEWAY "IST0132" Warning "VirtualServiceHostNotFoundInGateway" "one or more host %v defined in VirtualService %s not found in Gateway %s.";
    SCHEMA_WARNING "IST0133" Warning "SchemaWarning" "Schema validation warning: %v";
    SERVICE_ENTRY_ADDRESSES_REQUIRED "IST0134" Warning "ServiceEntryAddressesRequired" "ServiceEntry addresses are required for this protocol.";
    DEPLOYMENT_CONFLICTING_PORTS "IST0137" Warning "DeploymentConflictingPorts" "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v.";
    GATEWAY_DUPLICATE_CERTIFICATE "IST0138" Warning "GatewayDuplicateCertificate" "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections.";
    INGRESS_ROUTE_RULES_NOT_AFFECTED "IST0140" Warning "IngressRouteRulesNotAffected" "Subset in virtual service %s has no effect on ingress gateway %s requests";
    INVALID_APPLICATION_UID "IST0144" Warning "InvalidApplicationUID" "User ID (UID) 1337 is reserved for the sidecar proxy.";
    CONFLICTING_GATEWAYS "IST0145" Error "ConflictingGateways" "Conflict with gateways %s (workload selector %s, port %s, hosts %v).";
    EXTERNAL_NAME_INVALID_PORT_NAME "IST0150" Warning "ExternalNameServiceTypeInvalidPortName" "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly";
    ENVOY_FILTER_RELATIVE_OPERATION "IST0151" Warning "EnvoyFilterUsesRelativeOperation" "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.";
    ENVOY_FILTER_REPLACE_INCORRECTLY "IST0152" Error "EnvoyFilterUsesReplaceOperationIncorrectly" "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.";
    ENVOY_FILTER_ADD_INCORRECTLY "IST0153" Error "EnvoyFilterUsesAddOperationIncorrectly" "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.";
    ENVOY_FILTER_REMOVE_INCORRECTLY "IST0154" Error "EnvoyFilterUsesRemoveOperationIncorrectly" "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.";
    ENVOY_FILTER_RELATIVE_WITH_PROXY_VERSION "IST0155" Warning "EnvoyFilterUsesRelativeOperationWithProxyVersion" "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.";
    INVALID_TELEMETRY_PROVIDER "IST0157" Warning "InvalidTelemetryProvider" "The Telemetry %v in namespace %q with empty providers will be ignored.";
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS "IST0159" Error "ConflictingTelemetryWorkloadSelectors" "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.";
    MULTIPLE_TELEMETRIES_WITHOUT_SELECTORS "IST0160" Error "MultipleTelemetriesWithoutWorkloadSelectors" "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior.";
    INVALID_GATEWAY_CREDENTIAL "IST0161" Error "InvalidGatewayCredential" "The credential referenced by the Gateway %s in namespace %s is invalid, which can cause the traffic not to work as expected.";
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE "IST0162" Warning "GatewayPortNotDefinedOnService" "The gateway is listening on a target port (port %d) that is not defined in the Service associated with its workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, it will not be available.";
    REFERENCED_INTERNAL_GATEWAY "IST0165" Warning "ReferencedInternalGateway" "Gateway reference in VirtualService %s is to an implementation-generated internal Gateway: %s.";
    INEFFECTIVE_POLICY "IST0167" Warning "IneffectivePolicy" "The policy has no impact: %s.";
    DR_SUBSET_NOT_SELECT_PODS "IST0173" Error "DestinationRuleSubsetNotSelectPods" "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).";
    UNKNOWN_DR_HOST "IST0174" Warning "UnknownDestinationRuleHost" "The host %s defined in the DestinationRule does not match any services in the mesh.";
    CONFLICTING_SE_PROTOCOL "IST0177" Warning "ConflictingServiceEntryProtocol" "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s).";
}

pub fn by_code(code: &str) -> Option<&'static MessageType> {
    ALL.iter()
        .copied()
        .find(|m| m.code.eq_ignore_ascii_case(code))
}
