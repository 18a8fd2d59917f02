//! What has been sent, so that every message carries new information: duplicate suppression,
//! resolved-once, resolved grouping and firing → resolved pairing.
//!
//! This module decides what the dedupe state means; the [`crate::store`] keeps it (a few
//! backend-agnostic key operations: take-if-absent, take-or-extend, read, all with expiry)
//! and applies an admission atomically with enqueueing. All state is per receiver
//! integration (receiver name + integration index), like the jobs.
//!
//! - **Duplicate**: a notification's identity is its group key, status and the set of
//!   (alert, status, startsAt) of its alerts. Within `dedupe.window` the same identity is
//!   not queued again (`dedupe_suppressed_total{reason="duplicate"}`); a reminder after the
//!   window is. `window: 0s` turns this off.
//! - **Resolved once**: an alert (alert + startsAt) queued as resolved is never queued as
//!   resolved again (`reason="resolved_again"`), for [`RETENTION`].
//! - **Resolved grouping**: a notification with only resolved alerts is held for
//!   `dedupe.resolved_group_wait`; when the first held job of an integration is due, every
//!   held job of it is merged into one resolved message. A notification with firing alerts
//!   goes at once, as it is (its resolved alerts then count as announced).
//!   `resolved_group_wait: 0s` turns this off.
//! - **Pairing**: the first firing notification's time and the firing message's delivery are
//!   remembered per alert; a resolved alert carries them to templates (`firstNotifiedAt`,
//!   `firingSent`, `firingSentAt`, `notifiedDuration`).
//!
//! An "alert" is its fingerprint, or its label set when a sender gives no fingerprint. Keys
//! are hashed to a fixed size; expired state is pruned by the store on each admission.
//! This module must not send anything or touch jobs other than held ones.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::config::DedupeConfig;
use crate::store::{Admission, Admitted, IntegrationId, Job, Mark, NewJob, Store};
use crate::webhook::{Alert, Notification, Status};

/// How long per-alert state (resolved-once, pairing) is kept after its last use. A firing
/// alert's state is extended by each notification that carries it (Alertmanager's reminders),
/// so this bounds only how long an alert may stay silent between two notifications.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a notification or an alert was not queued: the `reason` label of
/// `dedupe_suppressed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppressed {
    /// The same notification was accepted within `dedupe.window`.
    Duplicate,
    /// The alert was already announced as resolved.
    ResolvedAgain,
}

impl Suppressed {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppressed::Duplicate => "duplicate",
            Suppressed::ResolvedAgain => "resolved_again",
        }
    }
}

/// The dedupe settings in force.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The same notification within this is not queued again; zero turns it off.
    pub window: Duration,
    /// Resolved-only notifications wait this long to be merged; zero sends them at once.
    pub resolved_group_wait: Duration,
    /// How long per-alert state lives after its last use.
    pub retention: Duration,
}

impl Policy {
    pub fn new(c: &DedupeConfig) -> Policy {
        Policy {
            window: c.window,
            resolved_group_wait: c.resolved_group_wait,
            retention: RETENTION,
        }
    }
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX / 2)
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        // A separator that cannot occur in UTF-8 text keeps ("ab","c") apart from ("a","bc").
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The alert's identity: its fingerprint, else its label set.
fn alert_id(a: &Alert) -> String {
    if !a.fingerprint.is_empty() {
        return a.fingerprint.clone();
    }
    let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("labels:{}", labels.join(","))
}

/// One episode of an alert: it fired at `startsAt`.
fn episode(a: &Alert) -> String {
    format!("{}@{}", alert_id(a), a.starts_at.timestamp_millis())
}

/// The key of one piece of per-alert state for a receiver integration.
fn alert_key(kind: &str, receiver: &str, integration: &IntegrationId, a: &Alert) -> String {
    format!(
        "{kind}:{}",
        hash(&[receiver, integration.as_str(), &episode(a)])
    )
}

/// A notification's identity for a receiver integration.
pub fn identity(job: &NewJob) -> String {
    let n = &job.notification;
    let mut alerts: Vec<String> = n
        .alerts
        .iter()
        .map(|a| format!("{}:{}", episode(a), a.status.as_str()))
        .collect();
    alerts.sort();
    alerts.dedup();
    let set = alerts.join("\n");
    format!(
        "dup:{}",
        hash(&[
            &job.receiver,
            job.integration.as_str(),
            &n.group_key,
            n.status.as_str(),
            &set
        ])
    )
}

