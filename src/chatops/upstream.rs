//! The requests chatops makes of Alertmanager's silences API (v2), and WxPusher's parameter QR
//! code. Replies to users go through the channels' own clients ([`crate::channels`]), so they
//! honour the same rate limits and budgets as alerts.
//!
//! Each returns a typed error whose text is scrubbed of the secrets it was given; nothing here
//! decides what to tell the user.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::secret::{Scrubber, Secret};
use crate::text;
use crate::webhook::LabelSet;

/// What went wrong talking to an upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{service}: request failed: {message}")]
    Transport {
        service: &'static str,
        message: String,
    },
    #[error("{service}: HTTP {status}: {body}")]
    Http {
        service: &'static str,
        status: u16,
        body: String,
    },
    #[error("{service}: code {code}: {message}")]
    Refused {
        service: &'static str,
        code: i64,
        message: String,
    },
    #[error("{service}: unexpected answer: {message}")]
    BadResponse {
        service: &'static str,
        message: String,
    },
}

impl UpstreamError {
    /// HTTP 404: the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Http { status: 404, .. })
    }
}

fn snippet(bytes: &[u8]) -> String {
    text::upstream_prefix(&text::one_line(&String::from_utf8_lossy(bytes)), 200).to_string()
}

/// Sends a request and returns the body of a 2xx answer.
async fn call(
    service: &'static str,
    req: reqwest::RequestBuilder,
    scrubber: &Scrubber,
) -> Result<bytes::Bytes, UpstreamError> {
    let transport = |e: reqwest::Error| UpstreamError::Transport {
        service,
        message: scrubber.scrub(&e.without_url().to_string()),
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(transport)?;
    if !status.is_success() {
        return Err(UpstreamError::Http {
            service,
            status: status.as_u16(),
            body: scrubber.scrub(&snippet(&body)),
        });
    }
    Ok(body)
}

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

/// WxPusher's `{code, msg, data}` envelope: success is `code == 1000`.
fn wxpusher_data(bytes: &[u8]) -> Result<Value, UpstreamError> {
    const SERVICE: &str = "wxpusher";
    #[derive(Deserialize)]
    struct Envelope {
        code: i64,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        data: Value,
    }
    let e: Envelope = serde_json::from_slice(bytes).map_err(|e| UpstreamError::BadResponse {
        service: SERVICE,
        message: format!("{e}: {}", snippet(bytes)),
    })?;
    if e.code != 1000 {
        return Err(UpstreamError::Refused {
            service: SERVICE,
            code: e.code,
            message: e.msg,
        });
    }
    Ok(e.data)
}

/// A parameter QR code: users who subscribe by scanning it arrive in the `app_subscribe`
/// callback with this `extra`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QrCode {
    pub url: String,
    #[serde(default)]
    pub short_url: String,
    #[serde(default)]
    pub code: String,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub expires: i64,
}

pub async fn create_qrcode(
    client: &reqwest::Client,
    api_url: &str,
    app_token: &Secret,
    extra: &str,
    valid_secs: u64,
    scrubber: &Scrubber,
) -> Result<QrCode, UpstreamError> {
    let bytes = call(
        "wxpusher",
        client
            .post(format!("{}/api/fun/create/qrcode", base(api_url)))
            .json(
                &json!({"appToken": app_token.expose(), "extra": extra, "validTime": valid_secs}),
            ),
        scrubber,
    )
    .await?;
    let data = wxpusher_data(&bytes)?;
    serde_json::from_value(data).map_err(|e| UpstreamError::BadResponse {
        service: "wxpusher",
        message: e.to_string(),
    })
}
