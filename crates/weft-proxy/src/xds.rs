//! Live configuration from ADS: xDS updates become new snapshots.
//!
//! Each update is compiled outside any lock into a copy of the dynamic
//! state; only when the whole update compiled (and any new listener
//! bound) does the copy replace the state and the new snapshot go live
//! (`Shared::install`). A resource that cannot be built is refused on
//! its own and keeps what it was, as Envoy refuses a cluster or listener
//! it cannot build; the rest applies and the answer is a NACK naming it.
//! An update that cannot be installed at all (a listener that cannot
//! bind) is NACKed whole and the previous snapshot keeps serving.
//!
//! Warming, as Envoy: a new EDS cluster is not used until its endpoints
//! arrive, a DNS cluster until its first resolution (which runs in the
//! background, so no name holds up an update or its ACK), and a new
//! listener is not bound until its RDS route tables and SDS secrets
//! arrive (secrets live in slots shared by every snapshot, so a new
//! version reaches new handshakes without recompiling anything); a replaced
//! one keeps serving meanwhile. Each waits at most
//! the initial fetch timeout of the config source it waits on (Envoy's
//! default 15 s; `0s` waits for ever), then goes live without them.
//! Unchanged resources (same bytes) keep their compiled form, so their
//! connection pools, statistics and open connections are untouched.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weft_envoy::cluster::ClusterLoadAssignment;
use weft_xds::ads::Update;
use weft_xds::client::Refused;
use weft_xds::{Kind, Resource};

use crate::cluster::Cluster;
use crate::config_dump::{Delivered, XdsDump};
use crate::listener::ListenerConfig;
use crate::routes::RouteTable;
use crate::server::Shared;
use crate::snapshot::Snapshot;

/// How long warming waits for endpoints or routes when the config
/// source does not say (Envoy's default initial fetch timeout).
pub const WARMING_TIMEOUT: Duration = Duration::from_secs(15);

/// An update changing at least this many resources is followed by
/// handing freed memory back to the system.
const TRIM_AFTER: usize = 100;

/// Decoding a large update allocates far more, briefly, than what it
/// decodes to; glibc's allocator keeps those freed pages (in every
/// thread's arena) unless asked to return them. Other allocators decay
/// on their own.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Something waiting for its resources, with when it stops waiting
/// (never, when the initial fetch timeout is zero).
struct Warming<T> {
    item: Arc<T>,
    until: Option<Instant>,
}

impl<T> Clone for Warming<T> {
    fn clone(&self) -> Self {
        Warming {
            item: Arc::clone(&self.item),
            until: self.until,
        }
    }
}

/// What xDS delivered, compiled. Cheap to copy: the maps that grow to
/// thousands of entries are shared and copied only when their own type
/// changes (`Arc::make_mut`), so a route update does not copy clusters.
#[derive(Clone, Default)]
struct State {
    clusters: Arc<BTreeMap<String, Arc<Cluster>>>,
    warming_clusters: BTreeMap<String, Warming<Cluster>>,
    /// ClusterLoadAssignments by name, as decoded (shared with the ADS
    /// client's set, not copied).
    assignments: Arc<HashMap<String, Arc<Resource>>>,
    routes: HashMap<String, Arc<RouteTable>>,
    listeners: Arc<BTreeMap<String, Arc<ListenerConfig>>>,
    warming_listeners: BTreeMap<String, Warming<ListenerConfig>>,
    /// Every accepted resource as delivered, for /config_dump.
    delivered: BTreeMap<Kind, Arc<BTreeMap<String, Delivered>>>,
    versions: BTreeMap<Kind, String>,
}

/// Applies xDS updates to a running proxy.
pub struct Dynamic {
    shared: Arc<Shared>,
    /// The bootstrap's compiled static resources.
    base: Arc<Snapshot>,
    state: State,
    /// The snapshot's cluster map (static + dynamic) and the dynamic map
    /// it was built from.
    merged: Option<MergedClusters>,
    /// The names of every cluster, active or warming; forgotten when CDS
    /// changes them.
    cluster_names: std::sync::Mutex<Option<Arc<HashSet<String>>>>,
    /// Told when a warming DNS cluster has resolved.
    woken: Arc<tokio::sync::Notify>,
}

