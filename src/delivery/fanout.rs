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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::runtime::{Runtime, sample_notification};
    use crate::webhook::Status;

    fn receiver() -> Runtime {
        let c = Config::parse(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    console_configs:\n      - {text: one}\n      - {text: two, send_resolved: false}\n      - {text: three}\n",
            "t.yml",
            std::path::Path::new("."),
        )
        .unwrap();
        Runtime::build(c).unwrap()
    }

    /// Integrations that take the notification as it is share one copy; one whose filter
    /// leaves resolved alerts out gets its own.
    #[test]
    fn integrations_share_the_notification_unless_their_filter_changes_it() {
        let rt = receiver();
        let integrations = &rt.receivers["a"];
        let mut n = sample_notification();
        n.status = Status::Firing;
        n.alerts[0].status = Status::Firing;
        n.alerts[1].status = Status::Resolved;
        let n = Arc::new(n);
        let jobs = fan_out("a", integrations, &n, Utc::now(), Origin::Accepted);
        assert_eq!(jobs.len(), 3);
        assert!(Arc::ptr_eq(&jobs[0].notification, &n));
        assert!(Arc::ptr_eq(&jobs[2].notification, &n));
        assert!(!Arc::ptr_eq(&jobs[1].notification, &n), "filtered: its own");
        assert_eq!(jobs[1].notification.alerts.len(), 1);
        assert_eq!(jobs[1].notification.alerts[0].status, Status::Firing);

        // All firing: nothing to leave out, so even the filtering integration shares it.
        let mut firing = (*n).clone();
        firing.alerts[1].status = Status::Firing;
        let firing = Arc::new(firing);
        let jobs = fan_out("a", integrations, &firing, Utc::now(), Origin::Accepted);
        assert!(jobs.iter().all(|j| Arc::ptr_eq(&j.notification, &firing)));

        // Only resolved: the filtering integration gets nothing.
        let mut resolved = (*n).clone();
        resolved.status = Status::Resolved;
        resolved.alerts[0].status = Status::Resolved;
        let jobs = fan_out(
            "a",
            integrations,
            &Arc::new(resolved),
            Utc::now(),
            Origin::Accepted,
        );
        assert_eq!(jobs.len(), 2);
    }
}
