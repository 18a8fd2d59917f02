//! Access tokens for the WeChat Official Account API: fetching, caching, single-flight refresh
//! and rate limiting of token calls.
//!
//! Tokens live in one [`TokenCache`] keyed by API base URL, app id and token endpoint, kept in
//! the service's long-lived upstream state ([`crate::channels::state::Upstreams`]) rather than
//! in one [`crate::runtime::Runtime`]: that is what lets a token survive `/-/reload`, since
//! reloading builds new integrations, which look up the same slot, so a reload never spends a
//! token call. Each slot sits behind its own
//! `tokio::sync::Mutex`: whoever holds it and finds no usable token fetches one while every
//! other sender of that app waits on the lock and then reuses what was fetched (single-flight).
//! Token calls are spaced at least `min_interval` apart per slot, because the classic endpoint
//! allows 2000 calls a day and every classic fetch invalidates the previous token.
//!
//! This module must never put a token or an app secret in an error or a log line: the token
//! travels in the query string, so URLs are not logged either.

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

/// Which token API to call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: fetching does not invalidate tokens other processes hold.
    #[default]
    Stable,
    /// `GET /cgi-bin/token`: every fetch replaces the previous token (after a short overlap).
    Classic,
}

/// How long before `expires_in` a token is replaced. WeChat's stable endpoint itself hands out
/// a new token in the last five minutes.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A cached token.
#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    /// After this, the next sender refreshes it.
    refresh_at: Instant,
}

/// One app's token state.
#[derive(Debug, Default)]
pub struct Slot {
    token: Option<Cached>,
    /// When the last token call was made, for spacing them.
    last_fetch: Option<Instant>,
    /// The last token call's failure: answered to every caller until the next call is allowed,
    /// so that a wrong secret does not make each waiting sender spend a call of its own.
    last_error: Option<DeliveryError>,
    /// Token calls made through this slot (for tests and debugging).
    fetches: u64,
}

/// Cache key: the same app on another API base (a test mock, a proxy) is another token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    api_url: String,
    app_id: String,
    endpoint: TokenEndpoint,
}

/// Slots by app; slots are never removed (there is one per configured app).
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: StdMutex<HashMap<Key, Arc<Mutex<Slot>>>>,
}

impl TokenCache {
    /// A token source for one app; every source for the same key shares one slot.
    pub fn source(
        &self,
        api_url: &str,
        app_id: &str,
        app_secret: Secret,
        endpoint: TokenEndpoint,
        min_interval: Duration,
    ) -> TokenSource {
        let key = Key {
            api_url: api_url.trim_end_matches('/').to_string(),
            app_id: app_id.to_string(),
            endpoint,
        };
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        TokenSource {
            api_url: key.api_url,
            app_id: key.app_id,
            app_secret,
            endpoint,
            min_interval,
            slot,
        }
    }
}

/// Hands out access tokens for one app.
#[derive(Debug, Clone)]
pub struct TokenSource {
    api_url: String,
    app_id: String,
    app_secret: Secret,
    endpoint: TokenEndpoint,
    /// Least time between two token calls.
    min_interval: Duration,
    slot: Arc<Mutex<Slot>>,
}

