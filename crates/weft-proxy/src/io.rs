//! Downstream connections as the HTTP server sees them: the first bytes
//! (already read by listener filters) handed back first, when the
//! connection last moved bytes, for idle timeouts, and a gate that may
//! refuse the connection when data arrives (the network RBAC filters).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

// tokio's clock (std's outside tests) so paused-time tests drive it.
use tokio::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
    activity: Option<Arc<Activity>>,
    /// Sees every completed read (the rewound bytes included).
    gate: Option<Box<dyn ReadGate>>,
    /// A refused connection: its delay, then its shutdown (a TLS client
    /// gets its close_notify), then the read fails.
    refusing: Option<Refusing>,
}

struct Refusing {
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// What a [`ReadGate`] says of a completed read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes go on.
    Pass,
    /// The bytes go on, and the gate has nothing more to decide.
    Done,
    /// The connection is refused: the read fails (after the delay).
    Refuse(Option<Duration>),
}

/// Decides, read by read, whether a connection may go on.
pub trait ReadGate: Send + Sync {
    /// A read from downstream completed (with bytes or at the end).
    fn on_read(&mut self) -> Verdict;
}

impl<S> Rewind<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Rewind {
            prefix,
            inner,
            activity: None,
            gate: None,
            refusing: None,
        }
    }

    /// Reads go through `gate` first.
    pub fn gated(mut self, gate: Box<dyn ReadGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The stream under the rewound bytes.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Records every read and write in `a`.
    pub fn tracked(mut self, a: Arc<Activity>) -> Self {
        self.activity = Some(a);
        self
    }

    fn touch(&self) {
        if let Some(a) = &self.activity {
            a.touch();
        }
    }
}

/// When a connection last moved bytes, and how many requests it has in
/// the proxy right now.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// The connection's lifetime is over: HTTP/1 responses say
    /// `connection: close` from now on.
    pub draining: AtomicBool,
    /// A request came over HTTP/2 (so draining is a GOAWAY).
    pub http2: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        })
    }

    /// Records that bytes moved now.
    pub fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Counts a request as open until the returned guard drops.
    pub fn open_request(self: &Arc<Self>) -> RequestOpen {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestOpen(Arc::clone(self))
    }
}

pub struct RequestOpen(Arc<Activity>);

impl Drop for RequestOpen {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection's lifetime ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closing {
    /// No request open and no bytes moved for the idle timeout.
    Idle,
    /// The connection reached max_connection_duration.
    MaxDuration,
}

/// Resolves when the connection should close: idle for `idle` with no
/// request open, or `max` after it opened. One timer, re-armed only when
/// it fires early.
pub async fn lifetime(a: &Activity, idle: Option<Duration>, max: Option<Duration>) -> Closing {
    let end = max.map(|m| a.start + m);
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            return Closing::MaxDuration;
        }
        let mut wake = end;
        if let Some(idle) = idle {
            let due = if a.in_flight.load(Ordering::Relaxed) > 0 {
                now + idle
            } else {
                let last = a.start + Duration::from_millis(a.last_ms.load(Ordering::Relaxed));
                if now >= last + idle {
                    return Closing::Idle;
                }
                last + idle
            };
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        match wake {
            Some(w) => tokio::time::sleep_until(w).await,
            None => std::future::pending().await,
        }
    }
}

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "connection refused by its filter chain",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Rewind<S> {
    /// Waits out a refused connection's delay and shuts it down.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(r) = &mut self.refusing else {
            return Poll::Ready(Ok(()));
        };
        if let Some(d) = &mut r.delay {
            std::task::ready!(d.as_mut().poll(cx));
            r.delay = None;
        }
        // Whether the shutdown worked or not, the read fails.
        std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx)).ok();
        Poll::Ready(Err(refused()))
    }

    fn read_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.touch();
        }
        r
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refusing.is_some() {
            return this.poll_refuse(cx);
        }
        let before = buf.filled().len();
        let r = this.read_inner(cx, buf);
        let Some(gate) = this
            .gate
            .as_mut()
            .filter(|_| matches!(r, Poll::Ready(Ok(()))))
        else {
            return r;
        };
        match gate.on_read() {
            Verdict::Pass => r,
            Verdict::Done => {
                this.gate = None;
                r
            }
            Verdict::Refuse(delay) => {
                // The refused bytes are not handed on.
                buf.set_filled(before);
                this.gate = None;
                this.refusing = Some(Refusing {
                    delay: delay.map(|d| Box::pin(tokio::time::sleep(d))),
                });
                this.poll_refuse(cx)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn prefix_comes_first_then_the_stream() {
        let inner = std::io::Cursor::new(b"world".to_vec());
        let mut r = Rewind::new(BytesMut::from(&b"hello "[..]), inner);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }

    /// Refuses whatever arrives.
    struct Refuser;

    impl ReadGate for Refuser {
        fn on_read(&mut self) -> Verdict {
            Verdict::Refuse(None)
        }
    }

    #[tokio::test]
    async fn a_refusing_gate_fails_the_read_and_shuts_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = Rewind::new(BytesMut::from(&b"early"[..]), server).gated(Box::new(Refuser));
        let mut buf = [0u8; 16];
        let e = r.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        // The client reads the end of the stream, nothing else.
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_byte_and_waits_for_open_requests() {
        let a = Activity::new();
        let idle = Some(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        a.touch();
        let open = a.open_request();
        let t0 = Instant::now();
        let watch = tokio::spawn({
            let a = Arc::clone(&a);
            async move { (lifetime(&a, idle, None).await, t0.elapsed()) }
        });
        // A request open for 30 s keeps the connection; idleness counts
        // from when it finished.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(open);
        let (why, after) = watch.await.unwrap();
        assert_eq!(why, Closing::Idle);
        assert!(
            after >= Duration::from_secs(40) && after < Duration::from_secs(51),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_duration_ends_even_a_busy_connection() {
        let a = Activity::new();
        let _open = a.open_request();
        let why = lifetime(
            &a,
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(60)),
        )
        .await;
        assert_eq!(why, Closing::MaxDuration);
        assert!(a.start.elapsed() >= Duration::from_secs(60));
        assert_eq!(
            lifetime(&Activity::new(), None, Some(Duration::ZERO)).await,
            Closing::MaxDuration
        );
    }
}
