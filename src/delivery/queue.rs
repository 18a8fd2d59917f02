//! The hand-off between the webhook handler and the workers: the durable store plus a wake-up.
//!
//! [`Queue::enqueue`] returns only once the jobs are committed to the store, so the webhook's
//! 200 means "stored". A notification's jobs are enqueued all or none. When more than
//! `storage.queue_capacity` notifications wait, or the store cannot be written, enqueueing
//! fails and the webhook answers 503 so that Alertmanager retries later.

use std::sync::Arc;

use tokio::sync::Notify;

use chrono::{DateTime, Utc};

use crate::store::history::{Delivery, Retention};
use crate::store::{Admission, Admitted, NewJob, Store, StoreError};

#[derive(Debug, Clone)]
pub struct Queue {
    pub store: Store,
    /// Wakes the dispatcher when new jobs are due now.
    pub wake: Arc<Notify>,
    /// When backlogs were last looked at for coalescing ([`super::digest`]): that scan counts
    /// every waiting job inside the store's group commit, so it runs at most every so often.
    pub(super) coalesced_at: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl Queue {
    pub fn new(store: Store) -> Queue {
        Queue {
            store,
            wake: Arc::new(Notify::new()),
            coalesced_at: Default::default(),
        }
    }

    /// Stores all jobs or none, then wakes the workers.
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<i64>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.store.enqueue(jobs).await?;
        self.wake.notify_one();
        Ok(ids)
    }

    /// Stores the admissions that are not duplicates, with their history records
    /// ([`Store::admit_recorded`]), then wakes the workers.
    pub async fn admit_recorded(
        &self,
        admissions: Vec<Admission>,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Admitted>, Option<StoreError>), StoreError> {
        if admissions.is_empty() {
            return Ok((Vec::new(), None));
        }
        let admitted = self
            .store
            .admit_recorded(admissions, records, keep, now)
            .await?;
        self.wake.notify_one();
        Ok(admitted)
    }

    /// Whether the store still takes jobs.
    pub fn is_open(&self) -> bool {
        self.store.is_open()
    }
}

/// Re-queues one dead letter (or all), recording it in the delivery history; how many. For
/// `deadletters replay` and the console alike.
pub async fn replay_dead_letters(store: &Store, id: Option<i64>) -> Result<u64, StoreError> {
    let jobs: Vec<_> = store
        .dead_letters()
        .await?
        .into_iter()
        .filter(|j| id.is_none_or(|id| j.id == id))
        .collect();
    let n = store.replay(id, Utc::now()).await?;
    if n > 0 {
        let web = crate::config::WebConfig::default();
        crate::delivery::history::replayed(store, &web, &jobs).await;
    }
    Ok(n)
}
