//! Storm coalescing: many waiting notifications for one integration become one bounded digest.
//!
//! When the backlog for an integration would take longer than its `coalesce_after` to send at
//! its rate limit, the dispatcher ([`super::digest`]) claims its pending jobs in small chunks
//! and folds each job into a [`DigestBuilder`]. The builder never keeps all the alerts of a
//! backlog: it keeps
//! - counts: notifications, alerts, firing and resolved, and alerts per group, `alertname`
//!   and `severity` (capped at [`DigestCounts::MAX_GROUPS`] groups and
//!   [`DigestCounts::MAX_KEYS`] names and severities, the rest counted as "other");
//! - the first [`FULL_ALERTS`] alerts and the [`FULL_ALERTS`] most severe ones in full (firing
//!   before resolved, then by `severity`), the latest state of each fingerprint winning;
//! - the fingerprints seen (at most [`MAX_FINGERPRINTS`]), so a repeated alert is counted once
//!   and its latest state is what is counted.
//!
//! The digest is one notification holding the alerts kept in full, `truncatedAlerts` = the
//! rest ("and K more"), a `digest` line that templates show ("9000 alerts in 300 groups: …")
//! and the counts themselves, so that a digest merged again with more jobs adds to them.
//! Memory per digest is bounded by these constants, not by the backlog.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::store::{IntegrationId, NewJob};
use crate::webhook::{Alert, DigestCounts, Notification, Status};

/// Alerts kept in full per digest from each end: the first ones and the most severe ones.
pub const FULL_ALERTS: usize = 10;

/// Fingerprints remembered per digest to count a repeated alert once; beyond this every
/// occurrence counts (about 1.5 MB at most).
pub const MAX_FINGERPRINTS: usize = 65_536;

/// Sort rank of a `severity` label: lower is more severe.
fn severity_rank(a: &Alert) -> u8 {
    match a
        .labels
        .get("severity")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some("critical" | "page" | "emergency" | "fatal") => 0,
        Some("error" | "high" | "major") => 1,
        Some("warning" | "warn" | "medium") => 2,
        Some("info" | "low" | "minor") => 4,
        _ => 3,
    }
}

/// Firing first, then the most severe, then by name, the latest first.
fn order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    let firing = |x: &Alert| u8::from(x.status != Status::Firing);
    (firing(a), severity_rank(a), a.name(), b.starts_at).cmp(&(
        firing(b),
        severity_rank(b),
        b.name(),
        a.starts_at,
    ))
}

fn same(a: &Alert, b: &Alert) -> bool {
    if a.fingerprint.is_empty() || b.fingerprint.is_empty() {
        a.fingerprint == b.fingerprint && a.labels == b.labels
    } else {
        a.fingerprint == b.fingerprint
    }
}

fn bump(map: &mut BTreeMap<String, u64>, other: &mut u64, key: &str, by: u64) {
    bump_within(map, other, key, by, DigestCounts::MAX_KEYS)
}

fn bump_group(map: &mut BTreeMap<String, u64>, other: &mut u64, key: &str, by: u64) {
    bump_within(map, other, key, by, DigestCounts::MAX_GROUPS)
}

fn bump_within(map: &mut BTreeMap<String, u64>, other: &mut u64, key: &str, by: u64, max: usize) {
    if let Some(v) = map.get_mut(key) {
        *v += by;
    } else if map.len() < max {
        map.insert(key.to_string(), by);
    } else {
        *other += by;
    }
}

/// A notification's group, as the digest names it.
fn group_name(n: &Notification) -> String {
    if n.group_labels.is_empty() {
        return n.group_key.clone();
    }
    let pairs: Vec<String> = n
        .group_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
}

/// One digest in the making, for one kind of job (ordinary or fallback).
struct Part {
    receiver: String,
    integration: IntegrationId,
    kind: String,
    accepted_at: DateTime<Utc>,
    fallback: bool,
    /// The first notification, without its alerts: the digest's envelope.
    base: Notification,
    counts: DigestCounts,
    /// Fingerprint hash → the state it was counted in.
    seen: HashMap<u64, Status>,
    first: Vec<Alert>,
    severe: Vec<Alert>,
}