/// Turns a webhook's jobs into admissions for [`Store::admit`].
pub fn admissions(policy: &Policy, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Vec<Admission> {
    jobs.into_iter()
        .map(|job| {
            let mut a = Admission::of(job);
            condition(policy, &mut a, now);
            a
        })
        .collect()
}

/// Puts dedupe's conditions on one admission: its identity (duplicates), each resolved
/// alert's once-key, each firing alert's first-seen time, and the hold of a resolved-only
/// notification.
pub fn condition(policy: &Policy, admission: &mut Admission, now: DateTime<Utc>) {
    let keep = after(now, policy.retention);
    let job = &admission.job;
    let n = &job.notification;
    let (r, i) = (job.receiver.as_str(), &job.integration);
    if !policy.window.is_zero() {
        admission.identity = Some(Mark {
            key: identity(job),
            value: now.timestamp_millis(),
            expires_at: after(now, policy.window),
        });
    }
    for (idx, a) in n.alerts.iter().enumerate() {
        match a.status {
            Status::Resolved => admission.once.push((
                idx,
                Mark {
                    key: alert_key("resolved", r, i, a),
                    value: now.timestamp_millis(),
                    expires_at: keep,
                },
            )),
            Status::Firing => admission.remember.push(Mark {
                key: alert_key("firing", r, i, a),
                value: now.timestamp_millis(),
                expires_at: keep,
            }),
        }
    }
    // Firing alerts are never delayed: only resolved-only notifications wait.
    if !policy.resolved_group_wait.is_zero() && n.firing().next().is_none() {
        admission.held = true;
        admission.not_before = after(now, policy.resolved_group_wait);
    }
}

/// What one webhook's admission came to, for the metrics and the answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Jobs queued.
    pub queued: usize,
    /// Jobs not queued: the same notification was accepted within the window.
    pub duplicates: usize,
    /// Resolved alerts left out: already announced.
    pub resolved_again: usize,
    /// Jobs not queued because every alert in them was already announced as resolved.
    pub empty: usize,
}

impl Outcome {
    pub fn of(admitted: &[Admitted]) -> Outcome {
        let mut o = Outcome::default();
        for a in admitted {
            match a {
                Admitted::Queued { dropped, .. } => {
                    o.queued += 1;
                    o.resolved_again += dropped;
                }
                Admitted::Duplicate => o.duplicates += 1,
                Admitted::Empty { dropped } => {
                    o.empty += 1;
                    o.resolved_again += dropped;
                }
            }
        }
        o
    }
}

/// Merges held resolved jobs, all of one receiver integration, into one job per kind
/// (ordinary, fallback), due at once and no longer held. Each alert appears once.
pub fn merge_held(jobs: Vec<Job>) -> Vec<NewJob> {
    let jobs = jobs.into_iter().map(NewJob::from).collect();
    crate::store::merge_by_kind(jobs, merge)
}

/// One resolved notification holding every alert of `notifications`, oldest resolution
/// first; group fields are kept only where all agree.
pub fn merge(notifications: Vec<Notification>) -> Option<Notification> {
    let first = notifications.first()?;
    if notifications.len() == 1 {
        return Some(first.clone());
    }
    let mut base = first.clone();
    let same_group = notifications.iter().all(|n| n.group_key == base.group_key);
    if !same_group {
        base.group_key = format!("resolved:{}", base.receiver);
        base.group_labels = common_pairs(notifications.iter().map(|n| &n.group_labels));
    }
    base.truncated_alerts = notifications.iter().map(|n| n.truncated_alerts).sum();
    let mut seen = std::collections::BTreeSet::new();
    let mut alerts: Vec<Alert> = Vec::new();
    for n in notifications {
        for a in n.alerts {
            if seen.insert(episode(&a)) {
                alerts.push(a);
            }
        }
    }
    alerts.sort_by_key(|a| (a.ended(), a.starts_at));
    // An empty base makes `subset` recompute the common labels and annotations.
    base.alerts.clear();
    Some(base.subset(alerts))
}

