//! Retry policies (a route's or virtual host's `retry_policy`), compiled
//! once per snapshot: which failed attempts another attempt may fix, how
//! many attempts a request gets, how long each may take and how long to
//! back off in between — with Envoy's semantics.

use std::time::Duration;

use http::HeaderMap;
use weft_envoy::route as cfg;

use crate::matchers::{HeaderMatch, RequestView};

/// `retry_on` conditions, as bits.
mod on {
    pub const FIVE_XX: u32 = 1;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const RESET: u32 = 1 << 2;
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    pub const REFUSED_STREAM: u32 = 1 << 5;
    pub const STATUS_CODES: u32 = 1 << 6;
    pub const HEADERS: u32 = 1 << 7;
    pub const RATE_LIMITED: u32 = 1 << 8;
    pub const GRPC_CANCELLED: u32 = 1 << 9;
    pub const GRPC_DEADLINE: u32 = 1 << 10;
    pub const GRPC_INTERNAL: u32 = 1 << 11;
    pub const GRPC_EXHAUSTED: u32 = 1 << 12;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 13;
}

/// How an attempt failed before a response came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    ConnectFailure,
    /// The upstream reset or closed the connection or stream.
    Reset,
    /// HTTP/2 REFUSED_STREAM: the upstream did not start on the request.
    RefusedStream,
    PerTryTimeout,
}

#[derive(Debug)]
pub struct RetryPolicy {
    on: u32,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    /// Avoid hosts already tried (the previous_hosts predicate).
    pub previous_hosts: bool,
    /// How many picks a retry gets to find a host the predicate accepts.
    pub host_selection_attempts: u32,
    status_codes: Vec<u16>,
    base: Duration,
    max: Duration,
    retriable_headers: Vec<HeaderMatch>,
    request_headers: Vec<HeaderMatch>,
}

