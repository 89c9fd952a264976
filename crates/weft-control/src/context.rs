//! One immutable view of the mesh (Istio's "push context"): the registry,
//! the networking objects that passed validation, the mesh settings, and
//! the lookups every generator shares — which services a proxy sees,
//! which VirtualService routes a host, which DestinationRule applies.

use std::collections::HashMap;

use std::sync::Arc;
use weft_api::Map;

use weft_api::destination_rule::DestinationRule;
use weft_api::gateway::Gateway;
use weft_api::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use weft_api::sidecar::{OutboundMode, Sidecar};
use weft_api::virtual_service::VirtualService;
use weft_api::Spec;
use weft_config::{host, Resource};

use weft_config::mesh::Scope;

use crate::model::{exported_to, Service, Workload};
use crate::registry::{namespace_of, Registry};

/// What changed among the objects between two snapshots: the kinds and
/// the namespaces of the objects that appeared, changed or went away.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub kinds: std::collections::BTreeSet<String>,
    pub namespaces: std::collections::BTreeSet<String>,
}

impl Changes {
    /// An object of `kind` in `namespace` (empty for cluster-scoped).
    pub fn object(&mut self, kind: &str, namespace: &str) {
        if !self.kinds.contains(kind) {
            self.kinds.insert(kind.to_string());
        }
        if !self.namespaces.contains(namespace) {
            self.namespaces.insert(namespace.to_string());
        }
    }

    pub fn extend(&mut self, other: Changes) {
        self.kinds.extend(other.kinds);
        self.namespaces.extend(other.namespaces);
    }
}

/// A networking object with its namespace and name.
#[derive(Clone, Debug)]
pub struct Named<T> {
    pub namespace: String,
    pub name: String,
    /// Shared with the loaded object.
    pub spec: Arc<T>,
    /// Differs between two objects unless both are the same document
    /// under the same name (see [`Context::digests`]).
    pub digest: u64,
}

/// Mesh-wide settings (MeshConfig), with Istio's defaults.
#[derive(Clone, Debug)]
pub struct Mesh {
    pub root_namespace: String,
    pub outbound_mode: OutboundMode,
    /// `connectTimeout`, as Envoy's duration text.
    pub connect_timeout: String,
    /// `accessLogFile`: empty is no access log.
    pub access_log_file: String,
    /// `trustDomain`: the domain of the mesh's SPIFFE identities.
    pub trust_domain: String,
    /// `enableAutoMtls`: clients use mutual TLS to every endpoint that
    /// has a sidecar and accepts it, unless a DestinationRule says
    /// otherwise.
    pub enable_auto_mtls: bool,
    /// `defaultConfig.gatewayTopology.forwardClientCertDetails`: what
    /// gateways do with `x-forwarded-client-cert`, by Envoy's name
    /// (Istio's gateways default to SANITIZE_SET).
    pub gateway_forward_client_cert: String,
    /// `pathNormalization.normalization`: what every connection manager
    /// does to request paths before routing and authorization.
    pub path_normalization: PathNormalization,
    /// `extensionProviders`: the external authorizers CUSTOM policies
    /// name (and, kept for later, the telemetry providers).
    pub extension_providers: Vec<weft_api::mesh_config::MeshExtensionProvider>,
}

/// Istio's `ProxyPathNormalization` levels (its DEFAULT is BASE), each
/// the one before and more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathNormalization {
    /// Paths are routed, authorized and forwarded as sent.
    None,
    /// RFC 3986 normalization (`normalize_path`).
    #[default]
    Base,
    /// And adjacent slashes merged (`merge_slashes`).
    MergeSlashes,
    /// And `%2F`/`%5C` decoded first (UNESCAPE_AND_FORWARD).
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// The level by Istio's name (DEFAULT is BASE).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "NONE" => PathNormalization::None,
            "BASE" | "DEFAULT" => PathNormalization::Base,
            "MERGE_SLASHES" => PathNormalization::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
            _ => return None,
        })
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            root_namespace: "istio-system".into(),
            outbound_mode: OutboundMode::ALLOW_ANY,
            connect_timeout: "10s".into(),
            access_log_file: String::new(),
            trust_domain: "cluster.local".into(),
            enable_auto_mtls: true,
            gateway_forward_client_cert: "SANITIZE_SET".into(),
            path_normalization: PathNormalization::Base,
            extension_providers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Shared with the previous snapshot when no registry object changed.
    pub registry: Arc<Registry>,
    pub mesh: Mesh,
    pub virtual_services: Vec<Named<VirtualService>>,
    pub destination_rules: Vec<Named<DestinationRule>>,
    pub sidecars: Vec<Named<Sidecar>>,
    pub gateways: Vec<Named<Gateway>>,
    /// In age order (the order objects were given: older first).
    pub peer_authentications: Vec<Named<PeerAuthentication>>,
    /// In age order, with whether each is a dry run.
    pub authorization_policies: Vec<Authorization>,
    /// In age order.
    pub request_authentications: Vec<Named<RequestAuthentication>>,
    /// The key sets RequestAuthentication rules name by URL, fetched
    /// before this context is compiled (see [`crate::jwks`]); empty
    /// until the caller sets them.
    pub jwks: Arc<crate::jwks::Keys>,
    /// Kubernetes Secrets by namespace and name: what a `credentialName`
    /// names.
    pub secrets: HashMap<(String, String), Arc<weft_api::k8s_openapi::api::core::v1::Secret>>,
    index: Index,
    digests: Digests,
}

