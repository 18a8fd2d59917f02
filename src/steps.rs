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
struct Incidents;

impl Step for Incidents {
    fn claimed<'a>(
        &'a self,
        store: &'a Store,
        runtime: &'a Runtime,
        jobs: Vec<Job>,
    ) -> BoxFuture<'a, Claimed> {
        Box::pin(async move {
            let (jobs, queued) =
                crate::incident::claimed(store, runtime, jobs, chrono::Utc::now()).await;
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
}

/// Every step, in the order the engine runs them.
pub fn all() -> Steps {
    std::sync::Arc::new(vec![
        Box::new(Dedupe),
        Box::new(Chatops),
        Box::new(Incidents),
        Box::new(crate::incident::reach::Cards),
    ])
}
