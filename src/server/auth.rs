//! Who may post webhooks and call management endpoints.
//!
//! Credentials are compared in constant time. A refusal says only "unauthorized": which part
//! was wrong is logged at debug level, not told to the caller.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, BasicAuth};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unauthorized\n")]
pub struct Unauthorized;

impl AuthConfig {
    /// No webhook credentials configured: `/webhook*` is open.
    pub fn is_open(&self) -> bool {
        self.bearer_token.is_none()
            && self.basic_auth.is_none()
            && self.grafana_hmac_secret.is_none()
    }

    /// No credentials of any kind: `/-/reload` is open too.
    pub fn management_is_open(&self) -> bool {
        self.is_open() && self.admin.is_none()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub use crate::secret::credentials;

/// Checks `Authorization` against the configured bearer token or basic auth, if any.
fn check_authorization(auth: &AuthConfig, headers: &HeaderMap) -> Option<bool> {
    check_credentials(
        auth.bearer_token.as_ref(),
        auth.basic_auth.as_ref(),
        headers,
    )
}

/// Checks `Authorization` against `auth.admin`, if configured.
pub fn check_admin(auth: &AuthConfig, headers: &HeaderMap) -> Option<bool> {
    let admin = auth.admin.as_ref()?;
    check_credentials(
        admin.bearer_token.as_ref(),
        admin.basic_auth.as_ref(),
        headers,
    )
    .or(Some(false))
}

/// `Some(matches)` when a bearer token or basic auth is given, `None` when neither is.
fn check_credentials(
    bearer: Option<&Secret>,
    basic: Option<&BasicAuth>,
    headers: &HeaderMap,
) -> Option<bool> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = bearer {
        let ok = given
            .and_then(|g| credentials(g, "Bearer"))
            .is_some_and(|g| ct_eq(g.as_bytes(), token.expose().as_bytes()));
        return Some(ok);
    }
    if let Some(basic) = basic {
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
            .and_then(|g| credentials(g, "Basic"))
            .is_some_and(|g| ct_eq(g.as_bytes(), expected.as_bytes()));
        return Some(ok);
    }
    None
}

/// The signature header's value, when an HMAC secret is configured and the request has one.
fn signature_header<'a>(auth: &AuthConfig, headers: &'a HeaderMap) -> Option<&'a str> {
    auth.grafana_hmac_secret.as_ref()?;
    headers
        .get(auth.grafana_hmac_header.as_str())?
        .to_str()
        .ok()
}

/// The signed timestamp when a timestamp header is configured: `Ok(None)` when none is,
/// `Err` when it is missing, not a number, or outside the replay window. The skew is
/// computed with checked arithmetic: an extreme timestamp is refused, never wrapped.
fn signed_timestamp<'a>(
    auth: &AuthConfig,
    headers: &'a HeaderMap,
    now: i64,
) -> Result<Option<&'a str>, Unauthorized> {
    let Some(ts_header) = &auth.grafana_hmac_timestamp_header else {
        return Ok(None);
    };
    let Some(ts) = headers
        .get(ts_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        tracing::debug!("signature timestamp missing");
        return Err(Unauthorized);
    };
    let Ok(when) = ts.parse::<i64>() else {
        tracing::debug!("signature timestamp not a number");
        return Err(Unauthorized);
    };
    match now.checked_sub(when) {
        Some(skew) if skew.unsigned_abs() <= auth.grafana_hmac_max_skew.as_secs() => Ok(Some(ts)),
        Some(skew) => {
            tracing::debug!(
                skew_seconds = skew,
                "signature timestamp outside the replay window"
            );
            Err(Unauthorized)
        }
        None => {
            tracing::debug!("signature timestamp outside the replay window");
            Err(Unauthorized)
        }
    }
}

/// Verifies Grafana's HMAC-SHA256 signature: hex of HMAC(secret, body), or of
/// `"<ts>:<body>"` when a timestamp header is configured (then `ts` must be recent).
fn check_signature(auth: &AuthConfig, headers: &HeaderMap, body: &[u8], now: i64) -> Option<bool> {
    let secret = auth.grafana_hmac_secret.as_ref()?;
    let sig = signature_header(auth, headers)?;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return Some(false);
    };
    match signed_timestamp(auth, headers, now) {
        Err(Unauthorized) => return Some(false),
        Ok(Some(ts)) => {
            mac.update(ts.as_bytes());
            mac.update(b":");
        }
        Ok(None) => {}
    }
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    Some(ct_eq(
        sig.trim().to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ))
}

