//! The one upstream call every channel makes: send, read the status, `Retry-After` and the
//! body, and turn what is not the upstream's own success into an error whose text is bounded
//! and scrubbed of secrets. Classifying the upstream's business codes is each channel's.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::{DeliveryError, parse_retry_after};
use crate::text;

/// How much of an upstream body an error keeps, in UTF-16 units (WeChat's own measure).
const SNIPPET: usize = 200;

/// What an upstream answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`, when it was given in seconds.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Sends `request` and reads the whole answer; failing to connect, a timeout or a broken
/// body is a [`DeliveryError::Transport`] (without the URL, which may hold a token).
pub async fn send(
    service: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, DeliveryError> {
    let resp = request
        .send()
        .await
        .map_err(|e| DeliveryError::transport(service, e))?;
    let status = resp.status().as_u16();
    let retry_after = parse_retry_after(resp.headers());
    let body = resp
        .bytes()
        .await
        .map_err(|e| DeliveryError::transport(service, e))?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of the body on one line, passed through `scrub`, for an error message.
    pub fn snippet(&self, scrub: impl Fn(&str) -> String) -> String {
        snippet(&self.body, scrub)
    }

    /// The error for an answer that is not a success, keeping a scrubbed snippet of its body.
    pub fn http_error(
        &self,
        service: &'static str,
        scrub: impl Fn(&str) -> String,
    ) -> DeliveryError {
        DeliveryError::Http {
            service,
            status: self.status,
            retry_after: self.retry_after,
            body: self.snippet(scrub),
        }
    }

    /// The body read as `T`; an unreadable one is a [`DeliveryError::BadResponse`].
    pub fn json<T: DeserializeOwned>(
        &self,
        service: &'static str,
        scrub: impl Fn(&str) -> String,
    ) -> Result<T, DeliveryError> {
        serde_json::from_slice(&self.body).map_err(|e| DeliveryError::BadResponse {
            service,
            message: format!("{e}: {}", self.snippet(scrub)),
        })
    }

    /// A 2xx body read as `T`: the usual shape of an upstream whose business errors come as
    /// HTTP 200 with a code (the caller checks the code).
    pub fn success_json<T: DeserializeOwned>(
        &self,
        service: &'static str,
        scrub: impl Fn(&str) -> String,
    ) -> Result<T, DeliveryError> {
        if !self.is_success() {
            return Err(self.http_error(service, scrub));
        }
        self.json(service, scrub)
    }
}

/// The start of a body on one line, passed through `scrub`.
pub fn snippet(bytes: &[u8], scrub: impl Fn(&str) -> String) -> String {
    let s = String::from_utf8_lossy(bytes);
    scrub(text::upstream_prefix(&text::one_line(&s), SNIPPET))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: Some(Duration::from_secs(3)),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn errors_keep_a_bounded_scrubbed_snippet() {
        let scrub = |s: &str| s.replace("AT_secret", "<secret>");
        let long = format!("bad AT_secret {}", "x".repeat(500));
        match answer(502, &long).http_error("svc", scrub) {
            DeliveryError::Http {
                status,
                retry_after,
                body,
                ..
            } => {
                assert_eq!((status, retry_after), (502, Some(Duration::from_secs(3))));
                assert!(body.starts_with("bad <secret> x"), "{body}");
                assert!(body.chars().count() <= SNIPPET + 10, "{}", body.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn success_json_reads_2xx_and_refuses_the_rest() {
        let id = |s: &str| s.to_string();
        let v: serde_json::Value = answer(200, r#"{"code":1000}"#)
            .success_json("svc", id)
            .unwrap();
        assert_eq!(v["code"], 1000);
        assert!(matches!(
            answer(200, "<html>").success_json::<serde_json::Value>("svc", id),
            Err(DeliveryError::BadResponse { .. })
        ));
        assert!(matches!(
            answer(503, "down").success_json::<serde_json::Value>("svc", id),
            Err(DeliveryError::Http { status: 503, .. })
        ));
    }
}
