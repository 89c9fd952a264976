//! Access logs: Envoy's file, stdout and stderr loggers, each with its
//! compiled format ([`format`]), written by a background thread so the
//! request path never waits on a file (nor formats the line: it hands the
//! thread its [`Entry`]).

mod format;

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;
use weft_envoy::TypedConfig;

use crate::body::{Body, BoxError};
use crate::error::CompileError;
pub use format::Format;

/// Where lines go. Cloning shares the writer thread.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: mpsc::UnboundedSender<Arc<Entry>>,
}

enum Sink {
    Stdout,
    Stderr,
    File(std::fs::File),
}

impl AccessLog {
    /// From an `access_log` entry: a file, stdout or stderr logger.
    pub fn compile(at: &str, cfg: &weft_envoy::filters::AccessLog) -> Result<Self, CompileError> {
        let err = |field: &str, message: &str| CompileError::Config {
            field: format!("{at}.{field}"),
            message: message.to_string(),
        };
        let tc = cfg
            .typed_config
            .as_ref()
            .ok_or_else(|| err("typed_config", "required"))?;
        let format_of = |f: &Option<weft_envoy::access_log::SubstitutionFormatString>| match f {
            Some(f) => Format::compile(&format!("{at}.typed_config.log_format"), f),
            None => Ok(Format::default_text()),
        };
        let (sink, format) = match tc {
            TypedConfig::StdoutAccessLog(s) => (Sink::Stdout, format_of(&s.log_format)?),
            TypedConfig::StderrAccessLog(s) => (Sink::Stderr, format_of(&s.log_format)?),
            TypedConfig::FileAccessLog(f) => {
                let legacy = [
                    ("json_format", f.json_format.is_some()),
                    ("typed_json_format", f.typed_json_format.is_some()),
                ];
                if let Some((name, _)) = legacy.iter().find(|(_, set)| *set) {
                    return Err(err(
                        &format!("typed_config.{name}"),
                        "deprecated and not implemented by weft (use log_format.json_format)",
                    ));
                }
                let format = match (&f.format, &f.log_format) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            "typed_config.format",
                            "format and log_format are exclusive",
                        ))
                    }
                    (Some(t), None) => Format::text(&format!("{at}.typed_config.format"), t)?,
                    (None, l) => format_of(l)?,
                };
                if f.path.is_empty() {
                    return Err(err("typed_config.path", "required"));
                }
                let path = &f.path;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| err("typed_config.path", &format!("cannot open {path:?}: {e}")))?;
                (Sink::File(file), format)
            }
            _ => {
                return Err(err(
                    "typed_config",
                    "not an access logger weft implements (file, stdout, stderr)",
                ))
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Arc<Entry>>();
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || {
                let mut sink = sink;
                while let Some(entry) = rx.blocking_recv() {
                    let line = format.render(&entry);
                    let _ = match &mut sink {
                        Sink::Stdout => std::io::stdout().write_all(line.as_bytes()),
                        Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
                        Sink::File(f) => f.write_all(line.as_bytes()),
                    };
                }
            })
            .map_err(|e| err("typed_config", &format!("cannot start the log writer: {e}")))?;
        Ok(AccessLog { tx })
    }

    /// Hands the entry to the writer thread, which formats it.
    pub fn write(&self, entry: Arc<Entry>) {
        let _ = self.tx.send(entry);
    }
}

/// One request's (or TCP connection's) facts, filled as it goes; what
/// the command operators read.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    pub start: Option<SystemTime>,
    pub method: String,
    /// `x-envoy-original-path` aside, the path as the connection manager
    /// left it.
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    pub flags: Option<&'static str>,
    /// Response code details the serving code knew (`via_upstream`,
    /// `direct_response`); others come from the flag.
    pub known_details: Option<&'static str>,
    /// Envoy's upstream transport failure reason, when weft knows it.
    pub transport_failure: Option<&'static str>,
    /// The x-request-id as sent upstream.
    pub request_id: Option<String>,
    pub authority: Option<String>,
    /// The request's headers as received.
    pub request_headers: http::HeaderMap,
    pub response_headers: http::HeaderMap,
    pub trailers: Option<http::HeaderMap>,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_local: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    /// The client as the connection manager trusts it (from
    /// X-Forwarded-For, port 0, without `use_remote_address`).
    pub downstream_remote: Option<SocketAddr>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
}

