//! Envoy's `SubstitutionFormatString` for access logs: a text or JSON
//! format parsed once, when the listener compiles, into pieces (literal
//! text and command operators such as `%REQ(:PATH)%`), then rendered for
//! each logged [`Entry`] without parsing again.
//!
//! Text prints `-` for an empty value (nothing with `omit_empty_values`).
//! JSON types a value that is one operator alone: numbers for codes,
//! byte counts and durations, `null` for empty (the key left out with
//! `omit_empty_values`); anything else is a string. Keys come out sorted,
//! as Envoy prints them.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::Value;
use weft_envoy::access_log::SubstitutionFormatString;

use super::Entry;
use crate::error::CompileError;

/// Envoy's format when an access log sets none.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// A compiled format.
#[derive(Debug)]
pub struct Format {
    kind: Kind,
    omit_empty: bool,
}

#[derive(Debug)]
enum Kind {
    Text(Template),
    /// Keys sorted.
    Json(Vec<(String, Field)>),
}

#[derive(Debug)]
enum Field {
    Template(Template),
    Nested(Vec<(String, Field)>),
    /// A number, boolean or null in the Struct, printed as it is.
    Literal(Value),
}

#[derive(Debug, Default)]
struct Template(Vec<Piece>);

#[derive(Debug)]
enum Piece {
    Text(String),
    Op(Op),
}

#[derive(Debug)]
struct Op {
    what: What,
    max_len: Option<usize>,
}

/// A command operator.
#[derive(Debug)]
enum What {
    StartTime(Option<Vec<TimePart>>),
    /// A request header, with the one to read when it is missing.
    Req(String, Option<String>),
    /// As `Req`, without the query string.
    ReqWithoutQuery(String, Option<String>),
    Resp(String, Option<String>),
    Trailer(String, Option<String>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    RequestedServerName,
    RouteName,
}

/// A piece of a `%START_TIME(...)%` format (strftime-like).
#[derive(Debug, Clone)]
enum TimePart {
    Text(String),
    Year,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Seconds since the epoch (`%s`).
    Epoch,
    /// Seconds with `n` fraction digits (`%E<n>S`).
    SecondFrac(usize),
    /// `n` fraction digits of the second (`%<n>f`, `%f` = 9).
    Frac(usize),
    DayOfYear,
    /// `+0000`: times are UTC.
    Offset,
    Zone,
}

/// One operator's value for an entry.
enum Val<'a> {
    Empty,
    Str(Cow<'a, str>),
    Num(u64),
}

fn err(field: &str, message: String) -> CompileError {
    CompileError::Config {
        field: field.to_string(),
        message,
    }
}

impl Format {
    /// Envoy's default text format.
    pub fn default_text() -> Format {
        Format {
            kind: Kind::Text(
                parse(DEFAULT_FORMAT, "", Operators::default()).expect("the default format parses"),
            ),
            omit_empty: false,
        }
    }

    /// Compiles a text format string (`at` names the field in errors).
    pub fn text(at: &str, text: &str) -> Result<Format, CompileError> {
        Ok(Format {
            kind: Kind::Text(parse(text, at, Operators::default())?),
            omit_empty: false,
        })
    }

