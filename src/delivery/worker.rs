//! Workers: claim due jobs from the store, deliver, and record the outcome there.
//!
//! One dispatcher loop claims as many due jobs as there are free delivery slots and sleeps
//! until a new job is enqueued or the earliest retry is due. Each delivery is one attempt: on
//! success the job is deleted; on a retryable failure it is rescheduled with `attempt + 1`,
//! its progress and a backoff delay (exponential, full jitter, never shorter than
//! `Retry-After`); otherwise it becomes a dead letter and, unless it already is a fallback, is
//! copied once to every integration of the integration's `fallback_receiver`. An Official
//! Account's used-up daily quota without a fallback receiver is the exception: the job waits
//! until the quota is renewed (midnight Beijing time).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, error, info, warn};

use super::Queue;
use super::coalesce;
use super::error::Next;
use super::fanout::{Origin, fan_out};
use super::ratelimit::RateLimits;
use super::steps::{Attempt, Steps};
use crate::channels::Integration;
use crate::metrics::{FailureLabels, IntegrationLabels, Metrics, NotificationLabels};
use crate::runtime::{Bound, Runtime, Shared};
use crate::store::{Failure, Job, NewJob};

/// Longest the dispatcher sleeps without looking at the store: jobs re-queued by another
/// process (`deadletters replay`) are picked up within this.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The backoff between attempts. How many attempts and for how long is per integration
/// ([`super::options::DeliveryOptions`]).
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

/// The pool of delivery tasks.
pub struct Workers;

/// What a delivery task needs.
struct Ctx {
    queue: Queue,
    runtime: Shared,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    /// Run around each attempt ([`super::steps`]).
    steps: Steps,
}

impl Workers {
    /// Delivers due jobs until `stop` turns true; then waits for the deliveries in flight
    /// (the caller bounds that wait) and returns. What is left stays in the store.
    pub fn spawn(
        queue: Queue,
        runtime: Shared,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
        steps: Steps,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let concurrency = policy.concurrency.max(1);
        let ctx = Arc::new(Ctx {
            queue,
            runtime,
            metrics,
            policy,
            steps,
        });
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(concurrency));
            refresh_gauges(&ctx).await;
            loop {
                if *stop.borrow() {
                    break;
                }
                let free = slots.available_permits();
                if free == 0 {
                    tokio::select! {
                        p = slots.clone().acquire_owned() => drop(p),
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                let rt = ctx.runtime.load_full();
                coalesce_backlogs(&ctx, &rt).await;
                let store = &ctx.queue.store;
                let jobs = match store.claim(Utc::now(), free).await {
                    Ok(j) => j,
                    Err(e) => {
                        error!(error = %e, "cannot claim jobs from the store");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                };
                // Held resolved jobs are merged into one job per integration, claimed next.
                let (jobs, merged) = crate::dedupe::release_held(store, jobs).await;
                if merged {
                    ctx.queue.wake.notify_one();
                }
                if jobs.is_empty() {
                    refresh_gauges(&ctx).await;
                    let wait = match store.next_due().await {
                        Ok(Some(t)) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                        _ => IDLE_POLL,
                    };
                    tokio::select! {
                        _ = ctx.queue.wake.notified() => {}
                        _ = tokio::time::sleep(wait.clamp(Duration::from_millis(5), IDLE_POLL)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                for job in jobs {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        break;
                    };
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        deliver(job, &ctx).await;
                        drop(permit);
                    });
                }
            }
            // Wait for in-flight deliveries; jobs not yet claimed stay in the store.
            let _ = slots.acquire_many(concurrency as u32).await;
            refresh_gauges(&ctx).await;
        })
    }
}

