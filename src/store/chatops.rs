//! What chatops keeps: the reference of each group that was pushed (receiver, group key,
//! labels, recipients, acknowledgement) and the WxPusher subscribers learned from callbacks.
//!
//! A group keeps its reference while it fires, so replies to any of its messages stay valid;
//! the reference is pruned a grace period after the group resolved, or when nothing was
//! pushed for it for a long time (a resolution that never came). This module only stores;
//! [`crate::chatops`] decides what the rows mean. Here are the records, their lifetimes and
//! the dispatch; each backend keeps them its own way (`sqlite/chatops.rs`, `redis/chatops.rs`).

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use super::{Store, StoreError};
use crate::webhook::{Ack, LabelSet};

/// The characters references are made of: no `0`/`O`, `1`/`I`/`L`, which read alike.
pub const REF_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// A resolved group's reference stays valid this long.
pub const RESOLVED_GRACE: Duration = Duration::hours(24);
/// A firing group nothing was pushed for in this long is forgotten (its resolution was lost;
/// Alertmanager repeats firing notifications every `repeat_interval`, 4h by default).
pub const STALE_AFTER: Duration = Duration::days(7);
/// Length of new references; 31⁴ ≈ 920 000 of them.
pub(super) const REF_LEN: usize = 4;

/// A delivery of one group, as chatops records it.
#[derive(Debug, Clone)]
pub struct Touch {
    pub receiver: String,
    pub group_key: String,
    pub labels: LabelSet,
    pub alerts: Vec<LabelSet>,
    /// Who this delivery goes to (added to those already recorded).
    pub recipients: Vec<String>,
    /// Whether any alert of the group still fires.
    pub firing: bool,
    pub now: DateTime<Utc>,
}

/// What is known about a reference.
#[derive(Debug, Clone, PartialEq)]
pub struct RefRecord {
    pub reference: String,
    pub receiver: String,
    pub group_key: String,
    pub labels: LabelSet,
    pub alerts: Vec<LabelSet>,
    pub recipients: Vec<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub ack: Option<Ack>,
}

/// One WxPusher subscription learned from an `app_subscribe` callback.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subscriber {
    pub uid: String,
    /// The QR code's parameter (a `subscriber_tags` entry); empty for the plain code.
    pub extra: String,
    pub subscribed_at: DateTime<Utc>,
}

pub(super) fn new_reference(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| REF_ALPHABET[rng.random_range(0..REF_ALPHABET.len())] as char)
        .collect()
}

impl Store {
    /// Records a delivery of a group and returns its reference: the one it already has, a
    /// new one if it fires and has none, `None` for a resolved group without one. Prunes
    /// expired references on the way.
    pub async fn chatops_touch(&self, t: Touch) -> Result<Option<RefRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.chatops_touch(t).await,
            Store::Redis(s) => s.chatops_touch(t).await,
        }
    }

    /// A reference that is firing or resolved within the grace period.
    pub async fn chatops_ref(
        &self,
        reference: String,
        now: DateTime<Utc>,
    ) -> Result<Option<RefRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.chatops_ref(reference, now).await,
            Store::Redis(s) => s.chatops_ref(reference, now).await,
        }
    }

    /// Records who acknowledged a reference; false if it is unknown.
    pub async fn chatops_ack(&self, reference: String, ack: Ack) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.chatops_ack(reference, ack).await,
            Store::Redis(s) => s.chatops_ack(reference, ack).await,
        }
    }

    /// Every firing group's reference, oldest first.
    pub async fn chatops_firing(&self) -> Result<Vec<RefRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.chatops_firing().await,
            Store::Redis(s) => s.chatops_firing().await,
        }
    }

    /// Stores an `app_subscribe` callback (the latest time wins for the same uid and extra).
    pub async fn subscriber_add(
        &self,
        uid: String,
        extra: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.subscriber_add(uid, extra, at).await,
            Store::Redis(s) => s.subscriber_add(uid, extra, at).await,
        }
    }

    /// The UIDs subscribed with any of these `extra` tags, without duplicates.
    pub async fn subscribers(&self, tags: Vec<String>) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.subscribers(tags).await,
            Store::Redis(s) => s.subscribers(tags).await,
        }
    }

    /// Every subscription (uid and tag), oldest first: for `subscribers list`.
    pub async fn subscriber_list(&self) -> Result<Vec<Subscriber>, StoreError> {
        match self {
            Store::Sqlite(s) => s.subscriber_list().await,
            Store::Redis(s) => s.subscriber_list().await,
        }
    }

    /// Forgets every subscription of `uid`, whatever its tag; how many there were.
    pub async fn subscriber_remove(&self, uid: String) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.subscriber_remove(uid).await,
            Store::Redis(s) => s.subscriber_remove(uid).await,
        }
    }
}