impl Part {
    fn new(job: &NewJob) -> Part {
        let base = job.notification.without_alerts();
        Part {
            receiver: job.receiver.clone(),
            integration: job.integration.clone(),
            kind: job.kind.clone(),
            accepted_at: job.accepted_at,
            fallback: job.fallback,
            base,
            counts: DigestCounts::default(),
            seen: HashMap::new(),
            first: Vec::new(),
            severe: Vec::new(),
        }
    }

    fn add(&mut self, job: NewJob) {
        self.accepted_at = self.accepted_at.min(job.accepted_at);
        let n = Arc::unwrap_or_clone(job.notification);
        if let Some(c) = &n.digest_counts {
            // An earlier digest: its counts already hold its alerts.
            self.merge_counts(c);
            for a in &n.alerts {
                self.remember(a);
            }
        } else {
            let group = group_name(&n);
            self.counts.notifications += 1;
            self.counts.alerts += n.truncated_alerts;
            for a in &n.alerts {
                self.count(a, &group);
            }
        }
        for a in n.alerts {
            self.keep(a);
        }
    }

    fn merge_counts(&mut self, c: &DigestCounts) {
        let s = &mut self.counts;
        s.notifications += c.notifications;
        s.alerts += c.alerts;
        s.firing += c.firing;
        s.resolved += c.resolved;
        s.other_groups += c.other_groups;
        s.other_alertnames += c.other_alertnames;
        s.other_severities += c.other_severities;
        for (k, v) in &c.groups {
            bump_group(&mut s.groups, &mut s.other_groups, k, *v);
        }
        for (k, v) in &c.alertnames {
            bump(&mut s.alertnames, &mut s.other_alertnames, k, *v);
        }
        for (k, v) in &c.severities {
            bump(&mut s.severities, &mut s.other_severities, k, *v);
        }
    }

    fn hash(a: &Alert) -> Option<u64> {
        if a.fingerprint.is_empty() {
            return None;
        }
        let mut h = DefaultHasher::new();
        a.fingerprint.hash(&mut h);
        Some(h.finish())
    }

    /// Notes an alert already counted (by an earlier digest).
    fn remember(&mut self, a: &Alert) {
        if let Some(h) = Self::hash(a)
            && self.seen.len() < MAX_FINGERPRINTS
        {
            self.seen.insert(h, a.status);
        }
    }

    fn count(&mut self, a: &Alert, group: &str) {
        let s = &mut self.counts;
        if let Some(h) = Self::hash(a) {
            if let Some(was) = self.seen.get_mut(&h) {
                // Seen before: only its state may have changed.
                if *was != a.status {
                    match a.status {
                        Status::Firing => {
                            s.firing += 1;
                            s.resolved = s.resolved.saturating_sub(1);
                        }
                        Status::Resolved => {
                            s.resolved += 1;
                            s.firing = s.firing.saturating_sub(1);
                        }
                    }
                    *was = a.status;
                }
                return;
            }
            if self.seen.len() < MAX_FINGERPRINTS {
                self.seen.insert(h, a.status);
            }
        }
        s.alerts += 1;
        match a.status {
            Status::Firing => s.firing += 1,
            Status::Resolved => s.resolved += 1,
        }
        bump_group(&mut s.groups, &mut s.other_groups, group, 1);
        bump(&mut s.alertnames, &mut s.other_alertnames, a.name(), 1);
        let severity = a.labels.get("severity").map_or("", String::as_str);
        bump(&mut s.severities, &mut s.other_severities, severity, 1);
    }

    /// Keeps `a` in full if it is among the first or the most severe alerts.
    fn keep(&mut self, a: Alert) {
        let mut placed = false;
        for kept in self.first.iter_mut().chain(self.severe.iter_mut()) {
            if same(kept, &a) {
                *kept = a.clone();
                placed = true;
            }
        }
        if placed {
            self.severe.sort_by(order);
            return;
        }
        if self.first.len() < FULL_ALERTS {
            self.first.push(a.clone());
        }
        if self.severe.len() < FULL_ALERTS {
            self.severe.push(a);
            self.severe.sort_by(order);
        } else if self
            .severe
            .last()
            .is_some_and(|worst| order(&a, worst).is_lt())
        {
            self.severe.pop();
            self.severe.push(a);
            self.severe.sort_by(order);
        }
    }

