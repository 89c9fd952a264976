//! Where an object or a problem came from: a position in a file, or an
//! object of a cluster's API server (what a Kubernetes watcher reads).
//! Every message names one, so both kinds of source read alike in logs.

use std::fmt;
use std::sync::Arc;

/// Where an object or a problem came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A file as given (`-` for stdin), at a 1-based line; line 0 when
    /// the problem concerns the whole file.
    File { file: Arc<str>, line: u32 },
    /// An object read from a cluster (shared: every message about the
    /// object names the same one).
    Cluster(Arc<ClusterObject>),
}

/// An object as a cluster's API server names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterObject {
    /// The cluster's name (one control plane may watch several).
    pub cluster: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    /// The version the object was read at, when known.
    pub resource_version: Option<String>,
}

impl Origin {
    /// A position in a file.
    pub fn at(file: impl Into<Arc<str>>, line: u32) -> Origin {
        Origin::File {
            file: file.into(),
            line,
        }
    }

    /// The line in the file; 0 for the whole file or a cluster object
    /// (which has no lines).
    pub fn line(&self) -> u32 {
        match self {
            Origin::File { line, .. } => *line,
            Origin::Cluster(_) => 0,
        }
    }

    /// The file, for origins in one.
    pub fn file(&self) -> Option<&str> {
        match self {
            Origin::File { file, .. } => Some(file),
            Origin::Cluster(_) => None,
        }
    }

    /// Another line of the same file; a cluster object as it is.
    pub fn at_line(&self, line: u32) -> Origin {
        match self {
            Origin::File { file, .. } => Origin::File {
                file: file.clone(),
                line,
            },
            Origin::Cluster(_) => self.clone(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file, line: 0 } => write!(f, "{file}"),
            Origin::File { file, line } => write!(f, "{file}:{line}"),
            Origin::Cluster(o) => {
                // As kubectl names objects: cluster/kind/namespace/name.
                write!(f, "{}/{}/", o.cluster, o.kind)?;
                if !o.namespace.is_empty() {
                    write!(f, "{}/", o.namespace)?;
                }
                write!(f, "{}", o.name)?;
                if let Some(v) = &o.resource_version {
                    write!(f, "@{v}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_read_as_messages_name_them() {
        assert_eq!(Origin::at("a.yaml", 3).to_string(), "a.yaml:3");
        assert_eq!(Origin::at("a.yaml", 0).to_string(), "a.yaml");
        assert_eq!(Origin::at("a.yaml", 3).at_line(9).line(), 9);
        let o = Origin::Cluster(Arc::new(ClusterObject {
            cluster: "east".into(),
            kind: "VirtualService".into(),
            namespace: "shop".into(),
            name: "reviews".into(),
            resource_version: Some("4711".into()),
        }));
        assert_eq!(o.to_string(), "east/VirtualService/shop/reviews@4711");
        assert_eq!((o.line(), o.file()), (0, None));
        assert_eq!(o.at_line(5), o);
        let ns = Origin::Cluster(Arc::new(ClusterObject {
            cluster: "east".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "shop".into(),
            resource_version: None,
        }));
        assert_eq!(ns.to_string(), "east/Namespace/shop");
    }
}