/// An AuthorizationPolicy, and whether its `istio.io/dry-run`
/// annotation makes it a dry run (evaluated and logged, not enforced).
#[derive(Clone, Debug)]
pub struct Authorization {
    pub policy: Named<AuthorizationPolicy>,
    pub dry_run: bool,
}

/// The annotation that makes an AuthorizationPolicy a dry run.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Hashes of what generators read, so that a generator's output for a
/// service can be kept from one snapshot to the next while none of its
/// inputs changed (see `gen::service_inputs`).
#[derive(Clone, Debug, Default)]
pub struct Digests {
    /// The mesh settings.
    pub mesh: u64,
    /// Every PeerAuthentication (what an endpoint's mTLS mode reads).
    pub peer_authentications: u64,
}

/// Lookups by host, so that generating for thousands of services stays
/// linear: positions in the vectors above, in their order.
#[derive(Clone, Debug, Default)]
struct Index {
    /// VirtualServices by each exact host they name (FQDN-resolved).
    vs_exact: HashMap<String, Vec<usize>>,
    /// VirtualServices naming some wildcard host.
    vs_wildcard: Vec<usize>,
    dr_exact: HashMap<String, Vec<usize>>,
    dr_wildcard: Vec<usize>,
}

fn push_unique(v: &mut Vec<usize>, i: usize) {
    if v.last() != Some(&i) {
        v.push(i);
    }
}

/// A host as written in a VirtualService, DestinationRule or Sidecar of
/// namespace `ns`, as the FQDN Istio reads it as (the mesh model's rule:
/// a name without dots is a Kubernetes service of that namespace).
pub use weft_config::host::fqdn as resolve_host;

fn named<T>(r: &Resource, spec: &Arc<T>) -> Named<T> {
    let namespace = namespace_of(&r.object).to_string();
    let name = r.object.name().to_string();
    Named {
        digest: digest_of(&(r.digest, &namespace, &name)),
        namespace,
        name,
        spec: Arc::clone(spec),
    }
}

fn digest_of(v: &impl std::hash::Hash) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    v.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

impl Context {
    /// Builds the view from objects that already passed validation, in
    /// the order given (earlier wins conflicts, as the older object does
    /// in Istio).
    pub fn build<R: AsRef<Resource>>(resources: &[R], mesh: Mesh) -> Context {
        Context::with_registry(resources, mesh, Arc::new(Registry::build(resources)))
    }

    /// As [`Context::build`], keeping `previous`'s registry unless an
    /// object of a kind it is made from changed, and then its namespaces
    /// where nothing changed.
    pub fn rebuild<R: AsRef<Resource>>(
        previous: &Context,
        resources: &[R],
        mesh: Mesh,
        changed: &Changes,
    ) -> Context {
        let registry = if crate::registry::KINDS
            .iter()
            .any(|k| changed.kinds.contains(*k))
        {
            Arc::new(Registry::rebuild(
                Some(&previous.registry),
                resources,
                &changed.namespaces,
            ))
        } else {
            Arc::clone(&previous.registry)
        };
        Context::with_registry(resources, mesh, registry)
    }

