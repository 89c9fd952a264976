//! The configuration directory `weft control --config DIR` serves:
//! every `.yaml`, `.yml` and `.json` file under it, re-read when its
//! modification time or size changes.
//!
//! What is served only ever moves from one good state to the next: an
//! object Istio's admission rules reject is left out (or keeps its
//! previous good version), and a file that cannot be read or parsed —
//! for instance half-written by an editor — keeps its previous good
//! version whole. Every such problem is reported with its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use weft_config::{IssueKind, LoadOptions, Resource, Severity};

use super::{key, Event, Key, Validation};
use crate::context::Changes;

#[derive(Clone, PartialEq, Eq)]
struct Stamp(Option<SystemTime>, u64);

struct FileState {
    stamp: Stamp,
    /// Shared with the events that told of them.
    resources: Vec<Arc<Resource>>,
    /// A hash of each resource's key, to find keys defined in several
    /// files without hashing every key's strings at every scan.
    hashes: Vec<u64>,
}

fn key_hash(k: Key) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6b65_7973).hash_one(k)
}

impl FileState {
    fn new(stamp: Stamp, resources: Vec<Arc<Resource>>) -> FileState {
        let hashes = resources.iter().map(|r| key_hash(key(r))).collect();
        FileState {
            stamp,
            resources,
            hashes,
        }
    }

    fn keys(&self) -> impl Iterator<Item = Key<'_>> {
        self.resources.iter().map(|r| key(r))
    }
}

/// One configuration directory and the good objects from each file.
pub struct ConfigDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// [`ConfigDir::winners`] as of the last scan.
    winners: BTreeMap<OwnedKey, PathBuf>,
    /// Whether a scan has read the directory (the first one's events
    /// are a relist).
    listed: bool,
}

/// What a rescan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Whether the served objects changed.
    pub changed: bool,
    /// The kinds and namespaces of the objects that appeared, changed or
    /// went away.
    pub changes: Changes,
    /// The objects that appeared, changed or went away (every object,
    /// as [`Event::Restarted`], on the first scan).
    pub events: Vec<Event>,
    /// Problems, each naming its file and line; what they concern kept
    /// its last good version or was left out.
    pub problems: Vec<String>,
    /// The objects of the files read, checked by Istio's admission
    /// rules (none from a file that could not be read).
    pub validations: Vec<Validation>,
}

