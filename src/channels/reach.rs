//! What the on-call callbacks tell the escalation engine, in neutral terms: who acknowledged
//! or escalated which incident through which page, and which pages the upstream reports as
//! delivered or failed ([`OncallEvent`]); the seam the engine plugs into ([`EventSink`]); and
//! the callback keys the endpoints check ([`CallbackKeys`]).
//!
//! The channel folders parse their callbacks into these events (`wecom_app/inbound.rs`,
//! `official_account/inbound.rs`, `voice/inbound.rs`); the `/callback/…` endpoints
//! (`channels/callbacks.rs`, mounted by the server) verify, deduplicate by the upstream's ids (for at least 72 h, in the store, so across
//! replicas) and hand each event to the sink once. This module decides nothing about
//! incidents: an event naming a page or an incident the engine does not know is the engine's
//! to ignore (voice reports are unsigned: only call ids it issued mean anything).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::store::{Store, StoreError};

use super::wxcrypt::MsgCrypt;

/// How long an upstream event id is remembered: WeCom's `response_code` lives 72 h, and the
/// vendors re-send for minutes to hours; DESIGN rule 9 asks for at least 72 h.
pub const DEDUPE_TTL: chrono::Duration = chrono::Duration::hours(73);

/// The voice providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aliyun,
    Tencent,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aliyun => "aliyun",
            Provider::Tencent => "tencent",
        }
    }
}

/// The contact that acted, as the upstream names it; the engine finds the person whose
/// contact of that kind matches (WeCom userids compared case-insensitively: WeCom lower-cases
/// them in callbacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `FromUserName` of a WeCom callback.
    WecomApp { userid: String },
    /// `FromUserName` of an Official Account push.
    OfficialAccount { openid: String },
    /// The number called, E.164 (`+8613800000000`), as far as the report gives it.
    Voice { number: String },
}

/// The page an event is about, by the upstream's own id for it (what the sender recorded
/// when the page went out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRef {
    /// A WeCom template card, by its `task_id`; `response_code` is the click's fresh code:
    /// one `update_template_card` within 72 h, the only one left after the send's is spent.
    WecomCard {
        task_id: String,
        response_code: Option<String>,
    },
    /// An Official Account template message, by the `msgid` of its send answer (19 digits:
    /// 64 bits), and the recipient's openid.
    OfficialAccount { msg_id: u64, openid: String },
    /// A voice call, by the provider's call id (`CallId`), and the `out_id` we gave (Aliyun).
    Voice {
        provider: Provider,
        call_id: String,
        out_id: Option<String>,
    },
    /// A WxPusher message to one uid, by the `sendRecordId` of its send answer (what the
    /// status query names; no callback reports it).
    WxPusher { send_record_id: i64 },
}

/// Why the upstream says a page was not delivered (a bounded set, for metric labels), with
/// the upstream's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    /// The upstream's status text or code (`failed:user block`, `200003`), kept for the
    /// timeline; never a secret.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The call rang out, or the key was not pressed in time.
    NotAnswered,
    Busy,
    /// The number or the call is not valid (empty number, powered off, out of service…).
    Unreachable,
    /// The recipient refused the sender (`failed:user block`).
    Blocked,
    /// The upstream's frequency limit (`failed:freq limit`, supplier limits).
    Limited,
    /// Any other failure the upstream reports.
    Other,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotAnswered => "not_answered",
            FailureReason::Busy => "busy",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Blocked => "blocked",
            FailureReason::Limited => "limited",
            FailureReason::Other => "other",
        }
    }
}

/// One thing a callback told us, once (deduplicated by `dedupe_key` before it is handed on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OncallEvent {
    /// `by` acknowledges: the incident named by the card's key, or (voice) the one the
    /// page belongs to.
    Ack {
        by: Contact,
        incident: Option<String>,
        page: PageRef,
    },
    /// `by` asks for the next step; does nothing once the incident has moved past `from_step`.
    Escalate {
        by: Contact,
        incident: String,
        from_step: u32,
        page: PageRef,
    },
    /// The upstream could not deliver the page: counts as failed delivery (early escalation
    /// when every page of the current step has failed).
    PageFailed { page: PageRef, failure: Failure },
    /// Delivered (an Official Account `success`, a call answered without the key): never an
    /// acknowledgement, a timeline entry.
    Delivered { page: PageRef },
}

impl OncallEvent {
    pub fn page(&self) -> &PageRef {
        match self {
            OncallEvent::Ack { page, .. }
            | OncallEvent::Escalate { page, .. }
            | OncallEvent::PageFailed { page, .. }
            | OncallEvent::Delivered { page } => page,
        }
    }
}