    fn with_registry<R: AsRef<Resource>>(
        resources: &[R],
        mesh: Mesh,
        registry: Arc<Registry>,
    ) -> Context {
        let mut ctx = Context {
            registry,
            mesh,
            ..Context::default()
        };
        for r in resources.iter().map(AsRef::as_ref) {
            match &r.object.spec {
                Spec::VirtualService(vs) => ctx.virtual_services.push(named(r, vs)),
                Spec::DestinationRule(dr) => ctx.destination_rules.push(named(r, dr)),
                Spec::Sidecar(sc) => ctx.sidecars.push(named(r, sc)),
                Spec::Gateway(gw) => ctx.gateways.push(named(r, gw)),
                Spec::PeerAuthentication(pa) => ctx
                    .peer_authentications
                    .push(named(r, &Arc::new((**pa).clone()))),
                Spec::AuthorizationPolicy(ap) => {
                    let dry_run = r
                        .object
                        .meta
                        .annotations()
                        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
                        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                    ctx.authorization_policies.push(Authorization {
                        policy: named(r, &Arc::new((**ap).clone())),
                        dry_run,
                    });
                }
                Spec::RequestAuthentication(ra) => ctx
                    .request_authentications
                    .push(named(r, &Arc::new((**ra).clone()))),
                Spec::Secret(secret) => {
                    ctx.secrets.insert(
                        (
                            namespace_of(&r.object).to_string(),
                            r.object.name().to_string(),
                        ),
                        Arc::new((**secret).clone()),
                    );
                }
                _ => {}
            }
        }
        crate::delegate::merge_all(&mut ctx.virtual_services);
        let mut index = Index::default();
        for (i, vs) in ctx.virtual_services.iter().enumerate() {
            for h in &vs.spec.hosts {
                let h = resolve_host(h, &vs.namespace);
                if h.contains('*') {
                    push_unique(&mut index.vs_wildcard, i);
                } else {
                    push_unique(index.vs_exact.entry(h).or_default(), i);
                }
            }
        }
        for (i, dr) in ctx.destination_rules.iter().enumerate() {
            let h = resolve_host(&dr.spec.host, &dr.namespace);
            if h.contains('*') {
                index.dr_wildcard.push(i);
            } else {
                index.dr_exact.entry(h).or_default().push(i);
            }
        }
        ctx.index = index;
        ctx.digests = Digests {
            mesh: digest_of(&(
                &ctx.mesh.root_namespace,
                ctx.mesh.outbound_mode == OutboundMode::ALLOW_ANY,
                &ctx.mesh.connect_timeout,
                &ctx.mesh.access_log_file,
                &ctx.mesh.trust_domain,
                ctx.mesh.enable_auto_mtls,
            )),
            peer_authentications: digest_of(
                &ctx.peer_authentications
                    .iter()
                    .map(|p| p.digest)
                    .collect::<Vec<_>>(),
            ),
        };
        ctx
    }

    /// The key sets this context's RequestAuthentications name by URL
    /// (or by issuer discovery), with each one's fetch timeout: what a
    /// caller resolves into [`Context::jwks`] before compiling.
    pub fn jwks_sources(&self) -> Vec<(crate::jwks::Source, std::time::Duration)> {
        let mut out: Vec<(crate::jwks::Source, std::time::Duration)> = Vec::new();
        for ra in &self.request_authentications {
            for rule in &ra.spec.jwt_rules {
                let Some(source) = crate::jwks::source_of(rule) else {
                    continue;
                };
                let timeout = rule
                    .timeout
                    .as_ref()
                    .map(|t| t.as_std())
                    .unwrap_or(crate::jwks::DEFAULT_TIMEOUT);
                match out.iter_mut().find(|(s, _)| *s == source) {
                    Some((_, t)) => *t = (*t).max(timeout),
                    None => out.push((source, timeout)),
                }
            }
        }
        out
    }

    /// The mutual-TLS modes of a workload in `namespace` with `labels`
    /// (PeerAuthentication, by the mesh model's rules).
    pub fn mtls_for(
        &self,
        namespace: &str,
        labels: &impl weft_config::mesh::Labels,
    ) -> weft_config::mesh::mtls::Effective {
        let policies: Vec<weft_config::mesh::mtls::Policy> = self
            .peer_authentications
            .iter()
            .map(|p| weft_config::mesh::mtls::Policy {
                namespace: &p.namespace,
                name: &p.name,
                spec: &p.spec,
            })
            .collect();
        weft_config::mesh::mtls::effective(&policies, &self.mesh.root_namespace, namespace, labels)
    }