/// Sets `queue_depth{integration}` and `dead_letters` from the store.
async fn refresh_gauges(ctx: &Ctx) {
    let rt = ctx.runtime.load_full();
    if let Ok(depth) = ctx.queue.store.depth().await {
        let mut by_kind: std::collections::BTreeMap<&'static str, i64> = Default::default();
        for list in rt.receivers.values() {
            for i in list {
                by_kind.entry(i.name()).or_default();
            }
        }
        for d in depth {
            if let Some(i) = rt.integration(&d.receiver, &d.integration) {
                *by_kind.entry(i.name()).or_default() += d.count as i64;
            }
        }
        for (kind, n) in by_kind {
            ctx.metrics
                .queue_depth
                .get_or_create(&IntegrationLabels { integration: kind })
                .set(n);
        }
    }
    if let Ok(n) = ctx.queue.store.dead_letter_count().await {
        ctx.metrics.dead_letters.set(n as i64);
    }
}

/// Jobs claimed at once while coalescing.
const COALESCE_CHUNK: usize = 64;
/// Jobs merged in one coalescing pass at most; the rest wait for the next pass.
const COALESCE_MAX: usize = 256 * COALESCE_CHUNK;
/// Merged jobs deleted per store write.
const COALESCE_DELETE: usize = 64;

/// Merges the backlog of every rate-limited integration that would take longer than its
/// `coalesce_after` to send into one digest job.
async fn coalesce_backlogs(ctx: &Ctx, rt: &Runtime) {
    let store = &ctx.queue.store;
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
        // Claimed in chunks, each folded into the digest so far: memory stays bounded by one
        // chunk plus the digest (one entry per distinct alert), however long the backlog.
        let mut ids: Vec<i64> = Vec::new();
        let mut digests: Vec<NewJob> = Vec::new();
        let mut first: Option<Job> = None;
        loop {
            let jobs = match store
                .claim_target(&d.receiver, &d.integration, COALESCE_CHUNK)
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
            let mut merge = std::mem::take(&mut digests);
            merge.extend(first.take().map(NewJob::from));
            merge.extend(jobs.into_iter().map(NewJob::from));
            digests = coalesce::digest_jobs(merge);
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
        if digests.is_empty() {
            continue;
        }
        let count = ids.len();
        let alerts: usize = digests.iter().map(|d| d.notification.alerts.len()).sum();
        // The digest is stored first, then the merged jobs are deleted in small steps: one
        // long delete would hold the store's single writer, and with it every webhook waiting
        // for its commit. A crash in between leaves some merged jobs in flight: they are
        // reclaimed at the next start and merged again (the latest state of each alert wins),
        // so the cost is a repeated alert, never a lost one.
        if let Err(e) = store.complete(Vec::new(), digests).await {
            error!(error = %e, "cannot store a digest; the backlog stays as it was");
            continue;
        }
        warn!(receiver = %d.receiver, integration = i.name(), notifications = count, alerts, "backlog too long for the rate limit, merged into a digest");
        ctx.queue.wake.notify_one();
        for chunk in ids.chunks(COALESCE_DELETE) {
            if let Err(e) = store.complete(chunk.to_vec(), Vec::new()).await {
                error!(error = %e, "cannot delete jobs merged into a digest; they are merged again after a restart");
                break;
            }
        }
    }
}

async fn deliver(mut job: Job, ctx: &Ctx) {
    let store = &ctx.queue.store;
    let rt = ctx.runtime.load_full();
    job.attempt += 1;
    let integration = match rt.resolve(&job.receiver, &job.integration) {
        Bound::Integration(i) => i,
        Bound::Changed(list) => {
            rebind(job, list, ctx, &rt).await;
            return;
        }
        Bound::ReceiverGone => {
            // Kept, not dropped: replayable once the receiver is back.
            warn!(receiver = %job.receiver, integration = %job.integration, "receiver no longer configured, keeping the notification as a dead letter");
            let failure = Failure {
                attempt: job.attempt,
                progress: job.progress,
                error: format!("receiver {:?} is no longer configured", job.receiver),
                reason: RECEIVER_REMOVED,
            };
            if let Err(e) = store.dead_letter(job.id, failure, Vec::new()).await {
                error!(error = %e, job = job.id, "cannot record a dead letter");
            }
            ctx.metrics
                .deliveries_failed
                .get_or_create(&FailureLabels {
                    integration: "unknown",
                    reason: RECEIVER_REMOVED,
                })
                .inc();
            ctx.metrics
                .notifications
                .get_or_create(&NotificationLabels {
                    receiver: job.receiver.clone(),
                    integration: "unknown",
                    result: "failed",
                })
                .inc();
            return;
        }
    };
    let kind = integration.name();
    let span = tracing::info_span!(
        "delivery",
        job = job.id,
        receiver = %job.receiver,
        integration = kind,
        group_key = %job.notification.group_key,
        attempt = job.attempt
    );
    // The whole attempt runs in the span, the store writes after the send included: a span
    // guard held across an await would be lost when the task moves threads.
    attempt(job, ctx, &rt, integration).instrument(span).await;
}

