//! The delivery history: what became of each accepted notification, per delivery (queued,
//! sent, retrying, dead, suppressed as a duplicate, merged into a digest), for the console
//! and `/api/v1/deliveries`.
//!
//! Records are informational: a failed history write never holds up a delivery. The
//! records of an admission are written with it ([`Store::admit_recorded`]: in SQLite, the same
//! transaction, so one commit before the webhook's answer), each later change beside the
//! queue. Retention is bounded
//! by age and count ([`Retention`]) and pruned on every write, so the history never outgrows
//! what is configured (`web.history_retention`, `web.history_max`). Each backend keeps one
//! JSON record per delivery (`sqlite/history.rs`, `redis/history.rs`); this module owns the
//! record's shape and how a change applies to it, so both backends agree.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Failure, NewJob, Store, StoreError};
use crate::webhook::Notification;

/// What became of a delivery, as last recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Stored, waiting for its attempt.
    Queued,
    /// Delivered upstream at `sent_at`.
    Sent,
    /// Failed, tried again at `next_attempt`; `last_error` says why.
    Retrying,
    /// Given up: a dead letter (`deadletters`).
    Dead,
    /// The same notification was accepted within `dedupe.window`: not sent again.
    Suppressed,
    /// Merged with a backlog into the digest `digest`.
    Merged,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sent => "sent",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Dead => "dead",
            DeliveryState::Suppressed => "suppressed",
            DeliveryState::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        Some(match s {
            "queued" => DeliveryState::Queued,
            "sent" => DeliveryState::Sent,
            "retrying" => DeliveryState::Retrying,
            "dead" => DeliveryState::Dead,
            "suppressed" => DeliveryState::Suppressed,
            "merged" => DeliveryState::Merged,
            _ => return None,
        })
    }
}

/// One delivery: a notification for one receiver integration, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Assigned by the store, increasing.
    pub id: i64,
    /// The queued job, while known (absent for suppressed duplicates and digests not yet
    /// claimed).
    pub job: Option<i64>,
    pub receiver: String,
    /// The integration's type (`wxpusher`, `official_account`, …).
    pub kind: String,
    /// The integration's identity ([`super::IntegrationId`]): what it sends to, never a
    /// secret (a fingerprint of the credential at most).
    pub integration: String,
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The distinct `alertname` labels, for filtering (the first 128 of a larger group).
    pub alertnames: Vec<String>,
    /// Alertmanager's or Grafana's `externalURL`, only when http(s).
    pub external_url: Option<String>,
    /// The alerts' distinct `generatorURL`s, only http(s) ones (128 at most).
    pub generator_urls: Vec<String>,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub next_attempt: Option<DateTime<Utc>>,
    /// Scrubbed of secrets before it gets here.
    pub last_error: Option<String>,
    /// For a merged delivery: the history id of the digest it went into.
    pub digest: Option<i64>,
    /// For a digest: how many notifications it merges.
    pub merged: Option<u64>,
    /// The notification as accepted, so the playground can render it again: of a group of
    /// more than 128 alerts, the first 128, the rest counted in its `truncated_alerts`.
    pub notification: Option<Notification>,
}

/// Alerts a record keeps of its notification (the console shows no more).
pub const RECORD_ALERTS: usize = 128;

/// The notification as a record keeps it: whole when it has at most [`RECORD_ALERTS`] alerts, else its first ones, the others counted
/// in `truncatedAlerts` (as Alertmanager's `max_alerts` counts the alerts it leaves out). A
/// record that reads its job's stored notification keeps this much of it when read.
pub fn kept(n: &Notification) -> Notification {
    let max = RECORD_ALERTS;
    if n.alerts.len() <= max {
        return n.clone();
    }
    let mut kept = n.without_alerts();
    kept.alerts = n.alerts[..max].to_vec();
    kept.truncated_alerts = n
        .truncated_alerts
        .saturating_add((n.alerts.len() - max) as u64);
    kept
}

/// A change to the newest record of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Stored again (a replayed dead letter).
    Queued,
    Sent {
        attempts: u32,
    },
    Retrying {
        attempts: u32,
        next: DateTime<Utc>,
        error: String,
    },
    Dead {
        attempts: u32,
        error: String,
    },
    Merged {
        digest: i64,
    },
}

