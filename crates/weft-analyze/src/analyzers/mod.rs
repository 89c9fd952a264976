//! The analyzers. Each looks at one concern across resources and reports
//! with Istio's message codes.

mod envoy_filter;
mod gateways;
mod policies;
mod routing;
mod workloads;

use weft_config::{validate, IssueKind, LoadIssue, Resource, Severity};

use crate::messages::*;
use crate::{Context, Diagnostic};

/// One analyzer, as listed by `weft analyze --list-analyzers`.
pub struct Analyzer {
    pub name: &'static str,
    pub description: &'static str,
    pub codes: &'static [&'static MessageType],
    pub run: fn(&Context, &mut Vec<Diagnostic>),
}

pub static ANALYZERS: &[Analyzer] = &[
    Analyzer {
        name: "schema.ValidationAnalyzer",
        description: "Runs Istio's admission validation on every Istio resource",
        codes: &[&SCHEMA_VALIDATION_ERROR, &SCHEMA_WARNING, &DEPRECATED],
        run: schema,
    },
    Analyzer {
        name: "virtualservice.DestinationHostAnalyzer",
        description: "Checks that VirtualService destinations exist and name a port when the service has several",
        codes: &[&REFERENCED_RESOURCE_NOT_FOUND, &VS_DESTINATION_PORT_SELECTOR_REQUIRED],
        run: routing::destination_hosts,
    },
    Analyzer {
        name: "virtualservice.DestinationRuleAnalyzer",
        description: "Checks that subsets used by VirtualServices are defined by a DestinationRule",
        codes: &[&REFERENCED_RESOURCE_NOT_FOUND],
        run: routing::destination_subsets,
    },
    Analyzer {
        name: "virtualservice.GatewayAnalyzer",
        description: "Checks that gateways referenced by VirtualServices exist and expose the VirtualService's hosts",
        codes: &[&REFERENCED_RESOURCE_NOT_FOUND, &VS_HOST_NOT_IN_GATEWAY, &REFERENCED_INTERNAL_GATEWAY],
        run: routing::gateway_refs,
    },
    Analyzer {
        name: "virtualservice.IngressSubsetAnalyzer",
        description: "Checks gateway routes that bypass subset routing defined for the mesh",
        codes: &[&INGRESS_ROUTE_RULES_NOT_AFFECTED],
        run: routing::ingress_subsets,
    },
    Analyzer {
        name: "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
        description: "Checks that no two mesh VirtualServices define the same host",
        codes: &[&CONFLICTING_MESH_GATEWAY_VS_HOSTS],
        run: routing::conflicting_mesh_hosts,
    },
    Analyzer {
        name: "virtualservice.RegexAnalyzer",
        description: "Checks for rules and matches that can never be used",
        codes: &[&VS_INEFFECTIVE_MATCH, &VS_UNREACHABLE_RULE],
        run: routing::ineffective_matches,
    },
    Analyzer {
        name: "destinationrule.HostAndSubsetAnalyzer",
        description: "Checks that DestinationRule hosts exist and that subsets select pods",
        codes: &[&UNKNOWN_DR_HOST, &DR_SUBSET_NOT_SELECT_PODS, &NO_SERVER_CERT_VERIFICATION_DR, &NO_SERVER_CERT_VERIFICATION_PORT],
        run: routing::destination_rules,
    },
    Analyzer {
        name: "gateway.ConflictingGatewayAnalyzer",
        description: "Checks for gateways that bind the same workload, port and host",
        codes: &[&CONFLICTING_GATEWAYS],
        run: gateways::conflicting,
    },
    Analyzer {
        name: "gateway.SecretAnalyzer",
        description: "Checks that TLS credentials referenced by gateways exist",
        codes: &[&REFERENCED_RESOURCE_NOT_FOUND, &INVALID_GATEWAY_CREDENTIAL, &GATEWAY_DUPLICATE_CERTIFICATE],
        run: gateways::secrets,
    },
    Analyzer {
        name: "gateway.IngressGatewayPortAnalyzer",
        description: "Checks that gateway selectors match workloads and that gateway ports are on their Service",
        codes: &[&REFERENCED_RESOURCE_NOT_FOUND, &GATEWAY_PORT_NOT_DEFINED_ON_SERVICE],
        run: gateways::selector_and_ports,
    },
    Analyzer {
        name: "service.PortNameAnalyzer",
        description: "Checks that service ports follow Istio's protocol naming convention",
        codes: &[&PORT_NAME_NOT_UNDER_CONVENTION],
        run: workloads::port_names,
    },
    Analyzer {
        name: "injection.Analyzer",
        description: "Checks namespaces for injection labels and pods for the proxy",
        codes: &[&NAMESPACE_NOT_INJECTED, &POD_MISSING_PROXY, &NAMESPACE_MULTIPLE_INJECTION_LABELS],
        run: workloads::injection,
    },
    Analyzer {
        name: "annotations.K8sAnalyzer",
        description: "Checks istio.io annotations for unknown or misplaced names",
        codes: &[&UNKNOWN_ANNOTATION, &MISPLACED_ANNOTATION, &INVALID_ANNOTATION],
        run: workloads::annotations,
    },
    Analyzer {
        name: "sidecar.SelectorAnalyzer",
        description: "Checks Sidecar selectors: none matching, several without selector, several selecting one pod",
        codes: &[
            &NO_MATCHING_WORKLOADS,
            &MULTIPLE_SIDECARS_WITHOUT_SELECTORS,
            &CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
            &INEFFECTIVE_POLICY,
        ],
        run: workloads::sidecar_selectors,
    },
    Analyzer {
        name: "policy.SelectorAnalyzer",
        description: "Checks that security and telemetry policies select workloads; telemetry conflicts and providers",
        codes: &[
            &NO_MATCHING_WORKLOADS,
            &MULTIPLE_TELEMETRIES_WITHOUT_SELECTORS,
            &CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
            &INVALID_TELEMETRY_PROVIDER,
        ],
        run: policies::policy_selectors,
    },
    Analyzer {
        name: "deployment.MultiServiceAnalyzer",
        description: "Checks workloads exposed by several services with conflicting protocols",
        codes: &[&DEPLOYMENT_MULTIPLE_SERVICES, &DEPLOYMENT_CONFLICTING_PORTS],
        run: workloads::multi_service,
    },
    Analyzer {
        name: "deployment.ApplicationUIDAnalyzer",
        description: "Checks that applications do not run as the proxy's UID 1337",
        codes: &[&INVALID_APPLICATION_UID],
        run: workloads::application_uid,
    },
    Analyzer {
        name: "service.ExternalNameAnalyzer",
        description: "Checks port names of ExternalName services",
        codes: &[&EXTERNAL_NAME_INVALID_PORT_NAME],
        run: workloads::external_name_ports,
    },
    Analyzer {
        name: "envoyfilter.EnvoyPatchAnalyzer",
        description: "Checks EnvoyFilter patch operations that are ignored or order-dependent",
        codes: &[
            &ENVOY_FILTER_RELATIVE_OPERATION,
            &ENVOY_FILTER_REPLACE_INCORRECTLY,
            &ENVOY_FILTER_ADD_INCORRECTLY,
            &ENVOY_FILTER_REMOVE_INCORRECTLY,
            &ENVOY_FILTER_RELATIVE_WITH_PROXY_VERSION,
        ],
        run: envoy_filter::patches,
    },
    Analyzer {
        name: "serviceentry.Analyzer",
        description: "Checks ServiceEntries: addresses for TCP ports, conflicting protocols",
        codes: &[&SERVICE_ENTRY_ADDRESSES_REQUIRED, &CONFLICTING_SE_PROTOCOL],
        run: workloads::service_entries,
    },
];