/// What a request's Grafana signature says, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signed {
    /// No signature (or no HMAC secret configured).
    Absent,
    /// Present, its timestamp fresh; the body it signs is not read yet.
    Unread,
    /// Verified over the body.
    Valid,
    /// Wrong, or its timestamp stale or missing.
    Invalid,
}

/// The one authorization decision for webhooks, from what the signature says: a signature,
/// when present, must be valid; otherwise the Authorization header must match the configured
/// token or basic auth. A valid signature stands in for a missing Authorization header
/// (Grafana can send either or both); a wrong header is still refused. With only an HMAC
/// secret configured, the signature is required. Called on the head with the signature
/// [`Signed::Unread`] (refusing only what no body can save) and again once the body is read.
fn decide(auth: &AuthConfig, headers: &HeaderMap, signed: Signed) -> Result<(), Unauthorized> {
    if signed == Signed::Invalid {
        tracing::debug!("grafana signature invalid");
        return Err(Unauthorized);
    }
    let signature_may_pass = matches!(signed, Signed::Valid | Signed::Unread);
    match check_authorization(auth, headers) {
        Some(true) => Ok(()),
        Some(false) if signature_may_pass && headers.get(header::AUTHORIZATION).is_none() => Ok(()),
        Some(false) => {
            tracing::debug!("authorization header missing or wrong");
            Err(Unauthorized)
        }
        None if auth.grafana_hmac_secret.is_some() && signed == Signed::Absent => {
            tracing::debug!("signature required but missing");
            Err(Unauthorized)
        }
        None => Ok(()),
    }
}

/// What can be decided from the request head alone, before a byte of the body is read (and
/// so before hyper sends `100 Continue`): refuses every request that [`check_webhook`] would
/// refuse whatever its body. With bearer or basic auth only, that is every unauthorized one;
/// with an HMAC secret, one with neither a signature nor `Authorization`, a wrong
/// `Authorization`, or a stale signature timestamp.
pub fn check_head(auth: &AuthConfig, headers: &HeaderMap) -> Result<(), Unauthorized> {
    check_head_at(auth, headers, chrono::Utc::now().timestamp())
}

pub fn check_head_at(auth: &AuthConfig, headers: &HeaderMap, now: i64) -> Result<(), Unauthorized> {
    let signed = match signature_header(auth, headers) {
        None => Signed::Absent,
        Some(_) => match signed_timestamp(auth, headers, now) {
            Ok(_) => Signed::Unread,
            Err(Unauthorized) => Signed::Invalid,
        },
    };
    decide(auth, headers, signed)
}

