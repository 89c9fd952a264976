//! Request bodies that a retry can send again. The downstream body is
//! read once, by whichever attempt is sending; every frame read is kept
//! (up to a limit) so the next attempt can replay it and then go on
//! reading where the source stopped. Past the limit the copy is dropped
//! and the request can no longer be retried, as Envoy stops retrying a
//! request whose body outgrew its buffer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body as _, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// Envoy's default buffer limit for a request it may retry (1 MiB).
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

struct State {
    source: Body,
    /// Every data frame read so far, while the copy is kept.
    frames: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    kept: usize,
    /// The copy was dropped: the body outgrew the limit.
    overflowed: bool,
    /// The source ended (after its trailers, if any).
    done: bool,
    /// The source failed; no attempt can be sent whole any more.
    failed: bool,
}

/// The shared body of every attempt of one request.
#[derive(Clone)]
pub struct Replay {
    state: Arc<Mutex<State>>,
    limit: usize,
    hint: SizeHint,
}

impl Replay {
    pub fn new(source: Body, limit: usize) -> Self {
        let hint = source.size_hint();
        Replay {
            state: Arc::new(Mutex::new(State {
                source,
                frames: Vec::new(),
                trailers: None,
                kept: 0,
                overflowed: false,
                done: false,
                failed: false,
            })),
            limit,
            hint,
        }
    }

    /// Whether another attempt could send the whole body again.
    pub fn replayable(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !s.overflowed && !s.failed
    }

    /// A body for the next attempt: what was read so far, then the rest.
    pub fn attempt(&self) -> Body {
        use http_body_util::BodyExt;
        Attempt {
            replay: self.clone(),
            next: 0,
            trailers_sent: false,
        }
        .boxed()
    }
}

struct Attempt {
    replay: Replay,
    /// Index of the next kept frame to send.
    next: usize,
    trailers_sent: bool,
}

impl hyper::body::Body for Attempt {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut s = this.replay.state.lock().unwrap_or_else(|e| e.into_inner());
        if this.next < s.frames.len() {
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(s.frames[this.next - 1].clone()))));
        }
        if s.overflowed && this.next != usize::MAX {
            // The copy this attempt would replay from was dropped: it
            // cannot be sent whole (the retry decision checks first, so
            // only an attempt still sending after a retry gets here).
            return Poll::Ready(Some(Err("request body no longer buffered".into())));
        }
        if s.done {
            if let (Some(t), false) = (&s.trailers, this.trailers_sent) {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
            }
            return Poll::Ready(None);
        }
        if s.failed {
            return Poll::Ready(Some(Err("request body failed".into())));
        }
        match Pin::new(&mut s.source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        if !s.overflowed {
                            s.kept += data.len();
                            if s.kept > this.replay.limit {
                                s.overflowed = true;
                                s.frames = Vec::new();
                                // Read straight from the source from now on.
                                this.next = usize::MAX;
                            } else {
                                s.frames.push(data.clone());
                                this.next = s.frames.len();
                            }
                        }
                        Frame::data(data)
                    }
                    Err(frame) => {
                        if let Some(t) = frame.trailers_ref() {
                            s.trailers = Some(t.clone());
                            this.trailers_sent = true;
                        }
                        frame
                    }
                };
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.replay.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done && self.next >= s.frames.len() && (s.trailers.is_none() || self.trailers_sent)
    }

    fn size_hint(&self) -> SizeHint {
        // Every attempt sends the whole body, so the original's length
        // (a Content-Length) holds for each.
        self.replay.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// A body that yields the given frames, one per poll.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl hyper::body::Body for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn source(chunks: &[&'static str], trailers: bool) -> Body {
        let mut frames: VecDeque<Frame<Bytes>> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::from_static(c.as_bytes())))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", http::HeaderValue::from_static("0"));
            frames.push_back(Frame::trailers(t));
        }
        Frames(frames).boxed()
    }

    async fn read(b: Body) -> (String, Option<HeaderMap>) {
        let c = b.collect().await.unwrap();
        let t = c.trailers().cloned();
        (String::from_utf8(c.to_bytes().to_vec()).unwrap(), t)
    }

    #[tokio::test]
    async fn every_attempt_sends_the_whole_body_and_trailers() {
        let r = Replay::new(source(&["ab", "cd", "ef"], true), 100);
        let (first, t1) = read(r.attempt()).await;
        assert_eq!(first, "abcdef");
        assert!(t1.is_some());
        assert!(r.replayable());
        let (second, t2) = read(r.attempt()).await;
        assert_eq!(second, "abcdef");
        assert_eq!(t1, t2);
    }

    #[tokio::test]
    async fn a_retry_after_a_partial_read_replays_then_continues() {
        let r = Replay::new(source(&["ab", "cd", "ef"], false), 100);
        let mut first = r.attempt();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        drop(first);
        assert_eq!(read(r.attempt()).await.0, "abcdef");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_sent_once_and_not_replayable() {
        let r = Replay::new(source(&["abcd", "efgh", "ij"], false), 6);
        assert_eq!(read(r.attempt()).await.0, "abcdefghij");
        assert!(!r.replayable());
    }
}
