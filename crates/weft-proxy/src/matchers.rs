//! Matching on requests, shared by routes, retries, faults, CORS and
//! hashing: Envoy's string and header matchers, the view of a request
//! they read, and path rewriting. The bottom floor of the request path:
//! it knows nothing of routes or filters.

use http::HeaderMap;
use regex::Regex;
use weft_envoy::route as cfg;

#[derive(Debug)]
enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug)]
pub(crate) struct StringMatcher {
    m: StrMatch,
    ignore_case: bool,
}

impl StringMatcher {
    pub(crate) fn compile(s: &weft_envoy::StringMatcher) -> Result<Self, String> {
        let fold = |v: &String| {
            if s.ignore_case {
                v.to_ascii_lowercase()
            } else {
                v.clone()
            }
        };
        let m = if let Some(v) = &s.exact {
            StrMatch::Exact(fold(v))
        } else if let Some(v) = &s.prefix {
            StrMatch::Prefix(fold(v))
        } else if let Some(v) = &s.suffix {
            StrMatch::Suffix(fold(v))
        } else if let Some(v) = &s.contains {
            StrMatch::Contains(fold(v))
        } else if let Some(r) = &s.safe_regex {
            StrMatch::Regex(full_regex(&r.regex)?)
        } else {
            return Err(
                "a string matcher needs exact, prefix, suffix, contains or safe_regex".into(),
            );
        };
        Ok(StringMatcher {
            m,
            ignore_case: s.ignore_case,
        })
    }

    /// The literal a case-sensitive exact or prefix match compares
    /// with, for indexes that look values up instead of testing each
    /// matcher.
    pub(crate) fn literal(&self) -> Option<Literal<'_>> {
        if self.ignore_case {
            return None;
        }
        match &self.m {
            StrMatch::Exact(v) => Some(Literal::Exact(v)),
            StrMatch::Prefix(v) => Some(Literal::Prefix(v)),
            _ => None,
        }
    }

    pub(crate) fn matches(&self, v: &str) -> bool {
        if let StrMatch::Regex(r) = &self.m {
            return r.is_match(v);
        }
        // Patterns are lowercased at compile time when ignore_case is set,
        // so only the value needs folding, and only then.
        let folded;
        let v = if self.ignore_case {
            folded = v.to_ascii_lowercase();
            folded.as_str()
        } else {
            v
        };
        match &self.m {
            StrMatch::Exact(x) => v == x,
            StrMatch::Prefix(x) => v.starts_with(x.as_str()),
            StrMatch::Suffix(x) => v.ends_with(x.as_str()),
            StrMatch::Contains(x) => v.contains(x.as_str()),
            StrMatch::Regex(_) => unreachable!("handled above"),
        }
    }
}

/// What a header or query parameter must be: a value matching, or
/// present (or absent).
#[derive(Debug)]
pub(crate) enum HeaderTest {
    Value(StringMatcher),
    Present(bool),
}

/// A case-sensitive exact or prefix pattern ([`StringMatcher::literal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Literal<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

/// What a header matcher reads: a header, or one of the HTTP/2
/// pseudo-headers Envoy exposes to matchers for every protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HeaderKey {
    Header(http::HeaderName),
    Method,
    Authority,
    Path,
    Scheme,
}

impl HeaderKey {
    /// Each value a header matcher on this key tests, as
    /// [`HeaderMatch::matches`] reads them: every UTF-8 value of a
    /// header sent more than once, a pseudo-header when it is not empty.
    pub(crate) fn for_each_value<'a>(&self, req: &RequestView<'a>, mut f: impl FnMut(&'a str)) {
        let single = match self {
            HeaderKey::Header(name) => {
                for v in req.headers.get_all(name) {
                    if let Ok(v) = v.to_str() {
                        f(v);
                    }
                }
                return;
            }
            HeaderKey::Method => req.method,
            HeaderKey::Authority => req.authority,
            HeaderKey::Path => req.path_and_query,
            HeaderKey::Scheme => req.scheme,
        };
        if !single.is_empty() {
            f(single);
        }
    }
}

/// The parts of a request route matching reads.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// Host header or `:authority`, as received.
    pub authority: &'a str,
    pub scheme: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

#[derive(Debug)]
pub(crate) struct HeaderMatch {
    name: HeaderKey,
    test: HeaderTest,
    invert: bool,
    missing_as_empty: bool,
}

/// A regex rewrite ready to apply: the pattern, and the substitution with
/// RE2's `\1` references turned into the `${1}` the regex crate expects.
pub(crate) fn compile_rewrite(rr: &cfg::RegexRewrite) -> Result<(Regex, String), String> {
    let pattern = Regex::new(&rr.pattern.regex).map_err(|e| e.to_string())?;
    let backref = Regex::new(r"\\(\d)").expect("a valid literal pattern");
    let substitution = backref.replace_all(&rr.substitution, "$${$1}").into_owned();
    Ok((pattern, substitution))
}