impl RetryPolicy {
    pub fn compile(p: &cfg::RetryPolicy) -> Result<Self, String> {
        let mut bits = 0;
        for token in p.retry_on.split(',').map(str::trim) {
            bits |= match token {
                "5xx" => on::FIVE_XX,
                "gateway-error" => on::GATEWAY_ERROR,
                "reset" => on::RESET,
                "connect-failure" => on::CONNECT_FAILURE,
                "retriable-4xx" => on::RETRIABLE_4XX,
                "refused-stream" => on::REFUSED_STREAM,
                "retriable-status-codes" => on::STATUS_CODES,
                "retriable-headers" => on::HEADERS,
                "envoy-ratelimited" => on::RATE_LIMITED,
                "cancelled" => on::GRPC_CANCELLED,
                "deadline-exceeded" => on::GRPC_DEADLINE,
                "internal" => on::GRPC_INTERNAL,
                "resource-exhausted" => on::GRPC_EXHAUSTED,
                "unavailable" => on::GRPC_UNAVAILABLE,
                // Envoy ignores conditions it does not know, with a warning.
                "" | "http3-post-connect-failure" => 0,
                other => {
                    tracing::warn!("retry_on: unknown condition {other:?} ignored, as Envoy does");
                    0
                }
            };
        }
        let base = p
            .retry_back_off
            .as_ref()
            .and_then(|b| b.base_interval)
            .map(|d| d.0)
            .unwrap_or(Duration::from_millis(25));
        let max = p
            .retry_back_off
            .as_ref()
            .and_then(|b| b.max_interval)
            .map(|d| d.0)
            .unwrap_or(base * 10);
        let matchers = |list: &[cfg::HeaderMatcher], field: &str| {
            list.iter()
                .enumerate()
                .map(|(i, h)| HeaderMatch::compile(h).map_err(|e| format!("{field}[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(RetryPolicy {
            on: bits,
            num_retries: p.num_retries.unwrap_or(1),
            per_try_timeout: p.per_try_timeout.map(|d| d.0).filter(|d| !d.is_zero()),
            previous_hosts: !p.retry_host_predicate.is_empty(),
            host_selection_attempts: p
                .host_selection_retry_max_attempts
                .map_or(1, |n| n.0.clamp(1, 100) as u32),
            status_codes: p
                .retriable_status_codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            base,
            max,
            retriable_headers: matchers(&p.retriable_headers, "retriable_headers")?,
            request_headers: matchers(&p.retriable_request_headers, "retriable_request_headers")?,
        })
    }

    /// Whether this request may be retried at all: with
    /// `retriable_request_headers`, only requests matching one of them.
    pub fn applies_to(&self, req: &RequestView) -> bool {
        self.request_headers.is_empty() || self.request_headers.iter().any(|m| m.matches(req))
    }

    /// Whether a response (its headers) is worth another attempt.
    pub fn retry_response(&self, status: u16, headers: &HeaderMap) -> bool {
        let has = |bit| self.on & bit != 0;
        if has(on::FIVE_XX) && (500..=599).contains(&status) {
            return true;
        }
        if has(on::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if has(on::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if has(on::STATUS_CODES) && self.status_codes.contains(&status) {
            return true;
        }
        if has(on::RATE_LIMITED) && headers.contains_key("x-envoy-ratelimited") {
            return true;
        }
        if has(on::HEADERS) && !self.retriable_headers.is_empty() {
            let view = RequestView {
                method: "",
                authority: "",
                scheme: "",
                path_and_query: "",
                headers,
            };
            if self.retriable_headers.iter().any(|m| m.matches(&view)) {
                return true;
            }
        }
        // gRPC status in the response headers (a trailers-only reply);
        // statuses that come in trailers are too late to retry.
        let grpc = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        match grpc {
            Some(1) => has(on::GRPC_CANCELLED),
            Some(4) => has(on::GRPC_DEADLINE),
            Some(8) => has(on::GRPC_EXHAUSTED),
            Some(13) => has(on::GRPC_INTERNAL),
            Some(14) => has(on::GRPC_UNAVAILABLE),
            _ => false,
        }
    }

    /// Whether an attempt that got no response is worth another.
    pub fn retry_failure(&self, f: AttemptFailure) -> bool {
        let has = |bit| self.on & bit != 0;
        let any_reset = has(on::FIVE_XX) || has(on::GATEWAY_ERROR) || has(on::RESET);
        match f {
            AttemptFailure::ConnectFailure => any_reset || has(on::CONNECT_FAILURE),
            AttemptFailure::RefusedStream => any_reset || has(on::REFUSED_STREAM),
            AttemptFailure::Reset | AttemptFailure::PerTryTimeout => any_reset,
        }
    }

    /// The pause before retry number `n` (1 for the first retry): fully
    /// jittered exponential back-off, as Envoy's — uniform below
    /// `(2^n - 1) × base`, capped at the maximum interval.
    pub fn backoff(&self, n: u32) -> Duration {
        let base_ms = self.base.as_millis().max(1) as u64;
        let ceiling = ((1u64 << n.min(32)) - 1).saturating_mul(base_ms);
        let ms = fastrand::u64(0..ceiling.max(1));
        Duration::from_millis(ms).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: serde_json::Value) -> RetryPolicy {
        let p: cfg::RetryPolicy = serde_json::from_value(json).unwrap();
        RetryPolicy::compile(&p).unwrap()
    }

    #[test]
    fn conditions() {
        let h = HeaderMap::new();
        let p = policy(serde_json::json!({"retry_on": "gateway-error"}));
        assert!(p.retry_response(503, &h));
        assert!(!p.retry_response(500, &h));
        assert!(p.retry_failure(AttemptFailure::Reset));
        let p = policy(serde_json::json!({"retry_on": "connect-failure,refused-stream"}));
        assert!(!p.retry_response(503, &h));
        assert!(p.retry_failure(AttemptFailure::ConnectFailure));
        assert!(p.retry_failure(AttemptFailure::RefusedStream));
        assert!(!p.retry_failure(AttemptFailure::Reset));
        assert!(!p.retry_failure(AttemptFailure::PerTryTimeout));
        let p = policy(serde_json::json!({
            "retry_on": "retriable-status-codes,unavailable, bogus",
            "retriable_status_codes": [418]
        }));
        assert!(p.retry_response(418, &h));
        assert!(!p.retry_response(503, &h));
        let mut g = HeaderMap::new();
        g.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert!(p.retry_response(200, &g));
        g.insert("grpc-status", http::HeaderValue::from_static("13"));
        assert!(!p.retry_response(200, &g));
        assert_eq!(p.num_retries, 1, "Envoy's default");
    }

    #[test]
    fn retriable_headers_match_the_response() {
        let p = policy(serde_json::json!({
            "retry_on": "retriable-headers",
            "retriable_headers": [{"name": "x-retry", "exact_match": "yes"}]
        }));
        let mut h = HeaderMap::new();
        assert!(!p.retry_response(200, &h));
        h.insert("x-retry", http::HeaderValue::from_static("yes"));
        assert!(p.retry_response(200, &h));
    }

    #[test]
    fn backoff_is_jittered_under_a_growing_ceiling() {
        let p = policy(serde_json::json!({
            "retry_on": "5xx",
            "retry_back_off": {"base_interval": "0.010s", "max_interval": "0.050s"}
        }));
        for _ in 0..200 {
            assert!(p.backoff(1) < Duration::from_millis(10));
            assert!(p.backoff(2) < Duration::from_millis(30));
            assert!(p.backoff(9) <= Duration::from_millis(50));
        }
        let spread: std::collections::HashSet<_> = (0..200).map(|_| p.backoff(3)).collect();
        assert!(spread.len() > 10, "full jitter: {spread:?}");
    }
}
