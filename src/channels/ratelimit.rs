//! Token buckets per upstream credential, shared by every worker.
//!
//! An integration names its credential with a string key (a hash of the WxPusher app token, an
//! Official Account app id) and calls [`RateLimits::acquire`] before each upstream request.
//! Waiters queue on the bucket's lock in arrival order and the one holding it sleeps until a
//! token is there, so however many workers send, the requests leave no faster than the bucket
//! allows. Uses tokio's clock, so tests can pause time. With a shared Redis the buckets live
//! there (one Lua script, Redis's clock), so several replicas together keep each limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};

use super::options::RateLimit;
use crate::store::redis::RedisStore;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Every bucket, by credential key. Kept across configuration reloads.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Bucket>>>>,
    /// With several replicas on one Redis, the buckets live there instead, shared by all.
    shared: Option<RedisStore>,
}

impl RateLimits {
    pub fn new() -> RateLimits {
        RateLimits::default()
    }

    /// Buckets kept in Redis, so that all replicas together stay within each limit.
    pub fn shared(redis: RedisStore) -> RateLimits {
        RateLimits {
            buckets: Mutex::default(),
            shared: Some(redis),
        }
    }

    /// Waits until a request for `key` may go out under `limit`, and takes its token.
    pub async fn acquire(&self, key: &str, limit: RateLimit) {
        let rate = if limit.rate.is_finite() && limit.rate > 0.0 {
            limit.rate
        } else {
            return;
        };
        if let Some(redis) = &self.shared {
            return acquire_shared(redis, key, rate, limit.burst).await;
        }
        let burst = f64::from(limit.burst.max(1));
        let bucket = {
            let mut map = match self.buckets.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.entry(key.to_string())
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(Bucket {
                        tokens: burst,
                        last: Instant::now(),
                    }))
                })
                .clone()
        };
        let mut b = bucket.lock().await;
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / rate);
            tokio::time::sleep(wait).await;
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
            b.last = now;
        }
        b.tokens -= 1.0;
    }

    /// How long a backlog of `requests` takes to send under `limit` from an empty bucket.
    pub fn drain_time(requests: u64, limit: RateLimit) -> Duration {
        let beyond_burst = requests.saturating_sub(u64::from(limit.burst));
        if limit.rate > 0.0 && limit.rate.is_finite() {
            Duration::from_secs_f64(beyond_burst as f64 / limit.rate)
        } else {
            Duration::ZERO
        }
    }
}

/// Reserves a token in Redis and waits for it. While Redis cannot be reached nothing is sent
/// (the limit is a promise to the upstream): it tries again with a growing pause.
async fn acquire_shared(redis: &RedisStore, key: &str, rate: f64, burst: u32) {
    let mut pause = Duration::from_millis(50);
    loop {
        match redis.take_token(key, rate, burst).await {
            Ok(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a rate-limit token from redis, waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fifty_requests_at_two_per_second_never_exceed_the_bucket() {
        let limits = Arc::new(RateLimits::new());
        let limit = RateLimit {
            rate: 2.0,
            burst: 2,
        };
        let start = Instant::now();
        let mut tasks = Vec::new();
        // Many concurrent senders on one credential, as many workers would be.
        for _ in 0..50 {
            let limits = limits.clone();
            tasks.push(tokio::spawn(async move {
                limits.acquire("wxpusher:abc", limit).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap().duration_since(start));
        }
        times.sort();
        // Two at once, then one every 500 ms: the 50th at 24 s.
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[1], Duration::ZERO);
        // The bucket's promise: in any window of length T, at most burst + rate·T requests.
        for i in 0..times.len() {
            for j in i..times.len() {
                let window = (times[j] - times[i]).as_secs_f64();
                let allowed = 2.0 + 2.0 * window + 1e-6;
                assert!(
                    (j - i + 1) as f64 <= allowed,
                    "{} requests within {window}s",
                    j - i + 1
                );
            }
        }
        assert!(times[49] >= Duration::from_secs(24), "{:?}", times[49]);
        assert!(
            times[49] <= Duration::from_millis(24_010),
            "{:?}",
            times[49]
        );
        // Another credential is not slowed by this one.
        let t = Instant::now();
        limits.acquire("wxpusher:other", limit).await;
        assert_eq!(Instant::now(), t);
    }

    #[test]
    fn drain_time_counts_beyond_the_burst() {
        let l = RateLimit {
            rate: 2.0,
            burst: 2,
        };
        assert_eq!(RateLimits::drain_time(2, l), Duration::ZERO);
        assert_eq!(RateLimits::drain_time(22, l), Duration::from_secs(10));
    }
}