fn common_pairs<'a>(
    mut sets: impl Iterator<Item = &'a crate::webhook::LabelSet>,
) -> crate::webhook::LabelSet {
    let Some(first) = sets.next() else {
        return Default::default();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Fills in, on the resolved alerts of a notification about to be sent through a receiver
/// integration, when their firing notification first came and whether its message went out.
/// Best effort: without the store, the message goes without them.
pub async fn annotate(
    store: &Store,
    receiver: &str,
    integration: &IntegrationId,
    n: &mut Notification,
) {
    let resolved: Vec<usize> = (0..n.alerts.len())
        .filter(|&i| n.alerts[i].status == Status::Resolved)
        .collect();
    if resolved.is_empty() {
        return;
    }
    let mut keys = Vec::with_capacity(resolved.len() * 2);
    for &i in &resolved {
        keys.push(alert_key("firing", receiver, integration, &n.alerts[i]));
        keys.push(alert_key("sent", receiver, integration, &n.alerts[i]));
    }
    let values = match store.recall(keys, Utc::now()).await {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "cannot read when the firing messages went out; sending without");
            return;
        }
    };
    let time = |v: Option<i64>| v.and_then(DateTime::<Utc>::from_timestamp_millis);
    for (k, &i) in resolved.iter().enumerate() {
        let a = &mut n.alerts[i];
        a.first_notified_at = time(values.get(2 * k).copied().flatten());
        a.firing_sent_at = time(values.get(2 * k + 1).copied().flatten());
    }
}

/// Records that the firing alerts of a delivered notification went out through a receiver
/// integration (the first time counts).
pub async fn sent(
    store: &Store,
    policy: &Policy,
    receiver: &str,
    integration: &IntegrationId,
    n: &Notification,
    now: DateTime<Utc>,
) {
    let keep = after(now, policy.retention);
    let marks: Vec<Mark> = n
        .firing()
        .map(|a| Mark {
            key: alert_key("sent", receiver, integration, a),
            value: now.timestamp_millis(),
            expires_at: keep,
        })
        .collect();
    if marks.is_empty() {
        return;
    }
    if let Err(e) = store.remember(marks, now).await {
        warn!(error = %e, "cannot record that a firing message went out");
    }
}

