//! The fault filter (`envoy.filters.http.fault`): delays and aborts
//! injected into a share of requests, configured on the connection
//! manager and overridden per route, virtual host or table in
//! `typed_per_filter_config` (how Istio's VirtualService `fault` arrives).
//! Runs after the route is chosen and before the request goes upstream;
//! a delayed request then continues (or is aborted), an aborted one gets
//! a local reply.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use weft_envoy::filters::HttpFault;
use weft_envoy::FractionalPercent;

use crate::matchers::{HeaderMatch, RequestView};
use crate::stats::FaultStats;

/// A share of requests, as numerator over denominator.
#[derive(Clone, Copy, Debug)]
struct Share {
    numerator: u32,
    denominator: u32,
}

impl Share {
    fn from(p: Option<&FractionalPercent>) -> Self {
        // An unset percentage is Envoy's default FractionalPercent: 0%.
        let p = p.copied().unwrap_or_default();
        Share {
            numerator: p.numerator,
            denominator: p.denominator.value(),
        }
    }

    /// A share a request header may lower but not raise.
    fn capped_by(self, header: Option<&HeaderValue>) -> Self {
        let asked = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        match asked {
            Some(n) => Share {
                numerator: n.min(self.numerator),
                ..self
            },
            None => self,
        }
    }

    fn roll(self) -> bool {
        self.numerator > 0 && fastrand::u32(0..self.denominator) < self.numerator
    }
}

#[derive(Debug)]
enum Delay {
    Fixed(Duration),
    /// From `x-envoy-fault-delay-request` (milliseconds).
    Header,
}

#[derive(Debug)]
enum Abort {
    Http(u16),
    Grpc(u32),
    /// From `x-envoy-fault-abort-request` or
    /// `x-envoy-fault-abort-grpc-request`.
    Header,
}

/// One compiled fault configuration.
#[derive(Debug)]
pub struct Fault {
    delay: Option<(Delay, Share)>,
    abort: Option<(Abort, Share)>,
    upstream_cluster: Option<String>,
    headers: Vec<HeaderMatch>,
    max_active: Option<usize>,
}

static DELAY_REQUEST: HeaderName = HeaderName::from_static("x-envoy-fault-delay-request");
static DELAY_PERCENT: HeaderName =
    HeaderName::from_static("x-envoy-fault-delay-request-percentage");
static ABORT_REQUEST: HeaderName = HeaderName::from_static("x-envoy-fault-abort-request");
static ABORT_GRPC: HeaderName = HeaderName::from_static("x-envoy-fault-abort-grpc-request");
static ABORT_PERCENT: HeaderName =
    HeaderName::from_static("x-envoy-fault-abort-request-percentage");

impl Fault {
    pub fn compile(f: &HttpFault) -> Result<Self, String> {
        let delay = f.delay.as_ref().map(|d| {
            let kind = match d.fixed_delay {
                Some(t) => Delay::Fixed(t.0),
                None => Delay::Header,
            };
            (kind, Share::from(d.percentage.as_ref()))
        });
        let abort = f.abort.as_ref().map(|a| {
            let kind = match (a.http_status, a.grpc_status) {
                (Some(s), _) => Abort::Http(s as u16),
                (None, Some(g)) => Abort::Grpc(g),
                (None, None) => Abort::Header,
            };
            (kind, Share::from(a.percentage.as_ref()))
        });
        let headers = f
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatch::compile(h).map_err(|e| format!("headers[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Fault {
            delay,
            abort,
            upstream_cluster: f.upstream_cluster.clone().filter(|c| !c.is_empty()),
            headers,
            max_active: f.max_active_faults.map(|n| n as usize),
        })
    }
}

/// The fault filter of one connection manager: its own configuration
/// and the faults in progress under it.
#[derive(Debug)]
pub struct FaultFilter {
    pub config: Arc<Fault>,
    active: Arc<AtomicUsize>,
    stats: std::sync::Arc<FaultStats>,
}

/// What the filter decided for one request.
pub enum Injected {
    None,
    /// Delayed, then let through.
    Delayed,
    /// Answer with this instead of forwarding (after a delay if both).
    Abort {
        delayed: bool,
        reply: AbortReply,
    },
}

pub enum AbortReply {
    Http(u16),
    Grpc(u32),
}

impl FaultFilter {
    pub fn new(
        _name: &str,
        config: &HttpFault,
        stats: std::sync::Arc<FaultStats>,
    ) -> Result<Self, String> {
        Ok(FaultFilter {
            config: Arc::new(Fault::compile(config)?),
            active: Arc::new(AtomicUsize::new(0)),
            stats,
        })
    }

