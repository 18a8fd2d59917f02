//! A plain request to an upstream for what is not a delivery: chatops' calls to Alertmanager,
//! WxPusher's parameter QR codes. The answer's body when it is a 2xx, else a typed error whose
//! text is bounded and scrubbed of the secrets it was given; nothing here decides what to tell
//! a user. (Deliveries go through [`super::http`], which reads what a failure means next.)

use crate::secret::Scrubber;
use crate::text;

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

pub(crate) fn snippet(bytes: &[u8]) -> String {
    text::upstream_prefix(&text::one_line(&String::from_utf8_lossy(bytes)), 200).to_string()
}

/// Sends a request and returns the body of a 2xx answer.
pub(crate) async fn call(
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