    fn finish(self) -> NewJob {
        let mut alerts = self.first;
        for a in self.severe {
            if !alerts.iter().any(|k| same(k, &a)) {
                alerts.push(a);
            }
        }
        alerts.sort_by(order);
        let c = self.counts;
        let shown = alerts.len() as u64;
        let mut n = self.base.subset(alerts);
        n.group_labels.clear();
        n.group_key = format!("digest:{}", n.receiver);
        n.truncated_alerts = c.alerts.saturating_sub(shown);
        n.digest = Some(line(&c));
        n.digest_counts = Some(c);
        NewJob {
            receiver: self.receiver,
            integration: self.integration,
            kind: self.kind,
            notification: Arc::new(n),
            accepted_at: self.accepted_at,
            fallback: self.fallback,
        }
    }
}

/// `HighCPU ×20, DiskFull ×17, +3 other`: largest first.
fn listed(map: &BTreeMap<String, u64>, other: u64) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut items: Vec<String> = v
        .iter()
        .map(|(k, n)| format!("{} ×{n}", if k.is_empty() { "?" } else { k }))
        .collect();
    if other > 0 {
        items.push(format!("other ×{other}"));
    }
    items.join(", ")
}

/// The digest's summary line.
fn line(c: &DigestCounts) -> String {
    let groups = c.groups.len() + usize::from(c.other_groups > 0);
    let more_groups = if c.other_groups > 0 { "+" } else { "" };
    format!(
        "{} alerts in {}{more_groups} groups from {} notifications: {} firing, {} resolved · {} · severity: {} · groups: {}",
        c.alerts,
        groups,
        c.notifications,
        c.firing,
        c.resolved,
        listed(&c.alertnames, c.other_alertnames),
        listed(&c.severities, c.other_severities),
        listed(&c.groups, c.other_groups),
    )
}

/// Folds jobs of one receiver integration, one at a time, into one digest per kind of job
/// (ordinary, fallback). Its size is bounded by [`FULL_ALERTS`], [`MAX_FINGERPRINTS`] and
/// [`DigestCounts::MAX_KEYS`], however many jobs it is fed.
#[derive(Default)]
pub struct DigestBuilder {
    parts: BTreeMap<bool, Part>,
}

impl DigestBuilder {
    pub fn new() -> DigestBuilder {
        DigestBuilder::default()
    }

