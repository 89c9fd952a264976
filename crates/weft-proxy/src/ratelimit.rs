//! The local rate limit filter (`envoy.filters.http.local_ratelimit`): a
//! token bucket per filter configuration (the connection manager's, or a
//! route's in `typed_per_filter_config`), refilled by `tokens_per_fill`
//! every `fill_interval` up to `max_tokens`. Out of tokens, an enforced
//! request gets a local 429 (or the configured status); one not enforced
//! is only counted (and can be marked with request headers). The bucket
//! is one atomic word, so taking a token takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;
use weft_envoy::filters::{LocalRateLimit, RuntimeFractionalPercent};

use crate::headers::HeaderOps;
use crate::stats::{Counter, Store};

#[derive(Debug)]
struct Bucket {
    max: u32,
    per_fill: u32,
    interval: Duration,
    start: Instant,
    /// High half: the fill interval last counted; low half: tokens.
    state: AtomicU64,
}

impl Bucket {
    fn take(&self) -> bool {
        let now = (self.start.elapsed().as_nanos() / self.interval.as_nanos().max(1)) as u64;
        let now = now.min(u64::from(u32::MAX));
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (seen, tokens) = (cur >> 32, cur & 0xffff_ffff);
            let tokens = if now > seen {
                let added = (now - seen).saturating_mul(u64::from(self.per_fill));
                tokens.saturating_add(added).min(u64::from(self.max))
            } else {
                tokens
            };
            let seen = seen.max(now);
            let (next, allowed) = match tokens {
                0 => ((seen << 32), false),
                t => ((seen << 32) | (t - 1), true),
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return allowed,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[derive(Debug)]
struct Stats {
    enabled: Counter,
    enforced: Counter,
    rate_limited: Counter,
    ok: Counter,
}

/// One compiled configuration with its bucket.
#[derive(Debug)]
pub struct RateLimit {
    bucket: Option<Bucket>,
    enabled: (u32, u32),
    enforced: (u32, u32),
    pub status: u16,
    /// Request side: added when limited but not enforced; response side:
    /// added to the limited reply.
    pub headers: HeaderOps,
    stats: Stats,
}

/// What the filter decided for one request.
pub enum Limited {
    Pass,
    /// Answer with the configured status.
    Refuse,
}

fn share(p: &Option<RuntimeFractionalPercent>) -> (u32, u32) {
    // Unset is Envoy's default FractionalPercent: 0%.
    p.as_ref().map_or((0, 100), |p| {
        (
            p.default_value.numerator,
            p.default_value.denominator.value(),
        )
    })
}

fn roll((n, d): (u32, u32)) -> bool {
    n > 0 && fastrand::u32(0..d.max(1)) < n
}

impl RateLimit {
    pub fn compile(c: &LocalRateLimit, store: &Store) -> Result<Self, String> {
        let scope = store.scope(
            &format!("{}.http_local_rate_limit.", c.stat_prefix),
            "envoy_http_local_rate_limit_",
            vec![("envoy_local_http_ratelimit_prefix", c.stat_prefix.clone())],
        );
        let bucket = c.token_bucket.as_ref().map(|b| Bucket {
            max: b.max_tokens,
            per_fill: b.tokens_per_fill.unwrap_or(1),
            interval: b.fill_interval.map_or(Duration::from_secs(1), |d| d.0),
            start: Instant::now(),
            state: AtomicU64::new(u64::from(b.max_tokens)),
        });
        Ok(RateLimit {
            bucket,
            enabled: share(&c.filter_enabled),
            enforced: share(&c.filter_enforced),
            status: c.status.as_ref().and_then(|s| s.number()).unwrap_or(429),
            headers: HeaderOps::compile(
                &c.request_headers_to_add_when_not_enforced,
                &[],
                &c.response_headers_to_add,
                &[],
            )?,
            stats: Stats {
                enabled: scope.counter("enabled"),
                enforced: scope.counter("enforced"),
                rate_limited: scope.counter("rate_limited"),
                ok: scope.counter("ok"),
            },
        })
    }

    /// Takes a token for the request if the filter applies to it;
    /// `request` gets the not-enforced headers when it is limited but let
    /// through.
    pub fn check(&self, request: &mut HeaderMap) -> Limited {
        let Some(bucket) = &self.bucket else {
            return Limited::Pass;
        };
        if !roll(self.enabled) {
            return Limited::Pass;
        }
        self.stats.enabled.inc();
        if bucket.take() {
            self.stats.ok.inc();
            return Limited::Pass;
        }
        self.stats.rate_limited.inc();
        if !roll(self.enforced) {
            self.headers.request.apply(request);
            return Limited::Pass;
        }
        self.stats.enforced.inc();
        Limited::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(json: serde_json::Value) -> RateLimit {
        let c: LocalRateLimit = serde_json::from_value(json).unwrap();
        RateLimit::compile(&c, &Store::new()).unwrap()
    }

    fn refused(r: &RateLimit, n: usize) -> usize {
        (0..n)
            .filter(|_| matches!(r.check(&mut HeaderMap::new()), Limited::Refuse))
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_per_interval_up_to_its_size() {
        let r = limit(serde_json::json!({
            "stat_prefix": "t",
            "token_bucket": {"max_tokens": 3, "tokens_per_fill": 2, "fill_interval": "1s"},
            "filter_enabled": {"default_value": {"numerator": 100}},
            "filter_enforced": {"default_value": {"numerator": 100}}
        }));
        assert_eq!(refused(&r, 5), 2, "3 tokens to start");
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_eq!(refused(&r, 1), 1, "no refill before the interval");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(refused(&r, 3), 1, "2 tokens per fill");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(refused(&r, 4), 1, "never more than max_tokens");
    }

    #[tokio::test(start_paused = true)]
    async fn unset_shares_disable_or_only_count() {
        let off = limit(serde_json::json!({
            "stat_prefix": "off",
            "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}
        }));
        assert_eq!(refused(&off, 5), 0, "filter_enabled unset: 0%");
        let counting = limit(serde_json::json!({
            "stat_prefix": "count",
            "token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
            "filter_enabled": {"default_value": {"numerator": 100}},
            "request_headers_to_add_when_not_enforced": [{"header": {"key": "x-limited", "value": "yes"}}]
        }));
        let mut h = HeaderMap::new();
        assert!(matches!(counting.check(&mut h), Limited::Pass));
        assert!(h.is_empty());
        assert!(matches!(counting.check(&mut h), Limited::Pass));
        assert_eq!(h.get("x-limited").unwrap(), "yes");
        assert_eq!(counting.stats.rate_limited.get(), 1);
    }
}