/// Whether a webhook may pass, its body read: [`decide`] with the signature verified.
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
    let signed = match check_signature(auth, headers, body, now) {
        None => Signed::Absent,
        Some(true) => Signed::Valid,
        Some(false) => Signed::Invalid,
    };
    decide(auth, headers, signed)
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(check_head(&auth, &headers(&[])).is_err());
    }

    #[test]
    fn schemes_are_case_insensitive() {
        let auth = AuthConfig {
            bearer_token: Some(Secret::new("tok-123")),
            ..Default::default()
        };
        for value in [
            "Bearer tok-123",
            "bearer tok-123",
            "BEARER tok-123",
            "bEaReR  tok-123 ",
        ] {
            let h = headers(&[("authorization", value)]);
            assert!(check_webhook(&auth, &h, b"").is_ok(), "{value}");
            assert!(check_head(&auth, &h).is_ok(), "{value}");
        }
        for value in ["Bearertok-123", "Basic tok-123", "Bearer", "tok-123"] {
            let h = headers(&[("authorization", value)]);
            assert!(check_webhook(&auth, &h, b"").is_err(), "{value}");
        }
        let auth = AuthConfig {
            basic_auth: Some(crate::config::BasicAuth {
                username: "am".into(),
                password: Some(Secret::new("pw-secret")),
                password_file: None,
            }),
            ..Default::default()
        };
        for scheme in ["Basic", "basic", "BASIC"] {
            let h = headers(&[("authorization", &format!("{scheme} YW06cHctc2VjcmV0"))]);
            assert!(check_webhook(&auth, &h, b"").is_ok(), "{scheme}");
        }
        assert_eq!(credentials("BeArEr x", "bearer"), Some("x"));
        assert_eq!(credentials("Bearer ", "bearer"), None);
    }

    #[test]
    fn extreme_signature_timestamps_are_refused_without_overflow() {
        let body = br#"{"status":"firing"}"#;
        let auth = AuthConfig {
            grafana_hmac_secret: Some(Secret::new("hmac-secret")),
            grafana_hmac_timestamp_header: Some("X-Ts".into()),
            ..Default::default()
        };
        let now = 1_800_000_000i64;
        for ts in [
            i64::MAX,
            -i64::MAX,
            i64::MIN,
            i64::MIN + 1,
            now + 301,
            now - 301,
        ] {
            let mut data = format!("{ts}:").into_bytes();
            data.extend_from_slice(body);
            let sig = sign("hmac-secret", &data);
            let h = headers(&[
                ("x-grafana-alerting-signature", &sig),
                ("x-ts", &ts.to_string()),
            ]);
            for at in [now, -now, i64::MAX, i64::MIN] {
                if (at as i128 - ts as i128).unsigned_abs() <= 300 {
                    continue;
                }
                assert!(
                    check_webhook_at(&auth, &h, body, at).is_err(),
                    "{ts} at {at}"
                );
                assert!(check_head_at(&auth, &h, at).is_err(), "{ts} at {at}");
            }
        }
        // The window itself still works at the edges of the range.
        let ts = i64::MIN;
        let mut data = format!("{ts}:").into_bytes();
        data.extend_from_slice(body);
        let h = headers(&[
            ("x-grafana-alerting-signature", &sign("hmac-secret", &data)),
            ("x-ts", &ts.to_string()),
        ]);
        assert!(check_webhook_at(&auth, &h, body, i64::MIN + 10).is_ok());
    }

    /// The head and the body are judged by the same decision: for every combination of
    /// configured auth, Authorization header and signature, the head refuses exactly what no
    /// body can make acceptable, and never what a body makes acceptable.
    #[test]
    fn head_and_body_share_one_decision() {
        let now = 1_700_000_000;
        let body = b"{}";
        let mut configs = Vec::new();
        for bearer in [false, true] {
            for hmac in [false, true] {
                for ts in [false, true] {
                    configs.push(AuthConfig {
                        bearer_token: bearer.then(|| Secret::new("tok-123")),
                        grafana_hmac_secret: hmac.then(|| Secret::new("hmac-secret")),
                        grafana_hmac_timestamp_header: ts.then(|| "x-ts".to_string()),
                        ..Default::default()
                    });
                }
            }
        }
        let good_sig = sign("hmac-secret", body);
        let ts_sig = sign("hmac-secret", format!("{now}:{{}}").as_bytes());
        let authz = [None, Some("Bearer tok-123"), Some("Bearer wrong")];
        let sigs = [
            None,
            Some(good_sig.as_str()),
            Some(ts_sig.as_str()),
            Some("00"),
        ];
        let stamps = [
            None,
            Some(now.to_string()),
            Some((now - 100_000).to_string()),
        ];
        for auth in &configs {
            for a in authz {
                for s in sigs {
                    for t in &stamps {
                        let mut pairs = Vec::new();
                        if let Some(a) = a {
                            pairs.push(("authorization", a));
                        }
                        if let Some(s) = s {
                            pairs.push(("x-grafana-alerting-signature", s));
                        }
                        if let Some(t) = t {
                            pairs.push(("x-ts", t.as_str()));
                        }
                        let h = headers(&pairs);
                        let full = check_webhook_at(auth, &h, body, now).is_ok();
                        let head = check_head_at(auth, &h, now).is_ok();
                        assert!(
                            !full || head,
                            "the head refused what the body accepts: {auth:?} {pairs:?}"
                        );
                        // Whatever the body: a head refusal is final, a head pass with no
                        // signature to check is the final answer too.
                        if s.is_none() || auth.grafana_hmac_secret.is_none() {
                            assert_eq!(head, full, "{auth:?} {pairs:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_head_alone_refuses_what_no_body_can_fix() {
        let hmac_only = AuthConfig {
            grafana_hmac_secret: Some(Secret::new("hmac-secret")),
            ..Default::default()
        };
        assert!(check_head(&hmac_only, &headers(&[])).is_err());
        assert!(
            check_head(
                &hmac_only,
                &headers(&[("x-grafana-alerting-signature", "00")])
            )
            .is_ok(),
            "a signature needs the body to be checked"
        );
        let both = AuthConfig {
            bearer_token: Some(Secret::new("tok-123")),
            ..hmac_only.clone()
        };
        let sig = [("x-grafana-alerting-signature", "00")];
        assert!(check_head(&both, &headers(&sig)).is_ok());
        assert!(
            check_head(
                &both,
                &headers(&[sig[0], ("authorization", "Bearer wrong")])
            )
            .is_err(),
            "a wrong Authorization is refused even with a signature"
        );
        assert!(check_head(&both, &headers(&[])).is_err());
        assert!(check_head(&AuthConfig::default(), &headers(&[])).is_ok());
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
