//! The engine's end of the on-call callbacks: the callback keys taken from the configuration
//! in force ([`callback_keys`]), and the [`Sink`] the service connects to the `/callback/…`
//! endpoints, which turns their events into the engine's acts as the person whose contact the
//! upstream names (a WeCom card's button acknowledges or escalates as the clicker).
//!
//! An event about an incident or a person the engine does not know is ignored (logged): the
//! upstream ids are untrusted text, and an unknown one means nothing.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::channels::reach::{
    CallbackKeys, Contact, EventSink, OfficialAccountKeys, OncallEvent, PageRef, SinkError,
};
use crate::channels::wxcrypt::MsgCrypt;
use crate::config::oncall::ContactEntry;
use crate::runtime::{Runtime, Shared};
use crate::store::Store;
use crate::store::incident::Incident;

/// The callback keys of the `oncall.channels` entries in force: the WeCom application's
/// token and EncodingAESKey (with its corp id), the Official Account's token (and key in safe
/// mode). A channel without them has no callback endpoint.
pub fn callback_keys(rt: &Runtime) -> CallbackKeys {
    let mut keys = CallbackKeys::default();
    let Some(o) = &rt.config.oncall else {
        return keys;
    };
    // Every person's contact of a kind carries the same `oncall.channels` entry: the first
    // one gives the keys.
    for c in &o.contacts {
        match &c.entry {
            ContactEntry::WecomApp(w) if keys.wecom.is_none() => {
                if let (Some(token), Some(key)) = (&w.callback_token, &w.callback_aes_key) {
                    match MsgCrypt::new(token.clone(), key, w.corp_id.clone()) {
                        Ok(crypt) => keys.wecom = Some(crypt),
                        Err(e) => {
                            warn!(error = %e, "oncall.channels.wecom_app: unusable callback key")
                        }
                    }
                }
            }
            ContactEntry::OfficialAccount(a) if keys.official_account.is_none() => {
                if let Some(token) = &a.callback_token {
                    let crypt = a.callback_aes_key.as_ref().and_then(|key| {
                        MsgCrypt::new(token.clone(), key, a.app_id.clone())
                            .inspect_err(|e| {
                                warn!(error = %e, "oncall.channels.official_account: unusable callback key")
                            })
                            .ok()
                    });
                    keys.official_account = Some(OfficialAccountKeys {
                        token: token.clone(),
                        crypt,
                    });
                }
            }
            _ => {}
        }
    }
    keys
}

/// The person whose contact the upstream names: WeCom userids compared case-insensitively
/// (WeCom lower-cases them in callbacks), openids and numbers exactly.
pub fn person_of(rt: &Runtime, by: &Contact) -> Option<String> {
    rt.config
        .people
        .iter()
        .find(|p| match by {
            Contact::WecomApp { userid } => p
                .contacts
                .wecom_app
                .as_ref()
                .is_some_and(|c| c.userid.eq_ignore_ascii_case(userid)),
            Contact::OfficialAccount { openid } => p
                .contacts
                .official_account
                .as_ref()
                .is_some_and(|c| &c.openid == openid),
            Contact::Voice { number } => p
                .contacts
                .voice
                .as_ref()
                .is_some_and(|c| &c.number == number),
        })
        .map(|p| p.name.clone())
}

/// How the act came (the timeline's `contact` of an acknowledgement).
fn via(page: &PageRef) -> &'static str {
    match page {
        PageRef::WecomCard { .. } => "wecom_card",
        PageRef::OfficialAccount { .. } => "official_account",
        PageRef::Voice { .. } => "voice",
    }
}

/// The engine as the callbacks' sink: reads the runtime in force at each event.
pub struct Sink {
    store: Store,
    runtime: Shared,
}

impl Sink {
    pub fn new(store: Store, runtime: Shared) -> Sink {
        Sink { store, runtime }
    }

    async fn incident(
        &self,
        rt: &Runtime,
        reference: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, SinkError> {
        super::by_reference(&self.store, rt, reference, now)
            .await
            .map_err(|e| SinkError::Engine(e.to_string()))
    }

    /// Applies one event; `Err` only when the store failed (the upstream sends it again).
    pub async fn handle(&self, event: OncallEvent, now: DateTime<Utc>) -> Result<(), SinkError> {
        let rt = self.runtime.load_full();
        let engine = |e: super::ActError| SinkError::Engine(e.to_string());
        match event {
            OncallEvent::Ack {
                by,
                incident: Some(reference),
                page,
            } => {
                let Some(inc) = self.incident(&rt, &reference, now).await? else {
                    info!(
                        reference,
                        "an acknowledgement for an unknown incident; ignored"
                    );
                    return Ok(());
                };
                let Some(person) = person_of(&rt, &by) else {
                    info!(incident = inc.id, contact = ?by, "an acknowledgement from nobody configured; ignored");
                    return Ok(());
                };
                let acted = super::acknowledge(&self.store, &rt, inc.id, &person, via(&page), now)
                    .await
                    .map_err(engine)?;
                info!(
                    incident = inc.id,
                    person,
                    changed = acted.changed,
                    via = via(&page),
                    "acknowledged by a callback"
                );
            }
            OncallEvent::Escalate {
                by,
                incident: reference,
                from_step,
                page,
            } => {
                let Some(inc) = self.incident(&rt, &reference, now).await? else {
                    info!(reference, "an escalation for an unknown incident; ignored");
                    return Ok(());
                };
                let Some(person) = person_of(&rt, &by) else {
                    info!(incident = inc.id, contact = ?by, "an escalation from nobody configured; ignored");
                    return Ok(());
                };
                let acted =
                    super::escalate(&self.store, &rt, inc.id, Some(from_step), &person, now)
                        .await
                        .map_err(engine)?;
                info!(
                    incident = inc.id,
                    person,
                    from_step,
                    changed = acted.changed,
                    via = via(&page),
                    "escalation asked by a callback"
                );
            }
            // The pages' upstream ids (call ids, message ids) are not kept with the incident:
            // an event that names no incident cannot be matched to one.
            event => {
                info!(page = ?event.page(), "an on-call callback event for a page not known to the engine; ignored");
            }
        }
        Ok(())
    }
}

impl EventSink for Sink {
    fn accept(
        &self,
        event: OncallEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(self.handle(event, Utc::now()))
    }
}