type MergedClusters = (
    Arc<BTreeMap<String, Arc<Cluster>>>,
    Arc<HashMap<String, Arc<Cluster>>>,
);

impl Dynamic {
    /// `base`: the bootstrap's snapshot, already installed in `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        let base = shared.snapshot.load_full();
        Dynamic {
            shared,
            base,
            state: State::default(),
            merged: None,
            cluster_names: Default::default(),
            woken: Default::default(),
        }
    }

    async fn apply_clusters(
        &self,
        next: &mut State,
        u: &Update,
        refused: &mut Refused,
    ) -> Result<(), String> {
        let stats = &self.base.stats;
        for name in &u.removed {
            Arc::make_mut(&mut next.clusters).remove(name);
            next.warming_clusters.remove(name);
        }
        for name in &u.changed {
            let Some(Resource::Cluster(c)) = u.resources.get(name).map(|h| &*h.resource) else {
                continue;
            };
            // A cluster that cannot be built is refused on its own; what
            // was there before stays.
            if self.base.clusters.contains_key(name) {
                refused.push((
                    name.clone(),
                    format!("Cluster {name:?}: a static cluster of that name exists"),
                ));
                continue;
            }
            let at = format!("Cluster {name:?}");
            let cluster = match Cluster::compile_in(c, &at, stats, &self.base.secrets) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    refused.push((name.clone(), e.to_string()));
                    continue;
                }
            };
            match cluster.eds_service() {
                Some(service) => match next.assignments.get(service).and_then(|r| assignment(r)) {
                    Some(la) => {
                        if let Err(e) = cluster.assign(la) {
                            refused.push((name.clone(), format!("{at}: {e}")));
                            continue;
                        }
                        cluster.start_background();
                        next.warming_clusters.remove(name);
                        if cluster.secrets_pending() {
                            // Its SDS secrets have not arrived: it warms.
                            next.warming_clusters.insert(
                                name.clone(),
                                Warming {
                                    item: cluster,
                                    until: Some(Instant::now() + WARMING_TIMEOUT),
                                },
                            );
                        } else {
                            Arc::make_mut(&mut next.clusters).insert(name.clone(), cluster);
                        }
                    }
                    None => {
                        cluster.start_background();
                        next.warming_clusters.remove(name);
                        let wait = c
                            .eds_cluster_config
                            .as_ref()
                            .and_then(|e| e.eds_config.as_ref())
                            .map_or(Some(WARMING_TIMEOUT), |s| s.initial_fetch_timeout());
                        next.warming_clusters.insert(
                            name.clone(),
                            Warming {
                                item: cluster,
                                until: wait.map(|d| Instant::now() + d),
                            },
                        );
                    }
                },
                None => {
                    cluster.start_background();
                    next.warming_clusters.remove(name);
                    if cluster.is_initialized() && !cluster.secrets_pending() {
                        Arc::make_mut(&mut next.clusters).insert(name.clone(), cluster);
                    } else {
                        // A DNS cluster warms until its first resolution,
                        // as Envoy's does, instead of holding up the
                        // update (and its ACK) while it resolves; what it
                        // replaces keeps serving meanwhile. A cluster
                        // waiting for SDS secrets warms until they come.
                        if !cluster.is_initialized() {
                            let (c, woken) = (Arc::clone(&cluster), Arc::clone(&self.woken));
                            tokio::spawn(async move {
                                c.initialized().await;
                                woken.notify_one();
                            });
                        }
                        next.warming_clusters.insert(
                            name.clone(),
                            Warming {
                                item: cluster,
                                until: Some(Instant::now() + WARMING_TIMEOUT),
                            },
                        );
                    }
                }
            }
        }
        if !u.removed.is_empty() {
            // The endpoints of removed clusters are forgotten (the ADS
            // client unsubscribes them), so a cluster added again later
            // waits for fresh ones instead of starting with stale ones.
            let used: HashSet<&str> = self
                .base
                .clusters
                .values()
                .chain(next.clusters.values())
                .chain(next.warming_clusters.values().map(|w| &w.item))
                .filter_map(|c| c.eds_service())
                .collect();
            if next.assignments.keys().any(|n| !used.contains(n.as_str())) {
                Arc::make_mut(&mut next.assignments).retain(|n, _| used.contains(n.as_str()));
            }
        }
        Ok(())
    }

    fn apply_assignments(
        &self,
        next: &mut State,
        u: &Update,
        refused: &mut Refused,
    ) -> Result<(), String> {
        let mut fresh = Vec::new();
        // What is no longer subscribed is gone from the update's set.
        if next
            .assignments
            .keys()
            .any(|n| !u.resources.contains_key(n))
        {
            Arc::make_mut(&mut next.assignments).retain(|n, _| u.resources.contains_key(n));
        }
        for name in &u.changed {
            let Some(held) = u.resources.get(name) else {
                continue;
            };
            if let Some(la) = assignment(&held.resource) {
                // Checked before anything is assigned, so a bad one
                // changes nothing; it is refused on its own.
                match crate::cluster::check_assignment(la) {
                    Ok(()) => fresh.push((name, la, &held.resource)),
                    Err(e) => {
                        refused.push((name.clone(), format!("ClusterLoadAssignment {name:?}: {e}")))
                    }
                }
            }
        }
        {
            // The clusters taking each assignment, found in one pass.
            let mut users: HashMap<&str, Vec<&Arc<Cluster>>> = HashMap::new();
            let all = self
                .base
                .clusters
                .values()
                .chain(next.clusters.values())
                .chain(next.warming_clusters.values().map(|w| &w.item));
            for c in all {
                if let Some(service) = c.eds_service() {
                    users.entry(service).or_default().push(c);
                }
            }
            for (name, la, _) in &fresh {
                for c in users.get(name.as_str()).into_iter().flatten() {
                    c.assign(la).map_err(|e| format!("{}: {e}", c.name))?;
                }
            }
        }
        if !fresh.is_empty() {
            let assignments = Arc::make_mut(&mut next.assignments);
            for (name, _, resource) in fresh {
                assignments.insert(name.clone(), Arc::clone(resource));
            }
        }
        // Warm clusters go live.
        let assignments = &next.assignments;
        promote(&mut next.warming_clusters, &mut next.clusters, |c| {
            c.eds_service().is_some_and(|s| assignments.contains_key(s)) && !c.secrets_pending()
        });
        Ok(())
    }

    fn apply_routes(&self, next: &mut State, u: &Update, refused: &mut Refused) {
        for name in &u.changed {
            if let Some(Resource::RouteConfiguration(rc)) =
                u.resources.get(name).map(|h| &*h.resource)
            {
                // A table that does not compile is refused on its own.
                match crate::chain::compile_routes(
                    &format!("RouteConfiguration {name:?}"),
                    rc,
                    &self.base.stats,
                    next.routes.get(name).map(|t| &**t),
                ) {
                    Ok(table) => {
                        next.routes.insert(name.clone(), Arc::new(table));
                    }
                    Err(e) => refused.push((name.clone(), e.to_string())),
                }
            }
        }
        // What is no longer subscribed is gone from the update's set.
        next.routes.retain(|n, _| u.resources.contains_key(n));
        promote_listeners(next);
    }

    fn apply_listeners(&self, next: &mut State, u: &Update, refused: &mut Refused) {
        for name in &u.removed {
            Arc::make_mut(&mut next.listeners).remove(name);
            next.warming_listeners.remove(name);
        }
        for name in &u.changed {
            let Some(Resource::Listener(l)) = u.resources.get(name).map(|h| &*h.resource) else {
                continue;
            };
            // A listener that cannot be built is refused on its own; what
            // was there before stays.
            if self.base.listener(name).is_some() {
                refused.push((
                    name.clone(),
                    format!("Listener {name:?}: a static listener of that name exists"),
                ));
                continue;
            }
            let compiled = match crate::listener::compile(
                &format!("Listener {name:?}"),
                l,
                &self.base.stats,
                &self.base.secrets,
            ) {
                Ok(c) => c,
                Err(e) => {
                    refused.push((name.clone(), e.to_string()));
                    continue;
                }
            };
            let wait = rds_wait(l);
            next.warming_listeners.insert(
                name.clone(),
                Warming {
                    item: Arc::new(compiled),
                    until: wait.map(|d| Instant::now() + d),
                },
            );
        }
        promote_listeners(next);
    }

    /// SDS secrets: each checked, then made current in its slot (new
    /// handshakes use it; open connections keep theirs). A bad one is
    /// refused on its own and the last good one stays. Clusters and
    /// listeners that waited for one may go live.
    fn apply_secrets(&self, next: &mut State, u: &Update, refused: &mut Refused) {
        for name in &u.changed {
            let Some(held) = u.resources.get(name) else {
                continue;
            };
            let Resource::Secret(s) = &*held.resource else {
                continue;
            };
            match crate::transport::check_secret(name, s) {
                Ok(()) => self.base.secrets.sds().update(
                    None,
                    name,
                    (**s).clone(),
                    crate::transport::Delivered::of(u, held),
                ),
                Err(e) => refused.push((name.clone(), e.to_string())),
            }
        }
        promote_ready(next);
    }

    /// The snapshot for `state`: the bootstrap's resources and the live
    /// dynamic ones.
    fn snapshot(&self, state: &State) -> Snapshot {
        let base = &self.base;
        // The merged cluster map is rebuilt only when the clusters changed.
        let clusters = match &self.merged {
            Some((from, merged)) if Arc::ptr_eq(from, &state.clusters) => Arc::clone(merged),
            _ => {
                let mut clusters = (*base.clusters).clone();
                clusters.extend(
                    state
                        .clusters
                        .iter()
                        .map(|(n, c)| (n.clone(), Arc::clone(c))),
                );
                Arc::new(clusters)
            }
        };
        let mut listeners = base.listeners.clone();
        listeners.extend(state.listeners.values().cloned());
        let xds = XdsDump {
            delivered: state.delivered.clone(),
            versions: state.versions.clone(),
            warming_listeners: state.warming_listeners.keys().cloned().collect(),
            warming_clusters: state.warming_clusters.keys().cloned().collect(),
        };
        let mut s = Snapshot::assemble(
            listeners,
            clusters,
            state.routes.clone(),
            base.admin,
            Arc::clone(&base.stats),
            base.source.clone(),
            Some(Arc::new(xds)),
        );
        s.secrets = Arc::clone(&base.secrets);
        s
    }

    async fn commit(&mut self, next: State) -> Result<(), String> {
        let snapshot = self.snapshot(&next);
        let merged = Arc::clone(&snapshot.clusters);
        self.shared
            .install(snapshot)
            .await
            .map_err(|e| e.to_string())?;
        self.merged = Some((Arc::clone(&next.clusters), merged));
        self.state = next;
        Ok(())
    }
}

