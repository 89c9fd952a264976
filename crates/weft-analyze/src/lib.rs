//! `weft analyze`: cross-resource checks of Istio configuration, reported
//! with Istio's diagnostic codes (IST0101 …) so that output, suppressions
//! and CI rules written for `istioctl analyze` carry over.
//!
//! The entry point is [`analyze`]: it indexes the loaded resources once
//! ([`Context`]), runs every [`Analyzer`], and applies suppressions.

mod analyzers;
mod context;
pub mod messages;

use std::fmt;

pub use analyzers::{Analyzer, ANALYZERS};
pub use context::Context;
pub use messages::{Level, MessageType};
pub use weft_config::ObjectRef;
use weft_config::{LoadIssue, Origin, Resource};

/// Annotation that suppresses codes on one resource (`"IST0102,IST0107"`
/// or `"*"`), as in Istio.
pub const SUPPRESS_ANNOTATION: &str = "galley.istio.io/analyze-suppress";

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub message: &'static MessageType,
    pub args: Vec<String>,
    /// The resource the finding is about, if any.
    pub resource: Option<ObjectRef>,
    /// Where to look (file:line of the offending field when known).
    pub origin: Option<Origin>,
}

impl Diagnostic {
    pub fn new(
        message: &'static MessageType,
        r: &Resource,
        field: Option<&str>,
        args: Vec<String>,
    ) -> Self {
        Diagnostic {
            message,
            args,
            resource: Some(ObjectRef::of(&r.object)),
            origin: Some(match field {
                Some(f) => r.origin_of(f),
                None => r.origin.clone(),
            }),
        }
    }

    pub fn level(&self) -> Level {
        self.message.level
    }

    pub fn text(&self) -> String {
        self.message.format(&self.args)
    }
}

impl fmt::Display for Diagnostic {
    /// istioctl's log format:
    /// `Error [IST0101] (VirtualService default/reviews reviews.yaml:12) Referenced …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message.level, self.message.code)?;
        let place = match (&self.resource, &self.origin) {
            (Some(r), Some(o)) => Some(format!("{r} {o}")),
            (Some(r), None) => Some(r.to_string()),
            (None, Some(o)) => Some(o.to_string()),
            (None, None) => None,
        };
        if let Some(p) = place {
            write!(f, " ({p})")?;
        }
        write!(f, " {}", self.text())
    }
}

/// The JSON/YAML shape istioctl prints with `-o json|yaml`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputMessage {
    pub code: &'static str,
    pub documentation_url: String,
    pub level: Level,
    pub message: String,
    pub origin: String,
    pub reference: String,
}

impl From<&Diagnostic> for OutputMessage {
    fn from(d: &Diagnostic) -> Self {
        OutputMessage {
            code: d.message.code,
            documentation_url: d.message.documentation_url(),
            level: d.level(),
            message: d.text(),
            origin: d
                .resource
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            reference: d.origin.as_ref().map(|o| o.to_string()).unwrap_or_default(),
        }
    }
}

/// A `--suppress "CODE=Kind name[.namespace]"` rule; `*` globs in both parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub code: String,
    pub resource: String,
}

impl Suppression {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (code, resource) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid suppression {s:?}: expected CODE=Kind name, e.g. \"IST0102=Namespace frod\""))?;
        let code = code.trim();
        if code != "*" && messages::by_code(code).is_none() && !code.contains('*') {
            return Err(format!("invalid suppression {s:?}: unknown code {code:?}"));
        }
        Ok(Suppression {
            code: code.to_string(),
            resource: resource.trim().to_string(),
        })
    }

    fn matches(&self, d: &Diagnostic) -> bool {
        if !glob(&self.code, d.message.code) {
            return false;
        }
        let Some(r) = &d.resource else { return false };
        // istioctl names resources `Kind name.namespace` in suppressions.
        let full = if r.namespace.is_empty() {
            format!("{} {}", r.kind, r.name)
        } else {
            format!("{} {}.{}", r.kind, r.name, r.namespace)
        };
        glob(&self.resource, &full) || glob(&self.resource, &format!("{} {}", r.kind, r.name))
    }
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    true
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub suppressions: Vec<Suppression>,
    /// Only report on resources in this namespace (None: all namespaces).
    pub namespace: Option<String>,
}

/// Runs every analyzer over `resources` and the load `issues` (which become
/// IST0106 schema errors), then drops suppressed findings. Results are in
/// file and line order.
pub fn analyze(resources: &[Resource], issues: &[LoadIssue], opts: &Options) -> Vec<Diagnostic> {
    let ctx = Context::new(resources);
    let mut out = Vec::new();
    analyzers::load_issues(issues, &mut out);
    for a in ANALYZERS {
        (a.run)(&ctx, &mut out);
    }
    out.retain(|d| {
        if opts.suppressions.iter().any(|s| s.matches(d)) {
            return false;
        }
        let Some(r) = &d.resource else { return true };
        if let Some(ns) = &opts.namespace {
            if !r.namespace.is_empty() && &r.namespace != ns {
                return false;
            }
        }
        !ctx.suppressed_by_annotation(r, d.message.code)
    });
    out.sort_by(|a, b| {
        (a.origin.as_ref(), a.message.code).cmp(&(b.origin.as_ref(), b.message.code))
    });
    out.dedup();
    out
}
