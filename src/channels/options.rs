//! Per-integration delivery settings every `*_configs` entry can carry, parsed in one place.
//!
//! An integration config declares the YAML keys (`max_attempts`, `max_age`, `rate_limit`,
//! `coalesce_after`) as optional fields and calls [`DeliveryOptions::resolve`] with them; the
//! defaults and the validation messages live here, so every integration behaves alike.

use std::time::Duration;

use serde::Deserialize;

/// Attempts before a retryable failure is given up. Ten attempts with backoff capped at a
/// minute span roughly ten minutes: long enough for an upstream blip or a deploy, short
/// enough that an on-call hears about a broken integration (the dead-letter alert) quickly.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// An alert older than this is parked (dead letter) instead of retried: after an hour a
/// page has usually been seen elsewhere or is stale, and Alertmanager re-notifies anyway
/// (`repeat_interval`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// A backlog for one integration that would take longer than this to send at the allowed
/// rate is merged into one digest message.
pub const DEFAULT_COALESCE_AFTER: Duration = Duration::from_secs(10);
/// A token bucket: `rate` requests per second on average, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second (may be fractional: `0.5` is one every two seconds).
    pub rate: f64,
    /// Requests that may go back to back after a quiet period.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

/// The resolved settings of one integration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryOptions {
    pub max_attempts: u32,
    pub max_age: Duration,
    /// `None`: no limit (console).
    pub rate_limit: Option<RateLimit>,
    pub coalesce_after: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: DEFAULT_MAX_AGE,
            rate_limit: None,
            coalesce_after: DEFAULT_COALESCE_AFTER,
        }
    }
}

impl DeliveryOptions {
    /// Applies defaults and reports invalid values under `at` (the integration's YAML path).
    pub fn resolve(
        at: &str,
        max_attempts: Option<u32>,
        max_age: Option<Duration>,
        rate_limit: Option<RateLimit>,
        default_rate: Option<RateLimit>,
        coalesce_after: Option<Duration>,
        report: &mut dyn FnMut(String, String),
    ) -> DeliveryOptions {
        if max_attempts == Some(0) {
            report(format!("{at}.max_attempts"), "must be at least 1".into());
        }
        if max_age == Some(Duration::ZERO) {
            report(format!("{at}.max_age"), "must be longer than 0s".into());
        }
        if let Some(r) = rate_limit {
            if !(r.rate.is_finite() && r.rate > 0.0) {
                report(
                    format!("{at}.rate_limit.rate"),
                    "must be a positive number of requests per second".into(),
                );
            }
            if r.burst == 0 {
                report(
                    format!("{at}.rate_limit.burst"),
                    "must be at least 1".into(),
                );
            }
        }
        DeliveryOptions {
            max_attempts: max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
            max_age: max_age.unwrap_or(DEFAULT_MAX_AGE),
            rate_limit: rate_limit.or(default_rate),
            coalesce_after: coalesce_after.unwrap_or(DEFAULT_COALESCE_AFTER),
        }
    }
}

/// `send_resolved` and the like default to on.
pub fn default_true() -> bool {
    true
}

/// The [`crate::channels::ChannelConfig`] methods every `*_configs` entry answers alike from
/// its keys `send_resolved`, `fallback_receiver`, `max_attempts`, `max_age`, `rate_limit` and
/// `coalesce_after` (serde cannot flatten them into a shared struct under
/// `deny_unknown_fields`): written inside the entry's `impl ChannelConfig`, with the channel's
/// kind name and default rate limit.
macro_rules! common_keys {
    ($kind:expr, $default_rate:expr) => {
        fn kind(&self) -> &'static str {
            $kind
        }

        fn send_resolved(&self) -> bool {
            self.send_resolved
        }

        fn fallback_receiver(&self) -> Option<&String> {
            self.fallback_receiver.as_ref()
        }

        fn delivery_options(
            &self,
            at: &str,
            report: &mut dyn FnMut(String, String),
        ) -> $crate::channels::options::DeliveryOptions {
            $crate::channels::options::DeliveryOptions::resolve(
                at,
                self.max_attempts,
                self.max_age,
                self.rate_limit,
                $default_rate,
                self.coalesce_after,
                report,
            )
        }
    };
}
pub(crate) use common_keys;
