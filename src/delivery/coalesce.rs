//! Storm coalescing: many waiting notifications for one integration become one digest.
//!
//! When the backlog for an integration would take longer than its `coalesce_after` to send at
//! its rate limit, the worker claims every pending job of it and replaces them, in one store
//! transaction, with a digest: one notification holding every alert (the latest state of each
//! fingerprint), firing before resolved and the most severe first, with a `digest` line
//! ("37 alerts: 30 firing, 7 resolved · HighCPU ×20, DiskFull ×17") that templates show.
//! Nothing is dropped: every alert of every merged job is in the digest.

use std::collections::BTreeMap;

use crate::store::NewJob;
use crate::webhook::{Alert, Notification, Status};

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

/// One digest per kind of job (ordinary, fallback), replacing `jobs`. A digest may be merged
/// again with more jobs: the latest state of each alert still wins.
pub fn digest_jobs(jobs: Vec<NewJob>) -> Vec<NewJob> {
    crate::store::merge_by_kind(jobs, digest)
}

/// Merges notifications into one; `None` for an empty list.
pub fn digest(notifications: Vec<Notification>) -> Option<Notification> {
    let base = notifications.first()?.clone();
    // The latest state of each alert wins; alerts without a fingerprint are all kept.
    let mut by_fp: BTreeMap<String, Alert> = BTreeMap::new();
    let mut anonymous = Vec::new();
    for n in notifications {
        for a in n.alerts {
            if a.fingerprint.is_empty() {
                anonymous.push(a);
            } else {
                by_fp.insert(a.fingerprint.clone(), a);
            }
        }
    }
    let mut alerts: Vec<Alert> = by_fp.into_values().chain(anonymous).collect();
    alerts.sort_by(|a, b| {
        let firing = |x: &Alert| u8::from(x.status != Status::Firing);
        (firing(a), severity_rank(a), a.name(), b.starts_at).cmp(&(
            firing(b),
            severity_rank(b),
            b.name(),
            a.starts_at,
        ))
    });
    let firing = alerts.iter().filter(|a| a.status == Status::Firing).count();
    let resolved = alerts.len() - firing;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &alerts {
        *counts.entry(a.name()).or_default() += 1;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let by_name: Vec<String> = counts
        .iter()
        .map(|(name, n)| format!("{} ×{n}", if name.is_empty() { "?" } else { name }))
        .collect();
    let line = format!(
        "{} alerts: {firing} firing, {resolved} resolved · {}",
        alerts.len(),
        by_name.join(", ")
    );
    let mut n = base.subset(alerts);
    n.group_labels.clear();
    n.group_key = format!("digest:{}", n.receiver);
    n.truncated_alerts = 0;
    n.digest = Some(line);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(alerts: &[(&str, &str, &str, &str)]) -> Notification {
        let alerts: Vec<String> = alerts
            .iter()
            .map(|(fp, name, sev, status)| {
                format!(
                    r#"{{"status":"{status}","labels":{{"alertname":"{name}","severity":"{sev}"}},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"{fp}"}}"#
                )
            })
            .collect();
        let body = format!(
            r#"{{"version":"4","status":"firing","receiver":"r","groupKey":"g","alerts":[{}]}}"#,
            alerts.join(",")
        );
        Notification::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn digest_keeps_every_alert_critical_firing_first() {
        let d = digest(vec![
            notification(&[
                ("a", "DiskFull", "warning", "firing"),
                ("b", "Up", "critical", "resolved"),
            ]),
            notification(&[
                ("c", "HighCPU", "critical", "firing"),
                ("d", "HighCPU", "info", "firing"),
            ]),
            // A later state of `a` replaces the earlier one.
            notification(&[("a", "DiskFull", "warning", "resolved")]),
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
            Some("4 alerts: 2 firing, 2 resolved · HighCPU ×2, DiskFull ×1, Up ×1")
        );
        assert_eq!(d.status, Status::Firing);
    }
}