impl Entry {
    /// Envoy's `%RESPONSE_CODE_DETAILS%`, for the cases weft knows: an
    /// upstream's response, a direct response, and the local replies of
    /// no route, no cluster, no healthy host, a refused connection, an
    /// upstream that closed before responding, an overflow, a route
    /// timeout, a fault abort and a local rate limit (each checked against
    /// Envoy 1.40). Others (other connect failures, stream timers, RBAC,
    /// JWT, ext_authz denials, protocol errors) are not known to weft yet
    /// and print as empty.
    pub fn details(&self) -> Option<std::borrow::Cow<'static, str>> {
        if let (Some("UF"), Some(reason)) = (self.flags, self.transport_failure) {
            return Some(std::borrow::Cow::Owned(format!(
                "upstream_reset_before_response_started{{remote_connection_failure|{reason}}}"
            )));
        }
        let by_flag = match self.flags {
            Some("NR") => Some("route_not_found"),
            Some("UH") => Some("no_healthy_upstream"),
            Some("NC") => Some("cluster_not_found"),
            // Checked against Envoy 1.40 for a route timeout.
            Some("UT") => Some("response_timeout"),
            Some("RL") => Some("local_rate_limited"),
            Some("UC") => Some("upstream_reset_before_response_started{connection_termination}"),
            Some("UO") => Some("upstream_reset_before_response_started{overflow}"),
            Some("FI") | Some("DI,FI") => Some("fault_filter_abort"),
            _ => None,
        };
        by_flag
            .or(self.known_details)
            .map(std::borrow::Cow::Borrowed)
    }

    /// The line in Envoy's default format.
    #[cfg(test)]
    pub fn format_default(&self) -> String {
        Format::default_text().render(self)
    }
}

/// A UTC date and time of day.
pub(crate) struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub day_of_year: i64,
}

/// The civil date and time of `secs` since the epoch (Howard Hinnant's
/// algorithm).
pub(crate) fn civil(secs: i64) -> Civil {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let day_of_year = BEFORE[(month - 1) as usize] + day + i64::from(leap && month > 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        day_of_year,
    }
}

/// `2016-04-15T20:17:00.310Z`, as Envoy's %START_TIME%.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let c = civil(d.as_secs() as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        d.subsec_millis()
    )
}

/// Counts bytes as a body streams through.
pub struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Counted { inner, count }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        poll
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(h: &http::HeaderMap) -> Option<String> {
    h.get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A response body that writes the access log line when the response
/// has been sent (or abandoned), so byte counts and duration are final.
pub struct LoggedBody {
    inner: Counted<Body>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    started: Instant,
    entry: Option<(Entry, Vec<AccessLog>)>,
    /// The stream's timers, which may still end it after the response
    /// began (a flag the entry did not know when it was made).
    stream: Option<Arc<crate::stream_timers::Activity>>,
    /// Istio's stats to count the request in when it is done.
    stats: Vec<crate::istio_stats::Pending>,
    /// The gRPC status, from the response's headers or its trailers.
    grpc_status: Option<String>,
    /// The response's trailers, for `%TRAILER(X)%`.
    trailers: Option<http::HeaderMap>,
}

impl LoggedBody {
    pub fn new(
        body: Body,
        entry: Entry,
        logs: Vec<AccessLog>,
        received: Arc<AtomicU64>,
        started: Instant,
        stream: Option<Arc<crate::stream_timers::Activity>>,
        stats: Vec<crate::istio_stats::Pending>,
    ) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        LoggedBody {
            inner: Counted::new(body, Arc::clone(&sent)),
            sent,
            received,
            started,
            entry: Some((entry, logs)),
            stream,
            stats,
            grpc_status: None,
            trailers: None,
        }
    }

    /// The gRPC status a trailers-only response carries in its headers.
    pub fn with_grpc_status(mut self, headers: &http::HeaderMap) -> Self {
        self.grpc_status = grpc_status(headers);
        self
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((mut entry, logs)) = self.entry.take() {
            if entry.flags.is_none() {
                entry.flags = self.stream.as_ref().and_then(|s| s.late_flag());
            }
            let (received, sent) = (
                self.received.load(Ordering::Relaxed),
                self.sent.load(Ordering::Relaxed),
            );
            let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            for p in self.stats.drain(..) {
                p.finish(
                    entry.flags,
                    self.grpc_status.as_deref(),
                    received,
                    sent,
                    elapsed,
                );
            }
            if !logs.is_empty() {
                entry.bytes_received = received;
                entry.bytes_sent = sent;
                entry.duration_ms = elapsed;
                entry.trailers = self.trailers.take();
                let entry = Arc::new(entry);
                for l in &logs {
                    l.write(Arc::clone(&entry));
                }
            }
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(t) = frame.trailers_ref() {
                if let Some(s) = grpc_status(t) {
                    self.grpc_status = Some(s);
                }
                if self
                    .entry
                    .as_ref()
                    .is_some_and(|(_, logs)| !logs.is_empty())
                {
                    self.trailers = Some(t.clone());
                }
            }
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_format() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_460_751_420_310);
        assert_eq!(format_time(t), "2016-04-15T20:17:00.310Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn default_format_with_missing_values_as_dashes() {
        let e = Entry {
            method: "GET".into(),
            path: "/a?b".into(),
            protocol: "HTTP/1.1",
            status: 404,
            flags: Some("NR"),
            authority: Some("h.test".into()),
            duration_ms: 1,
            ..Default::default()
        };
        assert_eq!(
            e.format_default(),
            "[-] \"GET /a?b HTTP/1.1\" 404 NR 0 0 1 - \"-\" \"-\" \"-\" \"h.test\" \"-\"\n"
        );
    }
}
