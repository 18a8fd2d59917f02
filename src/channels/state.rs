//! Long-lived upstream state, in one home: what must outlive any one configuration (token
//! buckets, and what each channel keeps: access tokens, back-offs) is made once by the service and handed to every
//! configuration it compiles, so a reload keeps limits and tokens, and nothing lives in a
//! process global. What replicas must share goes through the store: with Redis the buckets are
//! kept there ([`RateLimits::shared`]).

use std::sync::Arc;

use super::ratelimit::RateLimits;
use crate::store::redis::RedisStore;

/// Cheap to clone: every field is shared.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    /// Token buckets per upstream credential.
    pub limits: Arc<RateLimits>,
    /// What each channel keeps (its access tokens, its back-offs), declared in the registry.
    pub channels: super::Kept,
}

impl Upstreams {
    /// State kept in this process alone (one replica, or the command line).
    pub fn local() -> Upstreams {
        Upstreams::default()
    }

    /// State shared by the replicas on one Redis: the token buckets are kept there.
    pub fn shared(redis: RedisStore) -> Upstreams {
        Upstreams {
            limits: Arc::new(RateLimits::shared(redis)),
            channels: super::Kept::default(),
        }
    }
}
