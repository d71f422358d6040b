//! Per-destination sending rates: big receivers throttle, then block, senders that open too
//! many transactions too fast, so the queue spaces them out itself.
//!
//! Each recipient domain with a limit has a token bucket that holds up to one window's worth
//! of messages and refills continuously. Taking a token may leave the bucket in debt; the
//! debt is how long the taker waits, so concurrent connections to one domain queue up in
//! order instead of all waking at once.
//!
//! A rate holds for the platform: each node takes its share, the rate over the live nodes
//! rounded up ([`NodeCount::share_of`]), recomputed at each reservation as nodes come and go.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cluster::NodeCount;

/// A rate as configured: `"120/min"`, `"5/s"`, `"10000/h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate {
    /// Messages per window.
    pub messages: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    fn per_second(self) -> f64 {
        f64::from(self.messages) / self.per.as_secs_f64()
    }
}

/// A rate that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a rate such as \"120/min\", \"5/s\" or \"1000/h\"")]
pub struct RateError(String);

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RateError(text.to_string());
        let (count, unit) = text.split_once('/').ok_or_else(error)?;
        let messages: u32 = count.trim().parse().map_err(|_| error())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(error()),
        };
        if messages == 0 {
            return Err(error());
        }
        Ok(Rate { messages, per })
    }
}

impl TryFrom<String> for Rate {
    type Error = RateError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.messages)
    }
}

/// Buckets kept before full (idle) ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// The sending rates of every destination domain.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: HashMap<String, Rate>,
    /// The rate of every domain without its own (`*`).
    default: Option<Rate>,
    /// The platform's live nodes, each taking its share of every rate.
    nodes: NodeCount,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens left at `at`; negative when takers are waiting.
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Limits by recipient domain (`*` for every other domain) for the whole platform, this
    /// node taking its share of each as `nodes` says.
    pub fn new(limits: &BTreeMap<String, Rate>, nodes: NodeCount) -> Self {
        let mut limits: HashMap<String, Rate> = limits
            .iter()
            .map(|(domain, rate)| (domain.to_ascii_lowercase(), *rate))
            .collect();
        let default = limits.remove("*");
        Self {
            limits,
            default,
            nodes,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The rate that applies to a domain on this node, if any: its share of the platform's.
    pub fn rate(&self, domain: &str) -> Option<Rate> {
        let platform = self.limits.get(domain).copied().or(self.default)?;
        let messages = usize::try_from(platform.messages).unwrap_or(usize::MAX);
        Some(Rate {
            messages: u32::try_from(self.nodes.share_of(messages)).unwrap_or(u32::MAX),
            per: platform.per,
        })
    }

    /// Takes the right to send one message to `domain` and says how long to wait before
    /// using it (zero when it may go now).
    pub fn reserve(&self, domain: &str, now: Instant) -> Duration {
        let Some(rate) = self.rate(domain) else {
            return Duration::ZERO;
        };
        let capacity = f64::from(rate.messages);
        let refill = rate.per_second();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * refill
                    < capacity
            });
        }
        let bucket = buckets.entry(domain.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill).min(capacity) - 1.0;
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / refill)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_with_their_unit() {
        let rate: Rate = "120/min".parse().unwrap();
        assert_eq!(rate.messages, 120);
        assert_eq!(rate.per, Duration::from_secs(60));
        assert_eq!(rate.to_string(), "120/min");
        assert_eq!("5/s".parse::<Rate>().unwrap().per_second(), 5.0);
        for bad in ["", "120", "0/s", "x/s", "5/week", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_bucket_lets_a_window_through_then_spaces_messages_out() {
        let limiter = RateLimiter::new(
            &BTreeMap::from([("Big.example".to_string(), "10/s".parse().unwrap())]),
            NodeCount::default(),
        );
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.reserve("big.example", start), Duration::ZERO);
        }
        // Each further taker waits one more tenth of a second than the one before.
        let waits: Vec<u128> = (0..3)
            .map(|_| limiter.reserve("big.example", start).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 300]);
        // A second later the debt of three is paid and seven tokens are back.
        let later = start + Duration::from_secs(1);
        for _ in 0..7 {
            assert_eq!(limiter.reserve("big.example", later), Duration::ZERO);
        }
        assert!(limiter.reserve("big.example", later) > Duration::ZERO);
        // Other domains are not limited.
        assert_eq!(limiter.reserve("small.example", start), Duration::ZERO);
    }

    #[test]
    fn the_wildcard_limits_every_other_domain_on_its_own() {
        let limiter = RateLimiter::new(
            &BTreeMap::from([
                ("*".to_string(), "1/s".parse().unwrap()),
                ("fast.example".to_string(), "100/s".parse().unwrap()),
            ]),
            NodeCount::default(),
        );
        let now = Instant::now();
        assert_eq!(limiter.reserve("a.example", now), Duration::ZERO);
        assert_eq!(limiter.reserve("a.example", now), Duration::from_secs(1));
        assert_eq!(limiter.reserve("b.example", now), Duration::ZERO);
        assert_eq!(limiter.rate("fast.example").unwrap().messages, 100);
    }

    #[test]
    fn each_node_takes_its_share_of_a_rate_as_nodes_come_and_go() {
        let nodes = NodeCount::new(3);
        let limiter = RateLimiter::new(
            &BTreeMap::from([("big.example".to_string(), "10/s".parse().unwrap())]),
            nodes.clone(),
        );
        assert_eq!(limiter.rate("big.example").unwrap().to_string(), "4/s");
        let start = Instant::now();
        for _ in 0..4 {
            assert_eq!(limiter.reserve("big.example", start), Duration::ZERO);
        }
        // The fifth waits a quarter of a second: a share of four a second.
        assert_eq!(limiter.reserve("big.example", start).as_millis(), 250);
        nodes.set(1);
        assert_eq!(limiter.rate("big.example").unwrap().to_string(), "10/s");
        // Once the debt is paid, the whole rate is this node's.
        let later = start + Duration::from_secs(2);
        for _ in 0..10 {
            assert_eq!(limiter.reserve("big.example", later), Duration::ZERO);
        }
        nodes.set(50);
        assert_eq!(
            limiter.rate("big.example").unwrap().messages,
            1,
            "never nothing"
        );
    }
}