/// Load problems become diagnostics: schema errors are IST0106; unknown
/// kinds and unreadable files are not Istio findings and are reported by
/// the CLI itself.
pub(crate) fn load_issues(issues: &[LoadIssue], out: &mut Vec<Diagnostic>) {
    for i in issues {
        if !matches!(
            i.kind,
            IssueKind::Schema | IssueKind::Duplicate | IssueKind::Syntax
        ) {
            continue;
        }
        let detail = match &i.field {
            Some(f) => format!("{f}: {}", i.message),
            None => i.message.clone(),
        };
        out.push(Diagnostic {
            message: &SCHEMA_VALIDATION_ERROR,
            args: vec![detail],
            resource: i.resource.clone(),
            origin: Some(i.origin.clone()),
        });
    }
}

fn schema(ctx: &Context, out: &mut Vec<Diagnostic>) {
    for r in ctx.resources {
        for v in validate(&r.object) {
            let detail = format!("{}: {}", v.field, v.message);
            let message = match v.severity {
                Severity::Error => &SCHEMA_VALIDATION_ERROR,
                Severity::Warning if v.message.contains("deprecated") => &DEPRECATED,
                Severity::Warning => &SCHEMA_WARNING,
            };
            out.push(Diagnostic::new(message, r, Some(&v.field), vec![detail]));
        }
    }
}

pub(crate) fn res_name(r: &Resource) -> String {
    format!("{}/{}", r.object.namespace(), r.object.name())
}

/// `a=1,b=2`, as Istio prints selectors.
pub(crate) fn labels_text<'a>(l: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    l.into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
