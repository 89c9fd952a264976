//! Files → documents → typed objects, with origins.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_api::{Kind, Object, Scope};
use weft_yaml::{Limits, Node, Value};

pub use crate::origin::{ClusterObject, Origin};

/// A decoded object with where it came from.
#[derive(Clone, Debug)]
pub struct Resource {
    pub object: Object,
    /// Where the object's document (or `kind: List` item) starts.
    pub origin: Origin,
    /// The parsed source, to find the line of any field.
    pub source: Arc<Node>,
    /// A hash of the document as written: two loads of the same text
    /// give the same digest, so consumers can tell what changed between
    /// loads without comparing objects.
    pub digest: u64,
}

/// A structural hash of a JSON document (object keys in order), into
/// any hasher.
pub fn json_digest(v: &serde_json::Value, h: &mut impl std::hash::Hasher) {
    use serde_json::Value as J;
    match v {
        J::Null => h.write_u8(0),
        J::Bool(b) => h.write_u8(1 + u8::from(*b)),
        J::Number(n) => {
            h.write_u8(3);
            h.write(n.to_string().as_bytes());
        }
        J::String(s) => {
            h.write_u8(4);
            h.write_usize(s.len());
            h.write(s.as_bytes());
        }
        J::Array(a) => {
            h.write_u8(5);
            h.write_usize(a.len());
            a.iter().for_each(|x| json_digest(x, h));
        }
        J::Object(m) => {
            h.write_u8(6);
            h.write_usize(m.len());
            for (k, x) in m {
                h.write_usize(k.len());
                h.write(k.as_bytes());
                json_digest(x, h);
            }
        }
    }
}

/// Lets builders take owned or borrowed resources alike.
impl AsRef<Resource> for Resource {
    fn as_ref(&self) -> &Resource {
        self
    }
}

impl Resource {
    /// The origin of a field given by a display path such as
    /// `spec.http[0].route[1].weight` (the nearest existing ancestor when
    /// the field itself is absent).
    pub fn origin_of(&self, field: &str) -> Origin {
        let path = weft_yaml::parse_path(field);
        match self.source.locate(&path).line {
            // No source (see `strip_source`, or an object from a cluster):
            // where the object starts.
            0 => self.origin.clone(),
            l => self.origin.at_line(l),
        }
    }

    /// Drops the parse tree, the largest part of a loaded object, for a
    /// consumer that keeps objects and has already reported their
    /// problems; lines are then the document's start.
    pub fn strip_source(&mut self) {
        static NONE: std::sync::LazyLock<Arc<Node>> = std::sync::LazyLock::new(|| {
            Arc::new(Node {
                value: weft_yaml::Value::Null,
                mark: weft_yaml::Mark { line: 0, col: 0 },
            })
        });
        self.source = Arc::clone(&NONE);
    }

    pub fn display_name(&self) -> String {
        self.object.display_name()
    }
}