/// Envoy's safe_regex must match the whole value.
pub(crate) fn full_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

impl HeaderMatch {
    pub(crate) fn compile(h: &cfg::HeaderMatcher) -> Result<Self, String> {
        let sm = |m: StrMatch| {
            HeaderTest::Value(StringMatcher {
                m,
                ignore_case: false,
            })
        };
        let test = if let Some(v) = &h.exact_match {
            sm(StrMatch::Exact(v.clone()))
        } else if let Some(r) = &h.safe_regex_match {
            sm(StrMatch::Regex(full_regex(&r.regex)?))
        } else if let Some(p) = h.present_match {
            HeaderTest::Present(p)
        } else if let Some(v) = &h.prefix_match {
            sm(StrMatch::Prefix(v.clone()))
        } else if let Some(v) = &h.suffix_match {
            sm(StrMatch::Suffix(v.clone()))
        } else if let Some(v) = &h.contains_match {
            sm(StrMatch::Contains(v.clone()))
        } else if let Some(s) = &h.string_match {
            HeaderTest::Value(StringMatcher::compile(s)?)
        } else {
            HeaderTest::Present(true)
        };
        let lower = h.name.to_ascii_lowercase();
        let name = match lower.as_str() {
            ":method" => HeaderKey::Method,
            ":authority" | "host" => HeaderKey::Authority,
            ":path" => HeaderKey::Path,
            ":scheme" => HeaderKey::Scheme,
            _ => HeaderKey::Header(
                http::HeaderName::from_bytes(lower.as_bytes())
                    .map_err(|_| format!("invalid header name {:?}", h.name))?,
            ),
        };
        Ok(HeaderMatch {
            name,
            test,
            invert: h.invert_match,
            missing_as_empty: h.treat_missing_header_as_empty,
        })
    }

    pub(crate) fn matches(&self, req: &RequestView) -> bool {
        fn pseudo(v: &str) -> Option<&str> {
            (!v.is_empty()).then_some(v)
        }
        let single = match &self.name {
            HeaderKey::Header(name) => {
                // A header sent more than once matches when any one of its
                // values does (Envoy does not join them for matching).
                let mut values = req
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .peekable();
                if values.peek().is_some() {
                    return values.any(|v| self.test_value(v)) != self.invert;
                }
                None
            }
            HeaderKey::Method => pseudo(req.method),
            HeaderKey::Authority => pseudo(req.authority),
            HeaderKey::Path => pseudo(req.path_and_query),
            HeaderKey::Scheme => pseudo(req.scheme),
        };
        match single {
            Some(v) => self.test_value(v) != self.invert,
            None => self.when_missing(),
        }
    }

    /// For an exact, case-sensitive value match that fails on a missing
    /// header: the header, the value, and whether the match is inverted.
    /// An index reads it as "matches only if some value is this one"
    /// (or, inverted, "never if some value is").
    pub(crate) fn literal(&self) -> Option<(&HeaderKey, &str, bool)> {
        match &self.test {
            HeaderTest::Value(m) if !self.missing_as_empty => match m.literal() {
                Some(Literal::Exact(v)) => Some((&self.name, v, self.invert)),
                _ => None,
            },
            _ => None,
        }
    }

    fn test_value(&self, v: &str) -> bool {
        match &self.test {
            HeaderTest::Present(p) => *p,
            HeaderTest::Value(m) => m.matches(v),
        }
    }

    /// A missing header fails a value match whether inverted or not,
    /// unless it is to be treated as empty.
    fn when_missing(&self) -> bool {
        match &self.test {
            // Absent: matches `present_match: false`, or true when inverted.
            HeaderTest::Present(p) => *p == self.invert,
            HeaderTest::Value(m) if self.missing_as_empty => m.matches("") != self.invert,
            HeaderTest::Value(_) => false,
        }
    }
}

/// A path (with query) after a prefix or regex rewrite; the query is
/// kept as it was.
pub(crate) fn rewrite_path(
    path: &str,
    prefix: Option<&str>,
    new_prefix: Option<&str>,
    regex: Option<&(regex::Regex, String)>,
) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out = p.to_string();
    if let (Some(old), Some(new)) = (prefix, new_prefix) {
        if p.len() >= old.len() {
            out = format!("{new}{}", &p[old.len()..]);
        }
    } else if let Some((re, sub)) = regex {
        out = re.replace_all(p, sub.as_str()).into_owned();
    }
    match q {
        Some(q) => format!("{out}?{q}"),
        None => out,
    }
}
