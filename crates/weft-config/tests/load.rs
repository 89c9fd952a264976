//! Loading: origins, lists, directories, bad input.

use std::io::Write;

use weft_config::{load_paths, load_str, IssueKind, LoadOptions};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

#[test]
fn documents_keep_file_and_line() {
    let text = format!(
        "# leading comment\n{VS}---\n{}",
        VS.replace("reviews", "ratings")
    );
    let r = load_str("a.yaml", &text, &LoadOptions::default());
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    assert_eq!(r.resources.len(), 2);
    assert_eq!(r.resources[0].origin.to_string(), "a.yaml:2");
    assert_eq!(r.resources[1].origin.to_string(), "a.yaml:12");
    assert_eq!(r.resources[1].object.namespace(), "default");
    assert_eq!(r.resources[1].origin_of("spec.hosts[0]").line(), 17);
    // Without its parse tree, an object's fields are placed at the start
    // of its document.
    let mut stripped = r.resources[1].clone();
    stripped.strip_source();
    assert_eq!(stripped.origin_of("spec.hosts[0]").line(), 12);
    assert_eq!(stripped.object, r.resources[1].object);
}

#[test]
fn schema_errors_name_the_field_and_line_and_others_still_load() {
    let bad = VS.replace("hosts: [reviews]", "hosts: reviews");
    let text = format!("{bad}---\n{}", VS.replace("reviews", "ratings"));
    let r = load_str("b.yaml", &text, &LoadOptions::default());
    assert_eq!(r.resources.len(), 1);
    let issue = &r.issues[0];
    assert_eq!(issue.kind, IssueKind::Schema);
    assert_eq!(issue.field.as_deref(), Some("spec.hosts"));
    assert_eq!(issue.origin.line(), 6);
    let named = issue.resource.as_ref().expect("the object is named");
    assert_eq!(named.to_string(), "VirtualService default/reviews");
    assert_eq!(named.known, Some(weft_api::Kind::VirtualService));
    assert!(
        issue.message.contains("expected a sequence"),
        "{}",
        issue.message
    );
}

#[test]
fn unknown_kinds_are_skipped_with_a_notice() {
    let text = format!("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata:\n  name: x\n---\n{VS}");
    let r = load_str("c.yaml", &text, &LoadOptions::default());
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.issues[0].kind, IssueKind::UnknownKind);
    assert!(r.issues[0].message.contains("IstioOperator"));
}

#[test]
fn lists_are_flattened() {
    let items = VS.replace('\n', "\n    ");
    let text = format!("apiVersion: v1\nkind: List\nitems:\n  - {items}");
    let r = load_str("l.yaml", &text, &LoadOptions::default());
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.resources[0].origin.line(), 4);
}

#[test]
fn duplicates_keep_the_first() {
    let text = format!("{VS}---\n{VS}");
    let r = load_str("d.yaml", &text, &LoadOptions::default());
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.issues[0].kind, IssueKind::Duplicate);
    assert!(
        r.issues[0].message.contains("d.yaml:1"),
        "{}",
        r.issues[0].message
    );
}

#[test]
fn garbage_empty_and_huge_inputs_are_errors_not_panics() {
    let opts = LoadOptions::default();
    for text in ["", "---\n---\n", "# nothing\n"] {
        let r = load_str("e.yaml", text, &opts);
        assert!(r.resources.is_empty() && r.issues.is_empty(), "{text:?}");
    }
    let r = load_str("g.yaml", "\u{1}\u{2}: [: }", &opts);
    assert_eq!(r.issues[0].kind, IssueKind::Syntax);
    let r = load_str("s.yaml", "just a string", &opts);
    assert!(r.issues[0].message.contains("mapping"));
    let r = load_str("n.yaml", "kind: VirtualService\n", &opts);
    assert!(r.issues[0].message.contains("apiVersion"));

    let dir = std::env::temp_dir().join(format!("weft-load-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("bin.yaml"), [0u8, 159, 146, 150]).unwrap();
    std::fs::write(dir.join("latin1.yaml"), b"a: \xff\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored: not a config extension").unwrap();
    let mut f = std::fs::File::create(dir.join("sub/vs.yml")).unwrap();
    f.write_all(VS.as_bytes()).unwrap();
    let mut small = LoadOptions::default();
    let r = load_paths(std::slice::from_ref(&dir), &small);
    assert_eq!(r.files, 3, "{:?}", r.issues);
    assert_eq!(r.resources.len(), 1);
    assert!(r.issues.iter().any(|i| i.message.contains("binary")));
    assert!(r.issues.iter().any(|i| i.message.contains("UTF-8")));
    small.limits.max_bytes = 16;
    let r = load_paths(&[dir.join("sub/vs.yml")], &small);
    assert!(
        r.issues[0].message.contains("larger than"),
        "{:?}",
        r.issues
    );
    let r = load_paths(&[dir.join("missing.yaml")], &small);
    assert_eq!(r.issues[0].kind, IssueKind::Io);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn misspelt_fields_in_kubernetes_kinds_and_metadata_are_schema_errors() {
    let svc =
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - number: 80\n";
    let r = load_str("s.yaml", svc, &LoadOptions::default());
    assert!(r.resources.is_empty());
    assert_eq!(r.issues[0].kind, IssueKind::Schema);
    assert_eq!(r.issues[0].field.as_deref(), Some("spec.ports[0].number"));
    assert_eq!(r.issues[0].origin.line(), 6);
    assert!(
        r.issues[0].message.starts_with("unknown field \"number\""),
        "{}",
        r.issues[0].message
    );

    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: v\n  namepsace: shop\nspec: {hosts: [a]}\n";
    let r = load_str("v.yaml", vs, &LoadOptions::default());
    assert_eq!(r.issues[0].field.as_deref(), Some("metadata.namepsace"));
    assert_eq!(r.issues[0].origin.line(), 5);

    // Known kind, removed API version: an error, not a skipped unknown kind.
    let old = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n";
    let r = load_str("d.yaml", old, &LoadOptions::default());
    assert_eq!(r.issues[0].kind, IssueKind::Schema);
    assert!(
        r.issues[0].message.contains("apps/v1"),
        "{}",
        r.issues[0].message
    );
}
