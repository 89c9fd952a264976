//! What each [`Batch`] did to the set of objects served, counted as
//! istiod's config store and registry count their watch events: an
//! object first seen is an `add`, a new version of one an `update`,
//! one gone a `delete` (`pilot_k8s_cfg_events`, `pilot_k8s_reg_events`;
//! the mesh dashboard counts a kind's objects as adds minus deletes),
//! and each object checked by Istio's admission rules as it was loaded
//! (`galley_validation_*`).

use std::collections::HashMap;
use std::hash::BuildHasher;

use weft_config::Resource;

use super::{key, Batch, Event};
use crate::metrics::{Change, Pilot};

type Known = HashMap<u64, (weft_api::Kind, u64), crate::server::KeyHash>;

/// The objects counted so far: by a hash of their key, their kind and
/// the digest of their version.
#[derive(Default)]
pub(crate) struct Tally {
    known: Known,
}

fn key_hash(r: &Resource) -> u64 {
    foldhash::fast::FixedState::with_seed(0x7461_6c6c).hash_one(key(r))
}

impl Tally {
    /// Counts `batch` into `metrics`.
    pub fn record(&mut self, batch: &Batch, metrics: &Pilot) {
        for v in &batch.validations {
            metrics.validated(v.kind, &v.api_version, v.passed);
        }
        for e in &batch.events {
            match e {
                Event::Applied(r) => self.applied(r, metrics),
                Event::Deleted(r) => {
                    if let Some((kind, _)) = self.known.remove(&key_hash(r)) {
                        metrics.config_event(kind, Change::Delete);
                    }
                }
                Event::Restarted(all) => {
                    let mut before = std::mem::take(&mut self.known);
                    for r in all {
                        if let Some(old) = before.remove(&key_hash(r)) {
                            self.known.insert(key_hash(r), old);
                        }
                        self.applied(r, metrics);
                    }
                    for (kind, _) in before.into_values() {
                        metrics.config_event(kind, Change::Delete);
                    }
                }
            }
        }
    }

    fn applied(&mut self, r: &Resource, metrics: &Pilot) {
        let kind = r.object.kind;
        match self.known.insert(key_hash(r), (kind, r.digest)) {
            None => metrics.config_event(kind, Change::Add),
            Some((_, digest)) if digest != r.digest => metrics.config_event(kind, Change::Update),
            // Re-applied as it was (a file's objects reordered).
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn vs(name: &str, host: &str) -> Arc<Resource> {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: {name}, namespace: default}}\nspec: {{hosts: [{host}]}}\n"
        );
        let loaded = weft_config::load_str("t.yaml", &yaml, &Default::default());
        Arc::new(loaded.resources.into_iter().next().unwrap())
    }

    fn events(m: &Pilot) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with("pilot_k8s_cfg_events{"))
            .map(String::from)
            .collect()
    }

    #[test]
    fn adds_updates_and_deletes_follow_the_objects_not_the_files() {
        let m = Pilot::new();
        let mut t = Tally::default();
        let batch = |events| Batch {
            events,
            ..Default::default()
        };
        t.record(
            &batch(vec![Event::Restarted(vec![vs("a", "x"), vs("b", "x")])]),
            &m,
        );
        // The same version again is no event; a new one is an update.
        t.record(&batch(vec![Event::Applied(vs("a", "x"))]), &m);
        t.record(&batch(vec![Event::Applied(vs("b", "y"))]), &m);
        t.record(&batch(vec![Event::Deleted(vs("a", "x"))]), &m);
        // Deleting what is not there counts nothing; a relist without
        // `b` deletes it and adds `c`.
        t.record(&batch(vec![Event::Deleted(vs("a", "x"))]), &m);
        t.record(&batch(vec![Event::Restarted(vec![vs("c", "x")])]), &m);
        assert_eq!(
            events(&m),
            [
                "pilot_k8s_cfg_events{type=\"VirtualService\",event=\"add\"} 3",
                "pilot_k8s_cfg_events{type=\"VirtualService\",event=\"delete\"} 2",
                "pilot_k8s_cfg_events{type=\"VirtualService\",event=\"update\"} 1",
            ]
        );
    }
}