/// How messages name an object: `Kind namespace/name` (`Kind name` for
/// cluster-scoped kinds).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The kind as written, so unknown kinds can still be named.
    pub kind: String,
    /// The kind weft knows it as; `None` for kinds weft does not read.
    pub known: Option<Kind>,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn of(o: &Object) -> Self {
        let namespace = match o.kind.info().scope {
            Scope::Namespaced => o.namespace().to_string(),
            Scope::Cluster => String::new(),
        };
        ObjectRef {
            kind: o.kind.to_string(),
            known: Some(o.kind),
            namespace,
            name: o.name().to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A document or file that could not be (fully) read.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadIssue {
    pub origin: Origin,
    /// The object, when the document got far enough to name it.
    pub resource: Option<ObjectRef>,
    /// The failing field, when known.
    pub field: Option<String>,
    pub message: String,
    pub kind: IssueKind,
}

/// What sort of load problem this is; analysis maps these onto Istio codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// The file could not be read at all.
    Io,
    /// Not YAML/JSON, or not an object.
    Syntax,
    /// A kind weft does not read; the document was skipped.
    UnknownKind,
    /// Known kind, but a field has the wrong name or type.
    Schema,
    /// Same kind, namespace and name as an earlier object.
    Duplicate,
}

impl fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(r) = &self.resource {
            write!(f, " ({r})")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Namespace given to namespaced objects that do not name one.
    pub default_namespace: String,
    pub limits: Limits,
    /// Keep every copy of an object defined twice (validation checks each
    /// object on its own); otherwise later copies are reported and dropped,
    /// as when the files are applied together.
    pub keep_duplicates: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_namespace: "default".to_string(),
            limits: Limits::default(),
            keep_duplicates: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct LoadResult {
    pub resources: Vec<Resource>,
    pub issues: Vec<LoadIssue>,
    /// Files read (after expanding directories).
    pub files: usize,
}

/// Loads files and directories (recursively: `.yaml`, `.yml`, `.json`);
/// `-` reads stdin. Order is deterministic: arguments in order, directory
/// entries sorted.
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions) -> LoadResult {
    let mut out = LoadResult::default();
    let mut seen = HashMap::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            match std::io::stdin()
                .take(opts.limits.max_bytes as u64 + 1)
                .read_to_end(&mut bytes)
            {
                Ok(_) => {
                    out.files += 1;
                    load_bytes("-", &bytes, opts, &mut out, &mut seen)
                }
                Err(e) => out
                    .issues
                    .push(io_issue("-", format!("cannot read stdin: {e}"))),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(msg) = collect_files(path, true, &mut files) {
            out.issue(io_issue(&path.display().to_string(), msg));
        }
        for file in files {
            let name = file.display().to_string();
            match read_limited(&file, opts.limits.max_bytes) {
                Ok(bytes) => {
                    out.files += 1;
                    load_bytes(&name, &bytes, opts, &mut out, &mut seen)
                }
                Err(msg) => out.issue(io_issue(&name, msg)),
            }
        }
    }
    out
}

/// Loads text already in memory, named `name` in origins.
pub fn load_str(name: &str, text: &str, opts: &LoadOptions) -> LoadResult {
    let mut out = LoadResult {
        files: 1,
        ..LoadResult::default()
    };
    load_bytes(name, text.as_bytes(), opts, &mut out, &mut HashMap::new());
    out
}

/// Where loading puts what it finds, in document order.
pub trait Sink {
    fn resource(&mut self, r: Resource);
    fn issue(&mut self, issue: LoadIssue);
}

impl Sink for LoadResult {
    fn resource(&mut self, r: Resource) {
        self.resources.push(r);
    }

    fn issue(&mut self, issue: LoadIssue) {
        self.issues.push(issue);
    }
}

/// [`load_str`], handing each object and issue to `sink` as soon as its
/// document is read: a consumer that keeps objects without their parse
/// trees never holds more than one document's tree.
pub fn load_str_each(name: &str, text: &str, opts: &LoadOptions, sink: &mut dyn Sink) {
    load_bytes(name, text.as_bytes(), opts, sink, &mut HashMap::new());
}

fn io_issue(file: &str, message: String) -> LoadIssue {
    LoadIssue {
        origin: Origin::File {
            file: file.into(),
            line: 0,
        },
        resource: None,
        field: None,
        message,
        kind: IssueKind::Io,
    }
}

fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

fn collect_files(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot list directory: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden {
                // Unreadable entries inside a directory are reported by the
                // caller when read; listing errors here are not fatal.
                let _ = collect_files(&entry, false, out);
            }
        }
    } else if explicit || is_config_file(path) {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

type Seen = HashMap<(Kind, String, String), Origin>;

fn load_bytes(name: &str, bytes: &[u8], opts: &LoadOptions, out: &mut dyn Sink, seen: &mut Seen) {
    let file: Arc<str> = name.into();
    let whole = |message: String, kind| LoadIssue {
        origin: Origin::File {
            file: file.clone(),
            line: 0,
        },
        resource: None,
        field: None,
        message,
        kind,
    };
    if bytes.len() > opts.limits.max_bytes {
        out.issue(whole(
            format!(
                "file is larger than the limit of {} bytes",
                opts.limits.max_bytes
            ),
            IssueKind::Io,
        ));
        return;
    }
    if bytes.contains(&0) {
        out.issue(whole(
            "binary data (NUL bytes): expected YAML or JSON text".to_string(),
            IssueKind::Syntax,
        ));
        return;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            out.issue(LoadIssue {
                origin: Origin::File {
                    file: file.clone(),
                    line: line as u32,
                },
                ..whole(
                    "invalid UTF-8: expected YAML or JSON text".to_string(),
                    IssueKind::Syntax,
                )
            });
            return;
        }
    };
    for doc in weft_yaml::parse_stream(text, &opts.limits) {
        match doc.result {
            Err(e) => out.issue(LoadIssue {
                origin: Origin::File {
                    file: file.clone(),
                    line: e.line().unwrap_or(doc.start_line),
                },
                resource: None,
                field: None,
                message: format!("invalid YAML: {}", strip_line_prefix(&e.to_string())),
                kind: IssueKind::Syntax,
            }),
            Ok(None) => {}
            Ok(Some(root)) => load_node(&file, root, opts, out, seen),
        }
    }
}