    /// Compiles a `SubstitutionFormatString` at the field `at`.
    pub fn compile(at: &str, f: &SubstitutionFormatString) -> Result<Format, CompileError> {
        let mut ops = Operators::default();
        for (i, x) in f.formatters.iter().enumerate() {
            match &x.typed_config {
                Some(weft_envoy::TypedConfig::ReqWithoutQuery) => ops.req_without_query = true,
                _ => {
                    return Err(err(
                        &format!("{at}.formatters[{i}]"),
                        "only envoy.formatter.req_without_query is implemented by weft".into(),
                    ))
                }
            }
        }
        let source = f.text_format_source.as_ref().map(|s| {
            let refused = [
                ("inline_bytes", s.inline_bytes.is_some()),
                ("filename", s.filename.is_some()),
                ("environment_variable", s.environment_variable.is_some()),
            ];
            match refused.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(err(
                    &format!("{at}.text_format_source.{name}"),
                    "not implemented by weft yet (inline_string is)".into(),
                )),
                None => s.inline_string.as_deref().ok_or_else(|| {
                    err(
                        &format!("{at}.text_format_source"),
                        "needs inline_string".into(),
                    )
                }),
            }
        });
        let kind = match (&f.text_format, source, &f.json_format) {
            (Some(t), None, None) => Kind::Text(parse(t, &format!("{at}.text_format"), ops)?),
            (None, Some(t), None) => Kind::Text(parse(
                t?,
                &format!("{at}.text_format_source.inline_string"),
                ops,
            )?),
            (None, None, Some(j)) => Kind::Json(json_fields(j, &format!("{at}.json_format"), ops)?),
            (None, None, None) => {
                return Err(err(
                    at,
                    "needs one of text_format, text_format_source, json_format".into(),
                ))
            }
            _ => {
                return Err(err(
                    at,
                    "text_format, text_format_source and json_format are exclusive".into(),
                ))
            }
        };
        // `content_type` only matters to local replies; Envoy's access
        // logs ignore it, and `sort_properties` changes nothing here
        // since keys are always printed sorted, as Envoy prints them.
        Ok(Format {
            kind,
            omit_empty: f.omit_empty_values,
        })
    }

    /// The line for one entry (JSON lines end with a newline; a text
    /// format has one only if it says so).
    pub fn render(&self, e: &Entry) -> String {
        let mut out = String::with_capacity(256);
        match &self.kind {
            Kind::Text(t) => t.text(e, self.omit_empty, &mut out),
            Kind::Json(fields) => {
                json_object(fields, e, self.omit_empty, &mut out);
                out.push('\n');
            }
        }
        out
    }
}

fn json_fields(
    m: &serde_json::Map<String, Value>,
    at: &str,
    ops: Operators,
) -> Result<Vec<(String, Field)>, CompileError> {
    let mut fields = Vec::with_capacity(m.len());
    for (k, v) in m {
        let here = format!("{at}.{k}");
        let f = match v {
            Value::String(s) => Field::Template(parse(s, &here, ops)?),
            Value::Object(o) => Field::Nested(json_fields(o, &here, ops)?),
            Value::Array(_) => {
                return Err(err(
                    &here,
                    "lists in json_format are not implemented by weft yet".into(),
                ))
            }
            other => Field::Literal(other.clone()),
        };
        fields.push((k.clone(), f));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(fields)
}

fn json_object(fields: &[(String, Field)], e: &Entry, omit_empty: bool, out: &mut String) {
    out.push('{');
    let mut first = true;
    for (k, f) in fields {
        let start = out.len();
        if !first {
            out.push(',');
        }
        json_string(k, out);
        out.push(':');
        let written = match f {
            Field::Literal(v) => {
                out.push_str(&v.to_string());
                true
            }
            Field::Nested(n) => {
                json_object(n, e, omit_empty, out);
                true
            }
            Field::Template(t) => match t.0.as_slice() {
                [Piece::Op(op)] => match op.value(e) {
                    Val::Empty if omit_empty => false,
                    Val::Empty => {
                        out.push_str("null");
                        true
                    }
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                        true
                    }
                    Val::Str(s) => {
                        json_string(&s, out);
                        true
                    }
                },
                _ => {
                    let mut s = String::new();
                    t.text(e, omit_empty, &mut s);
                    json_string(&s, out);
                    true
                }
            },
        };
        if written {
            first = false;
        } else {
            out.truncate(start);
        }
    }
    out.push('}');
}

fn json_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

impl Template {
    fn text(&self, e: &Entry, omit_empty: bool, out: &mut String) {
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Op(op) => match op.value(e) {
                    Val::Empty if omit_empty => {}
                    Val::Empty => out.push('-'),
                    Val::Str(s) => out.push_str(&s),
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                },
            }
        }
    }
}

