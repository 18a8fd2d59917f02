//! The steps the delivery engine is handed at start-up ([`crate::delivery::steps`]): dedupe's
//! admission of re-fanned-out deliveries, its release of held resolved jobs, its firing →
//! resolved pairing and record of what was sent; chatops' references and WxPusher
//! subscribers. They live here, above the engine and the features both, so that neither
//! names the other.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::delivery::steps::{Attempt, Claimed, Step, Steps};
use crate::runtime::Runtime;
use crate::store::{Admission, Job, Store};
use crate::webhook::Notification;

/// Dedupe: the same conditions on the engine's own deliveries as on the webhook's; held
/// resolved jobs merged when the first is due; when the alerts first fired and whether their
/// firing message went out (before), and that they went out through this integration (after).
struct Dedupe;

impl Step for Dedupe {
    fn admit(&self, runtime: &Runtime, admission: &mut Admission, now: DateTime<Utc>) {
        let policy = crate::dedupe::Policy::new(&runtime.config.dedupe);
        crate::dedupe::condition(&policy, admission, now);
    }

    fn claimed<'a>(
        &'a self,
        store: &'a Store,
        _: &'a Runtime,
        jobs: Vec<Job>,
    ) -> BoxFuture<'a, Claimed> {
        Box::pin(async move {
            let (jobs, merged) = crate::dedupe::release_held(store, jobs).await;
            Claimed {
                jobs,
                queued: !merged.is_empty(),
                merged,
            }
        })
    }

    fn prepare<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        n: &'a mut Notification,
        _: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(crate::dedupe::annotate(at.store, at.receiver, at.bound, n))
    }

    fn delivered<'a>(&'a self, at: &'a Attempt<'a>, n: &'a Notification) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let policy = crate::dedupe::Policy::new(&at.runtime.config.dedupe);
            crate::dedupe::sent(
                at.store,
                &policy,
                at.receiver,
                at.bound,
                n,
                chrono::Utc::now(),
            )
            .await
        })
    }
}

/// Chatops: the group's reference and acknowledgement, and the subscribers learned from
/// WxPusher's callbacks.
struct Chatops;

impl Step for Chatops {
    fn prepare<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        n: &'a mut Notification,
        extra: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let subscribers =
                crate::chatops::prepare_delivery(at.store, at.runtime, at.integration, n).await;
            extra.extend(subscribers);
        })
    }
}

/// On-call incidents: the engine's own jobs (accepted notifications, timers) applied and
/// taken out of the round, pages no longer needed settled unsent; a delivery of a group with
/// an open incident names the incident's reference (rule 1).
struct Incidents {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// When `incidents_open` was last read from the store.
    counted: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often `incidents_open` is read from the store.
const COUNT_OPEN_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

impl Step for Incidents {
    fn claimed<'a>(
        &'a self,
        store: &'a Store,
        runtime: &'a Runtime,
        jobs: Vec<Job>,
    ) -> BoxFuture<'a, Claimed> {
        Box::pin(async move {
            let now = chrono::Utc::now();
            let (jobs, queued) =
                crate::incident::claimed(store, runtime, &self.metrics, jobs, now).await;
            let due = {
                let mut last = self.counted.lock().unwrap_or_else(|e| e.into_inner());
                let due = last.is_none_or(|t| t.elapsed() >= COUNT_OPEN_EVERY);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            };
            if due && !runtime.config.escalation_policies.is_empty() {
                crate::incident::count_open(store, runtime, &self.metrics, now).await;
            }
            Claimed {
                jobs,
                queued,
                merged: Vec::new(),
            }
        })
    }

    fn prepare<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        n: &'a mut Notification,
        _: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // After chatops' step: the incident's reference is the group's (rule 1).
            if let Some(i) = &n.incident {
                n.reference = Some(i.reference.clone());
                return;
            }
            if at.runtime.config.escalation_policies.is_empty() {
                return;
            }
            if let Ok(Some(inc)) = at.store.incident_of_group(at.receiver, &n.group_key).await {
                n.reference = Some(inc.reference);
            }
        })
    }

    fn delivered<'a>(&'a self, at: &'a Attempt<'a>, n: &'a Notification) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if at.receiver.starts_with(crate::runtime::CONTACT_PREFIX)
                && n.incident.as_ref().is_some_and(|i| i.update.is_none())
            {
                self.metrics
                    .oncall_pages
                    .get_or_create(&crate::metrics::PageLabels {
                        contact: at.integration.name().to_string(),
                        result: "sent",
                    })
                    .inc();
            }
        })
    }
}

/// Every step, in the order the engine runs them; `runtime` is the configuration in force
/// (for work a step runs off the worker's loop).
pub fn all(
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    runtime: crate::runtime::Shared,
) -> Steps {
    std::sync::Arc::new(vec![
        Box::new(Dedupe),
        Box::new(Chatops),
        Box::new(Incidents {
            metrics: metrics.clone(),
            counted: Default::default(),
        }),
        Box::new(crate::incident::reach::Cards::new(metrics, runtime)),
    ])
}
