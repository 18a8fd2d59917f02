//! Steps the engine runs around each delivery, handed to it at start-up.
//!
//! The engine knows only this contract: a step may put conditions on a delivery the engine
//! stores itself before it is queued ([`Step::admit`]), take freshly claimed deliveries out of
//! a round and queue others in their place ([`Step::claimed`]), annotate the notification and
//! add recipients before it is rendered ([`Step::prepare`]), send it itself ([`Step::send`]), and learn that it was delivered
//! ([`Step::delivered`]). What the steps are (dedupe's admission, held-job release and pairing,
//! chatops' references, WxPusher subscribers) is decided by whoever starts the workers, so the
//! engine names no feature.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::channels::error::DeliveryError;
use crate::channels::{Env, Integration, Progress};
use crate::runtime::Runtime;
use crate::store::{Admission, IntegrationId, Job, NewJob, Store};
use crate::webhook::Notification;

/// One attempt, as a step sees it.
pub struct Attempt<'a> {
    pub store: &'a Store,
    pub runtime: &'a Runtime,
    pub integration: &'a Integration,
    /// The receiver the delivery is for.
    pub receiver: &'a str,
    /// The identity the stored delivery is bound to.
    pub bound: &'a IntegrationId,
}

/// What is left of a round of claimed jobs once the steps had them.
pub struct Claimed {
    /// To deliver now.
    pub jobs: Vec<Job>,
    /// New jobs were queued, due at once: worth claiming again without waiting.
    pub queued: bool,
    /// Jobs a step settled by merging them into new ones: the ids taken out and the jobs
    /// queued in their place. The engine records it in the history, so that each merged
    /// delivery says which one took it over instead of staying `queued`.
    pub merged: Vec<(Vec<i64>, Vec<NewJob>)>,
}

pub trait Step: Send + Sync {
    /// Before a delivery the engine made itself (a re-fan-out after a reload) is queued: may
    /// put conditions on it, as the webhook's deliveries get.
    fn admit(&self, runtime: &Runtime, admission: &mut Admission, now: DateTime<Utc>) {
        let _ = (runtime, admission, now);
    }

    /// Freshly claimed jobs, before any is delivered: may take some out of the round (settling
    /// them in the store) and queue others; returns the rest, to deliver.
    fn claimed<'a>(
        &'a self,
        store: &'a Store,
        runtime: &'a Runtime,
        jobs: Vec<Job>,
    ) -> BoxFuture<'a, Claimed> {
        let _ = (store, runtime);
        Box::pin(async move {
            Claimed {
                jobs,
                queued: false,
                merged: Vec::new(),
            }
        })
    }

    /// Before rendering: may annotate `n` and add recipients to `extra` (sent to as well).
    /// A step that cannot do its part logs it and lets the delivery go on.
    fn prepare<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        n: &'a mut Notification,
        extra: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()>;

    /// Whether this step sends the delivery itself ([`Step::send`]) instead of the
    /// integration; the first step that does, sends.
    fn sends(&self, at: &Attempt<'_>, n: &Notification) -> bool {
        let _ = (at, n);
        false
    }

    /// Sends the delivery (when [`Step::sends`] said so): by default as the integration does.
    fn send<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        env: &'a Env<'a>,
        n: &'a Notification,
        progress: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(at.integration.send(env, n, progress))
    }

    /// After the notification was delivered.
    fn delivered<'a>(&'a self, at: &'a Attempt<'a>, n: &'a Notification) -> BoxFuture<'a, ()> {
        let _ = (at, n);
        Box::pin(async {})
    }
}

/// The steps, in the order they run.
pub type Steps = Arc<Vec<Box<dyn Step>>>;

/// `jobs` as admissions, each with every step's conditions.
pub fn admissions(
    steps: &Steps,
    runtime: &Runtime,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Vec<Admission> {
    jobs.into_iter()
        .map(|job| {
            let mut a = Admission::of(job);
            for step in steps.iter() {
                step.admit(runtime, &mut a, now);
            }
            a
        })
        .collect()
}

/// Hands freshly claimed `jobs` through every step in turn.
pub async fn claimed(steps: &Steps, store: &Store, runtime: &Runtime, jobs: Vec<Job>) -> Claimed {
    let mut out = Claimed {
        jobs,
        queued: false,
        merged: Vec::new(),
    };
    for step in steps.iter() {
        let mut c = step.claimed(store, runtime, out.jobs).await;
        out.merged.append(&mut c.merged);
        out = Claimed {
            jobs: c.jobs,
            queued: out.queued || c.queued,
            merged: out.merged,
        };
    }
    out
}