/// Parses a format string as Envoy does: `%%` is a `%`, every other `%`
/// opens a command `%NAME(ARG):LEN%`, and an unknown one is refused.
fn parse(s: &str, at: &str, ops: Operators) -> Result<Template, CompileError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with("%%") {
            text.push('%');
            rest = &rest[2..];
            continue;
        }
        let (op, len) = command(rest).ok_or_else(|| {
            err(
                at,
                format!(
                    "no valid command operator at position {} of {s:?}",
                    s.len() - rest.len()
                ),
            )
        })?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Op(operator(op, at, ops)?));
        rest = &rest[len..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(Template(pieces))
}

/// A command at the start of `s` (Envoy's
/// `%([A-Z]|[0-9]|_)+(\([^\)]*\))?(:[0-9]+)?%`): its parts and length.
fn command(s: &str) -> Option<(RawOp<'_>, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i == 1 {
        return None;
    }
    let name = &s[1..i];
    let mut arg = None;
    if b.get(i) == Some(&b'(') {
        let close = s[i..].find(')')? + i;
        arg = Some(&s[i + 1..close]);
        i = close + 1;
    }
    let mut len = None;
    if b.get(i) == Some(&b':') {
        let digits = s[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        len = Some(s[i + 1..i + 1 + digits].parse().ok()?);
        i += 1 + digits;
    }
    if b.get(i) != Some(&b'%') {
        return None;
    }
    Some((RawOp { name, arg, len }, i + 1))
}

struct RawOp<'a> {
    name: &'a str,
    arg: Option<&'a str>,
    len: Option<usize>,
}

/// The operators formatter extensions add.
#[derive(Debug, Default, Clone, Copy)]
struct Operators {
    req_without_query: bool,
}

fn operator(raw: RawOp<'_>, at: &str, ops: Operators) -> Result<Op, CompileError> {
    let RawOp { name, arg, len } = raw;
    let header = |arg: Option<&str>| -> Result<(String, Option<String>), CompileError> {
        let arg = arg
            .filter(|a| !a.is_empty())
            .ok_or_else(|| err(at, format!("%{name}% needs a header name: %{name}(X)%")))?;
        let mut parts = arg.split('?');
        let main = parts.next().unwrap_or_default().to_ascii_lowercase();
        let alt = parts.next().map(str::to_ascii_lowercase);
        if parts.next().is_some() || main.is_empty() || alt.as_deref() == Some("") {
            return Err(err(
                at,
                format!("%{name}({arg})%: more than one alternative header"),
            ));
        }
        Ok((main, alt))
    };
    let what = match name {
        "REQ" => {
            let (h, alt) = header(arg)?;
            What::Req(h, alt)
        }
        "REQ_WITHOUT_QUERY" if ops.req_without_query => {
            let (h, alt) = header(arg)?;
            What::ReqWithoutQuery(h, alt)
        }
        "REQ_WITHOUT_QUERY" => {
            return Err(err(
                at,
                "%REQ_WITHOUT_QUERY% needs the formatter envoy.formatter.req_without_query".into(),
            ))
        }
        "RESP" => {
            let (h, alt) = header(arg)?;
            What::Resp(h, alt)
        }
        "TRAILER" => {
            let (h, alt) = header(arg)?;
            What::Trailer(h, alt)
        }
        "START_TIME" => What::StartTime(match arg {
            None | Some("") => None,
            Some(f) => {
                Some(time_format(f).map_err(|m| err(at, format!("%START_TIME({f})%: {m}")))?)
            }
        }),
        _ => {
            let what = match name {
                "PROTOCOL" => What::Protocol,
                "RESPONSE_CODE" => What::ResponseCode,
                "RESPONSE_FLAGS" => What::ResponseFlags,
                "RESPONSE_CODE_DETAILS" => What::ResponseCodeDetails,
                "CONNECTION_TERMINATION_DETAILS" => What::ConnectionTerminationDetails,
                "UPSTREAM_TRANSPORT_FAILURE_REASON" => What::UpstreamTransportFailureReason,
                "BYTES_RECEIVED" => What::BytesReceived,
                "BYTES_SENT" => What::BytesSent,
                "DURATION" => What::Duration,
                "UPSTREAM_HOST" => What::UpstreamHost,
                "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => What::UpstreamCluster,
                "UPSTREAM_LOCAL_ADDRESS" => What::UpstreamLocalAddress,
                "DOWNSTREAM_LOCAL_ADDRESS" => What::DownstreamLocalAddress,
                "DOWNSTREAM_REMOTE_ADDRESS" => What::DownstreamRemoteAddress,
                "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                    What::DownstreamRemoteAddressWithoutPort
                }
                "REQUESTED_SERVER_NAME" => What::RequestedServerName,
                "ROUTE_NAME" => What::RouteName,
                _ => {
                    return Err(err(
                        at,
                        format!("command operator %{name}% is not implemented by weft yet"),
                    ))
                }
            };
            if let Some(a) = arg {
                return Err(err(at, format!("%{name}% takes no argument, got ({a})")));
            }
            what
        }
    };
    Ok(Op { what, max_len: len })
}

