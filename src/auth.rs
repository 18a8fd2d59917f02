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

/// The header Grafana puts its HMAC-SHA256 signature in.
pub const GRAFANA_SIGNATURE: &str = "x-grafana-alerting-signature";

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

/// A webhook must pass every configured check: the Authorization header when a token or basic
/// auth is set, and Grafana's signature when an HMAC secret is set and the header is present
/// (Alertmanager never signs, so an unsigned request must pass the Authorization check).
pub fn check_webhook(
    auth: &AuthConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Unauthorized> {
    let signature = headers.get(GRAFANA_SIGNATURE).and_then(|v| v.to_str().ok());
    let mut passed_any = false;
    if let (Some(secret), Some(sig)) = (&auth.grafana_hmac_secret, signature) {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            return Err(Unauthorized);
        };
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        if !ct_eq(
            sig.trim().to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        ) {
            tracing::debug!("grafana signature mismatch");
            return Err(Unauthorized);
        }
        passed_any = true;
    }
    match check_authorization(auth, headers) {
        Some(true) => Ok(()),
        Some(false) if passed_any && headers.get(header::AUTHORIZATION).is_none() => Ok(()),
        Some(false) => {
            tracing::debug!("authorization header missing or wrong");
            Err(Unauthorized)
        }
        None if auth.grafana_hmac_secret.is_some() && !passed_any => {
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