/// One change, and the record to start from when the job has none yet (a digest, a
/// fallback copy, a job stored before the history existed).
#[derive(Debug, Clone)]
pub struct Update {
    pub job: i64,
    pub change: Change,
    pub or_insert: Option<Delivery>,
}

/// What an attempt ended in, for the queue: the job is forgotten, tried again, or kept as a
/// dead letter (with copies for the fallback receiver stored in the same write).
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered,
    Retry {
        failure: Failure,
        at: DateTime<Utc>,
    },
    Dead {
        failure: Failure,
        fallback: Vec<NewJob>,
    },
}

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max: usize,
}

impl Retention {
    /// Records accepted before this are pruned.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::days(7))
    }
}

/// What `/api/v1/deliveries` asks for; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub receiver: Option<String>,
    pub state: Option<DeliveryState>,
    pub alertname: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl HistoryFilter {
    pub fn matches(&self, d: &Delivery) -> bool {
        self.receiver.as_ref().is_none_or(|r| &d.receiver == r)
            && self.state.is_none_or(|s| d.state == s)
            && self
                .alertname
                .as_ref()
                .is_none_or(|a| d.alertnames.iter().any(|n| n == a))
    }
}

impl Delivery {
    /// Applies a change recorded at `now`.
    pub fn apply(&mut self, change: &Change, now: DateTime<Utc>) {
        self.updated_at = now;
        match change {
            Change::Queued => {
                self.state = DeliveryState::Queued;
                self.attempts = 0;
                self.next_attempt = None;
            }
            Change::Sent { attempts } => {
                self.state = DeliveryState::Sent;
                self.attempts = *attempts;
                self.sent_at = Some(now);
                self.next_attempt = None;
            }
            Change::Retrying {
                attempts,
                next,
                error,
            } => {
                self.state = DeliveryState::Retrying;
                self.attempts = *attempts;
                self.next_attempt = Some(*next);
                self.last_error = Some(error.clone());
            }
            Change::Dead { attempts, error } => {
                self.state = DeliveryState::Dead;
                self.attempts = *attempts;
                self.next_attempt = None;
                self.last_error = Some(error.clone());
            }
            Change::Merged { digest } => {
                self.state = DeliveryState::Merged;
                self.digest = Some(*digest);
                self.next_attempt = None;
            }
        }
    }
}

/// What a record shows of its notification: one value each for its columns, so that a
/// record can be stored without them and read back with them ([`Derived::of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub group_key: String,
    pub status: String,
    pub alertnames: Vec<String>,
    pub external_url: Option<String>,
    pub generator_urls: Vec<String>,
}

impl Derived {
    /// What a fresh record of `n` shows: its group key and status, the first
    /// [`RECORD_ALERTS`] distinct `alertname`s and http(s) `generatorURL`s (sorted), its
    /// http(s) `externalURL`.
    pub fn of(n: &Notification) -> Derived {
        Derived {
            group_key: n.group_key.clone(),
            status: n.status.as_str().to_string(),
            alertnames: distinct(
                n.alerts
                    .iter()
                    .filter_map(|a| a.labels.get("alertname").cloned()),
                RECORD_ALERTS,
            ),
            external_url: http_url(&n.external_url),
            generator_urls: distinct(
                n.alerts.iter().filter_map(|a| http_url(&a.generator_url)),
                RECORD_ALERTS,
            ),
        }
    }

    /// Whether `d` shows exactly this.
    pub fn shown_by(&self, d: &Delivery) -> bool {
        self.group_key == d.group_key
            && self.status == d.status
            && self.alertnames == d.alertnames
            && self.external_url == d.external_url
            && self.generator_urls == d.generator_urls
    }

    /// `d` showing this.
    pub fn show_in(self, d: &mut Delivery) {
        d.group_key = self.group_key;
        d.status = self.status;
        d.alertnames = self.alertnames;
        d.external_url = self.external_url;
        d.generator_urls = self.generator_urls;
    }
}

/// The first `max` distinct values, sorted.
fn distinct(values: impl Iterator<Item = String>, max: usize) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    for v in values {
        if set.len() == max {
            break;
        }
        set.insert(v);
    }
    set.into_iter().collect()
}

