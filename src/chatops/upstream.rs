//! The requests chatops makes of Alertmanager's silences API (v2). Replies to users go through
//! the channels' own clients ([`crate::channels::reply`]), so they honour the same rate limits
//! and budgets as alerts.
//!
//! Each returns a typed error whose text is scrubbed of the secrets it was given; nothing here
//! decides what to tell the user.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::channels::upstream::UpstreamError;
use crate::channels::upstream::{call, snippet};
use crate::secret::Scrubber;
use crate::webhook::LabelSet;

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// The body of `POST /api/v2/silences`: one equality matcher per label.
pub fn silence_body(
    labels: &LabelSet,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    created_by: &str,
    comment: &str,
) -> Value {
    let matchers: Vec<Value> = labels
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value, "isRegex": false, "isEqual": true}))
        .collect();
    json!({
        "matchers": matchers,
        "startsAt": starts_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endsAt": ends_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "createdBy": created_by,
        "comment": comment,
    })
}

/// Creates a silence; returns its id.
pub async fn create_silence(
    client: &reqwest::Client,
    alertmanager: &str,
    body: &Value,
    scrubber: &Scrubber,
) -> Result<String, UpstreamError> {
    const SERVICE: &str = "alertmanager";
    let bytes = call(
        SERVICE,
        client
            .post(format!("{}/api/v2/silences", base(alertmanager)))
            .json(body),
        scrubber,
    )
    .await?;
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "silenceID")]
        silence_id: String,
    }
    serde_json::from_slice::<Created>(&bytes)
        .map(|c| c.silence_id)
        .map_err(|e| UpstreamError::BadResponse {
            service: SERVICE,
            message: format!("{e}: {}", snippet(&bytes)),
        })
}

/// Expires a silence (`DELETE /api/v2/silence/{id}`); `id` is checked by the parser to be
/// path-safe.
pub async fn delete_silence(
    client: &reqwest::Client,
    alertmanager: &str,
    id: &str,
    scrubber: &Scrubber,
) -> Result<(), UpstreamError> {
    call(
        "alertmanager",
        client.delete(format!("{}/api/v2/silence/{id}", base(alertmanager))),
        scrubber,
    )
    .await
    .map(|_| ())
}
