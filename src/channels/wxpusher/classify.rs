//! What a WxPusher call-level `code` (with its `msg`) means: whose fault, and whether trying
//! again can help.
//!
//! Codes follow the Java SDK's `ResultCode`. `1001` is WxPusher's *generic* business failure
//! (openapi.yaml: "1001 通用业务错误"): only a `msg` that names the credential (`appToken不正确`,
//! `token错误`, an SPT that is wrong) means the credential is bad. Any other 1001 refuses this
//! message (its content, a target, a limit): permanent for this message, WxPusher's `msg`
//! kept in the error so that the dead letter says why, and never reported as a bad token,
//! which would send the operator to replace a token that works.
//!
//! Owns no I/O; the caller scrubs `msg` of secrets before it gets here.

use crate::channels::error::{DeliveryError, Reason};

use super::SERVICE;

/// Whether a WxPusher `msg` is about the credential rather than the message: it names the
/// app token (`appToken`, `token`, `AT_`) or a simple-push token (`SPT`).
pub fn names_credential(msg: &str) -> bool {
    let lower = msg.to_ascii_lowercase();
    lower.contains("token") || lower.contains("spt") || msg.contains("AT_") || msg.contains("密钥")
}

/// Classifies a call-level WxPusher code (the Java SDK's `ResultCode`).
pub fn call_error(code: i64, message: String) -> DeliveryError {
    let (reason, retryable) = match code {
        // BIZ_FAIL is generic: bad credentials only when the message names them.
        1001 if names_credential(&message) => (Reason::BadCredentials, false),
        // Anything else this message (content, a target, a limit) was refused for: sending the
        // same request again gets the same answer; the fallback receiver may still reach people.
        1001 => (Reason::Upstream, false),
        // UNAUTHORIZED, SIGN_FAIL.
        1002 | 1003 => (Reason::BadCredentials, false),
        // NOT_FOUND, DATA_ERROR: the request itself is wrong.
        1004 | 1008 => (Reason::Upstream, false),
        // INTERNAL_SERVER_ERROR, WEIXIN_ERROR, NETWORK_ERROR, UNKNOWN_ERROR and anything new.
        _ => (Reason::Upstream, true),
    };
    let message = if code == 1001 && reason == Reason::Upstream {
        format!("message refused: {message}")
    } else {
        message
    };
    DeliveryError::Upstream {
        service: SERVICE,
        code,
        message,
        reason,
        retryable,
        recipients: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1001_naming_the_token_is_bad_credentials() {
        for msg in [
            "appToken不正确",
            "appToken错误",
            "token错误",
            "AppToken is invalid",
        ] {
            let e = call_error(1001, msg.into());
            assert_eq!(e.reason(), Reason::BadCredentials, "{msg}");
            assert!(!e.is_retryable(), "{msg}");
            assert_eq!(e.to_string(), format!("wxpusher: error 1001: {msg}"));
        }
        assert_eq!(
            call_error(1001, "SPT不正确".into()).reason(),
            Reason::BadCredentials
        );
    }

    #[test]
    fn any_other_1001_refuses_this_message_and_keeps_the_msg() {
        for msg in ["消息内容不合法", "uids和topicIds不能同时为空", ""] {
            let e = call_error(1001, msg.into());
            assert_eq!(e.reason(), Reason::Upstream, "{msg}");
            assert_eq!(e.reason().as_str(), "upstream_error");
            assert!(!e.is_retryable(), "{msg}");
            assert_eq!(
                e.to_string(),
                format!("wxpusher: error 1001: message refused: {msg}")
            );
        }
    }

    #[test]
    fn other_codes() {
        assert_eq!(
            call_error(1002, String::new()).reason(),
            Reason::BadCredentials
        );
        assert!(!call_error(1003, String::new()).is_retryable());
        assert!(!call_error(1004, String::new()).is_retryable());
        assert!(call_error(1005, String::new()).is_retryable());
        assert!(call_error(1007, String::new()).is_retryable());
        assert_eq!(call_error(1008, String::new()).reason(), Reason::Upstream);
    }
}
