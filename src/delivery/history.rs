//! Recording what becomes of each delivery in the store's history ([`crate::store::history`]):
//! the records of an admission go with it, an attempt's change goes with its outcome in the
//! queue ([`update_of`], written by [`crate::store::Store::finish`]: one store write, one
//! commit), merges and replays beside the queue. Best-effort: a history write that fails is
//! logged and never holds up a delivery.

use chrono::{DateTime, Utc};
use tracing::debug;

use super::Queue;
use crate::config::WebConfig;
use crate::store::history::{Change, Delivery, DeliveryState, Derived, Retention, Update};
use crate::store::inbox::Inboxed;
use crate::store::{Admission, Admitted, Job, NewJob, Store, StoreError};
use crate::webhook::Notification;

/// The history's bounds, from `web.history_retention` and `web.history_max`.
pub fn retention(web: &WebConfig) -> Retention {
    Retention {
        max_age: web.history_retention,
        max: web.history_max,
    }
}

/// Most alerts a history record keeps of its notification, and most distinct `alertname`s
/// and `generatorURL`s it lists: a record stays small however large the group (up to 10,000
/// alerts), and the console still has a payload to render again.
pub use crate::store::history::RECORD_ALERTS;

/// The notification as a record keeps it: whole when it has at most [`RECORD_ALERTS`]
/// alerts, else its first [`RECORD_ALERTS`], the others counted in `truncatedAlerts` (as
/// Alertmanager's `max_alerts` counts the alerts it leaves out).
pub(crate) fn kept(n: &Notification) -> Notification {
    crate::store::history::kept(n)
}

/// A fresh record of one delivery of `n`.
pub fn record(
    receiver: &str,
    kind: &str,
    integration: &str,
    n: &Notification,
    state: DeliveryState,
    accepted_at: DateTime<Utc>,
) -> Delivery {
    let Derived {
        group_key,
        status,
        alertnames,
        external_url,
        generator_urls,
    } = Derived::of(n);
    Delivery {
        id: 0,
        job: None,
        receiver: receiver.to_string(),
        kind: kind.to_string(),
        integration: integration.to_string(),
        group_key,
        status,
        alertnames,
        external_url,
        generator_urls,
        state,
        attempts: 0,
        accepted_at,
        updated_at: accepted_at,
        sent_at: None,
        next_attempt: None,
        last_error: None,
        digest: None,
        merged: None,
        notification: Some(kept(n)),
    }
}

fn of_job(job: &Job) -> Delivery {
    record(
        &job.receiver,
        &job.kind,
        job.integration.as_str(),
        &job.notification,
        DeliveryState::Queued,
        job.accepted_at,
    )
}

fn of_new(job: &NewJob, state: DeliveryState) -> Delivery {
    record(
        &job.receiver,
        &job.kind,
        job.integration.as_str(),
        &job.notification,
        state,
        job.accepted_at,
    )
}

/// [`Queue::admit_recorded`], recording each admission: queued under its job, or suppressed as a
/// duplicate. The records are committed with the admission (SQLite: the same transaction), so
/// the answer waits for one commit, not two.
pub async fn admit(
    queue: &Queue,
    web: &WebConfig,
    admissions: Vec<Admission>,
    now: DateTime<Utc>,
) -> Result<Vec<Admitted>, StoreError> {
    let seen = queued(&admissions);
    let (admitted, failed) = queue
        .admit_recorded(admissions, seen, retention(web), now)
        .await?;
    unrecorded(failed);
    Ok(admitted)
}

/// The history records of admissions, as if each were queued.
fn queued(admissions: &[Admission]) -> Vec<Delivery> {
    admissions
        .iter()
        .map(|a| of_new(&a.job, DeliveryState::Queued))
        .collect()
}

/// Says (at debug) that the history could not record what was admitted, which stands.
fn unrecorded(failed: Option<StoreError>) {
    if let Some(e) = failed {
        debug!(error = %e, "cannot record accepted deliveries in the history");
    }
}