/// What the token endpoints answer.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl TokenSource {
    /// A valid token: the cached one, or a fresh one fetched by exactly one caller.
    pub async fn get(&self, env: &Env<'_>) -> Result<Secret, DeliveryError> {
        self.get_with(|| self.fetch(env)).await
    }

    /// [`TokenSource::get`] with the token call given, so the caching can be tested alone.
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
        if let Some(last) = slot.last_fetch {
            let allowed = last + self.min_interval;
            if let Some(e) = &slot.last_error
                && Instant::now() < allowed
            {
                return Err(e.clone());
            }
            if Instant::now() < allowed {
                tracing::info!(
                    app_id = %self.app_id,
                    wait_ms = (allowed - Instant::now()).as_millis() as u64,
                    "access token calls are spaced out, waiting"
                );
                tokio::time::sleep_until(allowed).await;
            }
        }
        slot.last_fetch = Some(Instant::now());
        slot.fetches += 1;
        let (token, expires_in) = match fetch().await {
            Ok(t) => {
                slot.last_error = None;
                t
            }
            Err(e) => {
                slot.last_error = Some(e.clone());
                return Err(e);
            }
        };
        let lifetime = Duration::from_secs(expires_in.max(1));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        slot.token = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        tracing::debug!(app_id = %self.app_id, expires_in, "fetched access token");
        Ok(token)
    }

    /// Forgets `token` after WeChat called it invalid or expired. A token another caller has
    /// already replaced is left alone, so many senders failing on the same old token cause
    /// one refresh, not one each.
    pub async fn invalidate(&self, token: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.token.as_ref().is_some_and(|c| &c.token == token) {
            slot.token = None;
        }
    }

    /// The app secret, so the runtime can scrub it from text.
    pub fn app_secret(&self) -> &Secret {
        &self.app_secret
    }

    /// Token calls made so far through this app's slot.
    pub async fn fetches(&self) -> u64 {
        self.slot.lock().await.fetches
    }

    async fn fetch(&self, env: &Env<'_>) -> Result<(Secret, u64), DeliveryError> {
        let request = match self.endpoint {
            TokenEndpoint::Stable => env
                .client
                .post(format!("{}/cgi-bin/stable_token", self.api_url))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.app_id,
                    "secret": self.app_secret.expose(),
                    // Normal mode: WeChat renews in the last five minutes by itself. Forced
                    // refreshes are limited to 20 a day, so they are never used.
                    "force_refresh": false,
                })),
            TokenEndpoint::Classic => env
                .client
                .get(format!("{}/cgi-bin/token", self.api_url))
                .query(&[
                    ("grant_type", "client_credential"),
                    ("appid", self.app_id.as_str()),
                    ("secret", self.app_secret.expose()),
                ]),
        };
        let answer = crate::channels::http::send(SERVICE, request).await?;
        // The body is never kept: on a token call it could echo the secret or a token.
        let hide = |_: &str| "access token response".to_string();
        if !answer.is_success() {
            return Err(DeliveryError::Http {
                service: SERVICE,
                status: answer.status,
                retry_after: None,
                body: "access token request failed".into(),
            });
        }
        let parsed: TokenResponse = answer.json(SERVICE, hide)?;
        match (parsed.errcode, parsed.access_token) {
            (0, Some(token)) if !token.is_empty() => {
                Ok((Secret::new(token), parsed.expires_in.unwrap_or(7200)))
            }
            (0, _) => Err(DeliveryError::BadResponse {
                service: SERVICE,
                message: "access token response without access_token".into(),
            }),
            (code, _) => {
                let err = classify(code, env.scrubber.scrub(&parsed.errmsg), None);
                if !err.is_retryable() {
                    tracing::error!(
                        app_id = %self.app_id,
                        errcode = code,
                        reason = err.reason().as_str(),
                        hint = credential_hint(code),
                        "cannot get an Official Account access token"
                    );
                }
                Err(err)
            }
        }
    }
}

