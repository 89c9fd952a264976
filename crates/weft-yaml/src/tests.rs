use super::*;

fn one(src: &str) -> Node {
    parse_document(src, &Limits::default()).unwrap().unwrap()
}

#[test]
fn marks_point_at_lines_and_columns() {
    let n = one("a: 1\nb:\n  c: [x, y]\n");
    assert_eq!(n.get("a").unwrap().mark, Mark { line: 1, col: 4 });
    let c = n.get("b").unwrap().get("c").unwrap();
    assert_eq!(c.mark.line, 3);
    let Value::Seq(items) = &c.value else {
        panic!("not a seq")
    };
    assert_eq!(items[1].mark, Mark { line: 3, col: 10 });
}

#[test]
fn scalars_follow_the_core_schema() {
    let n =
        one("a: 1\nb: '1'\nc: true\nd: yes\ne: 1.5\nf: ~\ng: 0x10\nh: 1e3\ni: 1.2.3\nj: !!str 5\n");
    assert_eq!(n.get("a").unwrap().value, Value::Int(1));
    assert_eq!(n.get("b").unwrap().value, Value::String("1".into()));
    assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
    // YAML 1.1 booleans are plain strings in 1.2.
    assert_eq!(n.get("d").unwrap().value, Value::String("yes".into()));
    assert_eq!(n.get("e").unwrap().value, Value::Float(1.5));
    assert_eq!(n.get("f").unwrap().value, Value::Null);
    assert_eq!(n.get("g").unwrap().value, Value::Int(16));
    assert_eq!(n.get("h").unwrap().value, Value::Float(1000.0));
    assert_eq!(n.get("i").unwrap().value, Value::String("1.2.3".into()));
    assert_eq!(n.get("j").unwrap().value, Value::String("5".into()));
}

#[test]
fn streams_split_and_keep_line_numbers() {
    let src = "a: 1\n---\nb: [\n---\n# only a comment\n--- \nc: 3\n";
    let docs: Vec<_> = parse_stream(src, &Limits::default()).collect();
    assert_eq!(docs.len(), 4);
    assert!(docs[0].result.as_ref().unwrap().is_some());
    // The broken second document is reported alone, with its line.
    let err = docs[1].result.as_ref().unwrap_err();
    assert!(err.line().unwrap() >= 3, "{err}");
    assert_eq!(docs[2].result.as_ref().unwrap(), &None);
    let c = docs[3].result.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(c.get("c").unwrap().mark.line, 7);
    assert_eq!(docs[3].start_line, 6);
}

#[test]
fn duplicate_keys_are_errors() {
    let err = parse_document("a: 1\nb: 2\na: 3\n", &Limits::default()).unwrap_err();
    match err {
        YamlError::DuplicateKey { mark, first, key } => {
            assert_eq!((mark.line, first.line, key.as_str()), (3, 1, "a"));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn depth_and_alias_bombs_are_bounded() {
    let deep = "[".repeat(10_000);
    // The scanner's own guard trips first on flow collections...
    let err = parse_document(&deep, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
    // ...and ours on block nesting.
    let nested: String = (0..10)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect();
    let limits = Limits {
        max_depth: 5,
        ..Limits::default()
    };
    let err = parse_document(&nested, &limits).unwrap_err();
    assert!(matches!(err, YamlError::TooDeep { limit: 5, .. }), "{err}");

    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let err = parse_document(&bomb, &Limits::default()).unwrap_err();
    assert!(matches!(err, YamlError::TooManyNodes { .. }), "{err}");

    let limits = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    let docs: Vec<_> = parse_stream("a: 123456789012345", &limits).collect();
    assert!(matches!(docs[0].result, Err(YamlError::TooLarge { .. })));
}

#[test]
fn aliases_expand() {
    let n = one("base: &b {x: 1}\nuse: *b\n");
    assert_eq!(n.get("use").unwrap().get("x").unwrap().value, Value::Int(1));
}

#[test]
fn json_is_accepted() {
    let n = one("{\"kind\": \"Gateway\",\n \"spec\": {\"servers\": []}}");
    assert_eq!(n.get("kind").unwrap().as_str(), Some("Gateway"));
    assert_eq!(n.get("spec").unwrap().mark.line, 2);
}

#[test]
fn locate_follows_paths_and_stops_at_the_deepest_existing_node() {
    let n = one("spec:\n  http:\n  - route:\n    - weight: 5\n");
    assert_eq!(
        n.locate(&parse_path("spec.http[0].route[0].weight")).line,
        4
    );
    assert_eq!(n.locate(&parse_path("spec.http[0].missing")).line, 3);
    assert_eq!(
        parse_path(r#"metadata.annotations["sidecar.istio.io/inject"]"#),
        vec![
            PathSeg::Key("metadata".into()),
            PathSeg::Key("annotations".into()),
            PathSeg::Key("sidecar.istio.io/inject".into())
        ]
    );
}

#[test]
fn garbage_never_panics() {
    for src in [
        "\u{0}\u{1}\u{2}",
        ":::",
        "- - - -",
        "a: [}",
        "'",
        "&a *a",
        "? [a]\n: b",
        "\t\tx: y",
    ] {
        let _ = parse_stream(src, &Limits::default()).count();
    }
}
