//! YAML (and JSON, its subset) parsed into a tree whose every node remembers
//! the line and column it came from.
//!
//! Configuration errors are only useful when they point at the line that is
//! wrong, and serde's YAML front-ends forget positions once parsing is done.
//! This crate keeps them: a [`Node`] carries its [`Mark`], and
//! [`Node::locate`] turns a field path reported by a later stage (for
//! example a serde error path) back into a line.
//!
//! Multi-document streams are split on `---` lines *before* parsing, the way
//! `kubectl` reads them, so that one malformed document is reported on its
//! own and does not hide the documents around it.
//!
//! Hostile input is bounded: nesting depth, node count (which also bounds
//! alias expansion, the "billion laughs" attack) and input size all have
//! limits, reported as ordinary errors.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the source text; both numbers start at 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

/// The data model Kubernetes objects use: YAML 1.2 core schema scalars,
/// sequences, and mappings with string keys (other keys are stringified).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Entries in source order. Duplicate keys are rejected while parsing.
    Map(Vec<(String, Node)>),
}

/// One step of a path into a document, as serde and validators report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Limits that keep hostile input from exhausting the process.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes one document may expand to, aliases included.
    pub max_nodes: usize,
    /// Largest input accepted, in bytes.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Kubernetes caps an object at ~1.5 MiB in etcd and 3 MiB on the wire;
        // the byte limit leaves room for many objects in one file.
        Limits {
            max_depth: 128,
            max_nodes: 1_000_000,
            max_bytes: 64 << 20,
        }
    }
}

/// Why a document could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum YamlError {
    #[error("line {}: {message}", mark.line)]
    Syntax { mark: Mark, message: String },
    #[error("line {}: duplicate key {key:?} (first defined on line {})", mark.line, first.line)]
    DuplicateKey {
        mark: Mark,
        first: Mark,
        key: String,
    },
    #[error("line {}: nesting deeper than {limit} levels", mark.line)]
    TooDeep { mark: Mark, limit: usize },
    #[error("line {}: document expands to more than {limit} nodes (alias bomb?)", mark.line)]
    TooManyNodes { mark: Mark, limit: usize },
    #[error("input is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("line {}: unknown alias", mark.line)]
    UnknownAlias { mark: Mark },
}

impl YamlError {
    /// The line the error points at, when it has one.
    pub fn line(&self) -> Option<u32> {
        match self {
            YamlError::Syntax { mark, .. }
            | YamlError::DuplicateKey { mark, .. }
            | YamlError::TooDeep { mark, .. }
            | YamlError::TooManyNodes { mark, .. }
            | YamlError::UnknownAlias { mark } => Some(mark.line),
            YamlError::TooLarge { .. } => None,
        }
    }
}

/// One document of a stream: its root (None for an empty document) or the
/// reason it could not be read.
#[derive(Debug)]
pub struct Document {
    /// Line of the first line of this document's text.
    pub start_line: u32,
    pub result: Result<Option<Node>, YamlError>,
}

/// Splits `src` into documents and parses each one independently, as
/// the iterator is advanced: a caller that is done with a document
/// before asking for the next never holds two parse trees.
pub fn parse_stream<'a>(src: &'a str, limits: &'a Limits) -> impl Iterator<Item = Document> + 'a {
    let too_large = (src.len() > limits.max_bytes).then_some(Document {
        start_line: 1,
        result: Err(YamlError::TooLarge {
            size: src.len(),
            limit: limits.max_bytes,
        }),
    });
    let chunks = if too_large.is_some() {
        Vec::new()
    } else {
        split_documents(src)
    };
    too_large
        .into_iter()
        .chain(chunks.into_iter().map(move |(start_line, text)| Document {
            start_line,
            result: parse_one(text, start_line - 1, limits),
        }))
}

/// Parses text that must hold at most one document.
pub fn parse_document(src: &str, limits: &Limits) -> Result<Option<Node>, YamlError> {
    if src.len() > limits.max_bytes {
        return Err(YamlError::TooLarge {
            size: src.len(),
            limit: limits.max_bytes,
        });
    }
    parse_one(src, 0, limits)
}

/// Splits on lines that start with `---` followed by nothing, a space or a
/// comment: the document separator as `kubectl` recognises it. Returns each
/// chunk with the 1-based line it starts on. The separator line itself is
/// kept in the chunk so that `--- !tag` or `--- {a: 1}` keep working.
fn split_documents(src: &str) -> Vec<(u32, &str)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u32;
    let mut pos = 0usize;
    for (line_no, line) in (1u32..).zip(src.split_inclusive('\n')) {
        if pos != 0 && is_separator(line) {
            out.push((start_line, &src[start..pos]));
            start = pos;
            start_line = line_no;
        }
        pos += line.len();
    }
    out.push((start_line, &src[start..]));
    out
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    match line.strip_prefix("---") {
        Some(rest) => rest.is_empty() || rest.starts_with([' ', '\t', '#']),
        None => false,
    }
}

fn mark_of(m: &Marker, line_offset: u32) -> Mark {
    Mark {
        line: (m.line() as u32).saturating_add(line_offset),
        col: m.col() as u32 + 1,
    }
}

enum Frame {
    Seq {
        anchor: usize,
        mark: Mark,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        mark: Mark,
        entries: Vec<(String, Node)>,
        seen: HashMap<String, Mark>,
        pending_key: Option<(String, Mark)>,
    },
}

