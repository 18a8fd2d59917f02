//! WeCom access tokens: `GET {api}/cgi-bin/gettoken?corpid=ID&corpsecret=SECRET`, cached per
//! (API base, corp id, secret fingerprint) in the service's long-lived state
//! ([`crate::channels::state::Upstreams`]), so a reload keeps them, until shortly before
//! expiry. Each slot sits behind its own `tokio::sync::Mutex`: the sender holding it fetches
//! while the others wait and reuse the result (single-flight). A failed call is answered to
//! callers for [`FAILURE_HOLD`] so that a wrong secret does not cost one call per sender (the
//! endpoint is frequency-limited).
//!
//! Never puts a token or a secret in an error or a log line: both travel in query strings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{SERVICE, classify};
use crate::channels::Env;
use crate::channels::error::DeliveryError;
use crate::secret::Secret;

/// How long before `expires_in` a token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a failed token call is answered from memory.
pub const FAILURE_HOLD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

#[derive(Debug, Default)]
struct Slot {
    token: Option<Cached>,
    last_error: Option<(Instant, DeliveryError)>,
    fetches: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    api_url: String,
    corp_id: String,
    /// A hash of the secret: two apps of one corp have two secrets and two tokens.
    secret: String,
}

/// Slots by (API base, corp, secret); one per configured app, never removed.
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: StdMutex<HashMap<Key, Arc<Mutex<Slot>>>>,
}

impl TokenCache {
    pub fn source(&self, api_url: &str, corp_id: &str, secret: Secret) -> TokenSource {
        use sha2::Digest;
        let key = Key {
            api_url: api_url.trim_end_matches('/').to_string(),
            corp_id: corp_id.to_string(),
            secret: hex::encode(&sha2::Sha256::digest(secret.expose().as_bytes())[..8]),
        };
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        TokenSource {
            api_url: key.api_url,
            corp_id: key.corp_id,
            secret,
            slot,
        }
    }
}

/// Hands out access tokens for one (corp, secret).
#[derive(Debug, Clone)]
pub struct TokenSource {
    api_url: String,
    corp_id: String,
    secret: Secret,
    slot: Arc<Mutex<Slot>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// A valid token: the cached one, or one fetched by exactly one caller.
    pub async fn get(&self, env: &Env<'_>) -> Result<Secret, DeliveryError> {
        self.get_with(|| self.fetch(env)).await
    }

    async fn get_with<F, Fut>(&self, fetch: F) -> Result<Secret, DeliveryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Secret, u64), DeliveryError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(c) = &slot.token
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        if let Some((at, e)) = &slot.last_error
            && Instant::now() < *at + FAILURE_HOLD
        {
            return Err(e.clone());
        }
        slot.fetches += 1;
        match fetch().await {
            Ok((token, expires_in)) => {
                let lifetime = Duration::from_secs(expires_in.max(1));
                let margin = REFRESH_MARGIN.min(lifetime / 2);
                slot.last_error = None;
                slot.token = Some(Cached {
                    token: token.clone(),
                    refresh_at: Instant::now() + lifetime - margin,
                });
                tracing::debug!(corp_id = %self.corp_id, expires_in, "fetched a WeCom access token");
                Ok(token)
            }
            Err(e) => {
                slot.last_error = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Forgets `token` after WeCom called it expired or invalid (42001, 40014); a token
    /// another sender already replaced is kept, so many senders failing cause one refresh.
    pub async fn invalidate(&self, token: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.token.as_ref().is_some_and(|c| &c.token == token) {
            slot.token = None;
        }
    }

    /// Token calls made through this slot.
    pub async fn fetches(&self) -> u64 {
        self.slot.lock().await.fetches
    }

    async fn fetch(&self, env: &Env<'_>) -> Result<(Secret, u64), DeliveryError> {
        let request = env
            .client
            .get(format!("{}/cgi-bin/gettoken", self.api_url))
            .query(&[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.expose()),
            ]);
        let answer = crate::channels::http::send(SERVICE, request).await?;
        // The body is never kept: it holds a token on success.
        let hide = |_: &str| "access token response".to_string();
        if !answer.is_success() {
            return Err(DeliveryError::Http {
                service: SERVICE,
                status: answer.status,
                retry_after: answer.retry_after,
                body: "access token request failed".into(),
            });
        }
        let parsed: TokenResponse = answer.json(SERVICE, hide)?;
        match (parsed.errcode, parsed.access_token) {
            (0, Some(t)) if !t.is_empty() => {
                Ok((Secret::new(t), parsed.expires_in.unwrap_or(7200)))
            }
            (0, _) => Err(DeliveryError::BadResponse {
                service: SERVICE,
                message: "access token response without access_token".into(),
            }),
            (code, _) => {
                let err = classify(code, env.scrubber.scrub(&parsed.errmsg), &[]);
                if !err.is_retryable() {
                    tracing::error!(corp_id = %self.corp_id, errcode = code, reason = err.reason().as_str(), "cannot get a WeCom access token");
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn one_fetch_for_many_concurrent_callers_and_refresh_before_expiry() {
        let src = TokenCache::default().source("http://x", "ww1", Secret::new("s"));
        let calls = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (src, calls) = (src.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                src.get_with(|| async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok((Secret::new(format!("T{n}")), 7200))
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().expose(), "T1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(7200 - 300)).await;
        let t = src
            .get_with(|| async { Ok((Secret::new("T2"), 7200)) })
            .await
            .unwrap();
        assert_eq!(t.expose(), "T2");
        // Invalidating an old token keeps the new one.
        src.invalidate(&Secret::new("T1")).await;
        let t = src
            .get_with(|| async { Ok((Secret::new("T3"), 7200)) })
            .await
            .unwrap();
        assert_eq!(t.expose(), "T2");
    }

    #[test]
    fn slots_are_per_corp_and_secret() {
        let cache = TokenCache::default();
        let a = cache.source("http://x/", "ww1", Secret::new("s1"));
        let b = cache.source("http://x", "ww1", Secret::new("s1"));
        let c = cache.source("http://x", "ww1", Secret::new("s2"));
        assert!(Arc::ptr_eq(&a.slot, &b.slot));
        assert!(!Arc::ptr_eq(&a.slot, &c.slot));
    }
}
