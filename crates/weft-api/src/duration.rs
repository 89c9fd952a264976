//! Durations as Istio's YAML writes them.
//!
//! Istio's CRDs declare durations as strings checked with CEL's
//! `duration()`, which takes Go's syntax (`1h2m3.5s`, `100ms`, `250us`),
//! and protobuf JSON's `"3.5s"` is a subset of it. Both are accepted here.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration parsed from Go/CEL syntax; keeps the text the
/// user wrote so that messages can quote it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    value: StdDuration,
    text: String,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {text:?}: {reason} (expected e.g. \"5s\", \"1.5s\", \"100ms\", \"1m30s\")"
)]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

impl Duration {
    /// Parses Go duration syntax: a sequence of decimal numbers, each with a
    /// unit among `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`. A lone `0` is allowed.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            text: text.to_string(),
            reason,
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.starts_with('-') {
            return Err(err("negative durations are not allowed"));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s == "0" {
            return Ok(Duration {
                value: StdDuration::ZERO,
                text: text.to_string(),
            });
        }
        let mut total: u128 = 0; // nanoseconds
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or(err("missing unit"))?;
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let number = &rest[..num_len];
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let nanos_per: u128 = match unit {
                "h" => 3_600_000_000_000,
                "m" => 60_000_000_000,
                "s" => 1_000_000_000,
                "ms" => 1_000_000,
                "us" | "µs" | "μs" => 1_000,
                "ns" => 1,
                _ => return Err(err("unknown unit (use h, m, s, ms, us or ns)")),
            };
            let (int, frac) = number.split_once('.').unwrap_or((number, ""));
            if int.is_empty() && frac.is_empty() || frac.contains('.') {
                return Err(err("malformed number"));
            }
            let int: u128 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| err("number too large"))?
            };
            let mut part = int.checked_mul(nanos_per).ok_or(err("number too large"))?;
            let mut scale = nanos_per;
            for d in frac.bytes().take(30) {
                scale /= 10;
                part += u128::from(d - b'0') * scale;
            }
            total = total.checked_add(part).ok_or(err("number too large"))?;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("number too large"))?;
        Ok(Duration {
            value: StdDuration::new(secs, (total % 1_000_000_000) as u32),
            text: text.to_string(),
        })
    }

    pub fn as_std(&self) -> StdDuration {
        self.value
    }

    /// The text as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn from_std(value: StdDuration) -> Self {
        let text = if value.subsec_nanos() == 0 {
            format!("{}s", value.as_secs())
        } else {
            format!("{}s", value.as_secs_f64())
        };
        Duration { value, text }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\" or \"100ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        Duration::parse(s).unwrap().as_std().as_millis()
    }

    #[test]
    fn go_and_protobuf_forms() {
        assert_eq!(ms("5s"), 5000);
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("100ms"), 100);
        assert_eq!(ms("3m"), 180_000);
        assert_eq!(ms("1h1m1s"), 3_661_000);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("0"), 0);
        assert_eq!(Duration::parse("250us").unwrap().as_std().as_micros(), 250);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "5",
            "-1s",
            "5x",
            "s",
            "1..2s",
            "1.2.3s",
            "99999999999999999999999h",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
