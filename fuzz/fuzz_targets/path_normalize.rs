//! A request path from a client, normalized as the connection manager
//! does it under every setting: any input gives an answer, never a
//! panic; a canonical path starts with a slash, is ASCII and keeps no
//! dot segment; the query is never touched.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_proxy::path_norm::{
    canonicalize, merge_slashes, unescape_slashes, EscapedSlashes, Normalized, PathNormalization,
};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = canonicalize(input) {
        assert!(p.starts_with('/') && p.is_ascii(), "{input:?} -> {p:?}");
        assert!(
            !p.split('/').any(|s| s == "." || s == ".."),
            "{input:?} -> {p:?}"
        );
    }
    let _ = merge_slashes(input);
    let _ = unescape_slashes(input);
    let query = input.find('?').map(|i| &input[i..]);
    for escaped_slashes in [
        EscapedSlashes::Keep,
        EscapedSlashes::Reject,
        EscapedSlashes::UnescapeAndRedirect,
        EscapedSlashes::UnescapeAndForward,
    ] {
        for normalize in [false, true] {
            for merge in [false, true] {
                let n = PathNormalization {
                    normalize,
                    merge_slashes: merge,
                    escaped_slashes,
                };
                let (Normalized::Continue(p)
                | Normalized::Redirect(p)
                | Normalized::Reject { path: p, .. }) = n.apply(input);
                if let Some(q) = query {
                    assert!(p.ends_with(q), "{input:?} -> {p:?}");
                }
            }
        }
    }
});