/// What an SRE should check for a token error.
fn credential_hint(code: i64) -> &'static str {
    match code {
        40013 => "app_id is wrong",
        40125 => "app_secret is wrong (or was reset on the platform)",
        40164 => "this server's public IP is not in the account's IP whitelist",
        _ => "see the errcode in WeChat's documentation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(min_interval: Duration) -> TokenSource {
        TokenCache::default().source(
            "http://x",
            "wx1",
            Secret::new("secret"),
            TokenEndpoint::Stable,
            min_interval,
        )
    }

    /// A token call that counts itself and answers `T<n>` valid for `expires_in` seconds.
    fn counting(
        calls: &Arc<std::sync::atomic::AtomicU64>,
        expires_in: u64,
    ) -> impl std::future::Future<Output = Result<(Secret, u64), DeliveryError>> + use<> {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        async move {
            // Slow enough that every concurrent caller is already waiting on the slot.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok((Secret::new(format!("T{n}")), expires_in))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_concurrent_callers_cause_one_fetch() {
        let src = source(Duration::ZERO);
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (src, calls) = (src.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                src.get_with(|| counting(&calls, 7200)).await.unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().expose(), "T1");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(src.fetches().await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshed_five_minutes_before_expiry() {
        let src = source(Duration::ZERO);
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        assert_eq!(
            src.get_with(|| counting(&calls, 7200))
                .await
                .unwrap()
                .expose(),
            "T1"
        );
        tokio::time::advance(Duration::from_secs(7200 - 300 - 1)).await;
        assert_eq!(
            src.get_with(|| counting(&calls, 7200))
                .await
                .unwrap()
                .expose(),
            "T1"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            src.get_with(|| counting(&calls, 7200))
                .await
                .unwrap()
                .expose(),
            "T2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalidating_an_old_token_keeps_the_new_one() {
        let src = source(Duration::ZERO);
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t1 = src.get_with(|| counting(&calls, 7200)).await.unwrap();
        src.invalidate(&t1).await;
        let t2 = src.get_with(|| counting(&calls, 7200)).await.unwrap();
        assert_eq!(t2.expose(), "T2");
        // A late sender reporting T1 as invalid must not throw T2 away.
        src.invalidate(&t1).await;
        assert_eq!(
            src.get_with(|| counting(&calls, 7200))
                .await
                .unwrap()
                .expose(),
            "T2"
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn token_calls_are_spaced_by_the_minimum_interval() {
        let src = source(Duration::from_secs(60));
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t1 = src.get_with(|| counting(&calls, 7200)).await.unwrap();
        let fetched_at = Instant::now();
        tokio::time::advance(Duration::from_secs(10)).await;
        src.invalidate(&t1).await;
        let t2 = src.get_with(|| counting(&calls, 7200)).await.unwrap();
        assert_eq!(t2.expose(), "T2");
        // The second call started 60 s after the first one started (which was 100 ms before
        // it returned), and took its own 100 ms.
        let waited = Instant::now() - fetched_at;
        assert_eq!(waited, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_not_cached() {
        let src = source(Duration::ZERO);
        let err = src
            .get_with(|| async { Err(classify(40125, "invalid appsecret".into(), None)) })
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        assert_eq!(
            src.get_with(|| counting(&calls, 7200))
                .await
                .unwrap()
                .expose(),
            "T1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_answered_to_waiting_callers_until_the_next_call_is_allowed() {
        let src = source(Duration::from_secs(60));
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failing = || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(classify(40164, "invalid ip".into(), None)) }
        };
        for _ in 0..5 {
            let e = src.get_with(failing).await.unwrap_err();
            assert_eq!(e.reason(), crate::channels::error::Reason::BadCredentials);
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        assert_eq!(
            src.get_with(|| counting(&ok, 7200)).await.unwrap().expose(),
            "T1"
        );
    }

    #[test]
    fn same_app_shares_a_slot_across_sources() {
        let cache = TokenCache::default();
        let a = cache.source(
            "http://x/",
            "wx1",
            Secret::new("s1"),
            TokenEndpoint::Stable,
            Duration::ZERO,
        );
        let b = cache.source(
            "http://x",
            "wx1",
            Secret::new("s2"),
            TokenEndpoint::Stable,
            Duration::ZERO,
        );
        let c = cache.source(
            "http://x",
            "wx1",
            Secret::new("s1"),
            TokenEndpoint::Classic,
            Duration::ZERO,
        );
        assert!(Arc::ptr_eq(&a.slot, &b.slot));
        assert!(!Arc::ptr_eq(&a.slot, &c.slot));
    }
}