/// Parses a `%START_TIME(...)%` format: strftime's common specifiers,
/// with Envoy's `%s`, `%E<n>S` and `%<n>f`, in UTC.
fn time_format(f: &str) -> Result<Vec<TimePart>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        let n: Option<usize> = digits.parse().ok();
        let spec = chars.next().ok_or("a lone % at the end")?;
        let part = match (spec, n) {
            ('%', None) => {
                text.push('%');
                continue;
            }
            ('Y', None) => TimePart::Year,
            ('y', None) => TimePart::Year2,
            ('m', None) => TimePart::Month,
            ('d', None) => TimePart::Day,
            ('H', None) => TimePart::Hour,
            ('M', None) => TimePart::Minute,
            ('S', None) => TimePart::Second,
            ('s', None) => TimePart::Epoch,
            ('j', None) => TimePart::DayOfYear,
            ('z', None) => TimePart::Offset,
            ('Z', None) => TimePart::Zone,
            ('f', n) => TimePart::Frac(n.unwrap_or(9).min(9)),
            ('E', None) => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                match (chars.next(), digits.parse::<usize>()) {
                    (Some('S'), Ok(n)) => TimePart::SecondFrac(n.min(9)),
                    _ => return Err("only %E<n>S of the %E specifiers is implemented".into()),
                }
            }
            (other, _) => return Err(format!("%{other} is not implemented by weft yet")),
        };
        if !text.is_empty() {
            parts.push(TimePart::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
    }
    if !text.is_empty() {
        parts.push(TimePart::Text(text));
    }
    Ok(parts)
}

fn render_time(parts: &[TimePart], t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let c = super::civil(d.as_secs() as i64);
    let nanos = d.subsec_nanos();
    let frac = |n: usize| format!("{nanos:09}")[..n].to_string();
    let mut out = String::new();
    for p in parts {
        let _ = match p {
            TimePart::Text(s) => write!(out, "{s}"),
            TimePart::Year => write!(out, "{:04}", c.year),
            TimePart::Year2 => write!(out, "{:02}", c.year.rem_euclid(100)),
            TimePart::Month => write!(out, "{:02}", c.month),
            TimePart::Day => write!(out, "{:02}", c.day),
            TimePart::Hour => write!(out, "{:02}", c.hour),
            TimePart::Minute => write!(out, "{:02}", c.minute),
            TimePart::Second => write!(out, "{:02}", c.second),
            TimePart::Epoch => write!(out, "{}", d.as_secs()),
            TimePart::SecondFrac(0) => write!(out, "{:02}", c.second),
            TimePart::SecondFrac(n) => write!(out, "{:02}.{}", c.second, frac(*n)),
            TimePart::Frac(n) => write!(out, "{}", frac(*n)),
            TimePart::DayOfYear => write!(out, "{:03}", c.day_of_year),
            TimePart::Offset => write!(out, "+0000"),
            TimePart::Zone => write!(out, "UTC"),
        };
    }
    out
}

