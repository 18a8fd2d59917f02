//! Workers: take jobs, deliver, retry with exponential backoff and full jitter.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, error, info, warn};

use super::{DeliveryError, Job};
use crate::channels::Integration;
use crate::metrics::{FailureLabels, IntegrationLabels, Metrics, NotificationLabels};
use crate::runtime::{Runtime, Shared};

/// How often and how long a job is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max_delay: Duration,
    /// Older than this (since acceptance), a failing job is given up.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, initial·2^attempt)], but never shorter than what
    /// the upstream asked for.
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

impl Workers {
    /// Delivers jobs from `rx` with at most `concurrency` in flight; returns when the queue is
    /// closed and every in-flight job has finished.
    pub fn spawn(
        mut rx: mpsc::Receiver<Job>,
        runtime: Shared,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
        concurrency: usize,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(concurrency.max(1)));
            let policy = Arc::new(policy);
            while let Some(job) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let runtime = runtime.clone();
                let metrics = metrics.clone();
                let policy = policy.clone();
                tokio::spawn(async move {
                    // Fallback jobs run in the same task, under the same permit: they are
                    // part of delivering this notification, and shutdown waits for them.
                    let fallbacks = deliver(job, &runtime, &metrics, &policy).await;
                    for job in fallbacks {
                        deliver(job, &runtime, &metrics, &policy).await;
                    }
                    drop(permit);
                });
            }
            // Wait for in-flight deliveries.
            let _ = slots.acquire_many(concurrency.max(1) as u32).await;
        })
    }
}

/// Delivers one job, retrying as the policy allows. Returns the jobs for the integration's
/// fallback receiver when it gave up on this one (see [`fallback_jobs`]).
async fn deliver(
    mut job: Job,
    runtime: &Shared,
    metrics: &Metrics,
    policy: &RetryPolicy,
) -> Vec<Job> {
    loop {
        job.attempt += 1;
        let rt = runtime.load_full();
        let Some(integration) = rt.integration(&job.receiver, job.integration) else {
            warn!(receiver = %job.receiver, index = job.integration, "integration no longer configured, dropping notification");
            metrics
                .notifications
                .get_or_create(&NotificationLabels {
                    receiver: job.receiver.clone(),
                    integration: "unknown",
                    result: "dropped",
                })
                .inc();
            return Vec::new();
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
        let env = rt.env(Utc::now());
        let result = integration
            .send(&env, &job.notification, &mut job.progress)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        let labels = |result| NotificationLabels {
            receiver: job.receiver.clone(),
            integration: kind,
            result,
        };
        match result {
            Ok(()) => {
                let latency =
                    (Utc::now() - job.accepted_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics
                    .notification_latency
                    .get_or_create(&IntegrationLabels { integration: kind })
                    .observe(latency);
                metrics
                    .notifications
                    .get_or_create(&labels("success"))
                    .inc();
                debug!("delivered");
                return Vec::new();
            }
            Err(err) => {
                metrics
                    .deliveries_failed
                    .get_or_create(&FailureLabels {
                        integration: kind,
                        reason: err.reason().as_str(),
                    })
                    .inc();
                let age = (Utc::now() - job.accepted_at).to_std().unwrap_or_default();
                if !should_retry(&err, job.attempt, age, policy) {
                    error!(error = %err, reason = err.reason().as_str(), "delivery failed, giving up");
                    metrics.notifications.get_or_create(&labels("failed")).inc();
                    return fallback_jobs(&job, integration, &rt);
                }
                let delay = policy.delay(job.attempt, err.retry_after());
                warn!(error = %err, delay_ms = delay.as_millis() as u64, "delivery failed, will retry");
                metrics
                    .deliveries_retried
                    .get_or_create(&IntegrationLabels { integration: kind })
                    .inc();
                drop(_enter);
                tokio::time::sleep(delay).await;
                info!(job = job.id, attempt = job.attempt + 1, "retrying delivery");
            }
        }
    }
}

/// When an integration gives up on a job and names a `fallback_receiver`: one job per
/// integration of that receiver, marked `fallback` so it is never re-routed further.
fn fallback_jobs(job: &Job, integration: &Integration, rt: &Runtime) -> Vec<Job> {
    if job.fallback {
        return Vec::new();
    }
    let Some(to) = &integration.fallback_receiver else {
        return Vec::new();
    };
    let Some(list) = rt.receivers.get(to) else {
        warn!(fallback_receiver = %to, "fallback receiver no longer configured");
        return Vec::new();
    };
    let jobs: Vec<Job> = list
        .iter()
        .filter_map(|i| {
            Some(Job {
                id: job.id,
                receiver: to.clone(),
                integration: i.index,
                kind: i.name(),
                notification: i.filter(&job.notification)?,
                attempt: 0,
                progress: Default::default(),
                accepted_at: job.accepted_at,
                fallback: true,
            })
        })
        .collect();
    info!(fallback_receiver = %to, jobs = jobs.len(), "handing the notification to the fallback receiver");
    jobs
}

fn should_retry(err: &DeliveryError, attempt: u32, age: Duration, policy: &RetryPolicy) -> bool {
    err.is_retryable() && attempt < policy.max_attempts && age < policy.max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            assert!(p.delay(attempt, None) <= p.max_delay);
        }
        assert!(p.delay(1, None) <= Duration::from_secs(1));
        assert!(p.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
