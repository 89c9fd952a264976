//! Access logs in Envoy's default format, written by a background task so
//! the request path never waits on a file.
//!
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
//! %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//! %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//! "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
//! ```

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::body::{Body, BoxError};
use crate::error::CompileError;

/// Where lines go. Cloning shares the writer task.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: mpsc::UnboundedSender<String>,
}

enum Sink {
    Stdout,
    Stderr,
    File(std::fs::File),
}

impl AccessLog {
    /// From an `access_log` entry; only the default format is supported.
    pub fn compile(at: &str, cfg: &weft_envoy::filters::AccessLog) -> Result<Self, CompileError> {
        let err = |field: &str, message: &str| CompileError::Config {
            field: format!("{at}.{field}"),
            message: message.to_string(),
        };
        let tc = cfg
            .typed_config
            .as_ref()
            .ok_or_else(|| err("typed_config", "required"))?;
        let at_type = tc.get("@type").and_then(|t| t.as_str()).unwrap_or("");
        let kind = at_type.rsplit('.').next().unwrap_or("");
        let fields: Vec<&String> = tc
            .as_object()
            .map(|m| m.keys().filter(|k| *k != "@type").collect())
            .unwrap_or_default();
        let sink = match kind {
            "StdoutAccessLog" if fields.is_empty() => Sink::Stdout,
            "StderrAccessLog" if fields.is_empty() => Sink::Stderr,
            "FileAccessLog" if fields.iter().all(|f| *f == "path") => {
                let path = tc
                    .get("path")
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| err("typed_config.path", "required"))?;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| err("typed_config.path", &format!("cannot open {path:?}: {e}")))?;
                Sink::File(file)
            }
            "StdoutAccessLog" | "StderrAccessLog" | "FileAccessLog" => {
                return Err(err(
                    "typed_config",
                    "only Envoy's default format is implemented by weft yet (no log_format)",
                ))
            }
            _ => {
                return Err(err(
                    "typed_config",
                    &format!("{at_type}: not implemented by weft yet"),
                ))
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || {
                let mut sink = sink;
                while let Some(line) = rx.blocking_recv() {
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

    pub fn write(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

/// One request's fields, filled as the request goes.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    pub start: Option<SystemTime>,
    pub method: String,
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    pub flags: Option<&'static str>,
    pub upstream_service_time: Option<String>,
    pub xff: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub authority: Option<String>,
    pub upstream_host: Option<String>,
}

fn dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

impl Entry {
    pub fn format(&self, bytes_in: u64, bytes_out: u64, duration_ms: u128) -> String {
        let start = self.start.map(format_time).unwrap_or_else(|| "-".into());
        format!(
            "[{start}] \"{} {} {}\" {} {} {bytes_in} {bytes_out} {duration_ms} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\"\n",
            if self.method.is_empty() { "-" } else { &self.method },
            if self.path.is_empty() { "-" } else { &self.path },
            self.protocol,
            self.status,
            self.flags.unwrap_or("-"),
            dash(&self.upstream_service_time),
            dash(&self.xff),
            dash(&self.user_agent),
            dash(&self.request_id),
            dash(&self.authority),
            dash(&self.upstream_host),
        )
    }
}

/// `2016-04-15T20:17:00.310Z`, as Envoy's %START_TIME%.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
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
            let elapsed = self.started.elapsed().as_millis();
            for p in self.stats.drain(..) {
                p.finish(
                    entry.flags,
                    self.grpc_status.as_deref(),
                    received,
                    sent,
                    u64::try_from(elapsed).unwrap_or(u64::MAX),
                );
            }
            if !logs.is_empty() {
                let line = entry.format(received, sent, elapsed);
                for l in &logs {
                    l.write(line.clone());
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
            ..Default::default()
        };
        assert_eq!(
            e.format(0, 0, 1),
            "[-] \"GET /a?b HTTP/1.1\" 404 NR 0 0 1 - \"-\" \"-\" \"-\" \"h.test\" \"-\"\n"
        );
    }
}