    /// Folds one job in; it is dropped afterwards.
    pub fn add(&mut self, job: NewJob) {
        self.parts
            .entry(job.fallback)
            .or_insert_with(|| Part::new(&job))
            .add(job);
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Alerts counted so far.
    pub fn alerts(&self) -> u64 {
        self.parts.values().map(|p| p.counts.alerts).sum()
    }

    /// The digests: one per kind of job folded in.
    pub fn finish(self) -> Vec<NewJob> {
        self.parts.into_values().map(Part::finish).collect()
    }
}

/// Merges notifications into one bounded digest; `None` for an empty list.
pub fn digest(notifications: Vec<Notification>) -> Option<Notification> {
    let mut b = DigestBuilder::new();
    for notification in notifications {
        b.add(NewJob {
            receiver: notification.receiver.clone(),
            integration: IntegrationId::default(),
            kind: String::new(),
            notification: Arc::new(notification),
            accepted_at: Utc::now(),
            fallback: false,
        });
    }
    b.finish()
        .into_iter()
        .next()
        .map(|j| Arc::unwrap_or_clone(j.notification))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(group: &str, alerts: &[(&str, &str, &str, &str)]) -> Notification {
        let alerts: Vec<String> = alerts
            .iter()
            .map(|(fp, name, sev, status)| {
                format!(
                    r#"{{"status":"{status}","labels":{{"alertname":"{name}","severity":"{sev}"}},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"{fp}"}}"#
                )
            })
            .collect();
        let body = format!(
            r#"{{"version":"4","status":"firing","receiver":"r","groupKey":"{group}","groupLabels":{{"g":"{group}"}},"alerts":[{}]}}"#,
            alerts.join(",")
        );
        Notification::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn digest_orders_critical_firing_first_and_latest_state_wins() {
        let d = digest(vec![
            notification(
                "a",
                &[
                    ("a", "DiskFull", "warning", "firing"),
                    ("b", "Up", "critical", "resolved"),
                ],
            ),
            notification(
                "b",
                &[
                    ("c", "HighCPU", "critical", "firing"),
                    ("d", "HighCPU", "info", "firing"),
                ],
            ),
            // A later state of `a` replaces the earlier one.
            notification("a", &[("a", "DiskFull", "warning", "resolved")]),
        ])
        .unwrap();
        let order: Vec<(&str, Status)> = d
            .alerts
            .iter()
            .map(|a| (a.fingerprint.as_str(), a.status))
            .collect();
        assert_eq!(
            order,
            [
                ("c", Status::Firing),
                ("d", Status::Firing),
                ("b", Status::Resolved),
                ("a", Status::Resolved)
            ]
        );
        assert_eq!(
            d.digest.as_deref(),
            Some(
                "4 alerts in 2 groups from 3 notifications: 2 firing, 2 resolved · HighCPU ×2, DiskFull ×1, Up ×1 · severity: critical ×2, info ×1, warning ×1 · groups: g=a ×2, g=b ×2"
            )
        );
        assert_eq!(d.truncated_alerts, 0);
        assert_eq!(d.status, Status::Firing);
    }

    #[test]
    fn a_storm_digest_keeps_a_bounded_number_in_full_and_counts_the_rest() {
        let mut b = DigestBuilder::new();
        // 300 groups × 10 notifications × 3 alerts, every alert distinct; one critical.
        let mut total = 0;
        for g in 0..300 {
            for k in 0..10 {
                let fps: Vec<String> = (0..3).map(|i| format!("{g}-{k}-{i}")).collect();
                let sev = if g == 150 && k == 5 {
                    "critical"
                } else {
                    "warning"
                };
                let n = notification(
                    &format!("grp{g}"),
                    &[
                        (fps[0].as_str(), "HighCPU", sev, "firing"),
                        (fps[1].as_str(), "DiskFull", "warning", "firing"),
                        (fps[2].as_str(), "DiskFull", "info", "resolved"),
                    ],
                );
                total += n.alerts.len() as u64;
                b.add(NewJob {
                    receiver: "r".into(),
                    integration: IntegrationId("i".into()),
                    kind: "k".into(),
                    notification: Arc::new(n),
                    accepted_at: Utc::now(),
                    fallback: false,
                });
            }
        }
        let jobs = b.finish();
        assert_eq!(jobs.len(), 1);
        let d = &jobs[0].notification;
        assert!(d.alerts.len() <= 2 * FULL_ALERTS, "{}", d.alerts.len());
        assert_eq!(d.alerts[0].fingerprint, "150-5-0", "the critical one first");
        assert_eq!(d.alerts.len() as u64 + d.truncated_alerts, total);
        let c = d.digest_counts.as_ref().unwrap();
        assert_eq!((c.alerts, c.firing, c.resolved), (9000, 6000, 3000));
        assert_eq!(c.notifications, 3000);
        assert_eq!(c.groups.len(), 300, "every group named");
        assert_eq!(c.groups.values().sum::<u64>(), 9000);
        assert_eq!(c.groups["g=grp7"], 30);
        assert_eq!(c.alertnames["HighCPU"], 3000);
        assert_eq!(c.alertnames["DiskFull"], 6000);
        assert!(d.digest.as_deref().unwrap().starts_with(
            "9000 alerts in 300 groups from 3000 notifications: 6000 firing, 3000 resolved"
        ));

        // Merged again with one more notification, the counts add up.
        let mut again = DigestBuilder::new();
        again.add(jobs.into_iter().next().unwrap());
        let n = notification("late", &[("x", "Late", "critical", "firing")]);
        again.add(NewJob {
            receiver: "r".into(),
            integration: IntegrationId("i".into()),
            kind: "k".into(),
            notification: Arc::new(n),
            accepted_at: Utc::now(),
            fallback: false,
        });
        let d = &again.finish()[0].notification;
        let c = d.digest_counts.as_ref().unwrap();
        assert_eq!((c.alerts, c.notifications), (9001, 3001));
        assert!(d.alerts.len() <= 2 * FULL_ALERTS);
        assert_eq!(d.alerts.len() as u64 + d.truncated_alerts, 9001);
    }
}
