//! The service registry from configuration objects: Kubernetes Services
//! with their Endpoints, EndpointSlices or (when neither is given, as on a
//! laptop) the Pods their selector picks; ServiceEntries with inline
//! endpoints or the WorkloadEntries and Pods their workloadSelector
//! picks. The result is the same model either way.
//!
//! It is kept per namespace (`namespace::Namespace`): what makes a
//! service's instances never crosses a namespace, so a change rebuilds
//! only the namespaces it touches and shares the others with the
//! previous snapshot. Lookups by hostname go through indexes over all
//! namespaces, rebuilt per snapshot from the namespaces' own (one entry
//! per service and per hostname, not per instance).

mod namespace;

use std::collections::{BTreeSet, HashMap};

use std::sync::Arc;

use weft_api::Object;
use weft_config::Resource;

use crate::model::{Endpoint, Service, Workload};
use namespace::Namespace;

/// The kinds the registry is made from: while none of them changes, a
/// new snapshot can keep the previous registry.
pub const KINDS: [&str; 6] = [
    "Service",
    "Endpoints",
    "EndpointSlice",
    "Pod",
    "ServiceEntry",
    "WorkloadEntry",
];

/// An object's namespace, `default` when the manifest leaves it out (as
/// `kubectl apply` would).
pub fn namespace_of(o: &Object) -> &str {
    match o.namespace() {
        "" => "default",
        ns => ns,
    }
}

type Fast<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Services, their endpoints and the workloads of every namespace.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// In the order the namespaces first appear among the objects.
    namespaces: Vec<(Arc<str>, Arc<Namespace>)>,
    /// The first service of each hostname: (namespace, position).
    by_host: Fast<String, (u32, u32)>,
    /// The namespaces with instances of each hostname, in order.
    instances_in: Fast<Arc<str>, Vec<u32>>,
    /// A hash of the instances of each hostname, all namespaces.
    endpoint_digests: Fast<Arc<str>, u64>,
}

impl Registry {
    pub fn build<R: AsRef<Resource>>(resources: &[R]) -> Registry {
        Registry::rebuild(None, resources, &BTreeSet::new())
    }

    /// As [`Registry::build`], sharing with `previous` every namespace
    /// not in `changed` (the namespaces of the registry objects that
    /// appeared, changed or went away since).
    pub fn rebuild<R: AsRef<Resource>>(
        previous: Option<&Registry>,
        resources: &[R],
        changed: &BTreeSet<String>,
    ) -> Registry {
        let mut grouped: Vec<(&str, Vec<&Resource>)> = Vec::new();
        let mut position: Fast<&str, usize> = Fast::default();
        for r in resources.iter().map(AsRef::as_ref) {
            if !KINDS.contains(&r.object.kind.info().name) {
                continue;
            }
            let ns = namespace_of(&r.object);
            let i = *position.entry(ns).or_insert_with(|| {
                grouped.push((ns, Vec::new()));
                grouped.len() - 1
            });
            grouped[i].1.push(r);
        }
        let kept: Fast<&str, &Arc<Namespace>> = previous
            .map(|p| {
                p.namespaces
                    .iter()
                    .filter(|(ns, _)| !changed.contains(&**ns))
                    .map(|(ns, n)| (&**ns, n))
                    .collect()
            })
            .unwrap_or_default();
        let mut reg = Registry::default();
        for (ns, objects) in grouped {
            let built = match kept.get(ns) {
                Some(n) => Arc::clone(n),
                None => Arc::new(Namespace::build(&objects)),
            };
            reg.namespaces.push((ns.into(), built));
        }
        reg.index();
        reg
    }

    fn index(&mut self) {
        let mut digests: Fast<Arc<str>, Vec<u64>> = Fast::default();
        for (i, (_, n)) in self.namespaces.iter().enumerate() {
            for (j, s) in n.services.iter().enumerate() {
                self.by_host
                    .entry(s.hostname.clone())
                    .or_insert((i as u32, j as u32));
            }
            for (host, d) in &n.endpoint_digests {
                self.instances_in
                    .entry(Arc::clone(host))
                    .or_default()
                    .push(i as u32);
                digests.entry(Arc::clone(host)).or_default().push(*d);
            }
        }
        self.endpoint_digests = digests
            .into_iter()
            .map(|(host, ds)| {
                let d = match ds.as_slice() {
                    [one] => *one,
                    many => {
                        let mut h = std::hash::DefaultHasher::new();
                        std::hash::Hash::hash(many, &mut h);
                        std::hash::Hasher::finish(&h)
                    }
                };
                (host, d)
            })
            .collect();
    }

    /// Every service, namespace by namespace.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.namespaces.iter().flat_map(|(_, n)| n.services.iter())
    }

    /// Every workload (Pods with an address, WorkloadEntries).
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.namespaces.iter().flat_map(|(_, n)| n.workloads.iter())
    }

    /// The first service named `hostname`.
    pub fn service(&self, hostname: &str) -> Option<&Service> {
        let (i, j) = *self.by_host.get(hostname)?;
        Some(&self.namespaces[i as usize].1.services[j as usize])
    }

    /// A hash of every instance of `hostname`.
    pub fn endpoint_digest(&self, hostname: &str) -> Option<u64> {
        self.endpoint_digests.get(hostname).copied()
    }

    /// The instances of a service port.
    pub fn endpoints_of<'a>(
        &'a self,
        service: &'a str,
        port: u32,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.instances_in
            .get(service)
            .into_iter()
            .flatten()
            .flat_map(move |i| {
                let n = &self.namespaces[*i as usize].1;
                n.by_port
                    .get(service)
                    .and_then(|p| p.get(&port))
                    .into_iter()
                    .flatten()
                    .map(move |e| &n.endpoints[*e])
            })
    }
}

#[cfg(test)]
mod tests;
