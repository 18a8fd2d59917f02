//! The steps the delivery engine is handed at start-up ([`crate::delivery::steps`]): dedupe's
//! firing → resolved pairing and its record of what was sent, and chatops' references and
//! WxPusher subscribers. They live here, above the engine and the features both, so that
//! neither names the other.

use futures_util::future::BoxFuture;

use crate::delivery::steps::{Attempt, Step, Steps};
use crate::webhook::Notification;

/// Dedupe: when the alerts first fired and whether their firing message went out (before),
/// and that they went out through this integration (after).
struct Dedupe;

impl Step for Dedupe {
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

/// Every step, in the order the engine runs them.
pub fn all() -> Steps {
    std::sync::Arc::new(vec![Box::new(Dedupe), Box::new(Chatops)])
}