fn header<'a>(map: &'a http::HeaderMap, name: &str, alt: Option<&str>) -> Val<'a> {
    let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok());
    match get(name).or_else(|| alt.and_then(get)) {
        Some(v) => Val::Str(Cow::Borrowed(v)),
        None => Val::Empty,
    }
}

/// A request header, the pseudo-headers and the request id as the
/// connection manager left them.
fn request_header<'a>(e: &'a Entry, name: &str, alt: Option<&str>) -> Val<'a> {
    let one = |n: &str| -> Val<'a> {
        match n {
            ":method" => opt(Some(&e.method)),
            ":path" => opt(Some(&e.path)),
            ":authority" | "host" => opt(e.authority.as_deref()),
            "x-request-id" => opt(e.request_id.as_deref()),
            _ => header(&e.request_headers, n, None),
        }
    };
    match (one(name), alt) {
        (Val::Empty, Some(a)) => one(a),
        (v, _) => v,
    }
}

fn without_query(s: &str) -> &str {
    s.split_once('?').map_or(s, |(p, _)| p)
}

fn opt(s: Option<&str>) -> Val<'_> {
    match s {
        Some(v) if !v.is_empty() => Val::Str(Cow::Borrowed(v)),
        _ => Val::Empty,
    }
}

fn addr(a: Option<std::net::SocketAddr>) -> Val<'static> {
    a.map_or(Val::Empty, |a| Val::Str(Cow::Owned(a.to_string())))
}