    /// Applies `fault` (the route's, or the filter's own) to a request
    /// going to `cluster`: sleeps out a delay here and says whether to
    /// abort.
    pub async fn apply(
        &self,
        fault: &Fault,
        cluster: Option<&str>,
        req: &RequestView<'_>,
    ) -> Injected {
        if let Some(want) = &fault.upstream_cluster {
            if cluster != Some(want.as_str()) {
                return Injected::None;
            }
        }
        if !fault.headers.iter().all(|m| m.matches(req)) {
            return Injected::None;
        }
        let h = req.headers;
        let delay = fault.delay.as_ref().and_then(|(kind, share)| {
            let time = match kind {
                Delay::Fixed(t) => *t,
                Delay::Header => Duration::from_millis(header_number(h, &DELAY_REQUEST)?),
            };
            share
                .capped_by(h.get(&DELAY_PERCENT))
                .roll()
                .then_some(time)
        });
        let abort = fault.abort.as_ref().and_then(|(kind, share)| {
            let reply = match kind {
                Abort::Http(s) => AbortReply::Http(*s),
                Abort::Grpc(g) => AbortReply::Grpc(*g),
                Abort::Header => match header_number(h, &ABORT_GRPC) {
                    Some(g) => AbortReply::Grpc(g as u32),
                    None => {
                        let s = header_number(h, &ABORT_REQUEST)?;
                        if !(200..600).contains(&s) {
                            return None;
                        }
                        AbortReply::Http(s as u16)
                    }
                },
            };
            share
                .capped_by(h.get(&ABORT_PERCENT))
                .roll()
                .then_some(reply)
        });
        if delay.is_none() && abort.is_none() {
            return Injected::None;
        }
        let max = fault.max_active.unwrap_or(usize::MAX);
        let took = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !took {
            self.stats.faults_overflow.inc();
            return Injected::None;
        }
        self.stats.active_faults.inc();
        let _active = Active(&self.active, &self.stats);
        if let Some(t) = delay {
            self.stats.delays_injected.inc();
            tokio::time::sleep(t).await;
        }
        match abort {
            Some(reply) => {
                self.stats.aborts_injected.inc();
                Injected::Abort {
                    delayed: delay.is_some(),
                    reply,
                }
            }
            None => Injected::Delayed,
        }
    }
}

/// A fault in progress; leaves the count however the request ends.
struct Active<'a>(&'a AtomicUsize, &'a FaultStats);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.active_faults.dec();
    }
}

fn header_number(h: &HeaderMap, name: &HeaderName) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: serde_json::Value) -> Fault {
        Fault::compile(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn filter() -> FaultFilter {
        let store = crate::stats::Store::new();
        FaultFilter::new("f", &HttpFault::default(), FaultStats::new(&store, "t")).unwrap()
    }

    fn view(h: &HeaderMap) -> RequestView<'_> {
        RequestView {
            method: "GET",
            authority: "a",
            scheme: "http",
            path_and_query: "/",
            headers: h,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delay_then_abort_with_the_configured_status() {
        let f = filter();
        let fault = fault(serde_json::json!({
            "delay": {"fixed_delay": "2s", "percentage": {"numerator": 100}},
            "abort": {"http_status": 503, "percentage": {"numerator": 100}}
        }));
        let h = HeaderMap::new();
        let start = tokio::time::Instant::now();
        let got = f.apply(&fault, None, &view(&h)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(matches!(
            got,
            Injected::Abort {
                delayed: true,
                reply: AbortReply::Http(503)
            }
        ));
        assert_eq!(f.stats.delays_injected.get(), 1);
        assert_eq!(f.stats.active_faults.get(), 0);
    }

    #[tokio::test]
    async fn unset_percentages_inject_nothing_and_headers_select() {
        let f = filter();
        let h = HeaderMap::new();
        let none = fault(serde_json::json!({"abort": {"http_status": 500}}));
        assert!(matches!(
            f.apply(&none, None, &view(&h)).await,
            Injected::None
        ));
        let by_header = fault(serde_json::json!({
            "abort": {"header_abort": {}, "percentage": {"numerator": 100}}
        }));
        assert!(matches!(
            f.apply(&by_header, None, &view(&h)).await,
            Injected::None
        ));
        let mut asked = HeaderMap::new();
        asked.insert(
            "x-envoy-fault-abort-request",
            HeaderValue::from_static("418"),
        );
        assert!(matches!(
            f.apply(&by_header, None, &view(&asked)).await,
            Injected::Abort {
                reply: AbortReply::Http(418),
                ..
            }
        ));
        asked.insert(
            "x-envoy-fault-abort-request-percentage",
            HeaderValue::from_static("0"),
        );
        assert!(matches!(
            f.apply(&by_header, None, &view(&asked)).await,
            Injected::None
        ));
        let for_cluster = fault(serde_json::json!({
            "upstream_cluster": "x",
            "abort": {"http_status": 500, "percentage": {"numerator": 100}}
        }));
        assert!(matches!(
            f.apply(&for_cluster, Some("y"), &view(&h)).await,
            Injected::None
        ));
    }
}