/// Starts the ADS client a bootstrap's `dynamic_resources` asks for (none
/// without `ads_config`) as a task, and the SDS clients of gRPC config
/// sources its TLS contexts name; they run until the proxy shuts down.
/// The ADS cluster is a static one of the bootstrap; its first endpoint
/// is dialled.
pub fn spawn(
    shared: &Arc<Shared>,
    bootstrap: &weft_envoy::Bootstrap,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    Ok(client(shared, bootstrap)?.map(tokio::spawn))
}

/// The ADS client of [`spawn`], for a caller to run where it chooses.
/// `weft proxy` runs it on the main thread, as Envoy applies xDS on its
/// main thread: applying thousands of resources then never holds up a
/// worker's connections.
pub fn client(
    shared: &Arc<Shared>,
    bootstrap: &weft_envoy::Bootstrap,
) -> Result<Option<impl std::future::Future<Output = ()> + Send + 'static>, String> {
    // SDS from its own gRPC sources runs beside ADS (or without it).
    crate::sds::spawn(shared, bootstrap)?;
    let Some(dynamic) = &bootstrap.dynamic_resources else {
        return Ok(None);
    };
    let Some(ads) = &dynamic.ads_config else {
        return Ok(None);
    };
    let cluster_name = ads.cluster().unwrap_or_default();
    let base = shared.snapshot.load_full();
    let addr = base
        .clusters
        .get(cluster_name)
        .and_then(|c| c.endpoints().first().map(|e| e.addr))
        .ok_or_else(|| {
            format!("dynamic_resources.ads_config: cluster {cluster_name:?} has no endpoint to connect to")
        })?;
    let mut node = weft_xds::node(
        bootstrap
            .source
            .get("node")
            .unwrap_or(&serde_json::json!({})),
    )
    .map_err(|e| format!("node: {e}"))?;
    node.user_agent_name = "weft".into();
    let client = weft_xds::client::Client {
        addr,
        node,
        backoff: Default::default(),
        lds: dynamic.lds_config.is_some(),
        cds: dynamic.cds_config.is_some(),
        delta: ads.delta(),
    };
    let applier = Dynamic::new(Arc::clone(shared));
    let stop = shared.stopped();
    Ok(Some(client.run(applier, stop)))
}

