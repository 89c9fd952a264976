//! A cluster's circuit breakers (`circuit_breakers.thresholds` at the
//! DEFAULT priority), with Envoy's defaults of 1024 connections, pending
//! requests and requests, and 3 concurrent retries. Crossing one fails
//! the request at once with 503 `UO` instead of queueing it without end.
//!
//! An HTTP/1.1 upstream connection carries one request at a time, so the
//! connection limit is a count of requests on the wire; a request that
//! finds every connection busy waits as a pending request, if the
//! pending limit allows. A connection is held until the response body has
//! been read, as Envoy's pool returns it then.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weft_envoy::cluster::{CircuitBreakers, RoutingPriority};

use crate::body::{Body, BoxError};
use crate::stats::ClusterStats;

const DEFAULT_LIMIT: u32 = 1024;
const DEFAULT_RETRIES: u32 = 3;

#[derive(Debug)]
pub struct Breakers {
    max_pending: usize,
    max_requests: usize,
    max_retries: usize,
    /// HTTP/1 connections in use (one per request on the wire).
    connections: Arc<Semaphore>,
    pending: AtomicUsize,
    requests: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
}

/// What a request holds while it is upstream; dropping it frees the
/// request slot and, for HTTP/1, the connection.
pub struct Admitted {
    _connection: Option<OwnedSemaphorePermit>,
    requests: Arc<AtomicUsize>,
    stats: Arc<ClusterStats>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        self.stats.upstream_rq_active.dec();
    }
}

/// A retry in progress, counted against max_retries until dropped.
pub struct RetrySlot(Arc<AtomicUsize>);

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes one unit of `counter` if it stays within `max`.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Breakers {
    pub fn new(cfg: Option<&CircuitBreakers>) -> Self {
        let t = cfg
            .into_iter()
            .flat_map(|c| c.thresholds.iter())
            .find(|t| t.priority == RoutingPriority::DEFAULT);
        let get = |f: fn(&weft_envoy::cluster::Thresholds) -> Option<u32>, d: u32| {
            t.and_then(f).unwrap_or(d) as usize
        };
        Breakers {
            max_pending: get(|t| t.max_pending_requests, DEFAULT_LIMIT),
            max_requests: get(|t| t.max_requests, DEFAULT_LIMIT),
            max_retries: get(|t| t.max_retries, DEFAULT_RETRIES),
            connections: Arc::new(Semaphore::new(get(|t| t.max_connections, DEFAULT_LIMIT))),
            pending: AtomicUsize::new(0),
            requests: Arc::new(AtomicUsize::new(0)),
            retries: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Lets one request go upstream, waiting for an HTTP/1 connection
    /// when all are busy; `None` when a limit overflowed (the caller
    /// answers 503 UO).
    pub async fn admit(&self, http1: bool, stats: &Arc<ClusterStats>) -> Option<Admitted> {
        if !take(&self.requests, self.max_requests) {
            stats.upstream_rq_active_overflow.inc();
            return None;
        }
        let admitted = |connection| {
            stats.upstream_rq_active.inc();
            Admitted {
                _connection: connection,
                requests: Arc::clone(&self.requests),
                stats: stats.clone(),
            }
        };
        if !http1 {
            return Some(admitted(None));
        }
        let give_back = || {
            self.requests.fetch_sub(1, Ordering::Relaxed);
        };
        if let Ok(p) = Arc::clone(&self.connections).try_acquire_owned() {
            return Some(admitted(Some(p)));
        }
        // Every connection is busy: wait as a pending request, if the
        // queue has room, for a connection no new one may be opened for.
        if !take(&self.pending, self.max_pending) {
            stats.upstream_rq_pending_overflow.inc();
            give_back();
            return None;
        }
        stats.upstream_cx_overflow.inc();
        stats.upstream_rq_pending_active.inc();
        /// Leaves the pending queue however the wait ends (a timeout
        /// drops the future mid-wait).
        struct Pending<'a>(&'a AtomicUsize, &'a ClusterStats);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
                self.1.upstream_rq_pending_active.dec();
            }
        }
        let waiting = Pending(&self.pending, stats);
        /// Gives the request slot back if the wait is abandoned.
        struct Slot<'a>(Option<&'a AtomicUsize>);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                if let Some(r) = self.0 {
                    r.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let mut slot = Slot(Some(&self.requests));
        let permit = Arc::clone(&self.connections).acquire_owned().await.ok();
        drop(waiting);
        slot.0 = None;
        Some(admitted(permit))
    }

    /// Allows one more retry in progress, if max_retries does.
    pub fn retry(&self, stats: &ClusterStats) -> Option<RetrySlot> {
        if take(&self.retries, self.max_retries) {
            Some(RetrySlot(Arc::clone(&self.retries)))
        } else {
            stats.upstream_rq_retry_overflow.inc();
            None
        }
    }
}

/// A response body that keeps its request's admission until it has been
/// read to the end (or dropped).
pub struct Held {
    inner: Body,
    admitted: Option<Admitted>,
}

impl Held {
    pub fn new(inner: Body, admitted: Admitted) -> Self {
        Held {
            inner,
            admitted: Some(admitted),
        }
    }
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.admitted = None;
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
    use weft_envoy::cluster::Thresholds;

    fn breakers(conns: u32, pending: u32) -> Breakers {
        Breakers::new(Some(&CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: Some(conns),
                max_pending_requests: Some(pending),
                ..Default::default()
            }],
        }))
    }

    fn stats() -> Arc<ClusterStats> {
        ClusterStats::new(&crate::stats::Store::new(), "c")
    }

    #[tokio::test]
    async fn one_connection_one_pending_then_overflow() {
        let (b, s) = (breakers(1, 1), stats());
        let first = b.admit(true, &s).await.expect("a connection is free");
        let b = Arc::new(b);
        let waiting = {
            let (b, s) = (Arc::clone(&b), s.clone());
            tokio::spawn(async move { b.admit(true, &s).await.is_some() })
        };
        while b.pending.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(b.admit(true, &s).await.is_none(), "pending is full");
        assert_eq!(s.upstream_rq_pending_overflow.get(), 1);
        drop(first);
        assert!(
            waiting.await.unwrap(),
            "the pending request gets the connection"
        );
        assert_eq!(b.requests.load(Ordering::Relaxed), 0);
        assert_eq!(b.pending.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn abandoned_waits_give_their_slots_back() {
        let (b, s) = (breakers(1, 5), stats());
        let _held = b.admit(true, &s).await.unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_millis(10), b.admit(true, &s)).await;
        assert!(r.is_err());
        assert_eq!(b.pending.load(Ordering::Relaxed), 0);
        assert_eq!(b.requests.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn retries_default_to_three_at_once() {
        let (b, s) = (Breakers::new(None), stats());
        let held: Vec<_> = (0..3).map(|_| b.retry(&s).unwrap()).collect();
        assert!(b.retry(&s).is_none());
        assert_eq!(s.upstream_rq_retry_overflow.get(), 1);
        drop(held);
        assert!(b.retry(&s).is_some());
    }
}
