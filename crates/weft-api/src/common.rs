//! Messages shared by several Istio kinds.

use crate::Map;

model! {
    /// `StringMatch`: at most one of exact, prefix or regex (RE2 syntax).
    /// An empty match is legal and, for headers, means "present".
    pub struct StringMatch {
        pub exact: Option<String>,
        pub prefix: Option<String>,
        pub regex: Option<String>,
    }
}

impl StringMatch {
    /// How many of the alternatives are set (valid when at most one).
    pub fn set_count(&self) -> usize {
        [&self.exact, &self.prefix, &self.regex]
            .iter()
            .filter(|o| o.is_some())
            .count()
    }
}

model! {
    /// `PortSelector`: a port number on a destination service.
    pub struct PortSelector {
        pub number: u32,
    }
}

model! {
    /// `Percent`: a percentage as a double in 0.0–100.0.
    pub struct Percent {
        pub value: f64,
    }
}

model! {
    /// `Destination`: a service host (short name, FQDN or ServiceEntry host),
    /// optionally a subset from a DestinationRule and a port.
    pub struct Destination {
        pub host: String,
        pub subset: Option<String>,
        pub port: Option<PortSelector>,
    }
}

model! {
    /// `Headers.HeaderOperations`.
    pub struct HeaderOperations {
        pub set: Map<String, String>,
        pub add: Map<String, String>,
        pub remove: Vec<String>,
    }
}

model! {
    /// `Headers`: manipulations of request and response headers.
    pub struct Headers {
        pub request: Option<HeaderOperations>,
        pub response: Option<HeaderOperations>,
    }
}

model! {
    /// `WorkloadSelector` as used by networking kinds (`labels`).
    pub struct WorkloadSelector {
        pub labels: Map<String, String>,
    }
}

model! {
    /// `type.WorkloadSelector` as used by security and telemetry kinds
    /// (`matchLabels`).
    pub struct LabelSelector {
        pub match_labels: Map<String, String>,
    }
}

model! {
    /// `PolicyTargetReference`: a Gateway API resource a policy attaches to.
    pub struct PolicyTargetReference {
        pub group: Option<String>,
        pub kind: String,
        pub name: String,
        pub namespace: Option<String>,
    }
}

model! {
    /// `Port` of Gateway servers, ServiceEntries and Sidecar listeners.
    pub struct Port {
        pub number: u32,
        pub protocol: String,
        pub name: String,
        pub target_port: Option<u32>,
    }
}
