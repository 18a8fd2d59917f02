//! `render --person=NAME`: the page each of a person's contacts would get, built the way the
//! engine builds a real one ([`super::page_notification`] on a sample incident) and prepared by
//! the contact's channel, secrets masked.

use chrono::{DateTime, Utc};

use super::{page_notification, snapshot};
use crate::runtime::{RenderError, Rendered, Runtime, contact_receiver};
use crate::store::incident::{Incident, IncidentState, PolicySnapshot, reference};
use crate::webhook::sample_notification;

/// The id of the sample incident (its reference is what the page shows).
const SAMPLE_ID: i64 = 1;

/// A triggered incident at step 1 over the sample notification's firing alert, under the first policy that
/// pages `person` by name (else the first policy), opened at `now`.
pub fn sample_incident(rt: &Runtime, person: &str, now: DateTime<Utc>) -> Incident {
    let policies = &rt.config.escalation_policies;
    let names_person = |p: &&crate::config::oncall::EscalationPolicy| {
        snapshot(p).steps.iter().any(|s| {
            s.notify.iter().any(|t| {
                matches!(t, crate::store::incident::TargetSnapshot::Person { name, .. } if name == person)
            })
        })
    };
    let policy = policies
        .iter()
        .find(names_person)
        .or(policies.first())
        .map(snapshot)
        .unwrap_or_else(|| PolicySnapshot {
            name: "sample".into(),
            repeat: 0,
            ack_timeout_ms: None,
            retrigger_on_new_alerts: false,
            steps: Vec::new(),
        });
    // A page is about what fires: the sample's firing alert, started a few minutes ago.
    let mut notification = sample_notification();
    notification
        .alerts
        .retain(|a| a.status == crate::webhook::Status::Firing);
    for a in &mut notification.alerts {
        a.starts_at = (now - chrono::Duration::minutes(5)).fixed_offset();
    }
    Incident {
        id: SAMPLE_ID,
        reference: reference(SAMPLE_ID),
        receiver: notification.receiver.clone(),
        group_key: notification.group_key.clone(),
        state: IncidentState::Triggered,
        policy,
        step: 1,
        loop_: 0,
        opened_at: now,
        acknowledged_by: None,
        acknowledged_at: None,
        resolved_at: None,
        next_escalation_at: None,
        severity: Some("critical".into()),
        fingerprints: Vec::new(),
        paged: Vec::new(),
        timeline: Vec::new(),
        notification,
        applied: Vec::new(),
        version: 0,
    }
}

/// Per contact of `person` with a channel in `oncall.channels`, the exact requests a page
/// would be (secrets masked) and what the phone shows.
pub fn render_person(
    rt: &Runtime,
    person: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Rendered>, RenderError> {
    if !rt.config.people.iter().any(|p| p.name == person) {
        return Err(RenderError::Other(format!("unknown person {person:?}")));
    }
    let inc = sample_incident(rt, person, now);
    let n = page_notification(&inc, rt, Some(person), now);
    let env = rt.env(now);
    let mut out = Vec::new();
    let receiver = contact_receiver(person);
    for i in rt.contacts.get(person).into_iter().flatten() {
        out.push(rt.render_one(&env, i, &n, &receiver)?);
    }
    Ok(out)
}
