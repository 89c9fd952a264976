//! Where the control plane's configuration comes from. A [`Source`]
//! holds the objects it serves — each checked by Istio's admission rules,
//! each with its [`weft_config::Origin`] (a file position, or a cluster
//! object) — and reports what changed as [`Event`]s, in the spirit of
//! kube-rs' `watcher`: an object applied, an object deleted, or the whole
//! set listed again. The run loop waits on a source, lets changes settle
//! (`crate::debounce`), and publishes.
//!
//! - `dir`: [`ConfigDir`], a directory of YAML/JSON files scanned for
//!   changes (last good version of every file and object);
//! - `watched`: [`WatchedDir`], that directory as a [`Source`], told of
//!   changes by the kernel (inotify) where it can be;
//! - `mesh_config`: mesh settings from the `istio` ConfigMap, whatever
//!   source it came from;
//! - `tally`: what each batch did to the objects served, counted into
//!   the control plane's metrics (`crate::metrics`).
//!
//! A Kubernetes watcher is meant to be another implementation: its
//! watch events are [`Event::Applied`]/[`Event::Deleted`], its relists
//! [`Event::Restarted`], its objects' origins [`Origin::Cluster`].
//!
//! [`Origin::Cluster`]: weft_config::Origin::Cluster

mod dir;
mod mesh_config;
mod tally;
mod watched;

use std::sync::Arc;

use weft_config::Resource;

use crate::context::Changes;
pub use crate::debounce::Wait;

pub use dir::{ConfigDir, Scan};
pub use mesh_config::mesh_config;
pub(crate) use tally::Tally;
pub use watched::WatchedDir;

/// A change a source took in. Objects are shared with the source's own
/// store, never copied.
#[derive(Clone, Debug)]
pub enum Event {
    /// An object appeared or changed: its new version.
    Applied(Arc<Resource>),
    /// An object went away: its last version.
    Deleted(Arc<Resource>),
    /// The source listed everything again (its first read, a watch
    /// restarted): these are all its objects, and any object not among
    /// them is gone.
    Restarted(Vec<Arc<Resource>>),
}

/// What one [`Source::read`] took in.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// Problems, each naming its origin; what they concern kept its last
    /// good version or was left out.
    pub problems: Vec<String>,
    /// The objects checked by Istio's admission rules as they were read.
    pub validations: Vec<Validation>,
}

/// An object checked by Istio's admission rules as it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    pub kind: weft_api::Kind,
    /// As written (`networking.istio.io/v1`).
    pub api_version: String,
    pub passed: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The kinds and namespaces the events touch, for an incremental
    /// rebuild; `None` after a relist, when only a whole build is right.
    pub fn changes(&self) -> Option<Changes> {
        let mut changes = Changes::default();
        for e in &self.events {
            match e {
                Event::Applied(r) | Event::Deleted(r) => {
                    let (kind, ns, _) = key(r);
                    changes.object(kind, ns);
                }
                Event::Restarted(_) => return None,
            }
        }
        Some(changes)
    }

    /// This batch followed by `later`.
    pub fn extend(&mut self, later: Batch) {
        self.events.extend(later.events);
        self.problems.extend(later.problems);
        self.validations.extend(later.validations);
    }
}

/// A source of configuration objects. Its [`Wait::wait`] waits at most
/// the time given for a sign that something changed, and says whether
/// one came; a source that is not told of changes
/// ([`Source::notifies`] is false) waits the whole time and says no:
/// only [`Source::read`] can find its changes.
pub trait Source: Wait + Send {
    /// Whether [`Wait::wait`] is told of changes.
    fn notifies(&self) -> bool;

    /// Takes in what changed since the last read (everything, the first
    /// time).
    fn read(&mut self) -> Batch;

    /// Every object held now, in precedence order (an earlier object wins
    /// a conflict, as the older one does in Istio).
    fn objects(&self) -> Vec<&Resource>;
}

/// Kind, namespace (empty for cluster-scoped kinds) and name: what
/// makes an object the same object in another file or a later read.
pub(crate) type Key<'a> = (&'static str, &'a str, &'a str);

pub(crate) fn key(r: &Resource) -> Key<'_> {
    let o = &r.object;
    let namespace = match o.kind.info().scope {
        weft_api::Scope::Namespaced => o.namespace(),
        weft_api::Scope::Cluster => "",
    };
    (o.kind.info().name, namespace, o.name())
}