    /// The SPIFFE identities of the instances behind a service port, which
    /// a client accepts from it under mutual TLS.
    pub fn identities_of(&self, service: &str, port: u32) -> Vec<String> {
        let mut out: Vec<String> = self
            .registry
            .endpoints_of(service, port)
            .filter_map(|e| {
                let sa = e.service_account.as_deref()?;
                Some(weft_config::mesh::mtls::spiffe_id(
                    &self.mesh.trust_domain,
                    &e.namespace,
                    sa,
                ))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn digests(&self) -> &Digests {
        &self.digests
    }

    /// A hash of `service` and every instance of its hostname.
    pub fn service_digest(&self, service: &Service) -> u64 {
        digest_of(&(service, self.registry.endpoint_digest(&service.hostname)))
    }

    pub fn service(&self, hostname: &str) -> Option<&Service> {
        self.registry.service(hostname)
    }

    /// The Sidecar resource that applies to a workload: the one of its
    /// namespace whose selector matches it, else its namespace's
    /// selector-less one, else the root namespace's.
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &Map<String, String>,
    ) -> Option<&Named<Sidecar>> {
        let sidecars = &self.sidecars;
        let in_ns = |ns: &str| {
            let ns = ns.to_string();
            sidecars.iter().filter(move |s| s.namespace == ns)
        };
        fn scope(s: &Named<Sidecar>) -> Scope<'_> {
            Scope::workload(s.spec.workload_selector.as_ref())
        }
        let root = &self.mesh.root_namespace;
        let applies =
            |s: &&Named<Sidecar>| scope(s).applies_to(&s.namespace, root, namespace, labels);
        // A selecting Sidecar before the namespace's default, and that
        // before the root namespace's.
        in_ns(namespace)
            .filter(|s| !scope(s).is_namespace())
            .find(applies)
            .or_else(|| {
                in_ns(namespace)
                    .filter(|s| scope(s).is_namespace())
                    .find(applies)
            })
            .or_else(|| {
                in_ns(root)
                    .filter(|s| scope(s).is_namespace())
                    .find(applies)
            })
    }

    /// The VirtualService routing `hostname` for proxies in `namespace`
    /// bound to `gateway` (`mesh` for sidecars): the first one whose hosts
    /// name it exactly, else the first whose wildcard covers it.
    pub fn virtual_service_for(
        &self,
        hostname: &str,
        namespace: &str,
        gateway: &str,
    ) -> Option<&Named<VirtualService>> {
        let usable = |vs: &&Named<VirtualService>| {
            exported_to(&vs.spec.export_to, &vs.namespace, namespace)
                && bound_to(&vs.spec.gateways, &vs.namespace, gateway)
        };
        let exact = self.index.vs_exact.get(hostname).into_iter().flatten();
        if let Some(vs) = exact.map(|i| &self.virtual_services[*i]).find(usable) {
            return Some(vs);
        }
        self.index
            .vs_wildcard
            .iter()
            .map(|i| &self.virtual_services[*i])
            .filter(usable)
            .find(|vs| {
                vs.spec
                    .hosts
                    .iter()
                    .any(|h| host::covers(&resolve_host(h, &vs.namespace), hostname))
            })
    }

    /// The DestinationRule for `hostname` seen from `namespace`: Istio
    /// looks in the proxy's namespace, then the service's, then the root
    /// namespace; an exact host beats a wildcard.
    pub fn destination_rule_for(
        &self,
        hostname: &str,
        namespace: &str,
        service_namespace: &str,
    ) -> Option<&Named<DestinationRule>> {
        let order = [namespace, service_namespace, &self.mesh.root_namespace];
        let usable = |ns: &str, dr: &&Named<DestinationRule>| {
            dr.namespace == ns
                && dr.spec.workload_selector.is_none()
                && exported_to(&dr.spec.export_to, &dr.namespace, namespace)
        };
        let exact: Vec<&Named<DestinationRule>> = self
            .index
            .dr_exact
            .get(hostname)
            .into_iter()
            .flatten()
            .map(|i| &self.destination_rules[*i])
            .collect();
        for ns in order {
            if let Some(dr) = exact.iter().find(|dr| usable(ns, dr)) {
                return Some(dr);
            }
            let wildcard = self
                .index
                .dr_wildcard
                .iter()
                .map(|i| &self.destination_rules[*i])
                .filter(|dr| usable(ns, dr))
                .find(|dr| host::covers(&resolve_host(&dr.spec.host, &dr.namespace), hostname));
            if wildcard.is_some() {
                return wildcard;
            }
        }
        None
    }

    pub fn workload(&self, namespace: &str, name: &str, ip: &str) -> Option<&Workload> {
        let ws = || self.registry.workloads();
        ws().find(|w| &*w.namespace == namespace && w.name == name)
            .or_else(|| ws().find(|w| &*w.namespace == namespace && w.address == ip))
    }
}

/// Whether a VirtualService with `gateways` applies to `gateway`: none
/// listed means the sidecars (`mesh`); gateway names resolve in the
/// VirtualService's namespace.
pub fn bound_to(gateways: &[String], vs_namespace: &str, gateway: &str) -> bool {
    if gateways.is_empty() {
        return gateway == "mesh";
    }
    gateways.iter().any(|g| {
        if g == "mesh" {
            return gateway == "mesh";
        }
        let full = if g.contains('/') {
            g.clone()
        } else {
            format!("{vs_namespace}/{g}")
        };
        full == gateway
    })
}
