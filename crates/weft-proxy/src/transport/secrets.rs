//! Secrets by name for TLS contexts: the bootstrap's static secrets and
//! the SDS slots (see [`super::tls`] for how contexts use them).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use weft_envoy::tls::{CommonTlsContext, SdsSecretConfig, Secret};

use super::tls::config;
use crate::error::CompileError;

/// Why a context could not be built: its configuration, or an SDS
/// secret that has not arrived yet.
pub(crate) enum Fail {
    Config(CompileError),
    Pending(String),
}

impl From<CompileError> for Fail {
    fn from(e: CompileError) -> Self {
        Fail::Config(e)
    }
}

/// Secrets by name, as TLS contexts name them: the bootstrap's
/// `static_resources.secrets`, and the SDS slots (shared by every
/// snapshot of a proxy). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: Arc<HashMap<String, Arc<Secret>>>,
    sds: Arc<SdsSecrets>,
}

impl Secrets {
    pub fn new(secrets: &[Secret]) -> Self {
        Secrets {
            by_name: Arc::new(
                secrets
                    .iter()
                    .map(|s| (s.name.clone(), Arc::new(s.clone())))
                    .collect(),
            ),
            sds: Default::default(),
        }
    }

    /// The secrets SDS delivers.
    pub fn sds(&self) -> &Arc<SdsSecrets> {
        &self.sds
    }

    /// The secret `s` names, as it is now.
    pub(crate) fn get(&self, at: &str, s: &SdsSecretConfig) -> Result<Arc<Secret>, Fail> {
        match &s.sds_config {
            None => self.by_name.get(&s.name).cloned().ok_or_else(|| {
                Fail::Config(config(
                    format!("{at}.name"),
                    format!("unknown secret {:?}", s.name),
                ))
            }),
            Some(src) => self
                .sds
                .slot(source(src), &s.name)
                .secret
                .load_full()
                .ok_or_else(|| Fail::Pending(s.name.clone())),
        }
    }

    /// The SDS slots a context reads.
    pub(crate) fn slots(&self, c: &CommonTlsContext) -> Vec<Arc<Slot>> {
        c.tls_certificate_sds_secret_configs
            .iter()
            .chain(c.validation_secret())
            .filter_map(|s| Some(self.sds.slot(source(s.sds_config.as_ref()?), &s.name)))
            .collect()
    }
}

/// One SDS secret: its latest good version, and a counter bumped on
/// every change.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    secret: ArcSwapOption<Secret>,
    version: AtomicU64,
    /// How it arrived, for /config_dump (not read on the data path).
    delivered: ArcSwapOption<Delivered>,
}

/// A secret as the SDS server delivered it: the response's version,
/// when, and the protobuf bytes (turned into JSON, private key
/// redacted, only when /config_dump asks).
#[derive(Debug)]
pub struct Delivered {
    pub version_info: String,
    pub updated: std::time::SystemTime,
    pub bytes: Arc<[u8]>,
}

impl Delivered {
    /// The secret `held` of update `u`: the resource's own version under
    /// delta xDS, else the response's.
    pub fn of(u: &weft_xds::ads::Update, held: &weft_xds::ads::Held) -> Delivered {
        Delivered {
            version_info: held
                .version
                .as_deref()
                .map_or_else(|| u.version.clone(), str::to_string),
            updated: std::time::SystemTime::now(),
            bytes: Arc::clone(&held.bytes),
        }
    }
}

/// One SDS secret as /config_dump lists it: active once delivered,
/// warming while a context waits for it.
#[derive(Debug)]
pub struct Listed {
    pub name: String,
    /// The static cluster it is asked of; none for ADS.
    pub source: Source,
    pub delivered: Option<Arc<Delivered>>,
}

/// Where an SDS secret comes from: the ADS stream (`None`) or the gRPC
/// config source of this static cluster.
pub type Source = Option<String>;

fn source(c: &weft_envoy::xds::ConfigSource) -> Source {
    c.api_config_source
        .as_ref()
        .and_then(|a| a.cluster())
        .map(str::to_string)
}

/// The SDS secrets of a proxy, by source and name; a slot exists once a
/// context names it (what the SDS clients subscribe to).
#[derive(Debug, Default)]
pub struct SdsSecrets {
    slots: Mutex<HashMap<(Source, String), Arc<Slot>>>,
    /// Told when a secret changes (warming listeners and clusters look
    /// again).
    changed: tokio::sync::Notify,
    /// Told when a context names a secret not named before (the SDS
    /// clients subscribe to it).
    named: tokio::sync::Notify,
}

impl SdsSecrets {
    fn slot(&self, source: Source, name: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let key = (source, name.to_string());
        if let Some(slot) = slots.get(&key) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key, Arc::clone(&slot));
        self.named.notify_waiters();
        slot
    }

    /// The names contexts ask `source` for.
    pub fn names(&self, source: &Source) -> BTreeSet<String> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .keys()
            .filter(|(s, _)| s == source)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The gRPC config sources (static clusters) secrets are asked of.
    pub fn grpc_sources(&self) -> BTreeSet<String> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.keys().filter_map(|(s, _)| s.clone()).collect()
    }

    /// Every secret a context names, by name then source.
    pub fn list(&self) -> Vec<Listed> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Listed> = slots
            .iter()
            .map(|((source, name), slot)| Listed {
                name: name.clone(),
                source: source.clone(),
                delivered: slot.delivered.load_full(),
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.source).cmp(&(&b.name, &b.source)));
        out
    }

    /// Makes `secret` the current version of `name` from `source` (the
    /// caller checked it); new handshakes use it.
    pub fn update(&self, source: Source, name: &str, secret: Secret, delivered: Delivered) {
        let slot = self.slot(source, name);
        slot.delivered.store(Some(Arc::new(delivered)));
        slot.secret.store(Some(Arc::new(secret)));
        slot.version.fetch_add(1, Ordering::Release);
        self.changed.notify_one();
    }

    /// Resolves after the next change (or one not yet waited for).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Resolves when a context names a new secret (`enable` it before
    /// looking at the names, to miss none).
    pub fn named(&self) -> tokio::sync::futures::Notified<'_> {
        self.named.notified()
    }
}

pub(crate) fn versions(slots: &[Arc<Slot>]) -> Vec<u64> {
    slots
        .iter()
        .map(|s| s.version.load(Ordering::Acquire))
        .collect()
}

pub(crate) fn fresh(built: &[u64], slots: &[Arc<Slot>]) -> bool {
    built
        .iter()
        .zip(slots)
        .all(|(v, s)| *v == s.version.load(Ordering::Acquire))
}
