//! Path normalization as Envoy's HTTP connection manager does it, before
//! routing and before any HTTP filter (so RBAC and route matching see the
//! path that is forwarded): escaped slashes (`path_with_escaped_slashes_action`),
//! then `normalize_path`, then `merge_slashes`. Only the path is touched;
//! a query string goes on as it came.
//!
//! `normalize_path` is Envoy's canonicalization (the URL path rules
//! browsers use), measured against Envoy 1.40:
//! - dot segments (`.` and `..`, also spelled `%2e`, either case) are
//!   removed as RFC 3986 says; `..` never climbs above the root;
//! - a backslash is a slash;
//! - `%XX` of an unreserved character (letters, digits, `-._~`) is
//!   decoded; any other valid escape is kept exactly as sent (its hex
//!   digits' case too); an invalid one (`%zz`, a lone `%`) is kept;
//! - `%00` fails the request (400);
//! - `"`, `<`, `>`, `^`, `` ` ``, `{`, `|`, `}`, controls, space and
//!   non-ASCII bytes are percent-encoded (upper-case hex); every other
//!   character is kept.
//!
//! `merge_slashes` joins the path's non-empty segments with one slash,
//! keeping a leading and a trailing one (so `//` stays `//`, as in Envoy).

use std::borrow::Cow;

/// How the connection manager treats `%2F`, `%2f`, `%5C` and `%5c` in a
/// path (Envoy's `PathWithEscapedSlashesAction`; its implementation
/// default is [`EscapedSlashes::Keep`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    #[default]
    Keep,
    /// A path with one is refused (400).
    Reject,
    /// Decoded (`/` and `\`), then the client is redirected (307) to the
    /// path as normalization leaves it.
    UnescapeAndRedirect,
    /// Decoded, and the request goes on.
    UnescapeAndForward,
}

/// A connection manager's path settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathNormalization {
    pub normalize: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

/// What becomes of a request's path.
#[derive(Debug, PartialEq, Eq)]
pub enum Normalized {
    /// The path (with its query) to route, check and forward.
    Continue(String),
    /// Redirect the client (307) to this path (with its query).
    Redirect(String),
    /// Refuse the request (400). `path` is the path (with query) as far
    /// as normalization got, which is what Envoy then logs.
    Reject { error: PathError, path: String },
}

/// Why a path was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path has an escaped slash or backslash")]
    EscapedSlash,
    #[error("the path has a NUL (escaped as %00)")]
    Nul,
}

impl PathNormalization {
    /// Nothing to do for any path.
    pub fn is_noop(&self) -> bool {
        !self.normalize
            && !self.merge_slashes
            && matches!(self.escaped_slashes, EscapedSlashes::Keep)
    }

    /// Normalizes `path_and_query` (an origin-form request target).
    pub fn apply(&self, path_and_query: &str) -> Normalized {
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        let mut path = Cow::Borrowed(path);
        let mut redirect = false;
        if self.escaped_slashes != EscapedSlashes::Keep {
            if let Some(unescaped) = unescape_slashes(&path) {
                if self.escaped_slashes == EscapedSlashes::Reject {
                    return Normalized::Reject {
                        error: PathError::EscapedSlash,
                        path: format!("{unescaped}{query}"),
                    };
                }
                redirect = self.escaped_slashes == EscapedSlashes::UnescapeAndRedirect;
                path = Cow::Owned(unescaped);
            }
        }
        if self.normalize {
            match canonicalize(&path) {
                Ok(p) => path = Cow::Owned(p),
                Err(error) => {
                    return Normalized::Reject {
                        error,
                        path: format!("{path}{query}"),
                    }
                }
            }
        }
        if self.merge_slashes {
            let merged = match merge_slashes(&path) {
                Cow::Owned(p) => Some(p),
                Cow::Borrowed(_) => None,
            };
            if let Some(p) = merged {
                path = Cow::Owned(p);
            }
        }
        let whole = format!("{path}{query}");
        if redirect {
            Normalized::Redirect(whole)
        } else {
            Normalized::Continue(whole)
        }
    }
}

