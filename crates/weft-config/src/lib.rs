//! Reading configuration the way users hand it to weft: files, directories
//! and stdin holding YAML or JSON, one or many documents, `kind: List`.
//!
//! Every decoded object keeps its [`Origin`] and its source tree, so any
//! later stage (validation, analysis, the control plane) can point at the
//! exact line of a field. Problems never stop the load: a bad document is
//! reported as a [`LoadIssue`] and the rest is still read.
//!
//! [`mesh`] holds Istio's mesh model — port protocols, label selectors,
//! host names and the cluster domain, exportTo — which validation,
//! analysis and the control plane all read through, so they agree.

mod load;
pub mod mesh;
mod origin;
pub mod validate;

pub use load::{
    json_digest, load_paths, load_str, load_str_each, ClusterObject, IssueKind, LoadIssue,
    LoadOptions, LoadResult, ObjectRef, Origin, Resource, Sink,
};
pub use mesh::host;
pub use validate::{validate, Severity, Violation};

/// The entry point fuzz targets (`fuzz/`) and the stable mutation test
/// share, so both exercise exactly the same path.
#[doc(hidden)]
pub mod fuzzing {
    use crate::{load_str, validate, LoadIssue, LoadOptions, Resource};

    /// Loads `data` as a file, validates every object, and hands the result
    /// to `then` (the analyzer, which lives in a crate above this one).
    pub fn load_validate_analyze(data: &[u8], then: impl FnOnce(&[Resource], &[LoadIssue])) {
        let text = String::from_utf8_lossy(data);
        let loaded = load_str("fuzz.yaml", &text, &LoadOptions::default());
        for r in &loaded.resources {
            let _ = validate(&r.object);
        }
        then(&loaded.resources, &loaded.issues);
    }
}