fn strip_line_prefix(msg: &str) -> &str {
    match msg.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(msg, |(_, m)| m),
        None => msg,
    }
}

fn load_node(file: &Arc<str>, root: Node, opts: &LoadOptions, out: &mut dyn Sink, seen: &mut Seen) {
    let origin = Origin::File {
        file: file.clone(),
        line: root.mark.line,
    };
    if !matches!(root.value, Value::Map(_)) {
        out.issue(LoadIssue {
            origin,
            resource: None,
            field: None,
            message: "expected a mapping with apiVersion and kind".to_string(),
            kind: IssueKind::Syntax,
        });
        return;
    }
    // `kind: List` (what `kubectl get -o yaml` prints) holds objects in items.
    if root.get("kind").and_then(Node::as_str) == Some("List") {
        match root.get("items").map(|n| &n.value) {
            Some(Value::Seq(items)) => {
                for item in items.clone() {
                    load_node(file, item, opts, out, seen);
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => out.issue(LoadIssue {
                origin,
                resource: None,
                field: Some("items".into()),
                message: "a List's items must be a sequence".to_string(),
                kind: IssueKind::Schema,
            }),
        }
        return;
    }
    let source = Arc::new(root);
    let resource_name = describe_raw(&source, opts);
    let json = source.to_json();
    let digest = {
        let mut h = std::hash::DefaultHasher::new();
        json_digest(&json, &mut h);
        std::hash::Hasher::finish(&h)
    };
    match weft_api::decode(json) {
        Ok(mut object) => {
            if object.kind.info().scope == Scope::Namespaced && object.meta.namespace.is_none() {
                object.meta.namespace = Some(opts.default_namespace.clone());
            }
            let key = (
                object.kind,
                object.namespace().to_string(),
                object.name().to_string(),
            );
            if let Some(first) = seen.get(&key).filter(|_| !opts.keep_duplicates) {
                out.issue(LoadIssue {
                    origin,
                    resource: Some(ObjectRef::of(&object)),
                    field: None,
                    message: format!(
                        "duplicate object: already defined at {first}; this copy is ignored"
                    ),
                    kind: IssueKind::Duplicate,
                });
                return;
            }
            seen.insert(key, origin.clone());
            out.resource(Resource {
                object,
                origin,
                source,
                digest,
            });
        }
        Err(weft_api::DecodeError::UnknownKind(message)) => out.issue(LoadIssue {
            origin,
            resource: resource_name,
            field: None,
            message: format!("{message}; skipped"),
            kind: IssueKind::UnknownKind,
        }),
        Err(weft_api::DecodeError::Field {
            field,
            path,
            message,
        }) => out.issue(LoadIssue {
            origin: Origin::File {
                file: file.clone(),
                line: source.locate(&path).line,
            },
            resource: resource_name,
            field: Some(field),
            message,
            kind: IssueKind::Schema,
        }),
        Err(weft_api::DecodeError::UnservedVersion(message)) => out.issue(LoadIssue {
            origin,
            resource: resource_name,
            field: Some("apiVersion".into()),
            message,
            kind: IssueKind::Schema,
        }),
        Err(e @ weft_api::DecodeError::Missing(_)) => out.issue(LoadIssue {
            origin,
            resource: resource_name,
            field: None,
            message: e.to_string(),
            kind: IssueKind::Schema,
        }),
    }
}

/// The object's name read straight from the source, for messages about
/// objects that failed to decode.
fn describe_raw(node: &Node, opts: &LoadOptions) -> Option<ObjectRef> {
    let kind = node.get("kind")?.as_str()?;
    let api_version = node.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    let known = weft_api::lookup_kind(api_version, kind).ok();
    let meta = node.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("<unnamed>");
    let namespace = match known.map(|k| k.info().scope) {
        Some(Scope::Cluster) => "",
        _ => meta
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str)
            .unwrap_or(&opts.default_namespace),
    };
    Some(ObjectRef {
        kind: kind.to_string(),
        known,
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}
