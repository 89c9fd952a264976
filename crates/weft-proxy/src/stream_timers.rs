//! The connection manager's per-stream timers, as Envoy keeps them:
//!
//! - the stream idle timeout (`stream_idle_timeout`, five minutes by
//!   default; a route's `idle_timeout` replaces it, zero turns it off):
//!   no byte either way for that long ends the stream;
//! - the request timeout (`request_timeout`, off by default): the whole
//!   request must have arrived by then, unless the response has begun;
//! - the maximum stream duration (`common_http_protocol_options.
//!   max_stream_duration`, or the route's `max_stream_duration`, or the
//!   request's `grpc-timeout` when the route says to honour it).
//!
//! Before the response has begun, an expiry becomes a local reply (see
//! [`Expired::reply`]); after, the response body fails, which resets the
//! HTTP/2 stream or closes the HTTP/1 connection, and an idle expiry is
//! logged as `SI`. The timers read one shared activity clock, touched by
//! every request and response body frame, so no timer is re-armed per
//! frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError};

/// When the stream last moved and whether the request has fully arrived.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Nanoseconds after `start` of the latest frame either way.
    last: AtomicU64,
    request_done: AtomicBool,
    /// The idle timer fired after the response had begun (logged `SI`).
    idled_out: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            request_done: AtomicBool::new(false),
            idled_out: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let at = self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.last.fetch_max(at, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    pub fn request_done(&self) -> bool {
        self.request_done.load(Ordering::Relaxed)
    }

    /// The flag an expiry after the response began leaves in the log.
    pub fn late_flag(&self) -> Option<&'static str> {
        self.idled_out.load(Ordering::Relaxed).then_some("SI")
    }
}

/// The timers that apply to one stream once its route is known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub idle: Option<Duration>,
    pub request: Option<Duration>,
    pub duration: Option<Duration>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.idle.is_some() || self.request.is_some() || self.duration.is_some()
    }
}

/// Which timer ended a stream before its response began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Idle,
    Request,
    Duration,
}

impl Expired {
    /// The local reply Envoy sends (measured against Envoy 1.40): 504 when
    /// the whole request had arrived, 408 when it had not; gRPC requests
    /// past their duration get DEADLINE_EXCEEDED.
    pub fn reply(
        self,
        request_done: bool,
    ) -> (u16, &'static str, Option<u8>, Option<&'static str>) {
        let status = if request_done { 504 } else { 408 };
        match self {
            Expired::Idle => (status, "stream timeout", None, Some("SI")),
            Expired::Request => (408, "request timeout", None, None),
            Expired::Duration => (status, "downstream duration timeout", Some(4), None),
        }
    }
}

/// Resolves when one of `limits` expires for the stream `a` describes;
/// never, when there are none.
pub async fn expired(a: &Activity, limits: Limits) -> Expired {
    loop {
        let mut next: Option<(Instant, Expired)> = None;
        let mut consider = |at: Instant, what: Expired| {
            if next.is_none_or(|(n, _)| at < n) {
                next = Some((at, what));
            }
        };
        if let Some(d) = limits.idle {
            consider(a.last() + d, Expired::Idle);
        }
        if let (Some(d), false) = (limits.request, a.request_done()) {
            consider(a.start + d, Expired::Request);
        }
        if let Some(d) = limits.duration {
            consider(a.start + d, Expired::Duration);
        }
        let Some((at, what)) = next else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at).await;
        let still = match what {
            // Activity since the timer was set moves the deadline.
            Expired::Idle => a.last() + limits.idle.unwrap_or_default() <= Instant::now(),
            Expired::Request => !a.request_done(),
            Expired::Duration => true,
        };
        if still {
            return what;
        }
    }
}

/// A request body that keeps the activity clock and notes its end.
pub struct TrackedRequest<B> {
    inner: B,
    activity: Arc<Activity>,
}

impl<B: HttpBody> TrackedRequest<B> {
    pub fn new(inner: B, activity: Arc<Activity>) -> Self {
        if inner.is_end_stream() {
            activity.request_done.store(true, Ordering::Relaxed);
        }
        TrackedRequest { inner, activity }
    }
}