impl Op {
    fn value<'a>(&self, e: &'a Entry) -> Val<'a> {
        let v = match &self.what {
            What::StartTime(None) => e
                .start
                .map_or(Val::Empty, |t| Val::Str(Cow::Owned(super::format_time(t)))),
            What::StartTime(Some(parts)) => e
                .start
                .map_or(Val::Empty, |t| Val::Str(Cow::Owned(render_time(parts, t)))),
            What::Req(h, alt) => request_header(e, h, alt.as_deref()),
            What::ReqWithoutQuery(h, alt) => match request_header(e, h, alt.as_deref()) {
                Val::Str(Cow::Borrowed(s)) => Val::Str(Cow::Borrowed(without_query(s))),
                Val::Str(Cow::Owned(s)) => Val::Str(Cow::Owned(without_query(&s).to_string())),
                v => v,
            },
            What::Resp(h, alt) => header(&e.response_headers, h, alt.as_deref()),
            What::Trailer(h, alt) => match &e.trailers {
                Some(t) => header(t, h, alt.as_deref()),
                None => Val::Empty,
            },
            What::Protocol => opt(Some(e.protocol)),
            What::ResponseCode => Val::Num(u64::from(e.status)),
            What::ResponseFlags => Val::Str(Cow::Borrowed(e.flags.unwrap_or("-"))),
            What::ResponseCodeDetails => e.details().map_or(Val::Empty, Val::Str),
            What::UpstreamTransportFailureReason => opt(e.transport_failure),
            What::ConnectionTerminationDetails => Val::Empty,
            What::BytesReceived => Val::Num(e.bytes_received),
            What::BytesSent => Val::Num(e.bytes_sent),
            What::Duration => Val::Num(e.duration_ms),
            What::UpstreamHost => opt(e.upstream_host.as_deref()),
            What::UpstreamCluster => opt(e.upstream_cluster.as_deref()),
            What::UpstreamLocalAddress => addr(e.upstream_local),
            What::DownstreamLocalAddress => addr(e.downstream_local),
            What::DownstreamRemoteAddress => addr(e.downstream_remote),
            What::DownstreamRemoteAddressWithoutPort => e
                .downstream_remote
                .map_or(Val::Empty, |a| Val::Str(Cow::Owned(a.ip().to_string()))),
            What::RequestedServerName => opt(e.requested_server_name.as_deref()),
            What::RouteName => opt(e.route_name.as_deref()),
        };
        match (v, self.max_len) {
            (Val::Str(s), Some(n)) if s.len() > n => {
                let mut cut = n;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                Val::Str(Cow::Owned(s[..cut].to_string()))
            }
            (v, _) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(s: &str) -> Format {
        Format::text("f", s).unwrap()
    }

    fn entry() -> Entry {
        let mut request_headers = http::HeaderMap::new();
        request_headers.insert("user-agent", "curl/8".parse().unwrap());
        Entry {
            // 2016-04-15T20:17:00.310123456Z
            start: Some(SystemTime::UNIX_EPOCH + Duration::new(1_460_751_420, 310_123_456)),
            method: "GET".into(),
            path: "/a/b?x=1".into(),
            protocol: "HTTP/1.1",
            status: 200,
            request_headers,
            bytes_sent: 12,
            ..Default::default()
        }
    }

    #[test]
    fn text_operators_lengths_alternatives_and_percent() {
        let f = text("%REQ(USER-AGENT):4% %REQ(X-NONE?:PATH)% %RESP(X)% 100%% %RESPONSE_CODE%\n");
        assert_eq!(f.render(&entry()), "curl /a/b?x=1 - 100% 200\n");
    }

    #[test]
    fn start_time_formats() {
        let f = text("%START_TIME%|%START_TIME(%Y-%m-%d %H:%M:%S)%|%START_TIME(%s.%3f)%|%START_TIME(%E6S %f %j %y %z %Z)%");
        assert_eq!(
            f.render(&entry()),
            "2016-04-15T20:17:00.310Z|2016-04-15 20:17:00|1460751420.310|00.310123 310123456 106 16 +0000 UTC"
        );
    }

    #[test]
    fn json_types_single_operators_and_sorts_keys() {
        let mut j = serde_json::Map::new();
        j.insert("z".into(), "%BYTES_SENT%".into());
        j.insert("a".into(), "%RESPONSE_CODE% %BYTES_SENT%".into());
        j.insert("m".into(), "%ROUTE_NAME%".into());
        j.insert(
            "n".into(),
            serde_json::json!({"k": "%REQ(:METHOD)%", "one": 1}),
        );
        let mut cfg = SubstitutionFormatString {
            json_format: Some(j),
            ..Default::default()
        };
        let f = Format::compile("f", &cfg).unwrap();
        assert_eq!(
            f.render(&entry()),
            "{\"a\":\"200 12\",\"m\":null,\"n\":{\"k\":\"GET\",\"one\":1},\"z\":12}\n"
        );
        cfg.omit_empty_values = true;
        let f = Format::compile("f", &cfg).unwrap();
        assert_eq!(
            f.render(&entry()),
            "{\"a\":\"200 12\",\"n\":{\"k\":\"GET\",\"one\":1},\"z\":12}\n"
        );
    }

    #[test]
    fn omit_empty_values_in_text() {
        let cfg = SubstitutionFormatString {
            text_format: Some("[%ROUTE_NAME%] %RESPONSE_FLAGS%".into()),
            omit_empty_values: true,
            ..Default::default()
        };
        assert_eq!(Format::compile("f", &cfg).unwrap().render(&entry()), "[] -");
    }

    #[test]
    fn refusals_name_the_field_and_operator() {
        let e = |s: &str| Format::text("at.f", s).unwrap_err().to_string();
        assert!(e("%NOPE%").contains("at.f") && e("%NOPE%").contains("%NOPE%"));
        assert!(e("%REQ%").contains("needs a header name"));
        assert!(e("%REQ(a?b?c)%").contains("more than one alternative"));
        assert!(e("%PROTOCOL(x)%").contains("takes no argument"));
        assert!(e("a % b").contains("position 2"));
        assert!(e("%REQ_WITHOUT_QUERY(:PATH)%").contains("req_without_query"));
        let both = SubstitutionFormatString {
            text_format: Some("x".into()),
            json_format: Some(Default::default()),
            ..Default::default()
        };
        assert!(Format::compile("f", &both)
            .unwrap_err()
            .to_string()
            .contains("exclusive"));
    }
}
