//! Each expectation below is what Envoy 1.40 forwarded (or answered) for
//! the same path and settings; `tests/path_normalization.rs` checks the
//! ones a client can send against a running Envoy.

use super::*;

const NORMALIZE: PathNormalization = PathNormalization {
    normalize: true,
    merge_slashes: false,
    escaped_slashes: EscapedSlashes::Keep,
};
const MERGE: PathNormalization = PathNormalization {
    normalize: false,
    merge_slashes: true,
    escaped_slashes: EscapedSlashes::Keep,
};
const BOTH: PathNormalization = PathNormalization {
    normalize: true,
    merge_slashes: true,
    escaped_slashes: EscapedSlashes::Keep,
};

fn forwarded(n: PathNormalization, path: &str) -> String {
    match n.apply(path) {
        Normalized::Continue(p) => p,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn normalize_path_as_envoy_does() {
    let cases = [
        ("/./a", "/a"),
        ("/a/../b", "/b"),
        ("/../a", "/a"),
        ("/a/./b/", "/a/b/"),
        ("//a//b", "//a//b"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2fb"),
        ("/%61dmin", "/admin"),
        ("/a%2e%2e/b", "/a../b"),
        ("/a/%2e%2e/b", "/b"),
        ("/a\\b", "/a/b"),
        ("/a/b?x=/../y//z", "/a/b?x=/../y//z"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/a%5cb", "/a%5cb"),
        ("/%7e/%7E/%41%2D%5F", "/~/~/A-_"),
        ("/a%20b", "/a%20b"),
        ("/a%3ab", "/a%3ab"),
        ("/%e2%82%ac", "/%e2%82%ac"),
        ("/a%zz", "/a%zz"),
        ("/a%", "/a%"),
        ("/a%2", "/a%2"),
        ("/a%25", "/a%25"),
        ("/a%252e", "/a%252e"),
        ("/a\"b", "/a%22b"),
        ("/a<b>", "/a%3Cb%3E"),
        ("/a{b}", "/a%7Bb%7D"),
        ("/a|b", "/a%7Cb"),
        ("/a^b", "/a%5Eb"),
        ("/a`b", "/a%60b"),
        ("/a;b/../c", "/c"),
        ("/a/b/../../..", "/"),
        ("/%2e/a", "/a"),
        ("/.%2e/a", "/a"),
        ("/a/.%2E/b", "/b"),
        ("/a/%2E./b", "/b"),
        ("/a/b/%2e", "/a/b/"),
        ("/a/..?q=1", "/?q=1"),
        ("/a?", "/a?"),
        ("/a%2F..%2Fb", "/a%2F..%2Fb"),
        ("/a/...", "/a/..."),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b", "/a/..b"),
        ("/a'b", "/a'b"),
        ("/a!$&()*+,;=:@b", "/a!$&()*+,;=:@b"),
        ("/a[b]", "/a[b]"),
        ("//", "//"),
        ("/a%01b", "/a%01b"),
        ("/a%7fb", "/a%7fb"),
        ("/a%80%FF", "/a%80%FF"),
        ("/a/.\\b", "/a/b"),
        ("/a/..\\b", "/b"),
        ("/a\\..\\b", "/b"),
        ("/a/%2e%2E%2e", "/a/..."),
        ("/./../a", "/a"),
        ("/a/./../b", "/b"),
        ("/a//../b", "/a/b"),
        ("/a/.?x", "/a/?x"),
        ("/%%41", "/%A"),
        ("/a%2eb", "/a.b"),
        ("/a/.%2e", "/"),
        ("/a/b/..//c", "/a//c"),
        ("/a/..//", "//"),
        ("/a/b/.././..", "/"),
    ];
    for (path, want) in cases {
        assert_eq!(forwarded(NORMALIZE, path), want, "{path}");
    }
}

#[test]
fn non_ascii_is_escaped() {
    assert_eq!(canonicalize("/a\u{e9}").unwrap(), "/a%C3%A9");
    assert_eq!(canonicalize("/a\u{7f}\t").unwrap(), "/a%7F%09");
}

#[test]
fn a_nul_is_refused() {
    for path in ["/a%00b?q", "/%00", "/a\0"] {
        assert_eq!(
            NORMALIZE.apply(path),
            Normalized::Reject {
                error: PathError::Nul,
                path: path.into()
            },
            "{path}"
        );
    }
    // Escaped slashes are decoded before, and stay decoded.
    let decoding = PathNormalization {
        escaped_slashes: EscapedSlashes::UnescapeAndForward,
        ..NORMALIZE
    };
    assert_eq!(
        decoding.apply("/x%2F..%2F%00"),
        Normalized::Reject {
            error: PathError::Nul,
            path: "/x/../%00".into()
        }
    );
    // Without normalize_path it is forwarded as sent.
    assert_eq!(forwarded(MERGE, "/a%00b"), "/a%00b");
}

#[test]
fn merge_slashes_as_envoy_does() {
    let cases = [
        ("//a//b", "/a/b"),
        ("//", "//"),
        ("///", "//"),
        ("/a//", "/a/"),
        ("//a", "/a"),
        ("/a/b//", "/a/b/"),
        ("/a/b", "/a/b"),
        ("/a//b?x=//y", "/a/b?x=//y"),
        ("/a//../b", "/a/../b"),
    ];
    for (path, want) in cases {
        assert_eq!(forwarded(MERGE, path), want, "{path}");
    }
    // After normalization, so a dot segment cannot leave a double slash.
    assert_eq!(forwarded(BOTH, "/a/b/..//c"), "/a/c");
    assert_eq!(forwarded(BOTH, "/a//../b"), "/a/b");
    assert_eq!(forwarded(BOTH, "/a/..//"), "//");
}

#[test]
fn escaped_slashes_as_envoy_does() {
    let with = |escaped_slashes, normalize, merge_slashes| PathNormalization {
        normalize,
        merge_slashes,
        escaped_slashes,
    };
    use EscapedSlashes::*;
    let forward = with(UnescapeAndForward, true, false);
    let forward_only = with(UnescapeAndForward, false, false);
    let decode_and_merge = with(UnescapeAndForward, true, true);
    let redirect = with(UnescapeAndRedirect, true, false);
    let redirect_merge = with(UnescapeAndRedirect, false, true);
    let reject = with(Reject, true, false);
    let keep = with(Keep, false, false);
    let cases: &[(PathNormalization, &str, Normalized)] = &[
        (forward, "/a%2Fb", Normalized::Continue("/a/b".into())),
        (forward, "/a%5cb", Normalized::Continue("/a/b".into())),
        (forward_only, "/a%5Cb", Normalized::Continue("/a\\b".into())),
        (
            forward_only,
            "/a%2F..%2Fb",
            Normalized::Continue("/a/../b".into()),
        ),
        (
            forward,
            "/x/a%2F..%2Fb",
            Normalized::Continue("/x/b".into()),
        ),
        (
            forward,
            "/a%2f%2fb?q=%2F",
            Normalized::Continue("/a//b?q=%2F".into()),
        ),
        (
            decode_and_merge,
            "/a%2f%2fb?q=%2F",
            Normalized::Continue("/a/b?q=%2F".into()),
        ),
        (forward, "/a%252F", Normalized::Continue("/a%252F".into())),
        (redirect, "/a%2Fb", Normalized::Redirect("/a/b".into())),
        (redirect, "/a%2F..%2Fb", Normalized::Redirect("/b".into())),
        (redirect, "/plain/../x", Normalized::Continue("/x".into())),
        (
            redirect,
            "/a/b?q=%2f",
            Normalized::Continue("/a/b?q=%2f".into()),
        ),
        (
            redirect_merge,
            "/a%5Cb",
            Normalized::Redirect("/a\\b".into()),
        ),
        (
            redirect_merge,
            "/a%2f%2fb?q=%2F",
            Normalized::Redirect("/a/b?q=%2F".into()),
        ),
        (
            reject,
            "/a%2fb?q=%2f",
            Normalized::Reject {
                error: PathError::EscapedSlash,
                path: "/a/b?q=%2f".into(),
            },
        ),
        (
            reject,
            "/a%5Cb",
            Normalized::Reject {
                error: PathError::EscapedSlash,
                path: "/a\\b".into(),
            },
        ),
        (
            reject,
            "/a/b?q=%2f",
            Normalized::Continue("/a/b?q=%2f".into()),
        ),
        (keep, "/a%2Fb", Normalized::Continue("/a%2Fb".into())),
    ];
    for (n, path, want) in cases {
        assert_eq!(&n.apply(path), want, "{path} with {n:?}");
    }
    assert!(keep.is_noop());
    assert!(!forward_only.is_noop());
}

#[test]
fn unescape_keeps_other_text_whole() {
    assert_eq!(unescape_slashes("/é%2f€%5C"), Some("/é/€\\".into()));
    assert_eq!(unescape_slashes("/a%2"), None);
    assert_eq!(unescape_slashes("%2"), None);
    assert_eq!(unescape_slashes("%"), None);
    assert_eq!(unescape_slashes("/%%2F"), Some("/%/".into()));
}

/// What the fuzz target checks, on stable: any input gives an answer;
/// a canonical path starts with a slash, is ASCII, and has no dot
/// segment left; the query is never touched.
fn check(input: &str) {
    if let Ok(p) = canonicalize(input) {
        assert!(p.starts_with('/'), "{input:?} -> {p:?}");
        assert!(p.is_ascii(), "{input:?} -> {p:?}");
        assert!(
            !p.split('/').any(|s| s == "." || s == ".."),
            "{input:?} -> {p:?}"
        );
    }
    let _ = merge_slashes(input);
    let _ = unescape_slashes(input);
    for escaped_slashes in [
        EscapedSlashes::Keep,
        EscapedSlashes::Reject,
        EscapedSlashes::UnescapeAndRedirect,
        EscapedSlashes::UnescapeAndForward,
    ] {
        for (normalize, merge_slashes) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            let n = PathNormalization {
                normalize,
                merge_slashes,
                escaped_slashes,
            };
            let query = input.find('?').map(|i| &input[i..]);
            match n.apply(input) {
                Normalized::Continue(p) | Normalized::Redirect(p) => {
                    if let Some(q) = query {
                        assert!(p.ends_with(q), "{input:?} -> {p:?}");
                    }
                }
                Normalized::Reject { .. } => {}
            }
        }
    }
}

#[test]
fn random_paths_never_panic() {
    fastrand::seed(11);
    const ALPHABET: &[u8] = b"/\\.%2eEfFcC05a?#;\0 \x7f";
    for _ in 0..20_000 {
        let len = fastrand::usize(0..24);
        let bytes: Vec<u8> = (0..len)
            .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())])
            .collect();
        check(&String::from_utf8_lossy(&bytes));
    }
    for _ in 0..2_000 {
        let len = fastrand::usize(0..16);
        let s: String = (0..len).map(|_| fastrand::char(..)).collect();
        check(&s);
    }
}