/// The dead-letter reason of a delivery whose receiver was removed from the configuration.
pub const RECEIVER_REMOVED: &str = "receiver_removed";

/// A stored delivery whose integration is gone from its (still configured) receiver: the
/// receiver's current integrations that accept it get it instead, each once. Dedupe applies,
/// so an integration that already has the same notification does not get it again. The new
/// deliveries are stored before the old one is forgotten: a crash in between repeats this,
/// and dedupe keeps the repeat from reaching anyone twice.
async fn rebind(job: Job, integrations: &[Integration], ctx: &Ctx, rt: &Runtime) {
    let store = &ctx.queue.store;
    let origin = if job.fallback {
        Origin::Fallback
    } else {
        Origin::Accepted
    };
    let now = Utc::now();
    let jobs = fan_out(
        &job.receiver,
        integrations,
        &job.notification,
        job.accepted_at,
        origin,
    );
    if integrations.is_empty() {
        let failure = Failure {
            attempt: job.attempt,
            progress: job.progress,
            error: format!("receiver {:?} has no integrations", job.receiver),
            reason: RECEIVER_REMOVED,
        };
        if let Err(e) = store.dead_letter(job.id, failure, Vec::new()).await {
            error!(error = %e, job = job.id, "cannot record a dead letter");
        }
        return;
    }
    let count = jobs.len();
    let admissions =
        crate::dedupe::admissions(&crate::dedupe::Policy::new(&rt.config.dedupe), jobs, now);
    if let Err(e) = ctx.queue.admit(admissions, now).await {
        error!(error = %e, job = job.id, "cannot re-route a delivery whose integration changed; it is tried again");
        let failure = Failure {
            attempt: job.attempt.saturating_sub(1),
            progress: job.progress,
            error: job.last_error.unwrap_or_default(),
            reason: "",
        };
        let later = now + chrono::Duration::seconds(1);
        let _ = store.reschedule(job.id, failure, later).await;
        return;
    }
    info!(receiver = %job.receiver, integration = %job.integration, deliveries = count, "integration changed by a reload: the notification goes to the receiver's current integrations");
    if let Err(e) = store.complete(vec![job.id], Vec::new()).await {
        error!(error = %e, job = job.id, "cannot forget a re-routed delivery; dedupe keeps it from being sent twice");
    }
}

