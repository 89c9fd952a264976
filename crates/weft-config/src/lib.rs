//! Reading configuration the way users hand it to weft: files, directories
//! and stdin holding YAML or JSON, one or many documents, `kind: List`.
//!
//! Every decoded object keeps its [`Origin`] and its source tree, so any
//! later stage (validation, analysis, the control plane) can point at the
//! exact line of a field. Problems never stop the load: a bad document is
//! reported as a [`LoadIssue`] and the rest is still read.

pub mod host;
mod load;
pub mod validate;

pub use load::{
    load_paths, load_str, IssueKind, LoadIssue, LoadOptions, LoadResult, ObjectRef, Origin,
    Resource,
};
pub use validate::{validate, Severity, Violation};