/// Takes the held jobs out of freshly claimed `jobs`: for each receiver integration with one
/// due, every held job of it (due or not) is replaced, in one store transaction, by one merged
/// job due now. Returns the other jobs, to deliver, and what was merged (the held jobs' ids and
/// the jobs that replaced them), so the caller can record it and look for the merged job at
/// once.
pub async fn release_held(
    store: &Store,
    jobs: Vec<Job>,
) -> (Vec<Job>, Vec<(Vec<i64>, Vec<NewJob>)>) {
    let (held, rest): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.held);
    if held.is_empty() {
        return (rest, Vec::new());
    }
    let mut by_target: BTreeMap<(String, IntegrationId), Vec<Job>> = BTreeMap::new();
    for j in held {
        by_target
            .entry((j.receiver.clone(), j.integration.clone()))
            .or_default()
            .push(j);
    }
    let mut released = Vec::new();
    for ((receiver, integration), mut jobs) in by_target {
        match store.claim_held(&receiver, &integration).await {
            Ok(more) => jobs.extend(more),
            Err(e) => warn!(error = %e, "cannot claim the other held resolved jobs"),
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
        let count = jobs.len();
        let merged = merge_held(jobs.clone());
        let alerts: usize = merged.iter().map(|m| m.notification.alerts.len()).sum();
        match store.complete(ids.clone(), merged.clone()).await {
            Ok(()) => {
                debug!(%receiver, %integration, notifications = count, alerts, "resolved alerts merged into one message");
                released.push((ids, merged));
            }
            Err(e) => {
                warn!(error = %e, "cannot merge held resolved jobs; they are tried again later");
                for j in jobs {
                    let failure = crate::store::Failure {
                        attempt: j.attempt,
                        progress: j.progress.clone(),
                        error: j.last_error.clone().unwrap_or_default(),
                        reason: "",
                    };
                    let later = Utc::now() + chrono::Duration::seconds(1);
                    let _ = store.reschedule(j.id, failure, later).await;
                }
            }
        }
    }
    (rest, released)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(fp: &str, status: &str, ends: &str) -> String {
        format!(
            r#"{{"status":"{status}","labels":{{"alertname":"A{fp}","instance":"n{fp}"}},"startsAt":"2026-01-01T00:00:00Z","endsAt":"{ends}","fingerprint":"{fp}"}}"#
        )
    }

    fn notification(group: &str, alerts: &[String]) -> Notification {
        let status = if alerts.iter().any(|a| a.contains("\"firing\"")) {
            "firing"
        } else {
            "resolved"
        };
        let body = format!(
            r#"{{"version":"4","status":"{status}","receiver":"r","groupKey":"{group}","groupLabels":{{"g":"{group}","team":"x"}},"alerts":[{}]}}"#,
            alerts.join(",")
        );
        Notification::parse(body.as_bytes()).unwrap()
    }

    fn job(n: Notification) -> NewJob {
        NewJob {
            receiver: "oncall".into(),
            integration: IntegrationId("console-0".into()),
            kind: "wxpusher".into(),
            notification: std::sync::Arc::new(n),
            accepted_at: Utc::now(),
            fallback: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            window: Duration::from_secs(300),
            resolved_group_wait: Duration::from_secs(30),
            retention: RETENTION,
        }
    }

    #[test]
    fn identity_ignores_alert_order_but_not_status_or_group() {
        let a = alert("a", "firing", "0001-01-01T00:00:00Z");
        let b = alert("b", "firing", "0001-01-01T00:00:00Z");
        let one = identity(&job(notification("g", &[a.clone(), b.clone()])));
        assert_eq!(
            one,
            identity(&job(notification("g", &[b.clone(), a.clone()])))
        );
        assert_ne!(one, identity(&job(notification("h", &[a.clone(), b]))));
        assert_ne!(
            one,
            identity(&job(notification("g", std::slice::from_ref(&a))))
        );
        let resolved = alert("a", "resolved", "2026-01-01T00:10:00Z");
        assert_ne!(
            identity(&job(notification("g", &[a]))),
            identity(&job(notification("g", &[resolved])))
        );
    }

    #[test]
    fn only_resolved_only_notifications_are_held() {
        let now = Utc::now();
        let firing = alert("a", "firing", "0001-01-01T00:00:00Z");
        let resolved = alert("b", "resolved", "2026-01-01T00:10:00Z");
        let adm = admissions(
            &policy(),
            vec![
                job(notification("g", &[firing.clone(), resolved.clone()])),
                job(notification("g", std::slice::from_ref(&resolved))),
            ],
            now,
        );
        assert!(!adm[0].held);
        assert_eq!(adm[0].once.len(), 1);
        assert_eq!(adm[0].remember.len(), 1);
        assert!(adm[1].held);
        assert_eq!(adm[1].not_before, now + chrono::Duration::seconds(30));
        // The same resolved episode has the same key in both.
        assert_eq!(adm[0].once[0].1.key, adm[1].once[0].1.key);
        let off = Policy {
            window: Duration::ZERO,
            resolved_group_wait: Duration::ZERO,
            retention: RETENTION,
        };
        let adm = admissions(&off, vec![job(notification("g", &[resolved]))], now);
        assert!(!adm[0].held && adm[0].identity.is_none());
    }

    #[test]
    fn merge_keeps_each_alert_once_oldest_resolution_first() {
        let m = merge(vec![
            notification("g1", &[alert("a", "resolved", "2026-01-01T00:30:00Z")]),
            notification(
                "g2",
                &[
                    alert("b", "resolved", "2026-01-01T00:10:00Z"),
                    alert("a", "resolved", "2026-01-01T00:30:00Z"),
                ],
            ),
            notification("g3", &[alert("c", "resolved", "2026-01-01T00:20:00Z")]),
        ])
        .unwrap();
        let fps: Vec<&str> = m.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
        assert_eq!(fps, ["b", "c", "a"]);
        assert_eq!(m.status, Status::Resolved);
        assert_eq!(m.group_key, "resolved:r");
        assert_eq!(m.group_labels.len(), 1);
        assert_eq!(m.group_labels["team"], "x");
        assert!(m.common_labels.is_empty());
    }
}