/// One delivery attempt of a claimed job, and recording its outcome.
async fn attempt(mut job: Job, ctx: &Ctx, rt: &Runtime, integration: &Integration) {
    let store = &ctx.queue.store;
    let kind = integration.name();
    let mut notification = job.notification.clone();
    notification.fallback = job.fallback;
    let mut subscribers = Vec::new();
    let step_at = Attempt {
        store,
        runtime: rt,
        integration,
        receiver: &job.receiver,
        bound: &job.integration,
    };
    for step in ctx.steps.iter() {
        step.prepare(&step_at, &mut notification, &mut subscribers)
            .await;
    }
    let mut env = rt.env(Utc::now());
    env.subscribers = &subscribers;
    env.store = Some(store);
    let result = integration
        .send(&env, &notification, &mut job.progress)
        .await;
    let labels = |result| NotificationLabels {
        receiver: job.receiver.clone(),
        integration: kind,
        result,
    };
    let err = match result {
        Ok(()) => {
            if let Err(e) = store.complete(vec![job.id], Vec::new()).await {
                // It was delivered; at worst it is delivered again after a restart.
                error!(error = %e, "cannot mark a delivered job done");
            }
            for step in ctx.steps.iter() {
                step.delivered(&step_at, &notification).await;
            }
            let latency = (Utc::now() - job.accepted_at).num_milliseconds().max(0) as f64 / 1000.0;
            ctx.metrics
                .notification_latency
                .get_or_create(&IntegrationLabels { integration: kind })
                .observe(latency);
            ctx.metrics
                .notifications
                .get_or_create(&labels("success"))
                .inc();
            debug!("delivered");
            return;
        }
        Err(e) => e,
    };
    ctx.metrics
        .deliveries_failed
        .get_or_create(&FailureLabels {
            integration: kind,
            reason: err.reason().as_str(),
        })
        .inc();
    let failure = Failure {
        attempt: job.attempt,
        progress: job.progress.clone(),
        error: rt.scrubber.scrub(&err.to_string()),
        reason: err.reason().as_str(),
    };
    let age = (Utc::now() - job.accepted_at).to_std().unwrap_or_default();
    let opts = &integration.delivery;
    let next = err.next();
    // Nothing can succeed before a known time (a daily quota): without a fallback receiver the
    // notification waits for it, once (one already a day old is given up instead).
    if let Next::RetryAt(at) = next
        && integration.fallback_receiver.is_none()
        && age < PARK_MAX_AGE
    {
        warn!(error = %failure.error, resumes_at = %at.to_rfc3339(), "nothing can succeed before the upstream renews its quota: the notification waits until then");
        if let Err(e) = store.reschedule(job.id, failure, at).await {
            error!(error = %e, "cannot reschedule a job; it is retried after a restart");
        }
        ctx.queue.wake.notify_one();
        return;
    }
    if let Next::Backoff { at_least } = next
        && job.attempt < opts.max_attempts
        && age < opts.max_age
    {
        let delay = ctx.policy.delay(job.attempt, at_least);
        warn!(error = %failure.error, reason = failure.reason, delay_ms = delay.as_millis() as u64, "delivery failed, will retry");
        ctx.metrics
            .deliveries_retried
            .get_or_create(&IntegrationLabels { integration: kind })
            .inc();
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        if let Err(e) = store.reschedule(job.id, failure, at).await {
            error!(error = %e, "cannot reschedule a job; it is retried after a restart");
        }
        ctx.queue.wake.notify_one();
        return;
    }
    let fallback = fallback_jobs(rt, &job, integration.fallback_receiver.as_deref());
    error!(
        error = %failure.error,
        reason = failure.reason,
        retryable = err.is_retryable(),
        fallback = fallback.len(),
        "delivery failed, giving up: kept as a dead letter"
    );
    ctx.metrics
        .notifications
        .get_or_create(&labels("failed"))
        .inc();
    let rerouted = !fallback.is_empty();
    match store.dead_letter(job.id, failure, fallback).await {
        Ok(()) => {
            ctx.metrics.dead_letters.inc();
            if rerouted {
                ctx.queue.wake.notify_one();
            }
        }
        Err(e) => error!(error = %e, "cannot record a dead letter; it is retried after a restart"),
    }
}

/// A notification older than this is not parked for a daily quota again.
const PARK_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Copies of a given-up job for every integration of the fallback receiver; none when the
/// job already is a fallback (never chained).
fn fallback_jobs(rt: &Runtime, job: &Job, fallback: Option<&str>) -> Vec<NewJob> {
    let Some(name) = fallback else {
        return Vec::new();
    };
    if job.fallback {
        return Vec::new();
    }
    let integrations = rt.receivers.get(name).map_or(&[][..], Vec::as_slice);
    fan_out(
        name,
        integrations,
        &job.notification,
        Utc::now(),
        Origin::Fallback,
    )
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