impl<B: HttpBody + Unpin> HttpBody for TrackedRequest<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                self.activity.touch();
                if self.inner.is_end_stream() {
                    self.activity.request_done.store(true, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => self.activity.request_done.store(true, Ordering::Relaxed),
            _ => {}
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

/// The response body under the idle and duration timers. The timer is
/// only armed when the body makes the stream wait, so a response that is
/// ready at once never touches the timer wheel.
struct TimedResponse {
    inner: Body,
    activity: Arc<Activity>,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// Puts `body` under the timers in `limits` (the request timeout no
/// longer applies once the response has begun).
pub fn response(body: Body, activity: Arc<Activity>, limits: Limits) -> Body {
    if limits.idle.is_none() && limits.duration.is_none() {
        return body;
    }
    TimedResponse {
        inner: body,
        deadline: limits.duration.map(|d| activity.start + d),
        activity,
        idle: limits.idle,
        sleep: None,
    }
    .boxed()
}

impl TimedResponse {
    fn due(&self) -> Instant {
        let idle = self.idle.map(|d| self.activity.last() + d);
        match (idle, self.deadline) {
            (Some(i), Some(d)) => i.min(d),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => Instant::now() + Duration::from_secs(86_400 * 365),
        }
    }
}

impl HttpBody for TimedResponse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_frame(cx) {
            if matches!(r, Some(Ok(_))) {
                this.activity.touch();
            }
            return Poll::Ready(r);
        }
        loop {
            let due = this.due();
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if this.deadline.is_some_and(|d| d <= now) {
                return Poll::Ready(Some(Err("downstream duration timeout".into())));
            }
            if this.idle.is_some_and(|i| this.activity.last() + i <= now) {
                this.activity.idled_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err("stream idle timeout".into())));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A route's `max_stream_duration`.
#[derive(Debug, Clone, Copy)]
pub struct MaxStream {
    /// Replaces the connection manager's (zero: off).
    pub duration: Option<Duration>,
    /// Honour `grpc-timeout`, capped at this (zero: uncapped).
    pub grpc_header_max: Option<Duration>,
    pub grpc_header_offset: Duration,
}

impl MaxStream {
    /// The stream's maximum duration under this route, given the
    /// connection manager's and the request's headers.
    pub fn limit(&self, hcm: Option<Duration>, headers: &http::HeaderMap) -> Option<Duration> {
        let grpc = self
            .grpc_header_max
            .and_then(|cap| {
                let asked = grpc_timeout(headers)?;
                Some(if cap.is_zero() { asked } else { asked.min(cap) })
            })
            // A header offset that leaves nothing ends the stream at once.
            .map(|d| {
                d.saturating_sub(self.grpc_header_offset)
                    .max(Duration::from_nanos(1))
            });
        match (grpc, self.duration) {
            (Some(d), _) => Some(d),
            (None, Some(d)) if d.is_zero() => None,
            (None, Some(d)) => Some(d),
            (None, None) => hcm,
        }
    }
}

/// The `grpc-timeout` header (`1*8DIGIT unit`, unit one of H M S m u n)
/// as a duration; `None` when absent or malformed.
pub fn grpc_timeout(h: &http::HeaderMap) -> Option<Duration> {
    let v = h.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(h("200m"), Some(Duration::from_millis(200)));
        assert_eq!(h("2S"), Some(Duration::from_secs(2)));
        assert_eq!(h("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(h("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(h("123456789S"), None, "at most eight digits");
        assert_eq!(h("S"), None);
        assert_eq!(h("10x"), None);
        assert_eq!(h("-1S"), None);
    }

    #[test]
    fn a_route_s_max_stream_duration_as_envoy_resolves_it() {
        let ms = Duration::from_millis;
        let mut grpc = http::HeaderMap::new();
        grpc.insert("grpc-timeout", "500m".parse().unwrap());
        let none = http::HeaderMap::new();
        let route = |duration, cap, offset| MaxStream {
            duration,
            grpc_header_max: cap,
            grpc_header_offset: offset,
        };
        let hcm = Some(ms(900));
        // Unset: the connection manager's; zero: none at all.
        assert_eq!(route(None, None, ms(0)).limit(hcm, &none), hcm);
        assert_eq!(route(Some(ms(0)), None, ms(0)).limit(hcm, &none), None);
        assert_eq!(
            route(Some(ms(300)), None, ms(0)).limit(hcm, &grpc),
            Some(ms(300))
        );
        // The header counts only when the route says so, capped unless
        // the cap is zero, less the offset, never down to nothing.
        assert_eq!(
            route(None, Some(ms(0)), ms(0)).limit(hcm, &grpc),
            Some(ms(500))
        );
        assert_eq!(
            route(None, Some(ms(200)), ms(0)).limit(hcm, &grpc),
            Some(ms(200))
        );
        assert_eq!(
            route(None, Some(ms(0)), ms(100)).limit(hcm, &grpc),
            Some(ms(400))
        );
        assert_eq!(
            route(None, Some(ms(0)), ms(800)).limit(hcm, &grpc),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(
            route(Some(ms(300)), Some(ms(0)), ms(0)).limit(hcm, &none),
            Some(ms(300))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_idle_timer_back() {
        let a = Activity::new();
        let limits = Limits {
            idle: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let t0 = Instant::now();
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { (expired(&a, limits).await, Instant::now()) })
        };
        tokio::time::sleep(Duration::from_secs(6)).await;
        a.touch();
        let (what, at) = waiter.await.unwrap();
        assert_eq!(what, Expired::Idle);
        assert_eq!(at - t0, Duration::from_secs(16));
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_timer_stops_when_the_request_has_arrived() {
        let a = Activity::new();
        let limits = Limits {
            request: Some(Duration::from_secs(5)),
            duration: Some(Duration::from_secs(20)),
            ..Default::default()
        };
        let t0 = Instant::now();
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { (expired(&a, limits).await, Instant::now()) })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.request_done.store(true, Ordering::Relaxed);
        let (what, at) = waiter.await.unwrap();
        assert_eq!(what, Expired::Duration);
        assert_eq!(at - t0, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_response_body_fails_after_the_idle_time() {
        let a = Activity::new();
        let (mut tx, rx) = futures_channel_body();
        let limits = Limits {
            idle: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let mut body = response(rx, Arc::clone(&a), limits);
        tx.send(Bytes::from_static(b"abc"));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        let t0 = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "stream idle timeout");
        assert_eq!(Instant::now() - t0, Duration::from_secs(3));
        assert_eq!(a.late_flag(), Some("SI"));
        drop(tx);
    }

    /// A body fed by hand: frames sent arrive, then it waits forever.
    fn futures_channel_body() -> (Sender, Body) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        (Sender(tx), Chan(rx).boxed())
    }

    struct Sender(tokio::sync::mpsc::UnboundedSender<Bytes>);

    impl Sender {
        fn send(&mut self, b: Bytes) {
            self.0.send(b).unwrap();
        }
    }

    struct Chan(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl HttpBody for Chan {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }
}