type OwnedKey = (&'static str, String, String);

impl ConfigDir {
    pub fn new(dir: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir {
            dir: dir.into(),
            files: BTreeMap::new(),
            winners: BTreeMap::new(),
            listed: false,
        }
    }

    /// Every good object, in file order then document order (earlier
    /// wins where Istio would let the older object win). An object
    /// defined in two files (same kind, namespace and name) is taken
    /// from the file written last, as if that file had been applied
    /// last: copying a file in overrides, removing it restores.
    pub fn resources(&self) -> Vec<&Resource> {
        self.entries().into_iter().map(|r| &**r).collect()
    }

    /// [`ConfigDir::resources`], as the shared objects.
    fn entries(&self) -> Vec<&Arc<Resource>> {
        let winners = &self.winners;
        let contested: crate::server::KeySet = winners
            .keys()
            .map(|(kind, ns, name)| key_hash((kind, ns.as_str(), name.as_str())))
            .collect();
        self.files
            .iter()
            .flat_map(|(path, f)| {
                // Only objects whose key hashes like a contested one are
                // looked up (with owned strings) among the winners.
                let contested = &contested;
                f.resources
                    .iter()
                    .zip(&f.hashes)
                    .filter(move |(r, h)| {
                        if !contested.contains(*h) {
                            return true;
                        }
                        let (kind, ns, name) = key(r);
                        winners
                            .get(&(kind, ns.to_string(), name.to_string()))
                            .is_none_or(|w| w == path)
                    })
                    .map(|(r, _)| r)
            })
            .collect()
    }

    /// For each object defined in more than one file, the file it is
    /// taken from.
    fn winners(&self) -> BTreeMap<OwnedKey, PathBuf> {
        // Key hashes first (cheap, and almost every key is in one file),
        // then the real keys of those seen more than once.
        let mut files_of: std::collections::HashMap<u64, u32, crate::server::KeyHash> =
            std::collections::HashMap::default();
        for f in self.files.values() {
            for h in &f.hashes {
                *files_of.entry(*h).or_default() += 1;
            }
        }
        let mut seen: std::collections::HashMap<Key, Vec<&PathBuf>> =
            std::collections::HashMap::new();
        for (path, f) in &self.files {
            for (k, h) in f.keys().zip(&f.hashes) {
                if files_of.get(h).is_some_and(|n| *n > 1) {
                    seen.entry(k).or_default().push(path);
                }
            }
        }
        seen.into_iter()
            .filter(|(_, paths)| paths.len() > 1)
            .map(|(k, paths)| {
                let newest = paths
                    .iter()
                    .max_by_key(|p| (self.files[**p].stamp.0, (**p).clone()))
                    .map(|p| (*p).clone())
                    .expect("at least two");
                ((k.0, k.1.to_string(), k.2.to_string()), newest)
            })
            .collect()
    }

    /// Re-reads the files that changed, appeared or went away.
    pub fn scan(&mut self) -> Scan {
        let mut scan = Scan::default();
        let mut seen = Vec::new();
        if let Err(e) = walk(&self.dir, &mut seen) {
            scan.problems.push(format!("{}: {e}", self.dir.display()));
            return scan;
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !seen.iter().any(|(s, _)| s == *p))
            .cloned()
            .collect();
        for p in gone {
            if let Some(f) = self.files.remove(&p) {
                for (kind, ns, _) in f.keys() {
                    scan.changes.object(kind, ns);
                }
                scan.events
                    .extend(f.resources.into_iter().map(Event::Deleted));
            }
            scan.changed = true;
        }
        for (path, stamp) in seen {
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            let prev = self
                .files
                .get(&path)
                .map(|f| f.resources.as_slice())
                .unwrap_or(&[]);
            let resources = read_file(&path, prev, &mut scan.problems, &mut scan.validations);
            let same = prev.len() == resources.len()
                && prev
                    .iter()
                    .zip(&resources)
                    .all(|(a, b)| Arc::ptr_eq(a, b) || a.object == b.object);
            let fresh = FileState::new(stamp, resources);
            if !same {
                scan.changed = true;
                type Versions<'r> = std::collections::HashMap<Key<'r>, &'r Arc<Resource>>;
                let old: Versions = self
                    .files
                    .get(&path)
                    .map(|f| f.resources.iter().map(|r| (key(r), r)).collect())
                    .unwrap_or_default();
                let new: Versions = fresh.resources.iter().map(|r| (key(r), r)).collect();
                let digest = |v: Option<&&Arc<Resource>>| v.map(|r| r.digest);
                let mut applied = Vec::new();
                for (k, r) in &new {
                    if digest(old.get(k)) != Some(r.digest) {
                        applied.push(*r);
                    }
                }
                for (k, r) in old.iter().filter(|(k, _)| !new.contains_key(*k)) {
                    scan.changes.object(k.0, k.1);
                    scan.events.push(Event::Deleted(Arc::clone(r)));
                }
                if applied.is_empty() && old.len() == new.len() {
                    // Only the order changed, which decides between
                    // objects that conflict: every object of the file.
                    applied = fresh.resources.iter().collect();
                }
                for r in applied {
                    let (kind, ns, _) = key(r);
                    scan.changes.object(kind, ns);
                    scan.events.push(Event::Applied(Arc::clone(r)));
                }
            }
            self.files.insert(path, fresh);
        }
        if scan.changed {
            self.winners = self.winners();
            for ((kind, ns, name), from) in &self.winners {
                scan.problems.push(format!(
                    "{kind} {ns}/{name} is defined in more than one file; using {} (written last)",
                    from.display()
                ));
            }
        }
        if !self.listed {
            // The first scan lists the directory (as resolved above).
            self.listed = true;
            scan.events = vec![Event::Restarted(
                self.entries().into_iter().map(Arc::clone).collect(),
            )];
        }
        scan
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Stamp)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push((path, Stamp(meta.modified().ok(), meta.len())));
        }
    }
    Ok(())
}

/// The good objects of one file; `prev` is what the file gave last time.
fn read_file(
    path: &Path,
    prev: &[Arc<Resource>],
    problems: &mut Vec<String>,
    validations: &mut Vec<Validation>,
) -> Vec<Arc<Resource>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!(
                "{}: {e} (keeping its last good version)",
                path.display()
            ));
            return prev.to_vec();
        }
    };
    let mut file = FileSink {
        prev,
        out: Vec::new(),
        problems: Vec::new(),
        validations: Vec::new(),
        unreadable: None,
    };
    let name = path.display().to_string();
    weft_config::load_str_each(&name, &text, &LoadOptions::default(), &mut file);
    if let Some(bad) = file.unreadable {
        problems.push(format!("{bad} (keeping the file's last good version)"));
        return prev.to_vec();
    }
    problems.append(&mut file.problems);
    validations.append(&mut file.validations);
    file.out.shrink_to_fit();
    file.out
}