/// `%2F`/`%2f` decoded to `/` and `%5C`/`%5c` to `\`, left to right;
/// `None` when the path has none.
pub fn unescape_slashes(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut found = false;
    let mut i = 0;
    while i < b.len() {
        let decoded = match b.get(i..i + 3) {
            Some([b'%', b'2', b'f' | b'F']) => Some('/'),
            Some([b'%', b'5', b'c' | b'C']) => Some('\\'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                found = true;
                i += 3;
            }
            None => {
                // Copy up to the next '%' in one go (the path is UTF-8,
                // and '%' is ASCII, so the cut is on a boundary).
                let next = b[i + 1..]
                    .iter()
                    .position(|&c| c == b'%')
                    .map_or(b.len(), |p| i + 1 + p);
                out.push_str(&path[i..next]);
                i = next;
            }
        }
    }
    found.then_some(out)
}

/// Adjacent slashes merged: the non-empty segments joined by one slash,
/// with a leading and a trailing slash kept. Borrowed when there are
/// none to merge.
pub fn merge_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    let mut first = true;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if !first {
            out.push('/');
        }
        out.push_str(segment);
        first = false;
    }
    if path.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// What canonicalization does with a byte of the path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Copied as it is.
    Keep,
    /// Copied, and decoded when it arrives escaped.
    Unreserved,
    /// Percent-encoded.
    Escape,
}

fn class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Class::Unreserved,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'/' | b':' | b';'
        | b'=' | b'@' | b'[' | b'\\' | b']' | b'%' => Class::Keep,
        _ => Class::Escape,
    }
}

/// The length of a dot at `i` (`.` is 1, `%2e` or `%2E` is 3), or 0.
fn dot_at(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'.') => 1,
        Some(b'%') if matches!(b.get(i + 1..i + 3), Some([b'2', b'e' | b'E'])) => 3,
        _ => 0,
    }
}

fn is_slash(b: Option<&u8>) -> bool {
    matches!(b, Some(b'/' | b'\\'))
}

/// What a dot that starts a segment begins.
enum Segment {
    /// `.`: the input to skip after the dot (its slash, if any).
    Current(usize),
    /// `..`: the input to skip after the first dot.
    Parent(usize),
    /// A name that starts with a dot.
    Name,
}

fn after_dot(b: &[u8], at: usize) -> Segment {
    if at == b.len() {
        return Segment::Current(0);
    }
    if is_slash(b.get(at)) {
        return Segment::Current(1);
    }
    let second = dot_at(b, at);
    if second == 0 {
        return Segment::Name;
    }
    let end = at + second;
    if end == b.len() {
        Segment::Parent(second)
    } else if is_slash(b.get(end)) {
        Segment::Parent(second + 1)
    } else {
        Segment::Name
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Envoy's `normalize_path` of a path (without its query): see the
/// module's documentation. The result starts with `/` and is ASCII.
pub fn canonicalize(path: &str) -> Result<String, PathError> {
    let b = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 1);
    if !is_slash(b.first()) {
        out.push(b'/');
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let dot = dot_at(b, i);
        if dot > 0 {
            if out.last() == Some(&b'/') {
                match after_dot(b, i + dot) {
                    Segment::Current(skip) => {
                        i += dot + skip;
                        continue;
                    }
                    Segment::Parent(skip) => {
                        back_up(&mut out);
                        i += dot + skip;
                        continue;
                    }
                    Segment::Name => {}
                }
            }
            out.push(b'.');
            i += dot;
            continue;
        }
        match c {
            b'\\' => out.push(b'/'),
            b'%' => {
                let decoded = match (b.get(i + 1), b.get(i + 2)) {
                    (Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                match decoded {
                    Some(0) => return Err(PathError::Nul),
                    Some(v) if class(v) == Class::Unreserved => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Some(_) => {
                        out.extend_from_slice(&b[i..i + 3]);
                        i += 3;
                        continue;
                    }
                    // Not an escape: the '%' stays, and what follows is
                    // read on its own.
                    None => out.push(b'%'),
                }
            }
            0 => return Err(PathError::Nul),
            c if class(c) == Class::Escape => push_escaped(&mut out, c),
            c => out.push(c),
        }
        i += 1;
    }
    // Only ASCII was pushed: every other byte was escaped.
    Ok(out.into_iter().map(char::from).collect())
}

/// Removes the output's last segment: `out` ends with a slash; it is cut
/// back to the slash before (never past the first).
fn back_up(out: &mut Vec<u8>) {
    let Some(last) = out.len().checked_sub(1) else {
        return;
    };
    if last == 0 {
        return;
    }
    let keep = out[..last]
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(1, |p| p + 1);
    out.truncate(keep);
}

#[cfg(test)]
#[path = "path_norm_tests.rs"]
mod tests;