fn parse_one(src: &str, line_offset: u32, limits: &Limits) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| YamlError::Syntax {
            mark: mark_of(e.marker(), line_offset),
            message: e.info().to_string(),
        })?;
        let mark = mark_of(&marker, line_offset);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => None,
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(YamlError::TooDeep {
                        mark,
                        limit: limits.max_depth,
                    });
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        anchor,
                        mark,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        anchor,
                        mark,
                        entries: Vec::new(),
                        seen: HashMap::new(),
                        pending_key: None,
                    }
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    anchor,
                    mark,
                    items,
                }) => Some((
                    Node {
                        value: Value::Seq(items),
                        mark,
                    },
                    anchor,
                )),
                _ => return Err(internal(mark)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    anchor,
                    mark,
                    entries,
                    ..
                }) => Some((
                    Node {
                        value: Value::Map(entries),
                        mark,
                    },
                    anchor,
                )),
                _ => return Err(internal(mark)),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref().map(|t| t.suffix.as_str()));
                Some((Node { value, mark }, anchor))
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAlias { mark })?;
                nodes = nodes.saturating_add(count_nodes(&node));
                if nodes > limits.max_nodes {
                    return Err(YamlError::TooManyNodes {
                        mark,
                        limit: limits.max_nodes,
                    });
                }
                Some((node, 0))
            }
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        nodes += 1;
        if nodes > limits.max_nodes {
            return Err(YamlError::TooManyNodes {
                mark,
                limit: limits.max_nodes,
            });
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => {
                // A second root in one chunk means a separator we did not
                // split on (e.g. `--- ` inside flow text); keep the first.
                if root.is_none() {
                    root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                seen,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some((key_string(&node), node.mark)),
                Some((key, key_mark)) => {
                    if let Some(first) = seen.get(&key) {
                        return Err(YamlError::DuplicateKey {
                            mark: key_mark,
                            first: *first,
                            key,
                        });
                    }
                    seen.insert(key.clone(), key_mark);
                    entries.push((key, node));
                }
            },
        }
    }
    // `---` followed by only comments parses as a null scalar: an empty
    // document, like one with no text at all.
    Ok(root.filter(|n| n.value != Value::Null))
}

fn internal(mark: Mark) -> YamlError {
    YamlError::Syntax {
        mark,
        message: "unbalanced collection events".to_string(),
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

fn key_string(node: &Node) -> String {
    match &node.value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        // Complex keys do not occur in Kubernetes objects; keep them visible.
        other => format!("{other:?}"),
    }
}

/// Resolves a scalar with the YAML 1.2 core schema (what Kubernetes'
/// sigs.k8s.io/yaml accepts for the values that matter), honouring explicit
/// `!!str`-style tags.
fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&str>) -> Value {
    if let Some(tag) = tag {
        match tag {
            "str" => return Value::String(text),
            "int" => {
                if let Some(i) = parse_int(&text) {
                    return Value::Int(i);
                }
            }
            "float" => {
                if let Some(f) = parse_float(&text) {
                    return Value::Float(f);
                }
            }
            "bool" => match text.as_str() {
                "true" | "True" | "TRUE" => return Value::Bool(true),
                "false" | "False" | "FALSE" => return Value::Bool(false),
                _ => {}
            },
            "null" => return Value::Null,
            _ => {}
        }
    }
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(&text) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(&text) {
        return Value::Float(f);
    }
    Value::String(text)
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // The core schema's float: digits with a dot and/or exponent.
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let ok = !body.is_empty()
        && body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && body.as_bytes()[0] != b'e'
        && body.as_bytes()[0] != b'E';
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

impl Node {
    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Follows `path` as far as it leads and returns the mark of the deepest
    /// node reached: the node itself when the whole path exists, else its
    /// nearest existing ancestor (the right line for "missing field" errors).
    pub fn locate(&self, path: &[PathSeg]) -> Mark {
        self.locate_with(path, |written, wanted| written == wanted)
    }

    /// [`Node::locate`] where a map key as written matches a path key when
    /// `key_eq(written, wanted)` says so (e.g. camelCase against snake_case).
    pub fn locate_with(&self, path: &[PathSeg], key_eq: impl Fn(&str, &str) -> bool) -> Mark {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| key_eq(key, k))
                    .map(|(_, v)| v),
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.mark
    }

    /// Converts to a JSON value for typed deserialization. Non-finite floats,
    /// which JSON cannot hold, become strings so that the typed layer reports
    /// them as a type error instead of silently reading `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses a field path like `spec.http[0].route[1].weight` or
/// `metadata.annotations["sidecar.istio.io/inject"]` into segments: the
/// display form used in diagnostics, turned back into something
/// [`Node::locate`] can follow.
pub fn parse_path(path: &str) -> Vec<PathSeg> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut key = String::new();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !key.is_empty() {
                    out.push(PathSeg::Key(std::mem::take(&mut key)));
                }
            }
            '[' => {
                if !key.is_empty() {
                    out.push(PathSeg::Key(std::mem::take(&mut key)));
                }
                let mut inner = String::new();
                let quoted = chars.peek() == Some(&'"');
                if quoted {
                    chars.next();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => inner.extend(chars.next()),
                            '"' => break,
                            c => inner.push(c),
                        }
                    }
                    // Skip to the closing bracket.
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                    }
                    out.push(PathSeg::Key(inner));
                } else {
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        inner.push(c);
                    }
                    match inner.parse() {
                        Ok(i) => out.push(PathSeg::Index(i)),
                        Err(_) => out.push(PathSeg::Key(inner)),
                    }
                }
            }
            c => key.push(c),
        }
    }
    if !key.is_empty() {
        out.push(PathSeg::Key(key));
    }
    out
}

/// The path serde_path_to_error reports for a failed typed decode, as
/// [`PathSeg`]s that [`Node::locate`] can turn into a line.
pub fn path_of_serde_error(path: &serde_path_to_error::Path) -> Vec<PathSeg> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
