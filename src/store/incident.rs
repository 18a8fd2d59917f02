//! What on-call keeps of each incident: its state, the escalation policy copied when it
//! opened, where the escalation is, who was paged and the timeline. This module holds the
//! record and the dispatch; `sqlite/incident.rs` and `redis/incident.rs` keep it.
//!
//! Every change is a compare-and-set on [`Incident::version`] ([`Store::incident_update`]):
//! two replicas that handle the same incident at once never both apply a change, so a step is
//! paged once. [`Store::incident_commit`] stores a change together with the jobs it queues
//! (pages, status updates, timers) and the control job it settles, in one write: a crash
//! leaves either all of it or none. At most one incident is open per (receiver, `groupKey`)
//! ([`Store::incident_open`] returns the open one instead of making a second).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{NewJob, Store, StoreError};
use crate::webhook::Notification;

/// The job kind of the on-call engine's own jobs (accepted notifications and timers): the
/// engine applies them and never sends them, so they are no deliveries and have no record in
/// the delivery history.
pub const CONTROL_KIND: &str = "oncall";

/// `triggered` → `acknowledged` → `resolved` (terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Triggered,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Triggered => "triggered",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentState> {
        match s {
            "triggered" => Some(IncidentState::Triggered),
            "acknowledged" => Some(IncidentState::Acknowledged),
            "resolved" => Some(IncidentState::Resolved),
            _ => None,
        }
    }
}

/// One target of a step, as copied from the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetSnapshot {
    Schedule(String),
    Person {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contacts: Option<Vec<String>>,
    },
    Receiver(String),
}

/// One step of the policy, as copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSnapshot {
    pub notify: Vec<TargetSnapshot>,
    /// Milliseconds.
    pub escalate_after_ms: u64,
}

/// The escalation policy as it was when the incident opened: a reload never changes an
/// escalation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    pub name: String,
    pub repeat: u32,
    #[serde(default)]
    pub ack_timeout_ms: Option<u64>,
    #[serde(default)]
    pub retrigger_on_new_alerts: bool,
    pub steps: Vec<StepSnapshot>,
}

/// One line of the timeline: what happened, when, to or by whom, through what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// `triggered`, `paged`, `skipped`, `skipped_quiet`, `delivered`, `failed`, `escalated`,
    /// `acknowledged`, `retriggered`, `resolved`, `exhausted`.
    pub event: String,
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// Someone paged for the incident through one contact kind (or a receiver's integrations:
/// `person` is then `receiver:NAME` and `contact` is `receiver`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paged {
    pub person: String,
    pub contact: String,
    pub step: u32,
    #[serde(rename = "loop")]
    pub loop_: u32,
}

/// An incident, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Store-assigned.
    pub id: i64,
    /// The short reference replies name it by (`K7Q2`).
    #[serde(rename = "ref")]
    pub reference: String,
    pub receiver: String,
    pub group_key: String,
    pub state: IncidentState,
    pub policy: PolicySnapshot,
    /// The current step, from 1.
    pub step: u32,
    /// The current pass over the steps, from 0.
    #[serde(rename = "loop")]
    pub loop_: u32,
    pub opened_at: DateTime<Utc>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    #[serde(default)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the current step's timer fires (none once acknowledged, resolved or exhausted).
    #[serde(default)]
    pub next_escalation_at: Option<DateTime<Utc>>,
    /// The group's severity (rule 3): what every firing alert shares, else none.
    #[serde(default)]
    pub severity: Option<String>,
    /// Fingerprints of every alert that fired in it: a notification with none new is a repeat.
    #[serde(default)]
    pub fingerprints: Vec<String>,
    #[serde(default)]
    pub paged: Vec<Paged>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// The latest notification of the group: what pages show.
    pub notification: Notification,
    /// The last control jobs applied, so a job claimed again after a crash re-issues what it
    /// queued instead of being taken for a stale one.
    #[serde(default)]
    pub applied: Vec<i64>,
    /// Bumped by every stored change; the compare-and-set reads it.
    #[serde(default)]
    pub version: u64,
}

