//! WxPusher's parameter QR code (`POST {api}/api/fun/create/qrcode`): users who follow the app
//! by scanning it arrive in the `app_subscribe` callback ([`super::inbound`]) with its `extra`,
//! the tag their subscription carries.

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::MAX_TAG;
use crate::channels::upstream::{UpstreamError, call, snippet};
use crate::channels::{Integration, Kind};
use crate::secret::{Scrubber, Secret};

/// Longest validity WxPusher gives a parameter QR code.
pub const MAX_VALID: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// A parameter QR code for the first WxPusher app among `receiver`'s integrations (`list`),
/// carrying `extra`, valid for `valid`; with the warnings a person should read. An error in
/// words, scrubbed.
pub async fn for_receiver(
    client: &reqwest::Client,
    scrubber: &Scrubber,
    receiver: &str,
    list: &[Integration],
    extra: &str,
    valid: std::time::Duration,
) -> Result<(QrCode, Vec<String>), String> {
    let w = list
        .iter()
        .find_map(|i| match &i.kind {
            // A QR code needs an app token; simple push has none.
            Kind::WxPusher(w) if !w.is_simple() => Some(w),
            _ => None,
        })
        .ok_or_else(|| format!("receiver {receiver:?} has no wxpusher_configs"))?;
    if extra.trim().is_empty() || extra.chars().count() > MAX_TAG {
        return Err(format!("--extra must be 1 to {MAX_TAG} characters"));
    }
    if valid.as_secs() == 0 || valid > MAX_VALID {
        return Err("--valid must be between 1s and 30d".into());
    }
    let mut notes = Vec::new();
    if !w.subscriber_tags.iter().any(|t| t == extra) {
        notes.push(format!(
            "warning: receiver {receiver:?} has no wxpusher_configs with subscriber_tags: [{extra}]; subscribers through this code get nothing until one does"
        ));
    }
    let code = create_qrcode(
        client,
        &w.api_url,
        &w.app_token,
        extra,
        valid.as_secs(),
        scrubber,
    )
    .await
    .map_err(|e| scrubber.scrub(&e.to_string()))?;
    Ok((code, notes))
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// WxPusher's `{code, msg, data}` envelope: success is `code == 1000`.
fn data(bytes: &[u8]) -> Result<Value, UpstreamError> {
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
    let data = data(&bytes)?;
    serde_json::from_value(data).map_err(|e| UpstreamError::BadResponse {
        service: "wxpusher",
        message: e.to_string(),
    })
}
