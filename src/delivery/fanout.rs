//! Fan-out: one notification for one receiver becomes one delivery per integration of that
//! receiver that accepts it (`send_resolved`), each bound to the integration's identity.
//!
//! The one place this happens: the webhook, a fallback receiver taking over, and a stored
//! delivery whose integration changed under a reload all come through here, so they agree on
//! which integrations a notification goes to.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::channels::Integration;
use crate::store::NewJob;
use crate::webhook::Notification;

/// Why deliveries are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Accepted from a webhook, or re-made after a reload.
    Accepted,
    /// Re-routed to a fallback receiver after another integration gave up: never re-routed
    /// again.
    Fallback,
}

/// The deliveries of `notification` to each of `integrations` (the receiver's, in order)
/// that accepts it. Integrations whose filter leaves the notification as it is share it (one
/// copy in memory, encoded and stored once); only those that leave some alerts out get a copy
/// of their own.
pub fn fan_out(
    receiver: &str,
    integrations: &[Integration],
    notification: &Arc<Notification>,
    accepted_at: DateTime<Utc>,
    origin: Origin,
) -> Vec<NewJob> {
    integrations
        .iter()
        .filter_map(|i| {
            let notification = i.filter(notification)?;
            Some(NewJob {
                receiver: receiver.to_string(),
                integration: i.id.clone(),
                kind: i.name().to_string(),
                notification,
                accepted_at,
                fallback: origin == Origin::Fallback,
            })
        })
        .collect()
}
