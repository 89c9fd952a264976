//! Which kinds weft reads, in which API versions.

use std::fmt;

/// Every kind weft can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    WorkloadEntry,
    WorkloadGroup,
    Sidecar,
    EnvoyFilter,
    ProxyConfig,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Telemetry,
    WasmPlugin,
    /// `gateway.networking.k8s.io` Gateway (named apart from Istio's).
    K8sGateway,
    HttpRoute,
    GrpcRoute,
    GatewayClass,
    ReferenceGrant,
    Namespace,
    Service,
    Endpoints,
    EndpointSlice,
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    ServiceAccount,
    ConfigMap,
    Secret,
    Ingress,
    MutatingWebhookConfiguration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Facts about a kind.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// The name as written in `kind:`.
    pub name: &'static str,
    pub group: &'static str,
    /// Versions served, newest first.
    pub versions: &'static [&'static str],
    pub scope: Scope,
    /// Decoded with the k8s-openapi types (whole object) rather than ours.
    pub k8s_native: bool,
    /// Versions that used to be served and are now removed, with advice.
    pub removed: &'static [(&'static str, &'static str)],
}

const NS: Scope = Scope::Namespaced;
const ISTIO_NET: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const ISTIO_SEC: &[&str] = &["v1", "v1beta1"];
const GW_API: &[&str] = &["v1", "v1beta1"];

macro_rules! kinds {
    ($($kind:ident $name:literal $group:literal $versions:expr, $scope:expr, $native:literal $(, removed $removed:expr)?;)*) => {
        /// The registry of kinds.
        pub static KINDS: &[KindInfo] = &[
            $(KindInfo {
                kind: Kind::$kind,
                name: $name,
                group: $group,
                versions: $versions,
                scope: $scope,
                k8s_native: $native,
                removed: kinds!(@removed $($removed)?),
            },)*
        ];
    };
    (@removed) => { &[] };
    (@removed $e:expr) => { $e };
}

kinds! {
    VirtualService "VirtualService" "networking.istio.io" ISTIO_NET, NS, false;
    DestinationRule "DestinationRule" "networking.istio.io" ISTIO_NET, NS, false;
    Gateway "Gateway" "networking.istio.io" ISTIO_NET, NS, false;
    ServiceEntry "ServiceEntry" "networking.istio.io" ISTIO_NET, NS, false;
    WorkloadEntry "WorkloadEntry" "networking.istio.io" ISTIO_NET, NS, false;
    WorkloadGroup "WorkloadGroup" "networking.istio.io" ISTIO_NET, NS, false;
    Sidecar "Sidecar" "networking.istio.io" ISTIO_NET, NS, false;
    EnvoyFilter "EnvoyFilter" "networking.istio.io" &["v1alpha3"], NS, false;
    ProxyConfig "ProxyConfig" "networking.istio.io" &["v1beta1"], NS, false;
    PeerAuthentication "PeerAuthentication" "security.istio.io" ISTIO_SEC, NS, false;
    AuthorizationPolicy "AuthorizationPolicy" "security.istio.io" ISTIO_SEC, NS, false;
    RequestAuthentication "RequestAuthentication" "security.istio.io" ISTIO_SEC, NS, false;
    Telemetry "Telemetry" "telemetry.istio.io" &["v1", "v1alpha1"], NS, false;
    WasmPlugin "WasmPlugin" "extensions.istio.io" &["v1alpha1"], NS, false;
    K8sGateway "Gateway" "gateway.networking.k8s.io" GW_API, NS, false;
    HttpRoute "HTTPRoute" "gateway.networking.k8s.io" GW_API, NS, false;
    GrpcRoute "GRPCRoute" "gateway.networking.k8s.io" &["v1"], NS, false;
    GatewayClass "GatewayClass" "gateway.networking.k8s.io" GW_API, Scope::Cluster, false;
    ReferenceGrant "ReferenceGrant" "gateway.networking.k8s.io" &["v1beta1"], NS, false;
    Namespace "Namespace" "" &["v1"], Scope::Cluster, true;
    Service "Service" "" &["v1"], NS, true;
    Endpoints "Endpoints" "" &["v1"], NS, true;
    EndpointSlice "EndpointSlice" "discovery.k8s.io" &["v1"], NS, true,
        removed &[("v1beta1", "discovery.k8s.io/v1beta1 EndpointSlice was removed in Kubernetes 1.25; use discovery.k8s.io/v1")];
    Pod "Pod" "" &["v1"], NS, true;
    Deployment "Deployment" "apps" &["v1"], NS, true,
        removed &[("extensions/v1beta1", "extensions/v1beta1 Deployment was removed in Kubernetes 1.16; use apps/v1 (which also requires spec.selector)"),
                  ("apps/v1beta1", "apps/v1beta1 Deployment was removed in Kubernetes 1.16; use apps/v1"),
                  ("apps/v1beta2", "apps/v1beta2 Deployment was removed in Kubernetes 1.16; use apps/v1")];
    StatefulSet "StatefulSet" "apps" &["v1"], NS, true;
    DaemonSet "DaemonSet" "apps" &["v1"], NS, true;
    ReplicaSet "ReplicaSet" "apps" &["v1"], NS, true;
    Job "Job" "batch" &["v1"], NS, true;
    CronJob "CronJob" "batch" &["v1"], NS, true;
    ServiceAccount "ServiceAccount" "" &["v1"], NS, true;
    ConfigMap "ConfigMap" "" &["v1"], NS, true;
    Secret "Secret" "" &["v1"], NS, true;
    Ingress "Ingress" "networking.k8s.io" &["v1"], NS, true,
        removed &[("extensions/v1beta1", "extensions/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1"),
                  ("networking.k8s.io/v1beta1", "networking.k8s.io/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1")];
    MutatingWebhookConfiguration "MutatingWebhookConfiguration" "admissionregistration.k8s.io" &["v1"], Scope::Cluster, true;
}

impl Kind {
    pub fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|k| k.kind == self)
            .expect("every Kind has a registry entry")
    }

    /// True for Istio's own kinds (the ones `istioctl validate` checks).
    pub fn is_istio(self) -> bool {
        self.info().group.ends_with("istio.io")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

/// Finds the kind for an `apiVersion` and `kind`, or explains why not.
pub fn lookup(api_version: &str, kind: &str) -> Result<Kind, String> {
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let mut same_name = KINDS.iter().filter(|k| k.name == kind).peekable();
    if same_name.peek().is_none() {
        return Err(format!(
            "unknown kind {kind:?} ({api_version}): not a kind weft reads"
        ));
    }
    let mut groups = Vec::new();
    for info in same_name {
        if info.group == group {
            if info.versions.contains(&version) {
                return Ok(info.kind);
            }
            if let Some((_, advice)) = info
                .removed
                .iter()
                .find(|(v, _)| *v == version || *v == api_version)
            {
                return Err((*advice).to_string());
            }
            return Err(format!(
                "{kind} is not served in version {version:?} of {group:?}; served versions: {}",
                info.versions.join(", ")
            ));
        }
        if let Some((_, advice)) = info.removed.iter().find(|(v, _)| *v == api_version) {
            return Err((*advice).to_string());
        }
        groups.push(if info.group.is_empty() {
            "core (v1)"
        } else {
            info.group
        });
    }
    Err(format!(
        "{kind} is not in API group {group:?}; weft reads {kind} from {}",
        groups.join(", ")
    ))
}
