//! Hourly counters of delivered notifications, for the console's charts: per hour, how many
//! notifications each severity sent and how many each alert name sent. Counted when a
//! delivery outcome is recorded (the worker adds one [`Tally`] per delivered notification),
//! read back per hour ([`Store::stats`]). The delivery history is capped by count, so it
//! cannot say what a busy week looked like; these counters can, and stay small:
//! - severities are a fixed set ([`severity`]), so at most [`SEVERITIES`] keys an hour;
//! - alert names are capped at [`MAX_NAMES_PER_HOUR`] distinct ones an hour, the rest counted
//!   under [`OTHER_NAMES`];
//! - hours older than [`KEEP`] are dropped when counting (SQLite) or expire (Redis).
//!
//! Each backend keeps them its own way (`sqlite/stats.rs`, `redis/stats.rs`); this module
//! owns what is counted and the bounds, so both agree.

use chrono::{DateTime, Duration, Timelike, Utc};

use super::{Store, StoreError};
use crate::webhook::Notification;

/// Counters older than this are dropped: the charts look back 7 days, plus the current hour.
pub const KEEP: Duration = Duration::days(8);
/// Most distinct alert names counted in one hour; beyond, they add to [`OTHER_NAMES`].
pub const MAX_NAMES_PER_HOUR: usize = 200;
/// Where the alert names beyond [`MAX_NAMES_PER_HOUR`] are counted.
pub const OTHER_NAMES: &str = "(other)";
/// Most alert names of one notification counted (a group naming more counts its first ones).
pub const MAX_NAMES_PER_NOTIFICATION: usize = 16;
/// The severities counted, in the order the charts stack them.
pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info", "none", "other"];

/// The severity a notification is counted under: its group's shared `severity` label when it
/// is one of [`SEVERITIES`] (case ignored), `none` without one, `other` otherwise.
pub fn severity(n: &Notification) -> &'static str {
    let Some(s) = n.common_labels.get("severity") else {
        return "none";
    };
    let s = s.trim().to_ascii_lowercase();
    SEVERITIES
        .iter()
        .find(|k| **k == s && **k != "none" && **k != "other")
        .copied()
        .unwrap_or("other")
}

/// The start of the hour `t` falls in.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(t)
}

/// One delivered notification, as the counters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// One of [`SEVERITIES`].
    pub severity: &'static str,
    /// Its distinct alert names, at most [`MAX_NAMES_PER_NOTIFICATION`].
    pub alertnames: Vec<String>,
}

impl Tally {
    pub fn of(n: &Notification) -> Tally {
        let mut names: Vec<String> = Vec::new();
        for a in &n.alerts {
            if names.len() >= MAX_NAMES_PER_NOTIFICATION {
                break;
            }
            if let Some(name) = a.labels.get("alertname")
                && !names.contains(name)
            {
                names.push(name.clone());
            }
        }
        if names.is_empty()
            && let Some(name) = n.common_labels.get("alertname")
        {
            names.push(name.clone());
        }
        Tally {
            severity: severity(n),
            alertnames: names,
        }
    }
}

/// What was counted in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hour {
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    /// Notifications per severity, in [`SEVERITIES`] order of appearance.
    pub severities: Vec<(String, u64)>,
    /// Notifications per alert name.
    pub alertnames: Vec<(String, u64)>,
}

impl Store {
    /// Counts one delivered notification in the hour of `now`, dropping hours older than
    /// [`KEEP`]. Best-effort for the caller: a chart is not worth a delivery.
    pub async fn stats_add(&self, tally: Tally, now: DateTime<Utc>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.stats_add(tally, now).await,
            Store::Redis(s) => s.stats_add(tally, now).await,
        }
    }

    /// The hours from `since` (rounded down to its hour) to now that counted anything, oldest
    /// first.
    pub async fn stats(&self, since: DateTime<Utc>) -> Result<Vec<Hour>, StoreError> {
        let since = hour_of(since);
        match self {
            Store::Sqlite(s) => s.stats(since).await,
            Store::Redis(s) => s.stats(since, hour_of(Utc::now())).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(labels: &[(&str, &str)]) -> Notification {
        let mut n = crate::webhook::sample_notification();
        n.common_labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        n
    }

    #[test]
    fn severities_are_a_fixed_set() {
        assert_eq!(severity(&with(&[("severity", "Critical")])), "critical");
        assert_eq!(severity(&with(&[("severity", "warning")])), "warning");
        assert_eq!(severity(&with(&[])), "none");
        assert_eq!(severity(&with(&[("severity", "none")])), "other");
        assert_eq!(severity(&with(&[("severity", "p1-sev")])), "other");
    }

    #[test]
    fn a_tally_names_each_alert_name_once_and_a_bounded_number() {
        let mut n = crate::webhook::sample_notification();
        let first = n.alerts[0].clone();
        n.alerts = (0..40)
            .map(|i| {
                let mut a = first.clone();
                a.labels.insert("alertname".into(), format!("A{}", i % 20));
                a
            })
            .collect();
        let t = Tally::of(&n);
        assert_eq!(t.alertnames.len(), MAX_NAMES_PER_NOTIFICATION);
        assert_eq!(t.alertnames[0], "A0");
        assert_eq!(t.alertnames[1], "A1");
    }

    #[test]
    fn hours_start_on_the_hour() {
        let t: DateTime<Utc> = "2026-12-06T18:29:19.5Z".parse().unwrap();
        assert_eq!(hour_of(t).to_rfc3339(), "2026-12-06T18:00:00+00:00");
    }
}