/// [`admit`] for admissions made from appended webhooks (`taken`), which are consumed in the
/// same transaction ([`Store::admit_inboxed`]).
pub async fn admit_inboxed(
    queue: &Queue,
    web: &WebConfig,
    taken: &[Inboxed],
    admissions: Vec<Admission>,
    now: DateTime<Utc>,
) -> Result<Vec<Admitted>, StoreError> {
    let seen = queued(&admissions);
    let (admitted, failed) = queue
        .store
        .admit_inboxed(taken, admissions, seen, retention(web), now)
        .await?;
    unrecorded(failed);
    queue.wake.notify_one();
    Ok(admitted)
}

/// The change `change` to the history record of `job`, made from the job when it has none
/// yet (a digest, a fallback copy, a job stored before the history existed). Written with the
/// attempt's outcome ([`crate::store::Store::finish`]).
pub fn update_of(job: &Job, change: Change) -> Update {
    Update {
        job: job.id,
        change,
        or_insert: Some(of_job(job)),
    }
}

/// A backlog (`ids`) merged into `digests`: each digest gets a record, adopted by its job
/// when first attempted, and each merged delivery points at it.
pub async fn merged(store: &Store, web: &WebConfig, ids: &[i64], digests: &[NewJob]) {
    let now = Utc::now();
    let keep = retention(web);
    let records = digests
        .iter()
        .map(|d| {
            let mut r = of_new(d, DeliveryState::Queued);
            r.merged = Some(ids.len() as u64);
            r
        })
        .collect();
    let digest = match store.history_add(records, keep, now).await {
        Ok(ids) => ids.first().copied().unwrap_or_default(),
        Err(e) => {
            debug!(error = %e, "cannot record a digest in the history");
            return;
        }
    };
    // In steps, like the deletion of the merged jobs: thousands of records changed in one
    // request would hold the store's writer, and every webhook waiting for its commit.
    for chunk in ids.chunks(MERGED_STEP) {
        let updates = chunk
            .iter()
            .map(|&job| Update {
                job,
                change: Change::Merged { digest },
                or_insert: None,
            })
            .collect();
        if let Err(e) = store.history_update(updates, keep, now).await {
            debug!(error = %e, "cannot record merged deliveries in the history");
            return;
        }
    }
}

/// Records of merged deliveries changed in one request to the store.
const MERGED_STEP: usize = 256;

/// Dead letters re-queued by `deadletters replay` or the console.
pub async fn replayed(store: &Store, web: &WebConfig, jobs: &[Job]) {
    let updates = jobs
        .iter()
        .map(|j| Update {
            job: j.id,
            change: Change::Queued,
            // Only records that exist are updated: replay runs where the configured
            // retention may not be known (the command line), so it never prunes.
            or_insert: None,
        })
        .collect();
    if let Err(e) = store
        .history_update(updates, retention(web), Utc::now())
        .await
    {
        debug!(error = %e, "cannot record replayed deliveries in the history");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_a_bounded_part_of_a_large_notification() {
        let base = crate::webhook::sample_notification();
        let mut n = base.without_alerts();
        n.truncated_alerts = 5;
        for i in 0..10_000 {
            let mut a = base.alerts[0].clone();
            a.labels.insert("alertname".into(), format!("A{i:05}"));
            a.generator_url = format!("http://prom/{i}");
            n.alerts.push(a);
        }
        let r = record(
            "r",
            "some_kind",
            "id",
            &n,
            DeliveryState::Queued,
            Utc::now(),
        );
        let kept = r.notification.unwrap();
        assert_eq!(kept.alerts[..], n.alerts[..RECORD_ALERTS]);
        assert_eq!(kept.truncated_alerts, 5 + 10_000 - RECORD_ALERTS as u64);
        assert_eq!(kept.group_key, n.group_key);
        assert_eq!(r.alertnames.len(), RECORD_ALERTS);
        assert_eq!(r.alertnames[0], "A00000");
        assert_eq!(r.generator_urls.len(), RECORD_ALERTS);
        // A small one is kept whole.
        let r = record(
            "r",
            "some_kind",
            "id",
            &base,
            DeliveryState::Queued,
            Utc::now(),
        );
        assert_eq!(r.notification.unwrap(), base);
    }
}
