//! Webhooks appended as received and routed after their answer (the embedded store only):
//! under load, the accept path writes the validated notification once and answers; routing,
//! dedupe, fan-out and the history read it from here, in arrival order, and consume it in the
//! transaction that queues its jobs. A restart routes what is left.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::history::{Delivery, Retention};
use super::{Admission, Admitted, Store, StoreError};
use crate::webhook::Notification;

/// A webhook appended and not routed yet, oldest first.
#[derive(Debug)]
pub struct Inboxed {
    pub id: i64,
    /// The receiver the webhook's path named; `None`: routed by the route tree.
    pub receiver: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The notification, or why it cannot be read back (it is consumed all the same, and
    /// said so in the log).
    pub notification: Result<Notification, String>,
    pub(crate) stored: Stored,
}

/// Where an appended webhook's notification is stored: jobs of the same notification read it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) body: i64,
    pub(crate) packed: Arc<[u8]>,
}

fn unsupported() -> StoreError {
    StoreError::Db("the shared store routes every webhook before answering".into())
}

impl Store {
    /// Whether webhooks can be appended and routed after their answer (the embedded store;
    /// with Redis each is routed before it is answered, as replicas share the queue).
    pub fn keeps_inbox(&self) -> bool {
        matches!(self, Store::Sqlite(_))
    }

    /// Appends a validated notification, for the route tree (`receiver: None`) or a named
    /// receiver; answers once committed.
    pub async fn append(
        &self,
        n: &Notification,
        receiver: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.append(n, receiver, now).await,
            Store::Redis(_) => Err(unsupported()),
        }
    }

    /// [`Store::append`] of a webhook checked and encoded as received.
    pub async fn append_received(
        &self,
        received: &crate::webhook::Received,
        receiver: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.append_json(&received.json, receiver, now).await,
            Store::Redis(_) => Err(unsupported()),
        }
    }

    /// Webhooks appended and not routed yet.
    pub async fn inbox_len(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.inbox_len().await,
            Store::Redis(_) => Ok(0),
        }
    }

    /// The `limit` oldest appended webhooks.
    pub async fn inbox_take(&self, limit: usize) -> Result<Vec<Inboxed>, StoreError> {
        match self {
            Store::Sqlite(s) => s.inbox_take(limit).await,
            Store::Redis(_) => Ok(Vec::new()),
        }
    }

    /// Queues `admissions` (made from `taken`) with their history `records`, and consumes
    /// `taken`, in one transaction: a webhook is routed once, whatever stops when.
    pub async fn admit_inboxed(
        &self,
        taken: &[Inboxed],
        admissions: Vec<Admission>,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Admitted>, Option<StoreError>), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let taken = taken.iter().map(|t| (t.id, t.stored.clone())).collect();
                s.admit_inboxed(taken, admissions, records, keep, now).await
            }
            Store::Redis(_) => Err(unsupported()),
        }
    }
}
