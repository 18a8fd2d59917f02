//! Storm digests: the backlog of a rate-limited integration that would take longer than its
//! `coalesce_after` to send is folded into one digest job ([`super::coalesce`]).
//!
//! The dispatcher calls [`coalesce_backlogs`] before each claim. It names no channel: the
//! rate limit and `coalesce_after` come from the integration's delivery options.

use tracing::{error, warn};

use super::Queue;
use super::coalesce;
use super::ratelimit::RateLimits;
use crate::runtime::Runtime;
use crate::store::{Failure, Job, NewJob};

/// Jobs claimed at once while coalescing: with the digest so far, all that is decoded at once.
const COALESCE_CHUNK: usize = 16;
/// Jobs merged in one coalescing pass at most; the rest wait for the next pass.
const COALESCE_MAX: usize = 16_384;
/// Backlogs are looked at for coalescing at most this often.
const SCAN_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Merged jobs deleted per store write.
const COALESCE_DELETE: usize = 64;

/// Merges the backlog of every rate-limited integration that would take longer than its
/// `coalesce_after` to send into one digest job.
pub(super) async fn coalesce_backlogs(queue: &Queue, rt: &Runtime) {
    {
        // The depth scan reads every waiting job on the store's writer, between the commits
        // webhooks wait for: under a burst, once per dispatcher turn would starve them.
        let mut at = queue.coalesced_at.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < SCAN_EVERY) {
            return;
        }
        *at = Some(now);
    }
    let store = &queue.store;
    let Ok(depth) = store.depth().await else {
        return;
    };
    for d in depth {
        let Some(i) = rt.integration(&d.receiver, &d.integration) else {
            continue;
        };
        let Some(limit) = i.delivery.rate_limit else {
            continue;
        };
        if d.count < 2 || RateLimits::drain_time(d.count, limit) <= i.delivery.coalesce_after {
            continue;
        }
        // Claimed in chunks, each job folded into a bounded digest and dropped: memory stays
        // bounded by one chunk plus the digest's fixed-size summary, however long the backlog.
        let mut ids: Vec<i64> = Vec::new();
        let mut digest = coalesce::DigestBuilder::new();
        let mut first: Option<Job> = None;
        loop {
            let jobs = match store
                .claim_target(
                    &d.receiver,
                    &d.integration,
                    ids.last().copied().unwrap_or(0),
                    COALESCE_CHUNK,
                )
                .await
            {
                Ok(j) => j,
                Err(e) => {
                    warn!(error = %e, "cannot claim a backlog to coalesce");
                    break;
                }
            };
            let taken = jobs.len();
            if ids.is_empty() && taken == 1 {
                // Possibly the whole backlog: kept aside, merged only if more follows.
                ids.push(jobs[0].id);
                first = jobs.into_iter().next();
                continue;
            }
            if taken == 0 {
                break;
            }
            ids.extend(jobs.iter().map(|j| j.id));
            for job in first.take().into_iter().chain(jobs) {
                digest.add(NewJob::from(job));
            }
            if taken < COALESCE_CHUNK || ids.len() >= COALESCE_MAX {
                break;
            }
        }
        if let Some(j) = first {
            // Only one job was pending (the rest in flight): give it back as it was.
            let failure = Failure {
                attempt: j.attempt,
                progress: j.progress.clone(),
                error: j.last_error.clone().unwrap_or_default(),
                reason: "",
            };
            let _ = store.reschedule(j.id, failure, j.not_before).await;
            continue;
        }
        if digest.is_empty() {
            continue;
        }
        let count = ids.len();
        let alerts = digest.alerts();
        let digests = digest.finish();
        // The digest is stored first, then the merged jobs are deleted in small steps: one
        // long delete would hold the store's single writer, and with it every webhook waiting
        // for its commit. A crash in between leaves some merged jobs in flight: they are
        // reclaimed at the next start and merged again (the latest state of each alert wins),
        // so the cost is a repeated alert, never a lost one.
        if let Err(e) = store.complete(Vec::new(), digests.clone()).await {
            error!(error = %e, "cannot store a digest; the backlog stays as it was");
            continue;
        }
        warn!(receiver = %d.receiver, integration = i.name(), notifications = count, alerts, "backlog too long for the rate limit, merged into a digest");
        super::history::merged(store, &rt.config.web, &ids, &digests).await;
        queue.wake.notify_one();
        for chunk in ids.chunks(COALESCE_DELETE) {
            if let Err(e) = store.complete(chunk.to_vec(), Vec::new()).await {
                error!(error = %e, "cannot delete jobs merged into a digest; they are merged again after a restart");
                break;
            }
        }
    }
}
