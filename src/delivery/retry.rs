//! The retry schedule, as data: how long to wait before each next attempt. How many attempts
//! and for how long is per integration ([`crate::channels::options::DeliveryOptions`]); what a
//! failure allows (back off, wait until a time, give up) is the failure's
//! ([`crate::channels::error::Next`]). The engine only combines the three.

use std::time::Duration;

use rand::Rng;

/// The backoff between attempts. How many attempts and for how long is per integration
/// ([`crate::channels::options::DeliveryOptions`]).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The first retry waits up to this.
    pub initial: Duration,
    /// No retry waits longer than this (unless the upstream asks with `Retry-After`).
    pub max_delay: Duration,
    /// Delivery slots: jobs sent at once.
    pub concurrency: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            concurrency: 16,
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, initial·2^(attempt-1))], but never shorter than
    /// what the upstream asked for.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
            .min(self.max_delay);
        let jittered = rand::rng().random_range(Duration::ZERO..=exp);
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_grows_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            assert!(p.delay(attempt, None) <= p.max_delay);
        }
        assert!(p.delay(1, None) <= Duration::from_secs(1));
        assert!(p.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        // The ceiling doubles: the mean of many draws at attempt 4 is well above attempt 1's.
        let mean = |a| {
            (0..2000)
                .map(|_| p.delay(a, None).as_secs_f64())
                .sum::<f64>()
                / 2000.0
        };
        assert!(mean(4) > 2.0 * mean(1), "{} vs {}", mean(4), mean(1));
    }
}
