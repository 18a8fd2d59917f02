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
use futures_util::future::BoxFuture;
use tracing::{info, warn};

use crate::channels::error::DeliveryError;
use crate::channels::reach::{
    CallbackKeys, Contact, EventSink, OfficialAccountKeys, OncallEvent, PageRef, SinkError,
};
use crate::channels::wecom_app::card::{Lang, Page, Sent, UpdateTo, acked_label};
use crate::channels::wxcrypt::MsgCrypt;
use crate::channels::{Env, Integration, Kind, Progress};
use crate::config::oncall::ContactEntry;
use crate::delivery::steps::{Attempt, Step};
use crate::runtime::{CONTACT_PREFIX, Runtime, Shared};
use crate::store::Store;
use crate::store::incident::{Incident, IncidentState};
use crate::webhook::Notification;

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
            ContactEntry::Voice(v) if keys.voice.is_none() => {
                if let Some(secret) = &v.callback_secret {
                    keys.voice = Some((v.provider, secret.clone()));
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
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Sink {
    pub fn new(
        store: Store,
        runtime: Shared,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Sink {
        Sink {
            store,
            runtime,
            metrics,
        }
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
                let acted = super::acknowledge(
                    &self.store,
                    &rt,
                    &self.metrics,
                    inc.id,
                    &person,
                    via(&page),
                    now,
                )
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
            OncallEvent::Ack {
                by,
                incident: None,
                page,
            } => {
                // A keypress names no incident: the call it answers does (its `sent` entry),
                // and so does the person called.
                let Some((inc, person, _)) = self.page_of(&rt, &page, now).await? else {
                    info!(page = ?page, contact = ?by, "an acknowledgement for a page not known to the engine; ignored");
                    return Ok(());
                };
                let acted = super::acknowledge(
                    &self.store,
                    &rt,
                    &self.metrics,
                    inc.id,
                    &person,
                    via(&page),
                    now,
                )
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
                let acted = super::escalate(
                    &self.store,
                    &rt,
                    &self.metrics,
                    inc.id,
                    Some(from_step),
                    &person,
                    now,
                )
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
            OncallEvent::PageFailed { page, failure } => {
                self.report(&rt, &page, Some(failure.detail), now).await?;
            }
            OncallEvent::Delivered { page } => {
                self.report(&rt, &page, None, now).await?;
            }
        }
        Ok(())
    }
}

/// The timeline marker and contact kind of the `sent` entry recording a page.
fn marker(page: &PageRef) -> (String, &'static str) {
    match page {
        PageRef::OfficialAccount { msg_id, .. } => (format!("msgid={msg_id}"), "official_account"),
        PageRef::WecomCard { task_id, .. } => (format!("task_id={task_id}"), "wecom_app"),
        PageRef::Voice { call_id, .. } => (format!("call_id={call_id}"), "voice"),
    }
}

impl Sink {
    /// The incident, person and time of the `sent` entry recording `page`.
    async fn page_of(
        &self,
        rt: &Runtime,
        page: &PageRef,
        now: DateTime<Utc>,
    ) -> Result<Option<(Incident, String, DateTime<Utc>)>, SinkError> {
        let (marker, contact) = marker(page);
        let names = |d: &str| d.split(' ').any(|w| w == marker);
        let all = self
            .store
            .incidents(super::keep_since(rt, now))
            .await
            .map_err(|e| SinkError::Engine(e.to_string()))?;
        Ok(all.into_iter().find_map(|inc| {
            let e = inc.timeline.iter().find(|e| {
                e.event == SENT
                    && e.contact.as_deref() == Some(contact)
                    && e.detail.as_deref().is_some_and(names)
            })?;
            let (person, at) = (e.person.clone()?, e.at);
            Some((inc, person, at))
        }))
    }

    /// A delivery report (`failed`: the upstream's words) about a page recorded as sent: a
    /// timeline entry; when every page of the current step and loop has failed, the next
    /// step now (rule 8). A report about an earlier step goes to the timeline only.
    async fn report(
        &self,
        rt: &Runtime,
        page: &PageRef,
        failed: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        let (marker, contact) = marker(page);
        let Some((inc, person, sent_at)) = self.page_of(rt, page, now).await? else {
            info!(page = ?page, "a delivery report for a page not known to the engine; ignored");
            return Ok(());
        };
        let detail = match &failed {
            Some(why) => format!("{marker}: {why}"),
            None => marker.clone(),
        };
        outcome(
            &self.store,
            rt,
            &self.metrics,
            (inc.id, &person, contact, sent_at),
            failed.is_some(),
            detail,
            now,
        )
        .await
        .map_err(|e| SinkError::Engine(e.to_string()))
    }
}

/// Records what became of a page (`failed` or `delivered`) in its incident's timeline; when
/// every page of the current step and loop has failed, the next step now (rule 8).
async fn outcome(
    store: &Store,
    rt: &Runtime,
    metrics: &crate::metrics::Metrics,
    (id, person, contact, sent_at): (i64, &str, &str, DateTime<Utc>),
    failed: bool,
    detail: String,
    now: DateTime<Utc>,
) -> Result<(), super::ActError> {
    let event = if failed { "failed" } else { "delivered" };
    {
        let inc_id = id;
        let mut all_failed = None;
        change(store, inc_id, |inc| {
            inc.log(
                now,
                event,
                Some(person),
                Some(contact),
                Some(detail.clone()),
            );
            all_failed = (failed && every_page_failed(inc, sent_at)).then_some(inc.step);
            true
        })
        .await?;
        if let Some(step) = all_failed {
            info!(
                incident = inc_id,
                step, "every page of the step failed: the next step now"
            );
            super::escalate(
                store,
                rt,
                metrics,
                inc_id,
                Some(step),
                "delivery failed",
                now,
            )
            .await?;
        }
        Ok(())
    }
}

/// Rule 8: whether the page sent at `sent_at` belongs to the current step and loop of a
/// triggered incident, and every page of that step and loop has a `failed` entry since the
/// step began.
fn every_page_failed(inc: &Incident, sent_at: DateTime<Utc>) -> bool {
    if inc.state != IncidentState::Triggered {
        return false;
    }
    let began = inc
        .timeline
        .iter()
        .rev()
        .find(|e| matches!(e.event.as_str(), "triggered" | "escalated" | "retriggered"))
        .map(|e| e.at);
    let Some(began) = began else {
        return false;
    };
    if sent_at < began {
        return false;
    }
    let pages: Vec<_> = inc
        .paged
        .iter()
        .filter(|p| p.step == inc.step && p.loop_ == inc.loop_)
        .collect();
    !pages.is_empty()
        && pages.iter().all(|p| {
            inc.timeline.iter().any(|e| {
                e.event == "failed"
                    && e.at >= began
                    && e.person.as_deref() == Some(p.person.as_str())
                    && e.contact.as_deref() == Some(p.contact.as_str())
            })
        })
}

impl EventSink for Sink {
    fn accept(
        &self,
        event: OncallEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(self.handle(event, Utc::now()))
    }
}

/// The timeline event recording what a page went out as (the upstream's ids for it).
const SENT: &str = "sent";
/// The timeline event recording a card greyed out after an acknowledgement.
const CARD_UPDATED: &str = "card_updated";

fn lang(rt: &Runtime) -> Lang {
    match rt.config.global.locale {
        crate::template::Locale::En => Lang::En,
        _ => Lang::Zh,
    }
}

/// The delivery step that sends on-call pages and status updates to people's WeCom
/// application contacts ([`send`]).
pub struct Cards;

impl Step for Cards {
    fn sends(&self, at: &Attempt<'_>, n: &Notification) -> bool {
        let page = n.incident.as_ref().is_some_and(|c| c.update.is_none());
        at.receiver.starts_with(CONTACT_PREFIX)
            && match at.integration.kind {
                Kind::WecomApp(_) => n.incident.is_some(),
                Kind::OfficialAccount(_) | Kind::Voice(_) => page,
                _ => false,
            }
    }

    fn send<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        env: &'a Env<'a>,
        n: &'a Notification,
        progress: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(send(
            env,
            at.store,
            at.runtime,
            at.receiver,
            at.integration,
            n,
            progress,
        ))
    }

    fn prepare<'a>(
        &'a self,
        _: &'a Attempt<'a>,
        _: &'a mut Notification,
        _: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Sends one claimed delivery. A page to a person's WeCom contact goes as a button card when
/// the application's callback keys are configured, and the card's `task_id` and
/// `response_code` are recorded in the incident's timeline; a status update saying the
/// incident was acknowledged also greys out every card that person got for it, each with its
/// own `response_code`. Everything else goes as the integration sends it.
pub async fn send(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    receiver: &str,
    integration: &Integration,
    n: &Notification,
    progress: &mut Progress,
) -> Result<(), DeliveryError> {
    if let (Kind::Voice(voice), Some(person), Some(ctx)) = (
        &integration.kind,
        receiver.strip_prefix(CONTACT_PREFIX),
        &n.incident,
    ) && ctx.update.is_none()
    {
        return call(env, store, rt, voice, person, ctx, n).await;
    }
    if let (Kind::OfficialAccount(oa), Some(person), Some(ctx)) = (
        &integration.kind,
        receiver.strip_prefix(CONTACT_PREFIX),
        &n.incident,
    ) && ctx.update.is_none()
    {
        let mut ids = Vec::new();
        let result = oa.send_with_ids(env, n, progress, &mut ids).await;
        let step = ctx.step;
        if !ids.is_empty() {
            let recorded = change(store, ctx.id, |inc| {
                for (_, msgid) in &ids {
                    inc.log(
                        env.now,
                        SENT,
                        Some(person),
                        Some("official_account"),
                        Some(format!("step {step}: msgid={msgid}")),
                    );
                }
                true
            })
            .await;
            if let Err(e) = recorded {
                warn!(incident = ctx.id, error = %e, "the page went out but is not recorded with the incident; its delivery report will be ignored");
            }
        }
        return result;
    }
    let (Kind::WecomApp(app), Some(person), Some(ctx)) = (
        &integration.kind,
        receiver.strip_prefix(CONTACT_PREFIX),
        &n.incident,
    ) else {
        return integration.send(env, n, progress).await;
    };
    let userid = rt
        .config
        .people
        .iter()
        .find(|p| p.name == person)
        .and_then(|p| p.contacts.wecom_app.as_ref())
        .map(|c| c.userid.clone());
    let Some(userid) = userid else {
        return integration.send(env, n, progress).await;
    };
    if ctx.update.is_some() {
        integration.send(env, n, progress).await?;
        if ctx.state == IncidentState::Acknowledged.as_str() {
            update_cards(env, store, rt, app, ctx.id, person).await;
        }
        return Ok(());
    }
    if callback_keys(rt).wecom.is_none() {
        return integration.send(env, n, progress).await;
    }
    let preview = env.context_with_preview(n, n, &app.summary, app.summary_max)?;
    let preview = preview["preview"].as_str().unwrap_or_default().to_string();
    let lines: Vec<String> = n
        .alerts
        .iter()
        .filter(|a| a.status == crate::webhook::Status::Firing)
        .map(|a| {
            a.annotations
                .get("summary")
                .or_else(|| a.labels.get("alertname"))
                .cloned()
                .unwrap_or_default()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let page = Page {
        touser: &userid,
        preview: &preview,
        reference: &ctx.reference,
        incident: &ctx.reference,
        step: ctx.step,
        person,
        lines: &lines,
        ack_url: ctx.ack_url.as_deref().unwrap_or_default(),
        lang: lang(rt),
    };
    let sent = app.send_page(env, &page).await?;
    let (detail, contact) = match &sent {
        Sent::Card {
            task_id,
            response_code,
            ..
        } => (
            match response_code {
                Some(code) => format!("card task_id={task_id} response_code={code}"),
                None => format!("card task_id={task_id}"),
            },
            "wecom_app",
        ),
        Sent::Textcard { card_error, .. } => (
            format!("textcard (card refused: {card_error})"),
            "wecom_app",
        ),
    };
    let step = ctx.step;
    let recorded = change(store, ctx.id, |inc| {
        inc.log(
            env.now,
            SENT,
            Some(person),
            Some(contact),
            Some(format!("step {step}: {detail}")),
        );
        true
    })
    .await;
    if let Err(e) = recorded {
        warn!(incident = ctx.id, error = %e, "the card went out but is not recorded with the incident; it will not be updated");
    }
    Ok(())
}

/// A page to a person's voice contact: one call, its ids recorded as a `sent` entry so that
/// the reports (keypress, not answered) find the incident. A call not placed (the number's
/// limit spent, the vendor refusing) is a failed page at once: a `failed` entry, counted as
/// `limited` or `failed`, and the next step now if every page of the step has failed.
async fn call(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    voice: &crate::channels::voice::Voice,
    person: &str,
    ctx: &crate::webhook::IncidentContext,
    n: &Notification,
) -> Result<(), DeliveryError> {
    let step = ctx.step;
    let placed = voice.page(env, store, n).await;
    let placed = match placed {
        Ok(p) => p,
        Err(e) => {
            let label = e.result_label();
            if let Some(m) = env.metrics {
                m.oncall_pages
                    .get_or_create(&crate::metrics::PageLabels {
                        contact: crate::channels::voice::KIND.into(),
                        result: label,
                    })
                    .inc();
                let detail = format!("step {step}: not placed ({label}): {e}");
                let recorded = outcome(
                    store,
                    rt,
                    m,
                    (ctx.id, person, "voice", env.now),
                    true,
                    detail,
                    env.now,
                )
                .await;
                if let Err(e) = recorded {
                    warn!(incident = ctx.id, error = %e, "a call not placed is not recorded with the incident");
                }
            }
            return Err(e.into_delivery());
        }
    };
    let detail = format!(
        "step {step}: call_id={} out_id={}",
        placed.call_id, placed.out_id
    );
    let recorded = change(store, ctx.id, |inc| {
        inc.log(
            env.now,
            SENT,
            Some(person),
            Some("voice"),
            Some(detail.clone()),
        );
        true
    })
    .await;
    if let Err(e) = recorded {
        warn!(incident = ctx.id, error = %e, "the call was placed but is not recorded with the incident; its reports will be ignored");
    }
    Ok(())
}

/// Greys out every card `person` got for incident `id` that has a `response_code` not yet
/// spent: "张三 已认领 K7Q2". A code is spent once whatever WeCom answers (never retried).
async fn update_cards(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    app: &crate::channels::wecom_app::WecomApp,
    id: i64,
    person: &str,
) {
    let Ok(Some(inc)) = store.incident(id).await else {
        return;
    };
    let Some(by) = inc.acknowledged_by.as_deref() else {
        return;
    };
    let label = acked_label(&super::display_name(rt, by), &inc.reference, lang(rt));
    let spent: Vec<&str> = inc
        .timeline
        .iter()
        .filter(|e| e.event == CARD_UPDATED)
        .filter_map(|e| e.detail.as_deref())
        .collect();
    let codes: Vec<(String, String)> = inc
        .timeline
        .iter()
        .filter(|e| e.event == SENT && e.person.as_deref() == Some(person))
        .filter_map(|e| {
            let d = e.detail.as_deref()?;
            let task = d.split("task_id=").nth(1)?.split(' ').next()?.to_string();
            let code = d
                .split("response_code=")
                .nth(1)?
                .split(' ')
                .next()?
                .to_string();
            Some((task, code))
        })
        .filter(|(task, _)| !spent.iter().any(|s| s.contains(task.as_str())))
        .collect();
    let userid = rt
        .config
        .people
        .iter()
        .find(|p| p.name == person)
        .and_then(|p| p.contacts.wecom_app.as_ref())
        .map(|c| c.userid.clone())
        .unwrap_or_default();
    for (task, code) in codes {
        let result = app
            .update_card(env, &code, &UpdateTo::Users(vec![userid.clone()]), &label)
            .await;
        let detail = match &result {
            Ok(()) => format!("task_id={task}: {label}"),
            Err(e) => format!("task_id={task}: not updated: {e}"),
        };
        let _ = change(store, id, |inc| {
            inc.log(
                env.now,
                CARD_UPDATED,
                Some(person),
                Some("wecom_app"),
                Some(detail.clone()),
            );
            true
        })
        .await;
    }
}

/// A timeline change to incident `id`, compare-and-set, tried again when another change came
/// first.
async fn change(
    store: &Store,
    id: i64,
    mut f: impl FnMut(&mut Incident) -> bool,
) -> Result<(), crate::store::StoreError> {
    for _ in 0..8 {
        let Some(mut inc) = store.incident(id).await? else {
            return Ok(());
        };
        if !f(&mut inc) {
            return Ok(());
        }
        if store.incident_update(&inc).await? {
            return Ok(());
        }
    }
    Err(crate::store::StoreError::Db(
        "the incident kept changing under this change".into(),
    ))
}