/// How many timeline entries an incident keeps (the oldest go first): a flapping group stays
/// bounded.
pub const MAX_TIMELINE: usize = 500;

impl Incident {
    /// Adds a timeline entry.
    pub fn log(
        &mut self,
        at: DateTime<Utc>,
        event: &str,
        person: Option<&str>,
        contact: Option<&str>,
        detail: Option<String>,
    ) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(0);
        }
        self.timeline.push(TimelineEntry {
            at,
            event: event.to_string(),
            person: person.map(str::to_string),
            contact: contact.map(str::to_string),
            detail,
        });
    }

    /// The key at most one open incident has.
    pub fn open_key(&self) -> String {
        open_key(&self.receiver, &self.group_key)
    }
}

/// `receiver` and `group_key` joined so no two pairs meet.
pub fn open_key(receiver: &str, group_key: &str) -> String {
    format!("{}:{receiver}\u{0}{group_key}", receiver.len())
}

/// The short reference of incident `id`: four or more letters and digits (no 0/O, 1/I/L, U)
/// in an order that does not look sequential. A bijection, so ids never share one.
pub fn reference(id: i64) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
    let n = ALPHABET.len() as u64; // 30
    let space = n.pow(4); // 810,000 four-character references
    let id = id.max(0) as u64;
    let (block, within) = (id / space, id % space);
    // An affine map with a multiplier prime to the space: a permutation of it.
    let mut v = (within * 7_919 + 104_729) % space + block * space;
    let mut out = Vec::new();
    while v > 0 || out.len() < 4 {
        out.push(ALPHABET[(v % n) as usize]);
        v /= n;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl Store {
    /// The open incident of (`new.receiver`, `new.group_key`) if there is one (`false`),
    /// else `new` stored with its id and reference (`true`).
    pub async fn incident_open(&self, new: Incident) -> Result<(Incident, bool), StoreError> {
        match self {
            Store::Sqlite(s) => s.incident_open(new).await,
            Store::Redis(s) => s.incident_open(new).await,
        }
    }

    /// Stores `incident` if the stored one still has its `version`; returns whether it did
    /// (the stored version is then one more).
    pub async fn incident_update(&self, incident: &Incident) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.incident_update(incident).await,
            Store::Redis(s) => s.incident_update(incident).await,
        }
    }

    /// [`Store::incident_update`], and in the same write the jobs `done` settled (as
    /// [`Store::complete`]) and `then` queued; when the compare-and-set fails nothing changes.
    pub async fn incident_commit(
        &self,
        incident: &Incident,
        done: Vec<i64>,
        then: Vec<NewJob>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.incident_commit(incident, done, then).await,
            Store::Redis(s) => s.incident_commit(incident, done, then).await,
        }
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        match self {
            Store::Sqlite(s) => s.incident(id).await,
            Store::Redis(s) => s.incident(id).await,
        }
    }

    /// The open incident of (`receiver`, `group_key`).
    pub async fn incident_of_group(
        &self,
        receiver: &str,
        group_key: &str,
    ) -> Result<Option<Incident>, StoreError> {
        match self {
            Store::Sqlite(s) => s.incident_of_group(open_key(receiver, group_key)).await,
            Store::Redis(s) => s.incident_of_group(open_key(receiver, group_key)).await,
        }
    }

    /// Incidents, newest first; resolved ones that resolved before `keep_since` are pruned.
    /// Open incidents are never pruned.
    pub async fn incidents(&self, keep_since: DateTime<Utc>) -> Result<Vec<Incident>, StoreError> {
        match self {
            Store::Sqlite(s) => s.incidents(keep_since).await,
            Store::Redis(s) => s.incidents(keep_since).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_short_distinct_and_unambiguous() {
        let mut seen = std::collections::HashSet::new();
        for id in 1..20_000 {
            let r = reference(id);
            assert_eq!(r.len(), 4, "{r}");
            assert!(!r.contains(['0', 'O', '1', 'I', 'L', 'U']), "{r}");
            assert!(seen.insert(r));
        }
        assert!(reference(810_001).len() >= 5);
        assert_ne!(reference(1), reference(2));
    }
}