/// One file's objects as they are read: each checked, its problems
/// named, and kept without its parse tree (the largest part of a big
/// mesh's memory) — or, when it is rejected, its previous version.
struct FileSink<'a> {
    prev: &'a [Arc<Resource>],
    out: Vec<Arc<Resource>>,
    problems: Vec<String>,
    validations: Vec<Validation>,
    /// The first issue that makes the whole file unusable.
    unreadable: Option<String>,
}

impl FileSink<'_> {
    fn keep_previous(&mut self, (kind, ns, name): (&str, &str, &str)) {
        if let Some(p) = self.prev.iter().find(|p| key(p) == (kind, ns, name)) {
            self.out.push(Arc::clone(p));
        }
    }
}

impl weft_config::Sink for FileSink<'_> {
    fn issue(&mut self, issue: weft_config::LoadIssue) {
        if self.unreadable.is_some() {
            return;
        }
        if matches!(issue.kind, IssueKind::Io | IssueKind::Syntax) {
            self.unreadable = Some(issue.to_string());
            return;
        }
        self.problems.push(issue.to_string());
        if let (IssueKind::Schema, Some(r)) = (issue.kind, &issue.resource) {
            self.keep_previous((&r.kind, &r.namespace, &r.name));
        }
    }

    fn resource(&mut self, mut r: Resource) {
        if self.unreadable.is_some() {
            return;
        }
        let errors: Vec<_> = weft_config::validate(&r.object)
            .into_iter()
            .filter(|v| v.severity == Severity::Error)
            .collect();
        self.validations.push(Validation {
            kind: r.object.kind,
            api_version: r.object.api_version.clone(),
            passed: errors.is_empty(),
        });
        if errors.is_empty() {
            self.problems.extend(crate::support::unsupported(&r));
            // Every problem of the object is named: only where its
            // document starts is needed from now on.
            r.strip_source();
            self.out.push(Arc::new(r));
            return;
        }
        for v in &errors {
            self.problems.push(format!(
                "{} ({}) {}: {}",
                r.origin_of(&v.field),
                r.display_name(),
                v.field,
                v.message
            ));
        }
        self.keep_previous(key(&r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mesh;
    use weft_api::Spec;

    const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: SUBSET}
";

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-source-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn subset(c: &ConfigDir) -> Vec<String> {
        c.resources()
            .iter()
            .filter_map(|r| match &r.object.spec {
                Spec::VirtualService(vs) => vs.http[0].route[0].destination.subset.clone(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bad_files_and_objects_keep_their_last_good_version() {
        let d = dir("bad");
        let f = d.join("vs.yaml");
        std::fs::write(&f, VS.replace("SUBSET", "v1")).unwrap();
        let mut c = ConfigDir::new(&d);
        let s = c.scan();
        assert!(s.changed && s.problems.is_empty(), "{s:?}");
        assert_eq!(subset(&c), ["v1"]);
        assert!(!c.scan().changed, "nothing changed");

        // Half-written: the whole file keeps its last good version.
        std::fs::write(&f, "apiVersion: networking.istio.io/v1\nkind: Virtual: [").unwrap();
        let s = c.scan();
        assert!(!s.changed, "{s:?}");
        assert!(
            s.problems[0].contains("vs.yaml") && s.problems[0].contains("last good"),
            "{s:?}"
        );
        assert_eq!(subset(&c), ["v1"]);

        // An object Istio rejects keeps its last good version; the
        // message names the file, line and field.
        let bad = VS.replace("SUBSET", "v2").replace(
            "  - route:",
            "  - match: [{uri: {regex: \"(\"}}]\n    route:",
        );
        std::fs::write(&f, bad).unwrap();
        let s = c.scan();
        assert!(!s.changed, "{s:?}");
        let named =
            |p: &String| p.contains("vs.yaml:7") && p.contains("spec.http[0].match[0].uri.regex");
        assert!(s.problems.iter().any(named), "{s:?}");
        assert_eq!(subset(&c), ["v1"]);

        std::fs::write(&f, VS.replace("SUBSET", "v3")).unwrap();
        assert!(c.scan().changed);
        assert_eq!(subset(&c), ["v3"]);

        std::fs::remove_file(&f).unwrap();
        assert!(c.scan().changed);
        assert!(c.resources().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_scan_names_the_kinds_that_changed_and_the_registry_is_kept_while_none_of_its_own_did() {
        let d = dir("kinds");
        let f = d.join("mesh.yaml");
        let we = "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec: {address: ADDRESS, labels: {app: reviews}}
";
        let text = |subset: &str, address: &str| {
            VS.replace("SUBSET", subset) + &we.replace("ADDRESS", address)
        };
        std::fs::write(&f, text("v1", "10.0.0.1")).unwrap();
        let mut c = ConfigDir::new(&d);
        let s = c.scan();
        assert_eq!(
            s.changes.kinds,
            ["VirtualService", "WorkloadEntry"].map(String::from).into()
        );
        assert_eq!(s.changes.namespaces, ["default".to_string()].into());
        let first = crate::Context::build(&c.resources(), Mesh::default());

        std::fs::write(&f, text("v2", "10.0.0.1")).unwrap();
        let s = c.scan();
        assert_eq!(s.changes.kinds, ["VirtualService".to_string()].into());
        let second = crate::Context::rebuild(&first, &c.resources(), Mesh::default(), &s.changes);
        assert!(std::sync::Arc::ptr_eq(&first.registry, &second.registry));
        assert_eq!(
            second.virtual_services[0].spec.http[0].route[0]
                .destination
                .subset
                .as_deref(),
            Some("v2")
        );

        std::fs::write(&f, text("v2", "10.0.0.2")).unwrap();
        let s = c.scan();
        assert_eq!(s.changes.kinds, ["WorkloadEntry".to_string()].into());
        let third = crate::Context::rebuild(&second, &c.resources(), Mesh::default(), &s.changes);
        assert!(!std::sync::Arc::ptr_eq(&second.registry, &third.registry));
        assert_eq!(
            third.registry.workloads().next().unwrap().address,
            "10.0.0.2"
        );

        // The same objects in another order: the order decides between
        // conflicting objects, so every kind of the file counts.
        std::fs::write(
            &f,
            we.replace("ADDRESS", "10.0.0.2") + "---\n" + &VS.replace("SUBSET", "v2"),
        )
        .unwrap();
        let s = c.scan();
        assert!(s.changed);
        assert_eq!(
            s.changes.kinds,
            ["VirtualService", "WorkloadEntry"].map(String::from).into()
        );
        assert_eq!(s.changes.namespaces, ["default".to_string()].into());

        std::fs::remove_file(&f).unwrap();
        let s = c.scan();
        assert_eq!(
            s.changes.kinds,
            ["VirtualService", "WorkloadEntry"].map(String::from).into()
        );
        assert_eq!(s.changes.namespaces, ["default".to_string()].into());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_object_in_two_files_comes_from_the_one_written_last() {
        let d = dir("two");
        std::fs::write(d.join("a.yaml"), VS.replace("SUBSET", "v1")).unwrap();
        let mut c = ConfigDir::new(&d);
        c.scan();
        // A later modification time than a.yaml's, whatever the clock's
        // granularity.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.join("b.yaml"), VS.replace("SUBSET", "v2")).unwrap();
        let s = c.scan();
        assert!(s.changed);
        assert!(
            s.problems
                .iter()
                .any(|p| p.contains("b.yaml") && p.contains("written last")),
            "{s:?}"
        );
        assert_eq!(subset(&c), ["v2"]);
        std::fs::remove_file(d.join("b.yaml")).unwrap();
        c.scan();
        assert_eq!(subset(&c), ["v1"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn scans_tell_what_changed_as_events_sharing_the_objects() {
        use crate::source::{Batch, Event};
        let d = dir("events");
        std::fs::write(d.join("a.yaml"), VS.replace("SUBSET", "v1")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.join("b.yaml"), VS.replace("SUBSET", "v2")).unwrap();
        let mut c = ConfigDir::new(&d);
        let batch = |s: Scan| Batch {
            events: s.events,
            problems: s.problems,
            validations: s.validations,
        };
        // The first scan is a relist of the objects as served: one
        // VirtualService, from the file written last.
        let first = batch(c.scan());
        let [Event::Restarted(all)] = &first.events[..] else {
            panic!("{first:?}")
        };
        assert_eq!(all.len(), 1);
        assert!(
            std::ptr::eq(&*all[0], c.resources()[0]),
            "shared, not copied"
        );
        assert!(first.changes().is_none(), "a relist rebuilds whole");

        std::fs::write(d.join("b.yaml"), VS.replace("SUBSET", "v3")).unwrap();
        let edit = batch(c.scan());
        let [Event::Applied(r)] = &edit.events[..] else {
            panic!("{edit:?}")
        };
        assert!(std::ptr::eq(&**r, c.resources()[0]));
        let changes = edit.changes().unwrap();
        assert_eq!(changes.kinds, ["VirtualService".to_string()].into());
        assert_eq!(changes.namespaces, ["default".to_string()].into());

        std::fs::remove_file(d.join("b.yaml")).unwrap();
        let gone = batch(c.scan());
        assert!(
            matches!(&gone.events[..], [Event::Deleted(r)] if r.origin.file().is_some_and(|f| f.ends_with("b.yaml"))),
            "{gone:?}"
        );
        assert_eq!(subset(&c), ["v1"]);
        assert!(batch(c.scan()).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
