//! Host name patterns as Istio compares them: exact names, `*` and
//! `*.suffix` wildcards. Validation, analysis and (later) translation
//! all ask the same two questions, so the answer lives here once.

/// Whether `pattern` covers every name `host` can stand for: `*` covers
/// everything, `*.a.com` covers `b.a.com` and the narrower wildcard
/// `*.b.a.com` (and itself), an exact name covers only itself.
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        // `host.len() > suffix.len()` keeps `*.a.com` from covering `.a.com`;
        // a wildcard `host` ends with the suffix only when it is narrower.
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => false,
    }
}

/// Whether two patterns can match a common name (Istio's `Name.Matches`).
pub fn overlap(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_table() {
        let cases = [
            ("*", "anything.example", true),
            ("*", "*.example", true),
            ("a.com", "a.com", true),
            ("a.com", "b.com", false),
            ("*.a.com", "b.a.com", true),
            ("*.a.com", "c.b.a.com", true),
            ("*.a.com", "*.b.a.com", true),
            ("*.a.com", "*.a.com", true),
            ("*.a.com", "a.com", false),
            ("*.a.com", ".a.com", false),
            ("*.b.a.com", "*.a.com", false),
            ("b.a.com", "*.a.com", false),
            ("*.com", "*", false),
        ];
        for (p, h, want) in cases {
            assert_eq!(covers(p, h), want, "covers({p:?}, {h:?})");
        }
    }

    #[test]
    fn overlap_is_symmetric() {
        for (a, b, want) in [
            ("*.a.com", "b.a.com", true),
            ("foo.com", "*.com", true),
            ("*.a.com", "*.b.com", false),
            ("a.com", "b.com", false),
        ] {
            assert_eq!(overlap(a, b), want, "overlap({a:?}, {b:?})");
            assert_eq!(overlap(b, a), want, "overlap({b:?}, {a:?})");
        }
    }
}
