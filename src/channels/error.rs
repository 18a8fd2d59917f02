//! What can go wrong delivering one notification, and whether trying again can help.
//!
//! Every failure is classified once, here, on the error's type: the worker only asks
//! [`DeliveryError::is_retryable`], [`DeliveryError::retry_after`] and
//! [`DeliveryError::reason`] (a bounded metric label). Messages never carry secrets: upstream
//! text is scrubbed before it is stored in an error.

use std::time::Duration;

use crate::template::TemplateError;

/// What a failure says should happen next ([`DeliveryError::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after the engine's backoff, and not sooner than `at_least` (`Retry-After`).
    Backoff { at_least: Option<Duration> },
    /// Nothing can succeed before this time: wait for it, unless a fallback receiver can take
    /// the notification now.
    RetryAt(chrono::DateTime<chrono::Utc>),
    /// Retrying cannot help: a fallback receiver, then a dead letter.
    GiveUp,
}

/// Bounded set of failure reasons, used as the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Connect,
    Timeout,
    Http5xx,
    Http4xx,
    RateLimited,
    BadCredentials,
    Recipient,
    Quota,
    /// The upstream refuses this recipient for a while (weixin-gateway's ~24-hour window):
    /// retrying cannot help, a fallback receiver can.
    RecipientWindow,
    Upstream,
    BadResponse,
    Render,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::Http5xx => "http_5xx",
            Reason::Http4xx => "http_4xx",
            Reason::RateLimited => "rate_limited",
            Reason::BadCredentials => "bad_credentials",
            Reason::Recipient => "recipient",
            Reason::Quota => "quota",
            Reason::RecipientWindow => "recipient_window",
            Reason::Upstream => "upstream_error",
            Reason::BadResponse => "bad_response",
            Reason::Render => "render",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The request did not complete: refused, reset, DNS, TLS, or timed out.
    #[error("{service}: request failed: {message}")]
    Transport {
        service: &'static str,
        message: String,
        timeout: bool,
    },
    /// A non-2xx HTTP status.
    #[error("{service}: HTTP {status}: {body}")]
    Http {
        service: &'static str,
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    /// HTTP 200 whose body says failure (WxPusher `code`, WeChat `errcode`, gateway `ok:false`).
    #[error("{service}: error {code}: {message}{}", recipients_suffix(.recipients))]
    Upstream {
        service: &'static str,
        code: i64,
        message: String,
        reason: Reason,
        retryable: bool,
        /// The recipients that failed, when the upstream says per recipient.
        recipients: Vec<String>,
    },
    /// The upstream answered 2xx with something we cannot read.
    #[error("{service}: unreadable response: {message}")]
    BadResponse {
        service: &'static str,
        message: String,
    },
    /// A template failed; retrying renders the same failure.
    #[error(transparent)]
    Render(#[from] TemplateError),
    /// `error`, and nothing can succeed before `at` (a daily quota renewed at midnight): the
    /// engine waits for it, or hands the notification to a fallback receiver now.
    #[error("{error}")]
    Until {
        at: chrono::DateTime<chrono::Utc>,
        error: Box<DeliveryError>,
    },
    /// `error`, and the upstream said when to try again (WeCom's 45009, "retry after the
    /// minute"): retried with the engine's backoff, but not sooner than `after`.
    #[error("{error}")]
    After {
        after: Duration,
        error: Box<DeliveryError>,
    },
    /// Recipients left out because their daily budget (ours, kept in the store) is spent;
    /// it resets at the next midnight, Asia/Shanghai, so retrying today cannot help.
    #[error(
        "{service}: {recipients} recipient(s) over the daily budget of {budget} messages, not sent to them before midnight (Asia/Shanghai)"
    )]
    Budget {
        service: &'static str,
        /// How many recipients were left out (not who: the count is enough to act on).
        recipients: usize,
        budget: u32,
    },
}

fn recipients_suffix(r: &[String]) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(" (recipients: {})", r.join(", "))
    }
}

impl DeliveryError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Transport { .. } => true,
            DeliveryError::Http { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            DeliveryError::Upstream { retryable, .. } => *retryable,
            // A 2xx we cannot parse is most likely a proxy or an outage page.
            DeliveryError::BadResponse { .. } => true,
            DeliveryError::Render(_) => false,
            DeliveryError::Budget { .. } => false,
            DeliveryError::Until { .. } => false,
            DeliveryError::After { .. } => true,
        }
    }

    /// What the engine does next, as data: the one question it asks of a failure.
    pub fn next(&self) -> Next {
        match self {
            DeliveryError::Until { at, .. } => Next::RetryAt(*at),
            e if e.is_retryable() => Next::Backoff {
                at_least: e.retry_after(),
            },
            _ => Next::GiveUp,
        }
    }

    /// How long the upstream asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Http { retry_after, .. } => *retry_after,
            DeliveryError::After { after, .. } => Some(*after),
            _ => None,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            DeliveryError::Transport { timeout: true, .. } => Reason::Timeout,
            DeliveryError::Transport { .. } => Reason::Connect,
            DeliveryError::Http { status: 429, .. } => Reason::RateLimited,
            DeliveryError::Http { status, .. } if *status >= 500 => Reason::Http5xx,
            DeliveryError::Http { .. } => Reason::Http4xx,
            DeliveryError::Upstream { reason, .. } => *reason,
            DeliveryError::BadResponse { .. } => Reason::BadResponse,
            DeliveryError::Render(_) => Reason::Render,
            DeliveryError::Budget { .. } => Reason::Quota,
            DeliveryError::Until { error, .. } => error.reason(),
            DeliveryError::After { error, .. } => error.reason(),
        }
    }

    /// Builds a transport error from reqwest's, without the URL (it may hold a token).
    pub fn transport(service: &'static str, e: reqwest::Error) -> DeliveryError {
        let timeout = e.is_timeout();
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        DeliveryError::Transport {
            service,
            message,
            timeout,
        }
    }
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is rare from APIs).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let http = |status| DeliveryError::Http {
            service: "x",
            status,
            retry_after: None,
            body: String::new(),
        };
        assert!(http(500).is_retryable());
        assert!(http(503).is_retryable());
        assert!(http(429).is_retryable());
        assert_eq!(http(429).reason(), Reason::RateLimited);
        assert!(!http(400).is_retryable());
        assert!(!http(404).is_retryable());
        let up = DeliveryError::Upstream {
            service: "wxpusher",
            code: 1001,
            message: "appToken不正确".into(),
            reason: Reason::BadCredentials,
            retryable: false,
            recipients: vec![],
        };
        assert!(!up.is_retryable());
        assert_eq!(up.to_string(), "wxpusher: error 1001: appToken不正确");
    }
}
