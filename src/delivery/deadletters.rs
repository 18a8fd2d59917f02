//! The dead letters as people see them, for the command line (`deadletters list`) and the
//! console's API (`GET /api/v1/deadletters`) alike; replaying them is the queue's
//! ([`super::replay_dead_letters`]).

use chrono::{DateTime, Utc};

/// One dead letter as `deadletters list` and `GET /api/v1/deadletters` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterItem {
    pub id: i64,
    pub receiver: String,
    pub kind: String,
    /// The integration's identity (what it sends to; no secret).
    pub integration: String,
    pub alerts: usize,
    pub alertnames: Vec<String>,
    pub attempts: u32,
    pub reason: String,
    /// Scrubbed of secrets when recorded; on one line.
    pub last_error: String,
    pub accepted_at: DateTime<Utc>,
    pub failed_at: Option<DateTime<Utc>>,
    pub fallback: bool,
}

/// Every dead letter, oldest first.
pub async fn dead_letter_items(
    store: &crate::store::Store,
) -> Result<Vec<DeadLetterItem>, crate::store::StoreError> {
    Ok(store
        .dead_letters()
        .await?
        .into_iter()
        .map(|j| {
            let mut alertnames: Vec<String> = j
                .notification
                .alerts
                .iter()
                .filter_map(|a| a.labels.get("alertname").cloned())
                .collect();
            alertnames.sort();
            alertnames.dedup();
            DeadLetterItem {
                id: j.id,
                receiver: j.receiver,
                kind: j.kind,
                integration: j.integration.0,
                alerts: j.notification.alerts.len(),
                alertnames,
                attempts: j.attempt,
                reason: j.reason.unwrap_or_default(),
                last_error: crate::text::one_line(j.last_error.as_deref().unwrap_or("")),
                accepted_at: j.accepted_at,
                failed_at: j.failed_at,
                fallback: j.fallback,
            }
        })
        .collect())
}