fn assignment(r: &Resource) -> Option<&ClusterLoadAssignment> {
    match r {
        Resource::ClusterLoadAssignment(la) => Some(la),
        _ => None,
    }
}

/// How long a listener waits for its RDS tables: the longest initial
/// fetch timeout among their config sources (for ever if one says so).
fn rds_wait(l: &weft_envoy::listener::Listener) -> Option<Duration> {
    let mut wait = Some(Duration::ZERO);
    let chains = l.filter_chains.iter().chain(l.default_filter_chain.iter());
    for f in chains.flat_map(|c| c.filters.iter()) {
        if let weft_envoy::TypedConfig::HttpConnectionManager(h) = &f.typed_config {
            if let Some(rds) = &h.rds {
                wait = match (wait, rds.config_source.initial_fetch_timeout()) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
        }
    }
    wait.map(|w| if w.is_zero() { WARMING_TIMEOUT } else { w })
}

/// Clusters with their endpoints and secrets, then listeners with their
/// route tables and secrets, go live.
fn promote_ready(next: &mut State) {
    let assignments = &next.assignments;
    promote(&mut next.warming_clusters, &mut next.clusters, |c| {
        let endpoints = match c.eds_service() {
            Some(s) => assignments.contains_key(s),
            None => c.is_initialized(),
        };
        endpoints && !c.secrets_pending()
    });
    promote_listeners(next);
}

/// Listeners whose route tables and SDS secrets have all arrived go
/// live.
fn promote_listeners(next: &mut State) {
    let routes = &next.routes;
    promote(&mut next.warming_listeners, &mut next.listeners, |l| {
        l.rds_names().all(|r| routes.contains_key(r)) && !l.secrets_pending()
    });
}

/// The names whose warming deadline has passed.
fn due<T>(warming: &BTreeMap<String, Warming<T>>, now: Instant) -> BTreeSet<String> {
    warming
        .iter()
        .filter(|(_, w)| w.until.is_some_and(|u| u <= now))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Moves what `ready` says is warm from `warming` to `live`; returns
/// the names moved.
fn promote<T>(
    warming: &mut BTreeMap<String, Warming<T>>,
    live: &mut Arc<BTreeMap<String, Arc<T>>>,
    ready: impl Fn(&T) -> bool,
) -> Vec<String> {
    let names: Vec<String> = warming
        .iter()
        .filter(|(_, w)| ready(&w.item))
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        return names;
    }
    let live = Arc::make_mut(live);
    for name in &names {
        if let Some(w) = warming.remove(name) {
            live.insert(name.clone(), w.item);
        }
    }
    names
}

impl weft_xds::client::Apply for Dynamic {
    async fn apply(&mut self, update: &Update) -> Result<Refused, String> {
        let mut next = self.state.clone();
        let mut refused = Refused::new();
        match update.kind {
            Kind::Cluster => {
                self.apply_clusters(&mut next, update, &mut refused).await?;
                *self
                    .cluster_names
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner()) = None;
            }
            Kind::ClusterLoadAssignment => {
                self.apply_assignments(&mut next, update, &mut refused)?
            }
            Kind::RouteConfiguration => self.apply_routes(&mut next, update, &mut refused),
            Kind::Listener => self.apply_listeners(&mut next, update, &mut refused),
            Kind::Secret => self.apply_secrets(&mut next, update, &mut refused),
        }
        // What config_dump lists: a refused resource stays as delivered
        // before (or absent).
        let now = std::time::SystemTime::now();
        let delivered = Arc::make_mut(next.delivered.entry(update.kind).or_default());
        let refused_names: HashSet<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
        delivered
            .retain(|n, _| update.resources.contains_key(n) || refused_names.contains(n.as_str()));
        for name in &update.changed {
            if refused_names.contains(name.as_str()) {
                continue;
            }
            if let Some(h) = update.resources.get(name) {
                let d = Delivered {
                    version: h
                        .version
                        .as_deref()
                        .map_or_else(|| update.version.clone(), str::to_string),
                    bytes: Arc::clone(&h.bytes),
                    updated: now,
                };
                delivered.insert(name.clone(), d);
            }
        }
        // The type's version is the last update accepted whole.
        if refused.is_empty() && update.rejected.is_empty() {
            next.versions.insert(update.kind, update.version.clone());
        }
        let result = self.commit(next).await;
        if update.changed.len() >= TRIM_AFTER {
            release_freed_memory();
        }
        result.map(|()| refused)
    }

    fn subscriptions(&self) -> Vec<(Kind, BTreeSet<String>)> {
        let s = &self.state;
        let eds = self
            .base
            .clusters
            .values()
            .chain(s.clusters.values())
            .chain(s.warming_clusters.values().map(|w| &w.item))
            .filter_map(|c| c.eds_service().map(str::to_string))
            .collect();
        let rds = self
            .base
            .listeners
            .iter()
            .chain(s.listeners.values())
            .chain(s.warming_listeners.values().map(|w| &w.item))
            .flat_map(|l| l.rds_names().map(str::to_string).collect::<Vec<_>>())
            .collect();
        vec![
            (Kind::ClusterLoadAssignment, eds),
            (Kind::RouteConfiguration, rds),
            (Kind::Secret, self.base.secrets.sds().names(&None)),
        ]
    }

    fn clusters(&self) -> Arc<HashSet<String>> {
        let mut cached = self.cluster_names.lock().unwrap_or_else(|e| e.into_inner());
        let names = cached.get_or_insert_with(|| {
            let s = &self.state;
            Arc::new(
                self.base
                    .clusters
                    .keys()
                    .chain(s.clusters.keys())
                    .chain(s.warming_clusters.keys())
                    .cloned()
                    .collect(),
            )
        });
        Arc::clone(names)
    }

    fn deadline(&self) -> Option<Instant> {
        let s = &self.state;
        s.warming_clusters
            .values()
            .filter_map(|w| w.until)
            .chain(s.warming_listeners.values().filter_map(|w| w.until))
            .min()
    }

    fn warmed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let woken = Arc::clone(&self.woken);
        let sds = Arc::clone(self.base.secrets.sds());
        async move {
            tokio::select! {
                _ = woken.notified() => {}
                _ = sds.changed() => {}
            }
        }
    }

    /// DNS clusters that have resolved and what has its secrets go live;
    /// what waited too long goes
    /// live without its resources: a cluster with no endpoints (503 UH),
    /// a listener whose missing route tables route nothing (404 NR).
    async fn expire(&mut self) {
        let now = Instant::now();
        let mut next = self.state.clone();
        promote_ready(&mut next);
        let (clusters, listeners) = (
            due(&next.warming_clusters, now),
            due(&next.warming_listeners, now),
        );
        for name in promote(&mut next.warming_clusters, &mut next.clusters, |c| {
            clusters.contains(&c.name)
        }) {
            tracing::warn!(cluster = %name, "xDS: no endpoints within the initial fetch timeout; using the cluster without them");
        }
        for name in promote(&mut next.warming_listeners, &mut next.listeners, |l| {
            listeners.contains(&l.name)
        }) {
            tracing::warn!(listener = %name, "xDS: route tables missing after the initial fetch timeout; starting the listener without them");
        }
        if let Err(e) = self.commit(next).await {
            tracing::warn!("xDS: warming timed out but the configuration cannot be installed: {e}");
            // Do not spin on the same deadline.
            for w in self.state.warming_listeners.values_mut() {
                w.until = w.until.map(|_| now + WARMING_TIMEOUT);
            }
        }
    }
}