/// Only http and https links are kept: a page links to them.
pub fn http_url(u: &str) -> Option<String> {
    let t = u.trim();
    let scheme = |s: &str| t.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
    ((scheme("http://") || scheme("https://")) && !t.contains(char::is_whitespace))
        .then(|| t.to_string())
}

/// The record of an admission, from the one made before it was admitted: queued under its
/// job, suppressed as a duplicate, or none when every alert was left out or the job is the
/// on-call engine's own.
pub fn of_admission(mut d: Delivery, a: &super::Admitted) -> Option<Delivery> {
    if d.kind == super::incident::CONTROL_KIND {
        // The on-call engine's own job: applied, never delivered.
        return None;
    }
    match a {
        super::Admitted::Queued { id, .. } => {
            d.job = Some(*id);
            Some(d)
        }
        super::Admitted::Duplicate => {
            d.state = DeliveryState::Suppressed;
            Some(d)
        }
        super::Admitted::Empty { .. } => None,
    }
}

impl Store {
    /// [`Store::admit`], and the history records of what was admitted (`records`, one per
    /// admission in order, made as if queued; see [`of_admission`]). SQLite adds them in the
    /// admission's transaction, Redis right after it. A failed history write does not undo
    /// the admission: it is returned beside it.
    pub async fn admit_recorded(
        &self,
        admissions: Vec<super::Admission>,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(Vec<super::Admitted>, Option<StoreError>), StoreError> {
        match self {
            Store::Sqlite(s) => s.admit_recorded(admissions, records, keep, now).await,
            Store::Redis(s) => {
                let admitted = s.admit(admissions, now).await?;
                let records: Vec<Delivery> = records
                    .into_iter()
                    .zip(&admitted)
                    .filter_map(|(d, a)| of_admission(d, a))
                    .collect();
                let failed = if records.is_empty() {
                    None
                } else {
                    s.history_add(records, keep, now).await.err()
                };
                Ok((admitted, failed))
            }
        }
    }

    /// Adds records (their `id` is assigned), pruning what `keep` no longer allows; returns
    /// the ids in order. A record whose job already has one is not added (an outcome
    /// recorded first is newer than the acceptance): that record's id is returned.
    pub async fn history_add(
        &self,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(s) => s.history_add(records, keep, now).await,
            Store::Redis(s) => s.history_add(records, keep, now).await,
        }
    }

    /// Applies each change to the newest record of its job (a digest not yet claimed is
    /// adopted by the first job of its receiver integration that has no record), or inserts
    /// `or_insert` with the change applied.
    /// An attempt's outcome in the queue and the change to the job's history record, in one
    /// write: on SQLite one request and one commit. The history's failure is returned beside
    /// (logged by the caller) and never undoes the outcome.
    pub async fn finish(
        &self,
        id: i64,
        outcome: Outcome,
        update: Update,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Option<StoreError>, StoreError> {
        match self {
            Store::Sqlite(s) => s.finish(id, outcome, update, keep, now).await,
            Store::Redis(s) => {
                match outcome {
                    Outcome::Delivered => s.complete(vec![id], Vec::new()).await?,
                    Outcome::Retry { failure, at } => s.reschedule(id, failure, at).await?,
                    Outcome::Dead { failure, fallback } => {
                        s.dead_letter(id, failure, fallback).await?
                    }
                }
                Ok(s.history_update(vec![update], keep, now).await.err())
            }
        }
    }

    pub async fn history_update(
        &self,
        updates: Vec<Update>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => s.history_update(updates, keep, now).await,
            Store::Redis(s) => s.history_update(updates, keep, now).await,
        }
    }

    /// Records matching `filter`, newest first.
    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<Delivery>, StoreError> {
        match self {
            Store::Sqlite(s) => s.history(filter).await,
            Store::Redis(s) => s.history(filter).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::http_url;

    #[test]
    fn only_http_links_are_kept_whatever_the_schemes_case() {
        assert_eq!(
            http_url(" HTTPS://g/x?q=1 ").as_deref(),
            Some("HTTPS://g/x?q=1")
        );
        assert_eq!(http_url("http://中文").as_deref(), Some("http://中文"));
        for refused in [
            "javascript:alert(1)",
            "ftp://x",
            "http:/x",
            "https://a b",
            "htt",
            "",
            "ｈttp://x",
        ] {
            assert_eq!(http_url(refused), None, "{refused}");
        }
    }
}
