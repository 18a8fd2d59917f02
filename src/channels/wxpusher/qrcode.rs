//! WxPusher's parameter QR code (`POST {api}/api/fun/create/qrcode`): users who follow the app
//! by scanning it arrive in the `app_subscribe` callback ([`super::inbound`]) with its `extra`,
//! the tag their subscription carries.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::channels::upstream::{UpstreamError, call, snippet};
use crate::secret::{Scrubber, Secret};

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
