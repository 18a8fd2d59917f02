//! What the on-call callbacks tell the escalation engine, in neutral terms: who acknowledged
//! or escalated which incident through which page, and which pages the upstream reports as
//! delivered or failed ([`OncallEvent`]); the seam the engine plugs into ([`EventSink`]); the
//! callback keys the endpoints check ([`CallbackKeys`]); and what a channel that keeps
//! its pages' ids with the incident asks of the engine ([`Desk`], [`Pager`], [`StatusQuery`]).
//!
//! The channel folders parse their callbacks into these events (`wecom_app/inbound.rs`,
//! `official_account/inbound.rs`, `voice/inbound.rs`) and serve their `/callback/…`
//! endpoints (`oncall.rs`), which verify and, through `channels/callbacks.rs`, deduplicate
//! by the upstream's ids (for at least 72 h, in the store, so across replicas) and hand each
//! event to the sink once. The kinds of contacts and pages ([`Contact`], [`PageRef`]) and the
//! keys ([`CallbackKeys`]) are declared in the channels' registry, a line per channel.
//!
//! This module decides nothing about incidents: an event naming a page or an incident the
//! engine does not know is the engine's to ignore (voice reports are unsigned: only call
//! ids it issued mean anything).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::channels::error::DeliveryError;
use crate::store::{NewJob, Store, StoreError};
use crate::webhook::Notification;

pub use super::{CallbackKeys, Contact, PageRef};

/// How long an upstream event id is remembered: WeCom's `response_code` lives 72 h, and the
/// vendors re-send for minutes to hours; DESIGN rule 9 asks for at least 72 h.
pub const DEDUPE_TTL: chrono::Duration = chrono::Duration::hours(73);

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

/// The timeline event recording what a page went out as (the upstream's ids for it, which
/// its reports and queries name).
pub const SENT: &str = "sent";

/// The job kind of a page's status query: taken out of the delivery round by the engine,
/// never sent; the channel whose identity prefix it bears reads it ([`StatusQuery`]).
pub const STATUS_KIND: &str = "oncall_status";

/// What the on-call engine lends a channel sending to one person's contact about one
/// incident (or asking what became of such a page): the incident's timeline and the
/// person's configuration, in neutral terms. The channel keeps the upstream's ids with the
/// incident through it; the engine decides what a failed page means.
pub trait Desk: Send + Sync {
    /// The durable store.
    fn store(&self) -> &Store;
    /// The incident's id.
    fn incident(&self) -> i64;
    /// The person (the name in `people`).
    fn person(&self) -> &str;
    /// The receiver the person's contacts are delivered under.
    fn receiver(&self) -> String;
    /// The recipient the person's contact of `kind` names (`contacts.<kind>`).
    fn recipient(&self, kind: &str) -> Option<String>;
    /// How `person` is shown to people (their `display_name`, else the name).
    fn display_name(&self, person: &str) -> String;
    /// The configuration's locale.
    fn locale(&self) -> crate::template::Locale;
    /// The callback keys in force.
    fn keys(&self) -> CallbackKeys;
    /// The person's integrations (one per contact kind).
    fn contacts(&self) -> &[super::Integration];
    /// What the person's integrations render and send with, at the desk's time.
    fn env(&self) -> super::Env<'_>;
    /// Appends an entry (`event`, about the person's contact of kind `contact`) to the
    /// incident's timeline.
    fn log<'a>(
        &'a self,
        event: &'a str,
        contact: &'a str,
        detail: String,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records what a page went out as (a [`SENT`] entry); `lost` says what a failure to
    /// record costs (logged: the page itself went out).
    fn sent<'a>(&'a self, contact: &'a str, detail: String, lost: &'a str) -> BoxFuture<'a, ()>;
    /// What became of the page sent at `sent_at`: failed (counted in `oncall_pages_total`
    /// with `failed` as its result; the next step at once when every page of the step has
    /// failed) or, with `None`, delivered (a timeline entry). Nothing where the engine
    /// counts nothing (outside the delivery workers).
    fn outcome<'a>(
        &'a self,
        contact: &'a str,
        failed: Option<&'static str>,
        sent_at: DateTime<Utc>,
        detail: String,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// A channel that sends on-call messages to a person's contact itself, keeping the upstream's
/// ids for them with the incident (what its reports and status queries name).
pub trait Pager: Send + Sync {
    /// Whether it sends `n` (a page, or an incident's status update) itself: pages only,
    /// unless the channel says otherwise.
    fn sends(&self, n: &Notification) -> bool {
        n.incident.as_ref().is_some_and(|c| c.update.is_none())
    }
    /// Sends `n` to the desk's person, as `integration` (this channel's).
    fn send_oncall<'a>(
        &'a self,
        desk: &'a dyn Desk,
        integration: &'a super::Integration,
        env: &'a super::Env<'a>,
        n: &'a Notification,
        progress: &'a mut super::Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// A stored status query of a page (a job of kind [`STATUS_KIND`]), read back from its
/// identity ([`super::status_query`]).
pub trait StatusQuery: Send + Sync {
    /// The incident whose page it asks about.
    fn incident(&self) -> i64;
    /// The job asking the next time, under `receiver` (carrying only `n`'s group); `None`
    /// past the last.
    fn next(&self, receiver: &str, n: &Notification) -> Option<NewJob>;
    /// Asks what became of the page and records it through `desk`.
    fn ask<'a>(&'a self, desk: &'a dyn Desk) -> BoxFuture<'a, ()>;
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
