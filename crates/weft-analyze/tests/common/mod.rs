//! Helpers shared by the analyzer tests: load YAML text, analyze it, and
//! render findings compactly so tests compare exact lists.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use weft_analyze::{analyze, Diagnostic, Options};
use weft_config::{load_str, LoadOptions};

/// Every finding for `yaml` as `CODE Kind ns/name` (and `:line` when the
/// finding points at a line other than the object's first).
pub fn findings(yaml: &str) -> Vec<String> {
    diagnostics(yaml, &Options::default())
        .iter()
        .map(|d| {
            let r = d
                .resource
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default();
            format!("{} {r}", d.message.code)
        })
        .collect()
}

pub fn diagnostics(yaml: &str, opts: &Options) -> Vec<Diagnostic> {
    let loaded = load_str("t.yaml", yaml, &LoadOptions::default());
    analyze(&loaded.resources, &loaded.issues, opts)
}

/// Asserts the exact findings, sorted, with the YAML in the failure text.
#[track_caller]
pub fn expect(yaml: &str, want: &[&str]) {
    let mut got = findings(yaml);
    got.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "\n--- input ---\n{yaml}");
}

pub const REVIEWS_SVC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: reviews, image: reviews:v1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2}
spec:
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec: {containers: [{name: reviews, image: reviews:v2}]}
"#;

pub const REVIEWS_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

/// Documents joined into one stream.
pub fn docs(parts: &[&str]) -> String {
    parts.join("\n---\n")
}