/// Why the sink could not take an event; the endpoint answers 503 so the upstream re-sends.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("no on-call engine is connected")]
    Unconnected,
    #[error("on-call engine: {0}")]
    Engine(String),
}

/// Where callback events go: the on-call engine. `accept` returns once the event is durably
/// taken (the endpoints answer the upstream after it), so an error makes the upstream send
/// the callback again (the dedupe key is released first).
pub trait EventSink: Send + Sync {
    fn accept(
        &self,
        event: OncallEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>>;
}

/// The sink before an engine is connected: refuses every event (503, the upstream retries).
pub struct Unconnected;

impl EventSink for Unconnected {
    fn accept(
        &self,
        _event: OncallEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(async { Err(SinkError::Unconnected) })
    }
}

/// A sink that forwards into a channel (a bounded one applies back-pressure to the callbacks).
pub struct ChannelSink(pub tokio::sync::mpsc::Sender<OncallEvent>);

impl EventSink for ChannelSink {
    fn accept(
        &self,
        event: OncallEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(async move {
            self.0
                .send(event)
                .await
                .map_err(|_| SinkError::Engine("event channel closed".into()))
        })
    }
}

/// The keys the callback endpoints check; an endpoint whose keys are absent answers 404.
#[derive(Debug, Clone, Default)]
pub struct CallbackKeys {
    /// `oncall.channels.wecom_app`'s callback token and EncodingAESKey, with its corp id.
    pub wecom: Option<MsgCrypt>,
    /// `oncall.channels.official_account`'s callback token (plain mode) and, in safe mode,
    /// the crypto with the app id.
    pub official_account: Option<OfficialAccountKeys>,
    /// `oncall.channels.voice`'s provider and the secret path segment of its reports.
    pub voice: Option<(Provider, Secret)>,
}

#[derive(Debug, Clone)]
pub struct OfficialAccountKeys {
    pub token: Secret,
    /// Present when `callback_aes_key` is configured (safe or compatible mode).
    pub crypt: Option<MsgCrypt>,
}

/// The store key for an upstream event id: a kind prefix and a hash (upstream ids are
/// untrusted text of any length).
pub fn dedupe_key(kind: &str, upstream_id: &str) -> String {
    let h = Sha256::digest(upstream_id.as_bytes());
    format!("reach:{kind}:{}", hex::encode(&h[..16]))
}

/// Takes `key` if no replica took it within [`DEDUPE_TTL`]: true the first time only. Atomic
/// in the store (a counter that may not pass 1).
pub async fn first_time(store: &Store, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let taken = store
        .take_counters(vec![key.to_string()], 1, Some(1), now + DEDUPE_TTL)
        .await?;
    Ok(taken.first().copied().unwrap_or(false))
}

/// Gives `key` back (the sink refused the event, so the upstream's re-send must get through).
pub async fn release(store: &Store, key: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    store
        .add_counter(key.to_string(), -1, now + DEDUPE_TTL)
        .await
        .map(|_| ())
}

/// What the callback endpoints read at each request: the keys in force and the sink. The
/// service starts with no keys (every endpoint 404) and the [`Unconnected`] sink; whoever
/// loads the `oncall` configuration sets the keys (again on reload), and the on-call engine
/// connects its sink.
pub struct Endpoints {
    keys: std::sync::RwLock<std::sync::Arc<CallbackKeys>>,
    sink: std::sync::RwLock<std::sync::Arc<dyn EventSink>>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            keys: Default::default(),
            sink: std::sync::RwLock::new(std::sync::Arc::new(Unconnected)),
        }
    }
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    pub fn keys(&self) -> std::sync::Arc<CallbackKeys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_keys(&self, keys: CallbackKeys) {
        let keys = std::sync::Arc::new(keys);
        match self.keys.write() {
            Ok(mut k) => *k = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    pub fn sink(&self) -> std::sync::Arc<dyn EventSink> {
        match self.sink.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn connect(&self, sink: std::sync::Arc<dyn EventSink>) {
        match self.sink.write() {
            Ok(mut s) => *s = sink,
            Err(poisoned) => *poisoned.into_inner() = sink,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upstream_id_is_taken_once_and_can_be_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 100).unwrap();
        let now = Utc::now();
        let k = dedupe_key("wecom", "task-1|zhangsan|ack");
        assert!(k.len() < 64 && k.starts_with("reach:wecom:"));
        assert!(first_time(&store, &k, now).await.unwrap());
        assert!(!first_time(&store, &k, now).await.unwrap());
        release(&store, &k, now).await.unwrap();
        assert!(first_time(&store, &k, now).await.unwrap());
        assert_ne!(k, dedupe_key("wecom", "task-1|zhangsan|escalate"));
    }
}
