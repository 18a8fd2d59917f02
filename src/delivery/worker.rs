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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, error, info, warn};

use super::Queue;
use super::error::Next;
use super::fanout::{Origin, fan_out};
use super::retry::RetryPolicy;
use super::steps::{Attempt, Steps};
use crate::channels::Integration;
use crate::metrics::{FailureLabels, IntegrationLabels, Metrics, NotificationLabels};
use crate::runtime::{Bound, Runtime, Shared};
use crate::store::history::{Change, Outcome};
use crate::store::{Failure, Job, NewJob};

/// Longest the dispatcher sleeps without looking at the store: jobs re-queued by another
/// process (`deadletters replay`) are picked up within this.
const IDLE_POLL: Duration = Duration::from_secs(1);

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
    /// Jobs claimed by this process and not yet given back: being delivered, or their outcome
    /// waiting to be recorded. Any other claim is stale and is given back.
    held: std::sync::Mutex<HashSet<i64>>,
    /// The kinds `queue_depth` has shown: each is shown again (0 once empty) after its
    /// integrations or its jobs are gone, instead of keeping its last count.
    shown: std::sync::Mutex<std::collections::BTreeSet<&'static str>>,
}

impl Ctx {
    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // A plain set: a panic elsewhere while holding the lock leaves it usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
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
            held: Default::default(),
            shown: Default::default(),
        });
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(concurrency));
            refresh_gauges(&ctx).await;
            let mut last_scan = tokio::time::Instant::now();
            loop {
                if *stop.borrow() {
                    break;
                }
                if last_scan.elapsed() >= STALE_SCAN {
                    last_scan = tokio::time::Instant::now();
                    recover(&ctx).await;
                }
                // Control jobs (escalation timers) are store work, no delivery: taken first and
                // without a free slot, so a backlog of deliveries never holds a timer back.
                let left = control_round(&ctx).await;
                let free = slots.available_permits();
                if free == 0 {
                    tokio::select! {
                        p = slots.clone().acquire_owned() => drop(p),
                        _ = tokio::time::sleep(CONTROL_POLL) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                let rt = ctx.runtime.load_full();
                super::digest::coalesce_backlogs(&ctx.queue, &rt).await;
                let store = &ctx.queue.store;
                let jobs = match store.claim(Utc::now(), free - left.len().min(free)).await {
                    Ok(j) => left.into_iter().chain(j).collect(),
                    Err(e) => {
                        error!(error = %e, "cannot claim jobs from the store");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                };
                // The steps may settle some (held jobs merged into one, claimed next).
                let super::steps::Claimed {
                    jobs,
                    queued,
                    merged,
                } = super::steps::claimed(&ctx.steps, store, &rt, jobs).await;
                // Recorded before the next claim, so the merged job finds its record to adopt.
                for (ids, into) in merged {
                    super::history::merged(store, &rt.config.web, &ids, &into).await;
                }
                if queued {
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
                    ctx.held().insert(job.id);
                    tokio::spawn(async move {
                        let id = job.id;
                        match large_turn(job).await {
                            (Some(job), _turn) => {
                                if deliver(job, &ctx).await {
                                    ctx.held().remove(&id);
                                }
                            }
                            // Given back: the next scan for lost claims releases it.
                            (None, _) => {
                                ctx.held().remove(&id);
                            }
                        }
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

/// How often due control jobs are looked for while every delivery slot is busy.
const CONTROL_POLL: Duration = Duration::from_millis(250);
/// Control jobs taken in one round.
const CONTROL_BATCH: usize = 64;

/// Claims the due control jobs and hands them to the steps; returns what no step took (to be
/// delivered like any claimed job, or given back by the scan for lost claims).
async fn control_round(ctx: &Ctx) -> Vec<Job> {
    let store = &ctx.queue.store;
    let control = match store.claim_control(Utc::now(), CONTROL_BATCH).await {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return Vec::new(),
        Err(e) => {
            debug!(error = %e, "cannot claim control jobs");
            return Vec::new();
        }
    };
    let rt = ctx.runtime.load_full();
    let super::steps::Claimed {
        jobs,
        queued,
        merged,
    } = super::steps::claimed(&ctx.steps, store, &rt, control).await;
    for (ids, into) in merged {
        super::history::merged(store, &rt.config.web, &ids, &into).await;
    }
    if queued {
        ctx.queue.wake.notify_one();
    }
    jobs
}

/// Notifications of more alerts than this take turns: one is rendered and sent at a time,
/// so a large group to a receiver with several integrations (each its own delivery) costs
/// the memory of one render, not one per integration.
pub const LARGE_ALERTS: usize = 1_000;
static LARGE_TURN: Semaphore = Semaphore::const_new(1);

/// Waits for a large notification's turn ([`LARGE_ALERTS`]); smaller ones go at once. While
/// it waits, the notification is kept as JSON, a fraction of its parsed size.
async fn large_turn(mut job: Job) -> (Option<Job>, Option<tokio::sync::SemaphorePermit<'static>>) {
    if job.notification.alerts.len() <= LARGE_ALERTS {
        return (Some(job), None);
    }
    if let Ok(turn) = LARGE_TURN.try_acquire() {
        return (Some(job), Some(turn));
    }
    // Parked only when this job alone holds it: a notification shared with other jobs of
    // the same claim (the receiver's other integrations) stays in memory once either way.
    let parked = (Arc::strong_count(&job.notification) == 1)
        .then(|| serde_json::to_vec(&*job.notification).ok())
        .flatten();
    if parked.is_some() {
        job.notification = Arc::new(job.notification.without_alerts());
    }
    debug!(
        job = job.id,
        "a large notification waits for its turn to render"
    );
    let turn = LARGE_TURN.acquire().await.ok();
    if let Some(bytes) = parked {
        match serde_json::from_slice(&bytes) {
            Ok(n) => job.notification = Arc::new(n),
            // It round-trips by construction; were it not to, the store still has it.
            Err(e) => {
                error!(job = job.id, error = %e, "cannot restore a parked notification; it is claimed again later");
                return (None, turn);
            }
        }
    }
    (Some(job), turn)
}

/// How often claims that were lost are looked for, and a store that refused writes is tried.
const STALE_SCAN: Duration = Duration::from_secs(5);

/// Attempts begun that never ended (the process died during them) before a job is kept as a
/// dead letter instead of tried again: a message that crashes the process cannot crash-loop it.
pub const CRASH_LIMIT: u32 = 3;

/// The dead-letter reason of a job the process died on [`CRASH_LIMIT`] times.
pub const CRASHED: &str = "crashed";

/// After a store episode: tries a small write when the store refused the last one (so
/// `/-/ready` recovers without traffic), and gives back claims nobody holds any more.
async fn recover(ctx: &Ctx) {
    let store = &ctx.queue.store;
    if !store.is_writable()
        && let Err(e) = store.probe().await
    {
        debug!(error = %e, "the store still refuses writes");
    }
    let keep: Vec<i64> = ctx.held().iter().copied().collect();
    match store.release_stale(keep).await {
        Ok(0) => {}
        Ok(n) => {
            warn!(
                jobs = n,
                "claims no delivery held any more were given back to the queue"
            );
            ctx.queue.wake.notify_one();
        }
        Err(e) => debug!(error = %e, "cannot look for lost claims"),
    }
}

/// Records an outcome in the store. When the store refuses (a full disk), the job stays
/// claimed, so it is not handed out again, and the write is tried again in the background
/// until it succeeds; deliveries go on meanwhile. Returns whether it was recorded now.
async fn record<F, Fut>(ctx: &Arc<Ctx>, id: i64, what: &'static str, write: F) -> bool
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>> + Send,
{
    let Err(e) = write().await else {
        return true;
    };
    error!(error = %e, job = id, what, "cannot record a delivery's outcome; trying again until the store takes it");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            tokio::time::sleep(delay).await;
            if write().await.is_ok() {
                ctx.held().remove(&id);
                ctx.queue.wake.notify_one();
                info!(
                    job = id,
                    what, "delivery outcome recorded after the store recovered"
                );
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
    false
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
        // Everything waiting counts, whether or not its integration is still configured.
        for d in depth {
            let kind = match rt.integration(&d.receiver, &d.integration) {
                Some(i) => i.name(),
                None => crate::channels::kind_of(&d.integration),
            };
            *by_kind.entry(kind).or_default() += d.count as i64;
        }
        {
            let mut shown = ctx.shown.lock().unwrap_or_else(|e| e.into_inner());
            for kind in shown.iter() {
                by_kind.entry(kind).or_default();
            }
            shown.extend(by_kind.keys());
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

/// One claimed job, to its outcome; returns whether the outcome is recorded (else the job
/// stays claimed until [`record`] gets it into the store).
async fn deliver(mut job: Job, ctx: &Arc<Ctx>) -> bool {
    let store = &ctx.queue.store;
    let rt = ctx.runtime.load_full();
    job.attempt += 1;
    let integration = match rt.resolve(&job.receiver, &job.integration) {
        Bound::Integration(i) => i,
        Bound::Changed(list) => return rebind(job, list, ctx, &rt).await,
        Bound::ReceiverGone => {
            // Kept, not dropped: replayable once the receiver is back.
            warn!(receiver = %job.receiver, integration = %job.integration, "receiver no longer configured, keeping the notification as a dead letter");
            let error = format!("receiver {:?} is no longer configured", job.receiver);
            return give_up_unbound(job, ctx, &rt, error, RECEIVER_REMOVED).await;
        }
    };
    // The attempt is counted before anything is rendered or sent: a notification the process
    // dies on is not tried for ever. When the store refuses the write, it is sent uncounted.
    match store.started(job.id).await {
        Ok(begun) => {
            let died = begun.saturating_sub(job.attempt);
            if died >= CRASH_LIMIT {
                error!(job = job.id, receiver = %job.receiver, runs = died, "the service stopped during every recent attempt of this notification: kept as a dead letter so the queue moves on");
                let error = format!(
                    "the service stopped {died} times while delivering this notification; kept so the queue moves on (replay it once the cause is fixed)"
                );
                return give_up(job, ctx, &rt, integration, error, CRASHED).await;
            }
        }
        Err(e) => {
            warn!(job = job.id, error = %e, "cannot count the attempt before sending; sending it uncounted")
        }
    }
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
    attempt(job, ctx, &rt, integration).instrument(span).await
}

/// The dead-letter reason of a delivery whose receiver was removed from the configuration.
pub const RECEIVER_REMOVED: &str = "receiver_removed";

/// A job that no configured integration can take, kept as a dead letter.
async fn give_up_unbound(
    job: Job,
    ctx: &Arc<Ctx>,
    rt: &Runtime,
    error: String,
    reason: &'static str,
) -> bool {
    let failure = Failure {
        attempt: job.attempt,
        progress: job.progress.clone(),
        error,
        reason,
    };
    ctx.metrics
        .deliveries_failed
        .get_or_create(&FailureLabels {
            integration: "unknown",
            reason,
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
    record_dead(ctx, rt, &job, failure, Vec::new()).await
}

/// A stored delivery whose integration is gone from its (still configured) receiver: the
/// receiver's current integrations that accept it get it instead, each once. Dedupe applies,
/// so an integration that already has the same notification does not get it again. The new
/// deliveries are stored before the old one is forgotten: a crash in between repeats this,
/// and dedupe keeps the repeat from reaching anyone twice.
async fn rebind(job: Job, integrations: &[Integration], ctx: &Arc<Ctx>, rt: &Runtime) -> bool {
    if integrations.is_empty() {
        let error = format!("receiver {:?} has no integrations", job.receiver);
        return give_up_unbound(job, ctx, rt, error, RECEIVER_REMOVED).await;
    }
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
    let count = jobs.len();
    let admissions = super::steps::admissions(&ctx.steps, rt, jobs, now);
    if let Err(e) = super::history::admit(&ctx.queue, &rt.config.web, admissions, now).await {
        error!(error = %e, job = job.id, "cannot re-route a delivery whose integration changed; it is tried again");
        let failure = Failure {
            attempt: job.attempt.saturating_sub(1),
            progress: job.progress,
            error: job.last_error.unwrap_or_default(),
            reason: "",
        };
        let later = now + chrono::Duration::seconds(1);
        return record_reschedule(ctx, job.id, failure, later).await;
    }
    info!(receiver = %job.receiver, integration = %job.integration, deliveries = count, "integration changed by a reload: the notification goes to the receiver's current integrations");
    record_complete(ctx, job.id).await
}

/// One delivery attempt of a claimed job, and recording its outcome.
async fn attempt(mut job: Job, ctx: &Arc<Ctx>, rt: &Runtime, integration: &Integration) -> bool {
    let store = &ctx.queue.store;
    let kind = integration.name();
    // The attempt's own copy, which the steps change. The job keeps the notification as
    // stored only when a fallback receiver may need a copy of it if this gives up
    // ([`fallback_jobs`]); otherwise the attempt takes it, and the job keeps the bounded part
    // its history records need: a large group is not held twice.
    // A notification shared with other jobs of the claim is copied here, one attempt at a
    // time for a large one ([`large_turn`]).
    let mut notification = if job.fallback || integration.fallback_receiver.is_none() {
        let kept = Arc::new(super::history::kept(&job.notification));
        Arc::unwrap_or_clone(std::mem::replace(&mut job.notification, kept))
    } else {
        (*job.notification).clone()
    };
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
    env.metrics = Some(&ctx.metrics);
    let result = match ctx.steps.iter().find(|s| s.sends(&step_at, &notification)) {
        Some(step) => {
            step.send(&step_at, &env, &notification, &mut job.progress)
                .await
        }
        None => {
            integration
                .send(&env, &notification, &mut job.progress)
                .await
        }
    };
    let err = match result {
        Ok(()) => {
            // Delivered: if the store refuses to forget it, it stays claimed until it does.
            let sent = Change::Sent {
                attempts: job.attempt,
            };
            let recorded = record_outcome(ctx, rt, &job, Outcome::Delivered, sent).await;
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
                .get_or_create(&NotificationLabels {
                    receiver: job.receiver.clone(),
                    integration: kind,
                    result: "success",
                })
                .inc();
            debug!("delivered");
            return recorded;
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
        let recorded = record_retry(ctx, rt, &job, failure, at).await;
        ctx.queue.wake.notify_one();
        return recorded;
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
        let recorded = record_retry(ctx, rt, &job, failure, at).await;
        ctx.queue.wake.notify_one();
        return recorded;
    }
    error!(
        error = %failure.error,
        reason = failure.reason,
        retryable = err.is_retryable(),
        "delivery failed, giving up: kept as a dead letter"
    );
    let (error, reason) = (failure.error, failure.reason);
    give_up(job, ctx, rt, integration, error, reason).await
}

/// Gives up on a job: a dead letter, and once a copy for every integration of the
/// integration's fallback receiver.
async fn give_up(
    job: Job,
    ctx: &Arc<Ctx>,
    rt: &Runtime,
    integration: &Integration,
    error: String,
    reason: &'static str,
) -> bool {
    let fallback = fallback_jobs(rt, &job, integration.fallback_receiver.as_deref());
    ctx.metrics
        .notifications
        .get_or_create(&NotificationLabels {
            receiver: job.receiver.clone(),
            integration: integration.name(),
            result: "failed",
        })
        .inc();
    let failure = Failure {
        attempt: job.attempt,
        progress: job.progress.clone(),
        error,
        reason,
    };
    let rerouted = !fallback.is_empty();
    let recorded = record_dead(ctx, rt, &job, failure, fallback).await;
    if recorded {
        ctx.metrics.dead_letters.inc();
    }
    if rerouted {
        ctx.queue.wake.notify_one();
    }
    recorded
}

async fn record_complete(ctx: &Arc<Ctx>, id: i64) -> bool {
    let store = ctx.queue.store.clone();
    record(ctx, id, "delivered", move || {
        let store = store.clone();
        async move { store.complete(vec![id], Vec::new()).await }
    })
    .await
}

async fn record_reschedule(
    ctx: &Arc<Ctx>,
    id: i64,
    failure: Failure,
    at: chrono::DateTime<Utc>,
) -> bool {
    let store = ctx.queue.store.clone();
    record(ctx, id, "retry", move || {
        let (store, failure) = (store.clone(), failure.clone());
        async move { store.reschedule(id, failure, at).await }
    })
    .await
}

/// An attempt's outcome and its history record, in one store write (see [`record`] for a
/// store that refuses it). A history write that fails is logged and never holds up the queue.
async fn record_outcome(
    ctx: &Arc<Ctx>,
    rt: &Runtime,
    job: &Job,
    outcome: Outcome,
    change: Change,
) -> bool {
    let what = match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead letter",
    };
    let store = ctx.queue.store.clone();
    let update = super::history::update_of(job, change);
    let keep = super::history::retention(&rt.config.web);
    let id = job.id;
    // Only a delivered notification counts in the console's hourly charts.
    let tally = matches!(outcome, Outcome::Delivered)
        .then(|| crate::store::stats::Tally::of(&job.notification));
    let recorded = record(ctx, id, what, move || {
        let (store, outcome, update) = (store.clone(), outcome.clone(), update.clone());
        async move {
            let failed = store.finish(id, outcome, update, keep, Utc::now()).await?;
            if let Some(e) = failed {
                debug!(error = %e, job = id, "cannot record a delivery outcome in the history");
            }
            Ok(())
        }
    })
    .await;
    if recorded && let Some(tally) = tally {
        // Off the delivery's path: a chart is not worth a moment of a worker.
        let store = ctx.queue.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.stats_add(tally, Utc::now()).await {
                debug!(error = %e, job = id, "cannot count a delivery in the hourly counters");
            }
        });
    }
    recorded
}

/// Failed: tried again at `at`.
async fn record_retry(
    ctx: &Arc<Ctx>,
    rt: &Runtime,
    job: &Job,
    failure: Failure,
    at: chrono::DateTime<Utc>,
) -> bool {
    let change = Change::Retrying {
        attempts: failure.attempt,
        next: at,
        error: failure.error.clone(),
    };
    record_outcome(ctx, rt, job, Outcome::Retry { failure, at }, change).await
}

/// Given up: a dead letter, `fallback` stored with it.
async fn record_dead(
    ctx: &Arc<Ctx>,
    rt: &Runtime,
    job: &Job,
    failure: Failure,
    fallback: Vec<NewJob>,
) -> bool {
    let change = Change::Dead {
        attempts: failure.attempt,
        error: failure.error.clone(),
    };
    record_outcome(ctx, rt, job, Outcome::Dead { failure, fallback }, change).await
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
