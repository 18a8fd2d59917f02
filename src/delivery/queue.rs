//! The hand-off between the webhook handler and the workers.
//!
//! Bounded: when it is full the webhook answers 503 and Alertmanager retries later, rather
//! than this process growing without limit. A notification's jobs are enqueued all or none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::channels::Progress;
use crate::webhook::Notification;

/// One notification for one receiver integration.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub receiver: String,
    /// Index of the integration within the receiver.
    pub integration: usize,
    /// The integration's type, for metric labels.
    pub kind: &'static str,
    pub notification: Notification,
    /// Attempts made so far.
    pub attempt: u32,
    /// Recipients already delivered, so retries skip them.
    pub progress: Progress,
    pub accepted_at: DateTime<Utc>,
    /// Re-routed here by another integration's `fallback_receiver`; such a job is never
    /// re-routed again.
    pub fallback: bool,
}

/// The queue is full; the client should retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("delivery queue is full")]
pub struct QueueFull;

#[derive(Debug, Clone)]
pub struct Queue {
    tx: mpsc::Sender<Job>,
    next_id: Arc<AtomicU64>,
}

impl Queue {
    pub fn new(capacity: usize) -> (Queue, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Queue {
                tx,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            rx,
        )
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Enqueues all jobs or none.
    pub fn try_enqueue(&self, jobs: Vec<Job>) -> Result<(), QueueFull> {
        if jobs.is_empty() {
            return Ok(());
        }
        let permits = self
            .tx
            .try_reserve_many(jobs.len())
            .map_err(|_| QueueFull)?;
        for (permit, job) in permits.zip(jobs) {
            permit.send(job);
        }
        Ok(())
    }

    /// Whether the workers are still taking jobs.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }
}
