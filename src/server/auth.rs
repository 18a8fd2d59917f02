//! Who may post webhooks and call management endpoints.
//!
//! Credentials are compared in constant time. A refusal says only "unauthorized": which part
//! was wrong is logged at debug level, not told to the caller.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unauthorized\n")]
pub struct Unauthorized;

impl AuthConfig {
    pub fn is_open(&self) -> bool {
        self.bearer_token.is_none()
            && self.basic_auth.is_none()
            && self.grafana_hmac_secret.is_none()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Checks `Authorization` against the configured bearer token or basic auth, if any.
fn check_authorization(auth: &AuthConfig, headers: &HeaderMap) -> Option<bool> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = &auth.bearer_token {
        let ok = given
            .and_then(|g| {
                g.strip_prefix("Bearer ")
                    .or_else(|| g.strip_prefix("bearer "))
            })
            .is_some_and(|g| ct_eq(g.trim().as_bytes(), token.expose().as_bytes()));
        return Some(ok);
    }
    if let Some(basic) = &auth.basic_auth {
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode(
            format!(
                "{}:{}",
                basic.username,
                basic.password.as_ref().map(|p| p.expose()).unwrap_or("")
            )
            .as_bytes(),
        );
        let ok = given
            .and_then(|g| {
                g.strip_prefix("Basic ")
                    .or_else(|| g.strip_prefix("basic "))
            })
            .is_some_and(|g| ct_eq(g.trim().as_bytes(), expected.as_bytes()));
        return Some(ok);
    }
    None
}

/// Verifies Grafana's HMAC-SHA256 signature: hex of HMAC(secret, body), or of
/// `"<ts>:<body>"` when a timestamp header is configured (then `ts` must be recent).
fn check_signature(auth: &AuthConfig, headers: &HeaderMap, body: &[u8], now: i64) -> Option<bool> {
    let secret = auth.grafana_hmac_secret.as_ref()?;
    let sig = headers
        .get(auth.grafana_hmac_header.as_str())?
        .to_str()
        .ok()?;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return Some(false);
    };
    if let Some(ts_header) = &auth.grafana_hmac_timestamp_header {
        let Some(ts) = headers
            .get(ts_header.as_str())
            .and_then(|v| v.to_str().ok())
        else {
            tracing::debug!("signature timestamp missing");
            return Some(false);
        };
        let Ok(when) = ts.trim().parse::<i64>() else {
            return Some(false);
        };
        if (now - when).unsigned_abs() > auth.grafana_hmac_max_skew.as_secs() {
            tracing::debug!(
                skew_seconds = now - when,
                "signature timestamp outside the replay window"
            );
            return Some(false);
        }
        mac.update(ts.trim().as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    Some(ct_eq(
        sig.trim().to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ))
}

/// A webhook must pass every configured check that applies: a Grafana signature, when
/// present, must be valid; otherwise the Authorization header must match the configured token
/// or basic auth. With only an HMAC secret configured, the signature is required.
pub fn check_webhook(
    auth: &AuthConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Unauthorized> {
    check_webhook_at(auth, headers, body, chrono::Utc::now().timestamp())
}

pub fn check_webhook_at(
    auth: &AuthConfig,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Unauthorized> {
    let signed = check_signature(auth, headers, body, now);
    if signed == Some(false) {
        tracing::debug!("grafana signature invalid");
        return Err(Unauthorized);
    }
    match check_authorization(auth, headers) {
        Some(true) => Ok(()),
        // A valid signature stands in for a missing Authorization header (Grafana can do
        // either or both); a wrong header is still refused.
        Some(false) if signed == Some(true) && headers.get(header::AUTHORIZATION).is_none() => {
            Ok(())
        }
        Some(false) => {
            tracing::debug!("authorization header missing or wrong");
            Err(Unauthorized)
        }
        None if auth.grafana_hmac_secret.is_some() && signed.is_none() => {
            tracing::debug!("signature required but missing");
            Err(Unauthorized)
        }
        None => Ok(()),
    }
}

/// Management endpoints take the same Authorization as webhooks.
pub fn check_management(auth: &AuthConfig, headers: &HeaderMap) -> Result<(), Unauthorized> {
    match check_authorization(auth, headers) {
        Some(false) => Err(Unauthorized),
        _ => Ok(()),
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn sign(secret: &str, data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_and_basic() {
        let auth = AuthConfig {
            bearer_token: Some(Secret::new("tok-123")),
            ..Default::default()
        };
        assert!(
            check_webhook(&auth, &headers(&[("authorization", "Bearer tok-123")]), b"").is_ok()
        );
        assert!(
            check_webhook(&auth, &headers(&[("authorization", "Bearer tok-124")]), b"").is_err()
        );
        assert!(check_webhook(&auth, &headers(&[]), b"").is_err());
        let auth = AuthConfig {
            basic_auth: Some(crate::config::BasicAuth {
                username: "am".into(),
                password: Some(Secret::new("pw-secret")),
                password_file: None,
            }),
            ..Default::default()
        };
        // base64("am:pw-secret")
        assert!(
            check_webhook(
                &auth,
                &headers(&[("authorization", "Basic YW06cHctc2VjcmV0")]),
                b""
            )
            .is_ok()
        );
        assert!(
            check_webhook(&auth, &headers(&[("authorization", "Basic YW06cHc=")]), b"").is_err()
        );
        assert!(check_management(&auth, &headers(&[])).is_err());
    }

    #[test]
    fn grafana_signature_with_and_without_timestamp() {
        let body = br#"{"status":"firing"}"#;
        let mut auth = AuthConfig {
            grafana_hmac_secret: Some(Secret::new("hmac-secret")),
            ..Default::default()
        };
        let good = sign("hmac-secret", body);
        assert!(
            check_webhook_at(
                &auth,
                &headers(&[("x-grafana-alerting-signature", &good)]),
                body,
                0
            )
            .is_ok()
        );
        assert!(
            check_webhook_at(
                &auth,
                &headers(&[("x-grafana-alerting-signature", &sign("other", body))]),
                body,
                0
            )
            .is_err()
        );
        assert!(
            check_webhook_at(&auth, &headers(&[]), body, 0).is_err(),
            "signature required"
        );
        auth.grafana_hmac_timestamp_header = Some("X-Grafana-Alerting-Signature-Timestamp".into());
        let ts = 1_800_000_000i64;
        let signed = sign(
            "hmac-secret",
            format!("{ts}:{}", std::str::from_utf8(body).unwrap()).as_bytes(),
        );
        let h = headers(&[
            ("x-grafana-alerting-signature", &signed),
            ("x-grafana-alerting-signature-timestamp", &ts.to_string()),
        ]);
        assert!(check_webhook_at(&auth, &h, body, ts + 10).is_ok());
        assert!(
            check_webhook_at(&auth, &h, body, ts + 301).is_err(),
            "replay outside the window"
        );
        assert!(check_webhook_at(&auth, &h, b"tampered", ts).is_err());
    }
}
