//! Steps the engine runs around each delivery attempt, handed to it at start-up.
//!
//! The engine knows only this contract: a step may annotate the notification and add
//! recipients before it is rendered, and learn that it was delivered. What the steps are
//! (dedupe's pairing, chatops' references, WxPusher subscribers) is decided by whoever starts
//! the workers, so the engine names no feature.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::channels::Integration;
use crate::runtime::Runtime;
use crate::store::{IntegrationId, Store};
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

pub trait Step: Send + Sync {
    /// Before rendering: may annotate `n` and add recipients to `extra` (sent to as well).
    /// A step that cannot do its part logs it and lets the delivery go on.
    fn prepare<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        n: &'a mut Notification,
        extra: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()>;

    /// After the notification was delivered.
    fn delivered<'a>(&'a self, at: &'a Attempt<'a>, n: &'a Notification) -> BoxFuture<'a, ()> {
        let _ = (at, n);
        Box::pin(async {})
    }
}

/// The steps, in the order they run.
pub type Steps = Arc<Vec<Box<dyn Step>>>;
